// sessions.go owns what happens after login: the pair of tokens a client
// holds, their renewal, and their end. The handlers are here; the steps
// that must be atomic are transactions in store.go, named below (store.X
// is a method of the store; insertUser, randomGeneration,
// checkGenerationUnchanged and insertSession are functions of store.go), so
// that this comment is the one map of the whole state machine.
//
// How a session works, and how it ends:
//   - A new user starts at a random token generation (insertUser,
//     randomGeneration), so that no token made for an id before it was
//     reused, or under the same secret in another database, fits.
//   - Login starts a session: one row of the session table
//     (store.addSession), however often it is refreshed. It answers with a
//     short-lived access token (a JWT, jwt.go) and a long-lived refresh
//     token of 48 random bytes: a 16-byte handle that names the session and
//     stays the same in every token of it, then 32 bytes new at every
//     refresh. The row keeps only the SHA-256 digests of the handle and of
//     the current token, so a copy of the database holds no usable token.
//     A login that checked a password which a logout or password change
//     has since retired fails (checkGenerationUnchanged).
//   - POST /auth/refresh finds the session on a reader (store.sessionOf),
//     then spends the current refresh token and answers with a new pair
//     (store.rotateSession): the row's digest becomes the new token's.
//     Only the current token works. A token that carries the session's
//     handle but is not its current token was spent already, so two
//     parties hold the session: the session is ended (reuse detection, RFC
//     9700 §4.14.2, in store.rotateSession) while the user's other
//     sessions go on. A session whose refresh token is not used for
//     REFRESH_TOKEN_EXPIRE_MINUTES expires.
//   - Refreshes are limited per session (app.refreshLimiter, a
//     rateLimiter): refreshBurst at once, then one every refreshInterval;
//     past that, 429 with Retry-After. Only refreshes that succeed count.
//   - A user has at most maxSessionsPerUser sessions: a new login past it
//     ends the oldest (insertSession). Each login also deletes the user's
//     expired sessions and up to sessionSweepRows expired sessions of
//     anyone, so the table needs no cleaning job.
//   - Logout, password change and createsuperuser end every session of the
//     user at once (store.endSessions, store.changePassword,
//     store.promoteToSuperuser): they delete the user's sessions and move
//     the user's token generation on. Each access token carries the
//     generation it was issued in, and requireUser (auth.go) compares it
//     with the user row it reads anyway: no extra query, and no list of
//     revoked tokens that grows. A token issued after the change carries
//     the new generation, so it works even within the same second.
package main

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"
)

const (
	sessionHandleBytes = 16 // 128 bits; names the session in each of its tokens
	refreshSecretBytes = 32 // 256 bits, new at each refresh
	// refreshTokenChars is the length of a refresh token in base64url.
	// legacyRefreshTokenChars is that of the 32-byte tokens issued before
	// sessions, under the refresh_token table: those still live then were
	// carried over into sessions (schema.sql) and still work.
	refreshTokenChars       = (8*(sessionHandleBytes+refreshSecretBytes) + 5) / 6
	legacyRefreshTokenChars = (8*32 + 5) / 6
)

// The budgets of sessions; see this file's opening comment and SECURITY.md.
const (
	// maxSessionsPerUser bounds the live sessions (and so the session
	// rows) of one user: phones, browsers and scripts with room to spare.
	maxSessionsPerUser = 50
	// sessionSweepRows bounds the expired sessions of other users that
	// one login deletes, so that a login costs the same however many
	// have expired.
	sessionSweepRows = 100
	// refreshBurst and refreshInterval limit refreshes per session: an
	// honest client refreshes once per access token lifetime.
	refreshBurst    = 10
	refreshInterval = 6 * time.Second
)

// tokenResponse is the answer of login, refresh and password change
// (RFC 6749 §5.1). Clients of the reference read only the first two.
type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	RefreshToken string `json:"refresh_token"`
	ExpiresIn    int64  `json:"expires_in"`
}

// newRefreshToken returns the first refresh token of a new session, and
// what the store keeps of it.
func (a *app) newRefreshToken(now time.Time) (string, refreshGrant) {
	return a.nextRefreshToken(randomBytes(sessionHandleBytes), now)
}

// nextRefreshToken returns a refresh token of the session whose handle
// this is, and what the store keeps of it.
func (a *app) nextRefreshToken(handle []byte, now time.Time) (string, refreshGrant) {
	token := base64.RawURLEncoding.EncodeToString(slices.Concat(handle, randomBytes(refreshSecretBytes)))
	grant, _, _ := parseRefreshToken(token)
	grant.expiresAt = now.Add(a.refreshTokenLifetime)
	return token, grant
}

// randomBytes returns n bytes from crypto/rand.
func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand doc)
	return b
}

