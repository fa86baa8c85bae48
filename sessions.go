// sessions.go owns what happens after login: the tokens a client holds,
// their renewal and their end, and the session rows. The rules:
//   - Login adds one session row (addSession) and answers with a short-lived
//     access token (jwt.go) and a refresh token: a 16-byte handle naming the
//     session, then 32 bytes new at each refresh. The row keeps only SHA-256
//     digests, so a copy of the database holds no usable token.
//   - A refresh spends the current token for a new pair (rotateSession). A
//     token with the session's handle that is not its current one was spent
//     already: two parties hold the session, which is ended (RFC 9700
//     §4.14.2). Refreshes are limited per session; only successes count.
//   - A user has at most maxSessionsPerUser sessions; each login sweeps
//     expired ones (addSession), so no cleaning job is needed.
//   - Logout, password change and createsuperuser delete the user's
//     sessions and move its token generation on (endSessionsTx); an access
//     token of an older generation is refused (requireUser).
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"net/http"
	"slices"
	"strconv"
	"time"
)

const (
	sessionHandleBytes = 16 // 128 bits; names the session in each of its tokens
	refreshSecretBytes = 32 // 256 bits, new at each refresh
	refreshTokenChars  = (8*(sessionHandleBytes+refreshSecretBytes) + 5) / 6
	// legacyRefreshTokenChars is the length of the 32-byte tokens of the
	// refresh_token table, carried over into sessions (schema.sql).
	legacyRefreshTokenChars = (8*32 + 5) / 6

	maxSessionsPerUser = 50  // phones, browsers and scripts, with room to spare
	sessionSweepRows   = 100 // other users' expired sessions one login deletes
	// An honest client refreshes once per access token lifetime.
	refreshBurst    = 10
	refreshInterval = 6 * time.Second
)

// tokenResponse is RFC 6749 §5.1's answer.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// refreshToken returns a new refresh token of the session of handle, nil
// for a new session, and what the store keeps of it.
func (a *app) refreshToken(handle []byte, now time.Time) (string, refreshGrant) {
	if handle == nil {
		handle = randomBytes(sessionHandleBytes)
	}
	token := base64.RawURLEncoding.EncodeToString(slices.Concat(handle, randomBytes(refreshSecretBytes)))
	grant, _, _ := parseRefreshToken(token)
	grant.expiresAt = now.Add(a.refreshTokenLifetime)
	return token, grant
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand doc)
	return b
}

func randomToken(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}

// generatePassword makes a password for an operator who gave none.
func generatePassword() string { return randomToken(18) }

// parseRefreshToken returns the digests the store knows a token by, and
// its handle, or ok false for a token that cannot be ours. The digest is
// of the token as sent: a '\r' the decoder skips makes no other token.
func parseRefreshToken(token string) (grant refreshGrant, handle []byte, ok bool) {
	if len(token) != refreshTokenChars && len(token) != legacyRefreshTokenChars {
		return refreshGrant{}, nil, false
	}
	raw, err := strictRawURL.DecodeString(token)
	if err != nil {
		return refreshGrant{}, nil, false
	}
	handle = raw[:sessionHandleBytes]
	handleDigest := sha256.Sum256(handle)
	digest := sha256.Sum256([]byte(token))
	return refreshGrant{handle: handleDigest[:], digest: digest[:]}, handle, true
}

// startSession begins a session for u and answers with its first tokens.
// If u's generation moved on since login read it, the checked password may
// be an old one: the login fails as a wrong password does.
func (a *app) startSession(w http.ResponseWriter, r *http.Request, u user) error {
	return a.newSession(w, r, u, "", errIncorrectLogin)
}

// newSession starts a session for u, first setting newHashedPassword unless
// it is "", and answers with its tokens; or returns ended if u's generation
// moved on since u was read.
func (a *app) newSession(w http.ResponseWriter, r *http.Request, u user, newHashedPassword string, ended error) (err error) {
	now := a.now()
	refreshToken, grant := a.refreshToken(nil, now)
	u.TokenGeneration, err = a.store.addSession(r.Context(), u, newHashedPassword, grant, now)
	if errors.Is(err, errSessionEnded) {
		return ended
	}
	if err != nil {
		return err
	}
	return a.writeTokens(w, u, refreshToken, now)
}

