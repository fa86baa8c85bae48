// sessions.go owns what happens after login: the pair of tokens a client
// holds, their renewal, and their end.
//
// How a session works, and how it ends:
//   - Login answers with a short-lived access token (a JWT, jwt.go) and a
//     long-lived refresh token: 32 random bytes, of which the database keeps
//     only the SHA-256 digest, so a copy of the database holds no usable
//     token.
//   - POST /auth/refresh spends a refresh token and answers with a new pair.
//     Each refresh token works once. Every token rotated from one login
//     shares a family; a spent token presented again means that two parties
//     hold it, so the whole family is deleted (RFC 9700 §4.14.2) while the
//     user's other logins go on.
//   - Logout and password change end every session of the user at once:
//     they delete the user's refresh tokens and move the user's token
//     generation on. Each access token carries the generation it was issued
//     in, and requireUser (auth.go) compares it with the user row it reads
//     anyway: no extra query, and no list of revoked tokens that grows.
//     A token issued after the change carries the new generation, so it
//     works even within the same second.
package main

import (
	"crypto/sha256"
	"errors"
	"net/http"
	"time"
)

const refreshTokenBytes = 32 // 256 bits

var (
	errInvalidRefreshToken = &apiError{status: http.StatusBadRequest, detail: "Invalid refresh token"}
	errIncorrectPassword   = &apiError{status: http.StatusBadRequest, detail: "Incorrect password"}
)

// tokenResponse is the answer of login, refresh and password change
// (RFC 6749 §5.1). Clients of the reference read only the first two.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// newRefreshToken returns a refresh token for the client and what the
// store keeps of it, in a new family; a rotation puts it in the family of
// the token it replaces instead (store.rotateRefreshToken).
func (a *app) newRefreshToken(now time.Time) (string, refreshGrant) {
	token := randomToken(refreshTokenBytes)
	digest := sha256.Sum256([]byte(token))
	return token, refreshGrant{digest: digest[:], family: randomToken(16), expiresAt: now.Add(a.refreshTokenLifetime)}
}

// startSession begins a new family of refresh tokens for u, the user whose
// password login has just checked, and answers with u's first pair of
// tokens. If u logged out or changed password meanwhile, the login fails
// as a wrong password does: the password it checked may be the old one.
func (a *app) startSession(w http.ResponseWriter, r *http.Request, u user) error {
	now := a.now()
	refreshToken, grant := a.newRefreshToken(now)
	err := a.store.addRefreshToken(r.Context(), u, grant, now)
	if errors.Is(err, errSessionEnded) {
		return errIncorrectLogin
	}
	if err != nil {
		return err
	}
	return a.writeTokens(w, u, refreshToken, now)
}

// writeTokens answers with a new access token for u and refreshToken.
func (a *app) writeTokens(w http.ResponseWriter, u user, refreshToken string, now time.Time) error {
	// Token responses must not be cached (RFC 6749 §5.1).
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	return writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  signAccessToken(a.tokenKey, u.ID, u.TokenGeneration, now, a.accessTokenLifetime),
		TokenType:    "bearer",
		RefreshToken: refreshToken,
		ExpiresIn:    int64(a.accessTokenLifetime / time.Second),
	})
}

// handleRefresh is OAuth2's refresh grant (RFC 6749 §6): a form with
// grant_type=refresh_token and the refresh token.
func (a *app) handleRefresh() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		if err := readForm(w, r); err != nil {
			return err
		}
		var fields jsonFields
		presented := r.PostFormValue("refresh_token")
		fields.check(presented != "", "refresh_token", "field required", "value_error.missing")
		grantType := r.PostFormValue("grant_type")
		fields.check(grantType == "" || grantType == "refresh_token", "grant_type",
			`string does not match regex "refresh_token"`, "value_error.str.regex")
		if err := fields.err(); err != nil {
			return err
		}
		// A token of the wrong length cannot be one of ours: refuse it
		// without asking the database.
		if len(presented) != len(randomToken(refreshTokenBytes)) {
			return errInvalidRefreshToken
		}

		digest := sha256.Sum256([]byte(presented))
		known, err := a.store.refreshTokenExists(r.Context(), digest[:])
		if err != nil {
			return err
		}
		if !known {
			return errInvalidRefreshToken
		}
		now := a.now()
		next, grant := a.newRefreshToken(now)
		u, err := a.store.rotateRefreshToken(r.Context(), digest[:], grant, now)
		if errors.Is(err, errRefreshTokenInvalid) {
			return errInvalidRefreshToken
		}
		if err != nil {
			return err
		}
		return a.writeTokens(w, u, next, now)
	})
}

func (a *app) handleLogout() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		if _, err := a.store.endSessions(r.Context(), currentUser(r).ID, ""); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// handleChangePassword sets a new password for the caller, who must know
// the current one, ends every earlier session, and starts a new one for
// this client. A wrong current password changes nothing.
func (a *app) handleChangePassword() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		caller := currentUser(r)
		body, err := decodeJSONObject(w, r)
		if err != nil {
			return err
		}
		current := body.text("current_password", true)
		if current != nil {
			checkPasswordFits(&body, "current_password", *current)
		}

		newPassword := body.text("new_password", true)
		if newPassword != nil {
			checkPasswordLength(&body, "new_password", *newPassword)
		}
		if err := body.err(); err != nil {
			return err
		}

		ok, err := a.passwords.compare(r.Context(), caller.HashedPassword, *current)
		if err != nil {
			return err
		}
		if !ok {
			return errIncorrectPassword
		}
		hash, err := a.passwords.hash(r.Context(), *newPassword)
		if err != nil {
			return err
		}
		// One transaction checks that the caller's session is still the
		// one whose password was checked, sets the new hash, ends every
		// session, and starts this client's new one.
		now := a.now()
		refreshToken, grant := a.newRefreshToken(now)
		caller.TokenGeneration, err = a.store.changePassword(r.Context(), caller, hash, grant, now)
		if errors.Is(err, errSessionEnded) {
			return errBadToken // the token it came with was ended meanwhile
		}
		if err != nil {
			return err
		}
		return a.writeTokens(w, caller, refreshToken, now)
	})
}