// randomToken returns n random bytes as unpadded base64url.
func randomToken(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}

// generatePassword makes a password for an operator who gave none: 24
// characters, 144 random bits.
func generatePassword() string { return randomToken(18) }

// parseRefreshToken returns what the store knows a presented refresh
// token by: the digests of the whole token and of its handle, its first
// sessionHandleBytes bytes, which it also returns. ok is false if the
// token cannot be one of ours (wrong length, or not base64url), so that
// the database need not be asked. A '\r' or '\n', which the decoder
// skips, makes no other token: the digest is taken over the token as sent.
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

// startSession begins a new session for u, the user whose password login
// has just checked, and answers with u's first pair of tokens. If u
// logged out or changed password meanwhile, the login fails as a wrong
// password does: the password it checked may be the old one.
func (a *app) startSession(w http.ResponseWriter, r *http.Request, u user) error {
	now := a.now()
	refreshToken, grant := a.newRefreshToken(now)
	err := a.store.addSession(r.Context(), u, grant, now)
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
func (a *app) handleRefresh(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(r); err != nil {
		return err
	}
	var form problems
	presented, grantType := r.PostFormValue("refresh_token"), r.PostFormValue("grant_type")
	form.require(presented != "", "body", "refresh_token")
	// grant_type is required here (RFC 6749 §6), unlike at login, where
	// the reference's form makes it optional.
	form.require(grantType != "", "body", "grant_type")
	form.check(grantType == "" || grantType == "refresh_token", "body", "grant_type",
		`string does not match regex "refresh_token"`, "value_error.str.regex")
	if err := form.err(); err != nil {
		return err
	}
	// A token of the wrong shape cannot be one of ours: refuse it without
	// asking the database.
	grant, handle, ok := parseRefreshToken(presented)
	if !ok {
		return errInvalidRefreshToken
	}
	// Look the token up on a reader first: guesses then cost no writer
	// time, and the rate limit applies to a known session.
	session, err := a.store.sessionOf(r.Context(), grant)
	if err != nil {
		return err
	}
	if session == 0 {
		return errInvalidRefreshToken
	}
	// Only a refresh that succeeds counts: a failed one changes nothing or
	// ends the session. Racing clients with one token so all get through
	// to the store, which answers one of them 200 and the others 400, and
	// ends the session, whose token two parties hold, rather than 429.
	limitKey := strconv.FormatInt(session, 10)
	if wait := a.refreshLimiter.wait(limitKey); wait > 0 {
		return errTooManyRefreshes.retryIn(wait)
	}
	now := a.now()
	next, nextGrant := a.nextRefreshToken(handle, now)
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

// handleLogout ends every session of the caller (store.endSessions).
func (a *app) handleLogout(w http.ResponseWriter, r *http.Request, caller user) error {
	if _, err := a.store.endSessions(r.Context(), caller.ID); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// handleChangePassword sets a new password for the caller, who must know
// the current one, ends every earlier session, and starts a new one for
// this client. A wrong current password changes nothing; nor does any
// current password if the stored hash is unusable (passwordMatches).
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

	ok, err := a.passwordMatches(r.Context(), &caller, *current)
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
	// One transaction checks that the caller's session is still the one
	// whose password was checked, sets the new hash, ends every session,
	// and starts this client's new one.
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
}

// refreshGrant is a refresh token as the store keeps it: only digests.
// Every token of one login session starts with the same random handle
// (see sessions.go), so that a spent token still names its session.
type refreshGrant struct {
	handle    []byte // SHA-256 of the session's handle, the token's first bytes
	digest    []byte // SHA-256 of the whole token the client holds
	expiresAt time.Time
}

// addSession starts a login session for u, holding grant, its first
// refresh token; unless u has logged out or changed password since u was
// read (a login that checked the old password must not outlive the
// change): then errSessionEnded. See insertSession for what else it
// deletes.
func (s *store) addSession(ctx context.Context, u user, grant refreshGrant, now time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := checkGenerationUnchanged(ctx, tx, u); err != nil {
			return err
		}
		return insertSession(ctx, tx, u.ID, grant, now)
	})
	return wrapErr(err, "add session")
}

// checkGenerationUnchanged returns errSessionEnded unless u still exists and
// its token generation is still what it was when u was read. Every change
// that ends sessions (logout, password change, createsuperuser) moves the
// generation on. The hash alone may change without it: a rehash on login
// stores the same password at a new cost, and must not fail a login or a
// password change that read the user before it.
func checkGenerationUnchanged(ctx context.Context, tx *sql.Tx, u user) error {
	var generation int64
	err := tx.QueryRowContext(ctx, "SELECT token_generation FROM user WHERE id = ?", u.ID).Scan(&generation)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && generation != u.TokenGeneration) {
		return errSessionEnded
	}
	return wrapErr(err, "check session")
}