// writeTokens answers with a new access token for u and refreshToken,
// never to be cached (RFC 6749 §5.1).
func (a *app) writeTokens(w http.ResponseWriter, u user, refreshToken string, now time.Time) error {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	return writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  signAccessToken(a.tokenKey, u.ID, u.TokenGeneration, now, a.accessTokenLifetime),
		TokenType:    "bearer",
		RefreshToken: refreshToken,
		ExpiresIn:    int64(a.accessTokenLifetime / time.Second),
	})
}

// handleRefresh is OAuth2's refresh grant (RFC 6749 §6).
func (a *app) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(r); err != nil {
		return err
	}
	var form problems
	presented, grantType := r.PostFormValue("refresh_token"), r.PostFormValue("grant_type")
	form.require(presented != "", "body", "refresh_token")
	form.require(grantType != "", "body", "grant_type")
	form.check(grantType == "" || grantType == "refresh_token", "body", "grant_type",
		`string does not match regex "refresh_token"`, "value_error.str.regex")
	if err := form.err(); err != nil {
		return err
	}
	grant, handle, ok := parseRefreshToken(presented)
	if !ok {
		return errInvalidRefreshToken
	}
	// On a reader first: guesses cost no writer time, and the limit
	// applies to a known session.
	session, err := a.store.sessionOf(r.Context(), grant)
	if err != nil {
		return err
	}
	if session == 0 {
		return errInvalidRefreshToken
	}
	// Only a success counts, so racing clients with one token all reach
	// the store, which answers one 200 and ends the session for the
	// others' reuse, rather than answering 429.
	limitKey := strconv.FormatInt(session, 10)
	if wait := a.refreshLimiter.wait(limitKey); wait > 0 {
		return errTooManyRefreshes.retryIn(wait)
	}
	now := a.now()
	next, nextGrant := a.refreshToken(handle, now)
	u, err := a.store.rotateSession(r.Context(), grant, nextGrant, now)
	if errors.Is(err, errRefreshTokenRefused) {
		return errInvalidRefreshToken
	}
	if err != nil {
		return err
	}
	a.refreshLimiter.take(limitKey)
	return a.writeTokens(w, u, next, now)
}

func (a *app) handleLogout(w http.ResponseWriter, r *http.Request, caller user) error {
	if err := a.store.endSessions(r.Context(), caller.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleChangePassword sets a new password for the caller, who must know
// the current one (passwordMatches), ends every earlier session, and
// starts a new one for this client, in one transaction.
func (a *app) handleChangePassword(w http.ResponseWriter, r *http.Request, caller user) error {
	body, err := decodeJSONObject(r)
	if err != nil {
		return err
	}
	current := body.text("current_password", true)
	if current != nil {
		checkPassword(&body.problems, "current_password", *current, false)
	}
	newPassword := body.text("new_password", true)
	if newPassword != nil {
		checkPassword(&body.problems, "new_password", *newPassword, true)
	}
	if err := body.err(); err != nil {
		return err
	}

	ok, err := a.passwordMatches(r.Context(), caller, *current)
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
	return a.newSession(w, r, caller, hash, errBadToken) // errBadToken: its token was ended meanwhile
}

// refreshGrant is a refresh token as the store keeps it: only digests.
type refreshGrant struct {
	handle    []byte // SHA-256 of the session's handle: a spent token still names it
	digest    []byte // SHA-256 of the whole token the client holds
	expiresAt time.Time
}

// addSession starts a session for u holding grant (newSession tells the
// rest) and returns u's generation. The hash is not compared: a rehash
// stores the same password, and must fail no login that read u.
func (s *store) addSession(ctx context.Context, u user, newHashedPassword string, grant refreshGrant, now time.Time) (int64, error) {
	generation := u.TokenGeneration
	err := s.write(ctx, func(tx *sql.Tx) error {
		var stored int64
		err := tx.QueryRowContext(ctx, "SELECT token_generation FROM user WHERE id = ?", u.ID).Scan(&stored)
		if errors.Is(err, sql.ErrNoRows) || (err == nil && stored != u.TokenGeneration) {
			return errSessionEnded
		}
		if err == nil && newHashedPassword != "" {
			generation, err = endSessionsTx(ctx, tx, u.ID, newHashedPassword)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, `DELETE FROM session WHERE user_id = ?2 AND expires_at <= ?1
				OR id IN (SELECT id FROM session WHERE expires_at <= ?1 AND user_id <> ?2 LIMIT ?3)`,
				now.Unix(), u.ID, sessionSweepRows)
		}
		if err == nil {
			_, err = tx.ExecContext(ctx, "INSERT INTO session (user_id, handle, digest, expires_at) VALUES (?, ?, ?, ?)",
				u.ID, grant.handle, grant.digest, grant.expiresAt.Unix())
		}
		if err == nil { // ids only grow (AUTOINCREMENT), so the highest are the newest
			_, err = tx.ExecContext(ctx, `DELETE FROM session WHERE user_id = ?1 AND id <=
				(SELECT id FROM session WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`,
				u.ID, maxSessionsPerUser)
		}
		return err
	})
	return generation, wrapErr(err, "add session")
}

// sessionOf returns the id of the session that presented names, as its
// current token (digest) or any it had (handle), or 0 if none.
func (s *store) sessionOf(ctx context.Context, presented refreshGrant) (int64, error) {
	var id int64
	err := s.reader.QueryRowContext(ctx, "SELECT id FROM session WHERE digest = ? OR handle = ? LIMIT 1",
		presented.digest, presented.handle).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, wrapErr(err, "look up refresh token")
}

// rotateSession makes next the current token of presented's session and
// returns its user; or errRefreshTokenRefused if presented is unknown,
// expired, of a deleted user, or spent: a spent token ends its session
// (reuse detection). Of two racing rotations, the second sees it spent.
func (s *store) rotateSession(ctx context.Context, presented, next refreshGrant, now time.Time) (user, error) {
	var u user
	var invalid bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		var id, userID, expiresAt int64
		err := tx.QueryRowContext(ctx, "SELECT id, user_id, expires_at FROM session WHERE digest = ?", presented.digest).
			Scan(&id, &userID, &expiresAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			invalid = true
			_, err := tx.ExecContext(ctx, "DELETE FROM session WHERE handle = ?", presented.handle)
			return err
		case err != nil:
			return err
		case expiresAt <= now.Unix():
			invalid = true
			return nil
		}
		u, err = scanUser(tx.QueryRowContext(ctx, "SELECT "+userColumns+" FROM user WHERE id = ?", userID))
		if errors.Is(err, errNotFound) {
			invalid = true
			_, err := tx.ExecContext(ctx, "DELETE FROM session WHERE id = ?", id)
			return err
		}
		if err != nil {
			return err
		}
		// A session carried over from refresh_token has no handle till now.
		_, err = tx.ExecContext(ctx, "UPDATE session SET handle = ?, digest = ?, expires_at = ? WHERE id = ?",
			next.handle, next.digest, next.expiresAt.Unix(), id)
		return err
	})
	if invalid && err == nil {
		return user{}, errRefreshTokenRefused
	}
	return u, wrapErr(err, "rotate refresh token")
}

// endSessions retires every token of the user: it moves the generation
// on and deletes the sessions.
func (s *store) endSessions(ctx context.Context, userID int64) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		_, err := endSessionsTx(ctx, tx, userID, "")
		return err
	})
	return wrapErr(err, "end sessions")
}

// endSessionsTx is endSessions in tx, also setting newHashedPassword
// unless it is "".
func endSessionsTx(ctx context.Context, tx *sql.Tx, userID int64, newHashedPassword string) (int64, error) {
	var generation int64
	err := tx.QueryRowContext(ctx, `
		UPDATE user SET token_generation = token_generation + 1,
			hashed_password = CASE WHEN ?1 = '' THEN hashed_password ELSE ?1 END
		WHERE id = ?2 RETURNING token_generation`,
		newHashedPassword, userID).Scan(&generation)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNotFound
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, "DELETE FROM session WHERE user_id = ?", userID)
	}
	return generation, err
}