// changePassword gives u a new password hash and ends every session of u,
// as endSessions does, and starts the session of the client that changed
// it with grant, all in one transaction; unless u logged out or changed
// password since u was read: then errSessionEnded, and nothing changes.
// It returns u's new token generation.
func (s *store) changePassword(ctx context.Context, u user, newHashedPassword string, grant refreshGrant, now time.Time) (int64, error) {
	var generation int64
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) (err error) {
		if err := checkGenerationUnchanged(ctx, tx, u); err != nil {
			return err
		}
		if generation, err = endSessionsTx(ctx, tx, u.ID, newHashedPassword); err != nil {
			return err
		}
		return insertSession(ctx, tx, u.ID, grant, now)
	})
	return generation, wrapErr(err, "change password")
}

// insertSession adds a session of userID holding grant. So that the
// session table needs no cleaning job and no user can fill it, it also
// deletes, first, every expired session of userID and up to
// sessionSweepRows expired sessions of anyone, and then userID's oldest
// sessions past the newest maxSessionsPerUser.
func insertSession(ctx context.Context, tx *sql.Tx, userID int64, grant refreshGrant, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM session WHERE user_id = ? AND expires_at <= ?", userID, now.Unix()); err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		"DELETE FROM session WHERE id IN (SELECT id FROM session WHERE expires_at <= ? LIMIT ?)",
		now.Unix(), sessionSweepRows); err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO session (user_id, handle, digest, expires_at) VALUES (?, ?, ?, ?)",
		userID, grant.handle, grant.digest, grant.expiresAt.Unix()); err != nil {
		return fmt.Errorf("add session: %w", err)
	}
	// Ids only grow (AUTOINCREMENT), so the highest are the newest.
	if _, err := tx.ExecContext(ctx, `DELETE FROM session WHERE user_id = ?1 AND id <=
		(SELECT id FROM session WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`,
		userID, maxSessionsPerUser); err != nil {
		return fmt.Errorf("end the oldest sessions: %w", err)
	}
	return nil
}

// sessionOf returns the id of the session that a presented refresh
// token names, by its digest (the session's current token) or by its
// handle (any token the session ever had), or 0 if none. It asks a
// reader, so that guesses at tokens need not queue for the one writer
// that rotateSession takes.
func (s *store) sessionOf(ctx context.Context, presented refreshGrant) (int64, error) {
	var id int64
	err := s.reader.QueryRowContext(ctx, "SELECT id FROM session WHERE digest = ? OR handle = ? LIMIT 1",
		presented.digest, presented.handle).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, wrapErr(err, "look up refresh token")
}

// rotateSession spends presented, the current refresh token of its
// session, and makes next the session's current token; it returns the
// session's user. The session keeps its one row: only the current
// token's digest is kept, and the handle that all its tokens share.
//
// errRefreshTokenRefused, when presented is:
//   - not the current token of any session, but carries a session's
//     handle: a spent token (or one made from a spent one), so two parties
//     hold the session. It is taken as stolen and the session is ended,
//     so neither the thief nor the victim can go on with it (reuse
//     detection, RFC 9700 §4.14.2); other sessions of the user go on.
//   - unknown, or of an expired session;
//   - of a session whose user is gone (deleted by hand with foreign keys
//     off, which leaves its sessions behind): the session is deleted.
//
// The writer's transactions begin IMMEDIATE, so two rotations of the same
// token run one after the other: the first wins, the second sees a spent
// token, which ends the session.
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
		// Setting the handle matters only to a session carried over from
		// the refresh_token table (schema.sql), which has none until then.
		_, err = tx.ExecContext(ctx, "UPDATE session SET handle = ?, digest = ?, expires_at = ? WHERE id = ?",
			next.handle, next.digest, next.expiresAt.Unix(), id)
		return err
	})
	if err != nil {
		return user{}, fmt.Errorf("rotate refresh token: %w", err)
	}
	if invalid {
		return user{}, errRefreshTokenRefused
	}
	return u, nil
}

// endSessions ends every session of the user: it moves the user's token
// generation on, which retires every access token issued so far, and
// deletes every session, and so every refresh token. It returns the new
// generation, or errNotFound if there is no such user.
func (s *store) endSessions(ctx context.Context, userID int64) (int64, error) {
	var generation int64
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) (err error) {
		generation, err = endSessionsTx(ctx, tx, userID, "")
		return err
	})
	return generation, wrapErr(err, "end sessions")
}

// endSessionsTx is endSessions in tx, with newHashedPassword, unless "",
// replacing the password in the same transaction.
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
