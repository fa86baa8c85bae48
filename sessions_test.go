// sessions_test.go tests sessions.go: refresh tokens, their rotation and
// reuse detection, logout, password changes, the bounds on sessions and
// the refresh limiter.
package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// sessionRows is how many session rows userID has.
func sessionRows(t *testing.T, e *testEnv, userID int64) int {
	t.Helper()
	return queryInt(t, e.store.reader, "SELECT count(*) FROM session WHERE user_id = ?", userID)
}

// expectRowsOf fails t unless userID, described by who, has want session rows.
func expectRowsOf(t *testing.T, e *testEnv, who string, userID int64, want int) {
	t.Helper()
	if n := sessionRows(t, e, userID); n != want {
		t.Errorf("%s has %d session rows, want %d", who, n, want)
	}
}

// sessionNamedBy is the session that the store's lookup finds for a
// well-formed refresh token, as handleRefresh asks for it; 0 if none.
func sessionNamedBy(t *testing.T, e *testEnv, token string) int64 {
	t.Helper()
	grant, _, ok := parseRefreshToken(token)
	session, err := e.store.sessionOf(t.Context(), grant)
	if !ok || err != nil {
		t.Fatalf("sessionOf(%.60q): well-formed %v, error %v", token, ok, err)
	}
	return session
}

// newGrant is what the store keeps of a new refresh token, for a test that
// calls the store itself.
func newGrant() refreshGrant {
	grant, _, _ := parseRefreshToken(randomToken(sessionHandleBytes + refreshSecretBytes))
	grant.expiresAt = time.Now().Add(time.Hour)
	return grant
}

// asTheReferenceMadeThem puts userID at token generation 0, the column's
// default, as the reference made users, and returns an access token as
// the reference signs it (no "gen"), which fits that generation.
func asTheReferenceMadeThem(t *testing.T, e *testEnv, userID int64) string {
	t.Helper()
	if _, err := e.store.writer.Exec("UPDATE user SET token_generation = 0 WHERE id = ?", userID); err != nil {
		t.Fatal(err)
	}
	return referenceAccessToken(e, userID)
}

// expectTooManyRefreshes checks the limiter's answer to a refresh of token.
func expectTooManyRefreshes(t *testing.T, e *testEnv, token string, retryAfter time.Duration) {
	t.Helper()
	resp := refresh(e, token)
	expectDetail(t, resp, http.StatusTooManyRequests, "Too many refreshes, try again later")
	if got, want := resp.Header.Get("Retry-After"), fmt.Sprint(retryAfter.Seconds()); got != want {
		t.Errorf("POST /api/v1/auth/refresh: Retry-After = %q, want %q", got, want)
	}
}

func TestLoginAlsoGivesARefreshTokenAndExpiresIn(t *testing.T) {
	e := newTestEnv(t, func(c *config) { c.accessTokenLifetime = 90 * time.Minute })
	e.signup("cook@example.com", "password123")

	// expectTokenResponse checks no-store, 64 base64url characters and expires_in.
	got := expectTokenResponse(t, e, e.tryLogin("cook@example.com", "password123"))
	if _, err := verifyAccessToken(newTokenKey(e.cfg.tokenSecret), got.AccessToken, time.Now()); err != nil {
		t.Fatalf("the access token does not verify: %v", err)
	}
	claims := payloadOf(t, got.AccessToken)
	if life := time.Duration(claims["exp"].(float64)-claims["iat"].(float64)) * time.Second; life != time.Duration(got.ExpiresIn)*time.Second {
		t.Errorf("the access token lives %v, but expires_in says %ds", life, got.ExpiresIn)
	}
	seen := map[string]bool{got.RefreshToken: true}
	for range 5 {
		token := e.loginTokens("cook@example.com", "password123").RefreshToken
		if seen[token] {
			t.Fatalf("two logins got the same refresh token %q", token)
		}
		seen[token] = true
	}
}

func TestARefreshTokenWorksOnce(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	login := func(t *testing.T) tokenResponse {
		t.Helper()
		return e.reportingTo(t).loginTokens("cook@example.com", "password123")
	}

	t.Run("a refresh token gives a new pair that works, once", func(t *testing.T) {
		first := login(t)
		next := mustRefresh(t, e, first.RefreshToken)
		if next.RefreshToken == first.RefreshToken {
			t.Errorf("POST /api/v1/auth/refresh gave back the refresh token it was sent")
		}
		expectAccessTokenWorks(t, e, next.AccessToken, cook.ID)
		expectAccessTokenWorks(t, e, mustRefresh(t, e, next.RefreshToken).AccessToken, cook.ID)
		expectRefreshTokenRefused(t, e, first.RefreshToken)
	})
	t.Run("a multipart form with grant_type is read", func(t *testing.T) {
		resp := e.postMultipart("/api/v1/auth/refresh",
			map[string]string{"grant_type": "refresh_token", "refresh_token": login(t).RefreshToken})
		expectAccessTokenWorks(t, e, expectTokenResponse(t, e, resp).AccessToken, cook.ID)
	})

	const path = "/api/v1/auth/refresh"
	// form sends to target the urlencoded form of these names and values,
	// with the token for each "TOKEN" in them.
	form := func(target string, fields ...string) func(token string) *http.Response {
		return func(token string) *http.Response {
			values := url.Values{}
			for i := 0; i+1 < len(fields); i += 2 {
				values.Add(fields[i], strings.ReplaceAll(fields[i+1], "TOKEN", token))
			}
			return e.postForm(strings.ReplaceAll(target, "TOKEN", token), values)
		}
	}
	// Every form refused is a 422 at the fields named, and leaves the
	// refresh token it carried good. RFC 6749 §6 makes grant_type required.
	both := []string{"body.refresh_token", "body.grant_type"}
	for _, tc := range []struct {
		name     string
		send     func(token string) *http.Response
		wantLocs []string
	}{
		{"an urlencoded form without grant_type is a 422 at grant_type", form(path, "refresh_token", "TOKEN"), []string{"body.grant_type"}},
		{"a grant_type of password is a 422 at grant_type", form(path, "grant_type", "password", "refresh_token", "TOKEN"), []string{"body.grant_type"}},
		{"an empty grant_type is a 422 at grant_type", form(path, "grant_type", "", "refresh_token", "TOKEN"), []string{"body.grant_type"}},
		{"a missing refresh_token is a 422 at refresh_token", form(path, "grant_type", "refresh_token"), []string{"body.refresh_token"}},
		{"an empty refresh_token is a 422 at refresh_token", form(path, "grant_type", "refresh_token", "refresh_token", ""), []string{"body.refresh_token"}},
		{"an empty form is a 422 at refresh_token and grant_type: both are required", form(path), both},
		{"every bad field is listed", form(path, "grant_type", "client_credentials"), both},
		{"a refresh token in the query string is not read: tokens stay out of URLs", form(path + "?grant_type=refresh_token&refresh_token=TOKEN"), both},
		{"a multipart form without grant_type is a 422 at grant_type", func(token string) *http.Response {
			return e.postMultipart(path, map[string]string{"refresh_token": token})
		}, []string{"body.grant_type"}},
		{"a JSON body is not a refresh form", func(token string) *http.Response {
			return e.postJSON(path, fmt.Sprintf(`{"grant_type":"refresh_token","refresh_token":%q}`, token))
		}, both},
	} {
		t.Run(tc.name+", and the token stays good", func(t *testing.T) {
			token := login(t).RefreshToken
			expectProblems(t, tc.send(token), tc.wantLocs...)
			mustRefresh(t, e, token)
		})
	}

	issued := login(t)
	// Character 10 is in the handle: the changed token names no session.
	flipped := issued.RefreshToken[:10] + string(flipLowBits(issued.RefreshToken[10])) + issued.RefreshToken[11:]
	// Each is refused by one rule: parseRefreshToken for a token that cannot
	// be ours, or else the lookup, which finds no session for it.
	for _, tc := range []struct {
		name, token string
		wellFormed  bool
	}{
		{"an unknown token of the right shape is refused", randomToken(sessionHandleBytes + refreshSecretBytes), true},
		{"an unknown token of the shape issued before sessions had handles is refused", randomToken(32), true},
		{"a token with one character of its handle changed is refused", flipped, true},
		{"garbage is refused", "garbage", false},
		{"a token one character short is refused", issued.RefreshToken[:refreshTokenChars-1], false},
		{"a token with one character more is refused", issued.RefreshToken + "A", false},
		{"a token written with padding is refused", issued.RefreshToken + "=", false},
		{"64 characters outside base64url are refused", strings.Repeat("!", refreshTokenChars), false},
		{"a very long token is refused", strings.Repeat("A", 60_000), false},
		{"an access token is not a refresh token", issued.AccessToken, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, _, ok := parseRefreshToken(tc.token); ok != tc.wellFormed {
				t.Fatalf("parseRefreshToken: ok = %v, want %v", ok, tc.wellFormed)
			}
			if tc.wellFormed && sessionNamedBy(t, e, tc.token) != 0 {
				t.Errorf("the store's lookup finds a session for the token, want none")
			}
			expectRefreshTokenRefused(t, e, tc.token)
		})
	}
	// None of those attempts counted as reuse of the real token.
	mustRefresh(t, e, issued.RefreshToken)
}

// A session carried over from the refresh_token table (schema.sql) has a
// 32-byte token and no handle until its first refresh.
func TestARefreshTokenFromBeforeSessionsHadHandlesWorksOnce(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	legacy := randomToken(32)
	digest := sha256.Sum256([]byte(legacy))
	if _, err := e.store.writer.Exec("INSERT INTO session (user_id, digest, expires_at) VALUES (?, ?, ?)",
		cook.ID, digest[:], time.Now().Add(time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	next := mustRefresh(t, e, legacy)
	expectAccessTokenWorks(t, e, next.AccessToken, cook.ID)
	expectAccessTokenWorks(t, e, mustRefresh(t, e, next.RefreshToken).AccessToken, cook.ID)
	expectRefreshTokenRefused(t, e, legacy)
}

func TestReusingARefreshTokenEndsItsSessionOnly(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	cook := e.signup("cook@example.com", "password123")
	login := func(t *testing.T) tokenResponse {
		t.Helper()
		return e.reportingTo(t).loginTokens("cook@example.com", "password123")
	}

	t.Run("a spent token is refused, and so is its descendant; another login is untouched", func(t *testing.T) {
		first := login(t) // R1
		other := login(t) // R', an independent login
		rotated := mustRefresh(t, e, first.RefreshToken)
		// The store refuses the spent R1 as reuse, which ends its session.
		spent, _, _ := parseRefreshToken(first.RefreshToken)
		if _, err := e.store.rotateSession(t.Context(), spent, newGrant(), clock.Now()); !errors.Is(err, errRefreshTokenRefused) {
			t.Errorf("rotateSession(a spent token) = %v, want errRefreshTokenRefused", err)
		}
		expectRefreshTokenRefused(t, e, first.RefreshToken)
		expectRefreshTokenRefused(t, e, rotated.RefreshToken)
		expectAccessTokenWorks(t, e, other.AccessToken, cook.ID)
		expectAccessTokenWorks(t, e, mustRefresh(t, e, other.RefreshToken).AccessToken, cook.ID)
		// Reuse detection revokes refresh tokens only (the contract names
		// nothing else); access tokens are stateless and live out their
		// lifetime. Logout is what ends them.
		expectAccessTokenWorks(t, e, rotated.AccessToken, cook.ID)
		expectAccessTokenWorks(t, e, first.AccessToken, cook.ID)
	})
	t.Run("a session keeps one row however often it is refreshed, and its first token is still known as reuse", func(t *testing.T) {
		patient := e.reportingTo(t).signup("patient@example.com", "password123")
		first := e.reportingTo(t).loginTokens("patient@example.com", "password123")
		// Each refresh waits out the rate limit, as a patient client would.
		tokens := first
		for i := range 100 {
			clock.advance(refreshInterval)
			tokens = mustRefresh(t, e, tokens.RefreshToken)
			if n := sessionRows(t, e, patient.ID); n != 1 {
				t.Fatalf("after %d refreshes of one login, the user has %d session rows, want 1", i+1, n)
			}
		}
		expectAccessTokenWorks(t, e, tokens.AccessToken, patient.ID)
		expectRefreshTokenRefused(t, e, first.RefreshToken)
		expectRefreshTokenRefused(t, e, tokens.RefreshToken)
		expectRowsOf(t, e, "after reuse, the user", patient.ID, 0)
	})
	t.Run("a token with the session's handle but other random bytes ends the session too", func(t *testing.T) {
		r2 := mustRefresh(t, e, login(t).RefreshToken).RefreshToken
		raw, _ := base64.RawURLEncoding.DecodeString(r2)
		made := base64.RawURLEncoding.EncodeToString(append(raw[:sessionHandleBytes:sessionHandleBytes], make([]byte, refreshSecretBytes)...))
		// The lookup finds the session by its handle: the refusal is the
		// store's, reuse, not an unknown token's.
		if sessionNamedBy(t, e, made) == 0 {
			t.Fatal("the store's lookup finds no session for a token with r2's handle, want r2's")
		}
		expectRefreshTokenRefused(t, e, made)
		expectRefreshTokenRefused(t, e, r2)
	})
}

func TestAnExpiredRefreshTokenIsRefusedAndItsRowCleanedUp(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	e.signup("cook@example.com", "password123")
	e.signup("diner@example.com", "password123")
	early := e.loginTokens("cook@example.com", "password123")
	late := e.loginTokens("cook@example.com", "password123")

	clock.advance(e.cfg.refreshTokenLifetime - time.Second)
	renewed := mustRefresh(t, e, early.RefreshToken) // a second before its lifetime ends
	clock.advance(time.Second)
	expectRefreshTokenRefused(t, e, late.RefreshToken) // at the very second its lifetime ends
	if n := refreshRows(t, e, late.RefreshToken); n != 1 {
		t.Fatalf("the expired token has %d rows before the next login, want 1 (nothing to clean up yet)", n)
	}
	// The next login, anyone's, deletes expired rows: no cleaning job.
	e.loginTokens("diner@example.com", "password123")
	if n := refreshRows(t, e, late.RefreshToken); n != 0 {
		t.Errorf("the expired refresh token still has %d rows after a later login, want 0", n)
	}
	if n := refreshRows(t, e, renewed.RefreshToken); n != 1 {
		t.Errorf("the unexpired refresh token has %d rows after a later login, want 1", n)
	}
	// A refreshed token has a lifetime of its own, counted from its refresh.
	clock.advance(e.cfg.refreshTokenLifetime - 2*time.Second)
	mustRefresh(t, e, renewed.RefreshToken)
}

func TestRefreshesAreLimitedPerSession(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	e.signup("cook@example.com", "password123")
	token := e.loginTokens("cook@example.com", "password123").RefreshToken
	other := e.loginTokens("cook@example.com", "password123")

	// refreshAll makes n refreshes at once in a row, each with the token
	// the last gave, and expects the next one to be refused.
	refreshAll := func(n int) {
		t.Helper()
		for i := range n {
			resp := refresh(e, token)
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("refresh %d of a burst of %d = %d, want 200", i+1, n, resp.StatusCode)
			}
			token = decodeBody[tokenResponse](t, resp).RefreshToken
		}
		expectTooManyRefreshes(t, e, token, refreshInterval)
	}
	refreshAll(refreshBurst)
	mustRefresh(t, e, other.RefreshToken) // another session of the same user is not limited
	// The refused token was not used up; the bucket refills one per interval.
	clock.advance(refreshInterval - time.Second)
	expectTooManyRefreshes(t, e, token, time.Second)
	clock.advance(time.Second)
	refreshAll(1)
	// After a whole burst's time, the whole burst is back, and no more.
	clock.advance(refreshBurst * refreshInterval)
	refreshAll(refreshBurst)
}

func TestAUserKeepsAtMostMaxSessionsPerUser(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	diner := e.signup("diner@example.com", "password123")
	dinersOwn := e.loginTokens("diner@example.com", "password123")

	const logins = 120
	var all []tokenResponse
	for range logins {
		all = append(all, e.loginTokens("cook@example.com", "password123"))
	}
	expectRowsOf(t, e, fmt.Sprintf("after %d logins, the user", logins), cook.ID, maxSessionsPerUser)
	// The newest maxSessionsPerUser logins are kept, and no other.
	expectAccessTokenWorks(t, e, mustRefresh(t, e, all[logins-1].RefreshToken).AccessToken, cook.ID)
	mustRefresh(t, e, all[logins-maxSessionsPerUser].RefreshToken)
	expectRefreshTokenRefused(t, e, all[logins-maxSessionsPerUser-1].RefreshToken)
	expectRefreshTokenRefused(t, e, all[0].RefreshToken)
	// Another user's session is untouched.
	mustRefresh(t, e, dinersOwn.RefreshToken)
	expectRowsOf(t, e, "the other user", diner.ID, 1)
}

func TestALoginDeletesABoundedNumberOfExpiredSessions(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	e.signup("diner@example.com", "password123")
	// Expired sessions of cook, more than one login sweeps, as a server
	// that was down for a month would find them.
	const expired = sessionSweepRows + 30
	if _, err := e.store.writer.Exec(`WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?)
		INSERT INTO session (user_id, digest, expires_at) SELECT ?, 'digest ' || i, ? FROM n`,
		expired, cook.ID, time.Now().Add(-time.Hour).Unix()); err != nil {
		t.Fatal(err)
	}
	if n := sessionRows(t, e, cook.ID); n != expired {
		t.Fatalf("the user has %d expired sessions, want the %d just made", n, expired)
	}
	e.loginTokens("diner@example.com", "password123")
	expectRowsOf(t, e, "after another user's login, the user with expired sessions", cook.ID, expired-sessionSweepRows)
	e.loginTokens("cook@example.com", "password123")
	expectRowsOf(t, e, "after its own login, the user with expired sessions", cook.ID, 1)
}

// A user deleted by hand leaves its sessions behind.
func TestTheSessionsADeletedUserLeftBehindAreHarmless(t *testing.T) {
	e := newTestEnv(t)
	leaver := e.signup("leaver@example.com", "password123")
	tokens := e.loginTokens("leaver@example.com", "password123")
	deleteUserByHand(t, e.cfg.dbPath, leaver.ID)
	if n := sessionRows(t, e, leaver.ID); n != 1 {
		t.Fatalf("the deleted user has %d session rows, want the 1 left behind", n)
	}
	expectRefreshTokenRefused(t, e, tokens.RefreshToken) // a 400, not a 500
	expectRowsOf(t, e, "after its refresh, the deleted user", leaver.ID, 0)

	// A new user does not inherit a row left behind for its id: one made
	// by hand for the id the next user gets (AUTOINCREMENT: past the last).
	next := int64(queryInt(t, e.store.reader, "SELECT seq FROM sqlite_sequence WHERE name = 'user'")) + 1
	raw := openRawDB(t, e.cfg.dbPath)
	execAll(t, raw, "PRAGMA foreign_keys = OFF",
		fmt.Sprintf("INSERT INTO session (user_id, digest, expires_at) VALUES (%d, x'00', %d)", next, time.Now().Add(time.Hour).Unix()))
	raw.Close()
	if n := sessionRows(t, e, next); n != 1 {
		t.Fatalf("the row left behind for id %d is not there: %d rows", next, n)
	}
	u := e.signup("newcomer@example.com", "password123")
	if u.ID != next {
		t.Fatalf("the new user got id %d, want %d, the one the row was left for", u.ID, next)
	}
	expectRowsOf(t, e, "a new user", u.ID, 0)
}

func TestRefreshTokensAreStoredOnlyAsSHA256Digests(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")
	token := e.loginTokens("cook@example.com", "password123").RefreshToken
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		t.Fatalf("refresh token %q is not base64url: %v", token, err)
	}
	handle := raw[:sessionHandleBytes]

	// No column holds the token or its handle, as text or as bytes.
	cols, rows := queryRows(t, e.store.reader, "SELECT * FROM session")
	if len(rows) != 1 {
		t.Fatalf("session has %d rows after one login, want 1", len(rows))
	}
	for i, v := range rows[0] {
		b, isBytes := v.([]byte)
		if !isBytes {
			b = fmt.Append(nil, v)
		}
		if bytes.Contains(b, []byte(token)) || bytes.Contains(b, handle) || bytes.Contains(b, []byte(token[:sessionHandleBytes*4/3])) {
			t.Errorf("column %s of session holds the refresh token or its handle", cols[i])
		}
	}
	var digest, handleDigest []byte
	if err := e.store.reader.QueryRow("SELECT digest, handle FROM session").Scan(&digest, &handleDigest); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(token)); !bytes.Equal(digest, want[:]) {
		t.Errorf("digest = %x, want sha256(token) = %x", digest, want)
	}
	if want := sha256.Sum256(handle); !bytes.Equal(handleDigest, want[:]) {
		t.Errorf("handle = %x, want sha256(first %d bytes of the token) = %x", handleDigest, sessionHandleBytes, want)
	}
}

func TestConcurrentRefreshesOfOneTokenHaveExactlyOneWinner(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	// More racers than a session's burst of refreshes: only refreshes that
	// succeed count against it.
	const racers = 2 * refreshBurst

	// Who wins is timing, so the race is run several times over.
	for round := range 5 {
		t.Run(fmt.Sprintf("round %d: exactly one gets 200 and the rest 400, never 500", round), func(t *testing.T) {
			token := e.reportingTo(t).loginTokens("cook@example.com", "password123").RefreshToken
			// The writer is held until every racer waits for it, so that
			// each has read the token as current before any rotation
			// commits: the requests surely overlap.
			held, release := make(chan struct{}), make(chan struct{})
			go e.store.write(t.Context(), func(*sql.Tx) error {
				close(held)
				<-release
				return nil
			})
			<-held
			waits := e.store.writer.Stats().WaitCount
			responses := make([]*http.Response, racers)
			var wg sync.WaitGroup
			for i := range racers {
				wg.Go(func() { responses[i] = refresh(e, token) })
			}
			waitFor(t, "every racer to wait for the writer", func() bool { return e.store.writer.Stats().WaitCount-waits >= racers })
			close(release)
			wg.Wait()
			var winners []tokenResponse
			for _, resp := range responses {
				if resp.StatusCode == http.StatusOK {
					winners = append(winners, decodeBody[tokenResponse](t, resp))
				} else {
					expectDetail(t, resp, http.StatusBadRequest, "Invalid refresh token")
				}
			}
			if len(winners) != 1 {
				t.Fatalf("%d of %d concurrent refreshes of one token got 200, want 1", len(winners), racers)
			}
			expectAccessTokenWorks(t, e, winners[0].AccessToken, cook.ID)
			// The losers presented a spent token, which the contract calls
			// reuse: the winner's new refresh token, of the same session,
			// is revoked too.
			expectRefreshTokenRefused(t, e, winners[0].RefreshToken)
		})
	}
}

func TestLogoutEndsEveryTokenOfTheUser(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	cook := e.signup("cook@example.com", "password123")
	diner := e.signup("diner@example.com", "password123")
	logout := func(header ...string) *http.Response {
		return e.send("POST", "/api/v1/auth/logout", nil, header...)
	}
	for _, header := range [][]string{nil, {"Authorization", "Basic Og=="}} {
		t.Run(fmt.Sprintf("logout with the header %q is a 401 Not authenticated", header), func(t *testing.T) {
			resp := logout(header...)
			if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("POST /api/v1/auth/logout: WWW-Authenticate = %q, want Bearer", got)
			}
			expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
		})
	}

	// A reference token works until its user's first logout.
	reference, theirsReference := asTheReferenceMadeThem(t, e, cook.ID), asTheReferenceMadeThem(t, e, diner.ID)
	expectAccessTokenWorks(t, e, reference, cook.ID)
	first := e.loginTokens("cook@example.com", "password123")
	clock.advance(time.Second)
	second := e.loginTokens("cook@example.com", "password123")
	rotated := mustRefresh(t, e, second.RefreshToken)
	theirs := e.loginTokens("diner@example.com", "password123")
	clock.advance(time.Second)

	resp := logout(bearer(first.AccessToken)...)
	expectStatus(t, resp, http.StatusNoContent)
	if body, _ := io.ReadAll(resp.Body); len(body) != 0 {
		t.Errorf("POST /api/v1/auth/logout body = %q, want none", body)
	}
	// Every token of the user issued before is refused, access and refresh,
	// the one that logged out as well as the others.
	for _, token := range []string{first.AccessToken, second.AccessToken, rotated.AccessToken, reference} {
		expectAccessTokenRefused(t, e, token)
	}
	for _, token := range []string{first.RefreshToken, rotated.RefreshToken} {
		expectRefreshTokenRefused(t, e, token)
	}
	expectDetail(t, logout(bearer(first.AccessToken)...), http.StatusUnauthorized, "Could not validate credentials")
	// Another user's tokens keep working, the reference's too.
	expectAccessTokenWorks(t, e, theirs.AccessToken, diner.ID)
	expectAccessTokenWorks(t, e, theirsReference, diner.ID)
	mustRefresh(t, e, theirs.RefreshToken)

	// A login in the same second as the logout gives tokens that work, and
	// a second logout in that second ends those issued between the two.
	between := e.loginTokens("cook@example.com", "password123")
	expectAccessTokenWorks(t, e, between.AccessToken, cook.ID)
	renewed := mustRefresh(t, e, between.RefreshToken)
	expectAccessTokenWorks(t, e, renewed.AccessToken, cook.ID)
	expectStatus(t, logout(bearer(renewed.AccessToken)...), http.StatusNoContent)
	expectAccessTokenRefused(t, e, between.AccessToken)
	expectAccessTokenRefused(t, e, renewed.AccessToken)
	expectRefreshTokenRefused(t, e, renewed.RefreshToken)
	expectAccessTokenWorks(t, e, e.login("cook@example.com", "password123"), cook.ID)
}

func TestChangingThePasswordEndsEveryEarlierToken(t *testing.T) {
	clock := newTestClock() // frozen: every token here is issued in the same second
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	cook := e.signup("cook@example.com", "password123")
	const newPassword = "new-password-456"
	changePassword := func(accessToken, body string) *http.Response {
		return e.postJSON("/api/v1/auth/password", body, bearer(accessToken)...)
	}
	// loginIs checks that password logs in, or is refused as a wrong one.
	loginIs := func(t *testing.T, password string, works bool) {
		t.Helper()
		if resp := e.tryLogin("cook@example.com", password); works {
			expectTokenResponse(t, e, resp)
		} else {
			expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
		}
	}

	// Each refused change is answered so, and leaves the caller's tokens
	// and the old password good: wantLocs for a 422, or status and detail.
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
		status     int
		detail     string
	}{
		{"a wrong current_password is a 400", passwordBody("wrong-password", newPassword), nil, http.StatusBadRequest, "Incorrect password"},
		{"a new_password of 7 bytes is a 422", passwordBody("password123", "1234567"), []string{"body.new_password"}, 0, ""},
		{"a new_password of 73 bytes is a 422, not truncated", passwordBody("password123", strings.Repeat("p", 73)), []string{"body.new_password"}, 0, ""},
		{"missing fields are a 422 listing both", `{}`, []string{"body.current_password", "body.new_password"}, 0, ""},
		{"a body that is not a JSON object is a 422 at body", `[]`, []string{"body"}, 0, ""},
		{"no token is a 401 Not authenticated", passwordBody("password123", newPassword), nil, http.StatusUnauthorized, "Not authenticated"},
	} {
		t.Run(tc.name+" and changes nothing", func(t *testing.T) {
			mine := e.reportingTo(t).loginTokens("cook@example.com", "password123")
			header := bearer(mine.AccessToken)
			if tc.status == http.StatusUnauthorized {
				header = nil
			}
			if resp := e.postJSON("/api/v1/auth/password", tc.body, header...); tc.wantLocs != nil {
				expectProblems(t, resp, tc.wantLocs...)
			} else {
				expectDetail(t, resp, tc.status, tc.detail)
			}
			expectAccessTokenWorks(t, e, mine.AccessToken, cook.ID)
			mustRefresh(t, e, mine.RefreshToken)
			loginIs(t, "password123", true)
			loginIs(t, newPassword, false)
		})
	}

	// A reference token works until its user's first password change.
	reference := asTheReferenceMadeThem(t, e, cook.ID)
	expectAccessTokenWorks(t, e, reference, cook.ID)
	first := e.loginTokens("cook@example.com", "password123")
	second := e.loginTokens("cook@example.com", "password123")
	// The right current_password answers like login, with tokens that
	// work at once, in the same second; every token issued before is refused.
	changed := expectTokenResponse(t, e, changePassword(first.AccessToken, passwordBody("password123", newPassword)))
	expectAccessTokenWorks(t, e, changed.AccessToken, cook.ID)
	for _, token := range []string{first.AccessToken, second.AccessToken, reference} {
		expectAccessTokenRefused(t, e, token)
	}
	for _, token := range []string{first.RefreshToken, second.RefreshToken} {
		expectRefreshTokenRefused(t, e, token)
	}
	loginIs(t, "password123", false)
	loginIs(t, newPassword, true)
	expectAccessTokenWorks(t, e, mustRefresh(t, e, changed.RefreshToken).AccessToken, cook.ID)
	// An old access token cannot change the password again.
	expectDetail(t, changePassword(second.AccessToken, passwordBody(newPassword, "third-password")),
		http.StatusUnauthorized, "Could not validate credentials")
	loginIs(t, newPassword, true)
}

func TestASessionCannotOutliveAPasswordChangeItRacedWith(t *testing.T) {
	e := newTestEnv(t)
	newHash, err := e.passwords.hash(t.Context(), "new-password-456")
	if err != nil {
		t.Fatal(err)
	}
	// changeElsewhere changes u's password as the createsuperuser command
	// would, once a request waits to hash.
	changeElsewhere := func(u userView) func(t *testing.T, waiting func() int) {
		return func(t *testing.T, waiting func() int) {
			waitFor(t, "the request to reach the hashing queue", func() bool { return waiting() > 0 })
			if err := e.store.promoteToSuperuser(t.Context(), u.ID, newHash); err != nil {
				t.Fatal(err)
			}
		}
	}

	t.Run("a login that checked the old password is refused", func(t *testing.T) {
		cook := e.reportingTo(t).signup("cook@example.com", "password123")
		answer := answerWithHashingHeld(t, e, func() *http.Response {
			return e.tryLogin("cook@example.com", "password123")
		}, changeElsewhere(cook))
		expectDetail(t, answer, http.StatusBadRequest, "Incorrect username or password")
		expectRowsOf(t, e, "the user whose login ended", cook.ID, 0)
	})
	t.Run("a password change whose session ended meanwhile changes nothing", func(t *testing.T) {
		diner := e.reportingTo(t).signup("diner@example.com", "password123")
		token := e.reportingTo(t).login("diner@example.com", "password123")
		answer := answerWithHashingHeld(t, e, func() *http.Response {
			return e.postJSON("/api/v1/auth/password", passwordBody("password123", "attacker-password"), bearer(token)...)
		}, changeElsewhere(diner))
		expectDetail(t, answer, http.StatusUnauthorized, "Could not validate credentials")
		e.reportingTo(t).login("diner@example.com", "new-password-456") // still the password set elsewhere
	})
	// Both answers above are the store's refusal to add a session for a
	// user whose sessions ended after it was read.
	t.Run("the store adds no session for a user read before its sessions ended", func(t *testing.T) {
		eater := e.reportingTo(t).signup("eater@example.com", "password123")
		read, err := e.store.userByID(t.Context(), eater.ID)
		if err == nil {
			err = e.store.endSessions(t.Context(), eater.ID)
		}
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.store.addSession(t.Context(), read, "", newGrant(), time.Now()); !errors.Is(err, errSessionEnded) {
			t.Errorf("addSession = %v, want errSessionEnded", err)
		}
		expectRowsOf(t, e, "the user whose sessions ended", eater.ID, 0)
	})
}

// refreshTokenPlaceholder in a seed of FuzzRefreshForm stands for a
// refresh token issued just before the request, so that the fuzzer can
// reach the 200 path.
const refreshTokenPlaceholder = "@TOKEN@"

// formValuesOf is every refresh_token value that a body of this content
// type carries, read as urlencoded and as multipart.
func formValuesOf(contentType, body string) []string {
	var values []string
	r := newRequest("POST", "/", strings.NewReader(body), "Content-Type", contentType)
	if r.ParseForm() == nil {
		values = append(values, r.PostForm["refresh_token"]...)
	}
	r = newRequest("POST", "/", strings.NewReader(body), "Content-Type", contentType)
	if r.ParseMultipartForm(maxBodyBytes) == nil {
		values = append(values, r.PostForm["refresh_token"]...)
	}
	return values
}

// FuzzRefreshForm sends arbitrary refresh bodies with arbitrary content
// types: the answer is always JSON, 200, 400 or 422 (413 only past 64 KiB),
// never a 500, and 200 only if the body carried a refresh token that had
// been issued.
func FuzzRefreshForm(f *testing.F) {
	multipartForm := func(boundary string, fields ...string) string {
		var b strings.Builder
		for i := 0; i+1 < len(fields); i += 2 {
			fmt.Fprintf(&b, "--%s\r\nContent-Disposition: form-data; name=%q\r\n\r\n%s\r\n", boundary, fields[i], fields[i+1])
		}
		return b.String() + "--" + boundary + "--\r\n"
	}
	const urlencoded = "application/x-www-form-urlencoded"
	seeds := []struct{ contentType, body string }{
		{urlencoded, "grant_type=refresh_token&refresh_token=" + refreshTokenPlaceholder},
		{urlencoded, "refresh_token=" + refreshTokenPlaceholder},
		{urlencoded, "grant_type=password&refresh_token=" + refreshTokenPlaceholder},
		{urlencoded, "refresh_token=" + refreshTokenPlaceholder + "&refresh_token=" + strings.Repeat("A", 43)},
		{"multipart/form-data; boundary=X", multipartForm("X", "grant_type", "refresh_token", "refresh_token", refreshTokenPlaceholder)},
		{"multipart/form-data; boundary=X", multipartForm("X", "refresh_token", refreshTokenPlaceholder)},
		{"multipart/form-data; boundary=X", "--X\r\n"},
		{"multipart/form-data", ""},
		{urlencoded, ""},
		{"", ""},
		{urlencoded, "refresh_token=%zz"},
		{urlencoded, "refresh_token=" + strings.Repeat("A", 43)},
		{urlencoded, "refresh_token=garbage&grant_type=refresh_token"},
		{"application/json", `{"refresh_token":"` + refreshTokenPlaceholder + `"}`},
		{"text/plain", "\x00\xff garbage"},
	}
	for _, seed := range seeds {
		f.Add(seed.contentType, seed.body)
	}
	e := newTestEnv(f) // one service for every input of the fuzz run
	e.signup("cook@example.com", "password123")
	// The first seed, with a token for the placeholder, gets a 200: the
	// target does see a refresh that works, not only refusals.
	first := strings.ReplaceAll(seeds[0].body, refreshTokenPlaceholder, e.loginTokens("cook@example.com", "password123").RefreshToken)
	expectTokenResponse(f, e, e.send("POST", "/api/v1/auth/refresh", strings.NewReader(first), "Content-Type", seeds[0].contentType))
	var mu sync.Mutex
	issued := map[string]bool{}
	f.Fuzz(func(t *testing.T, contentType, body string) {
		if strings.Contains(body, refreshTokenPlaceholder) {
			token := e.reportingTo(t).loginTokens("cook@example.com", "password123").RefreshToken
			mu.Lock()
			issued[token] = true
			mu.Unlock()
			body = strings.ReplaceAll(body, refreshTokenPlaceholder, token)
		}
		resp := e.send("POST", "/api/v1/auth/refresh", strings.NewReader(body), "Content-Type", contentType)
		checkFuzzResponse(t, resp, http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity, http.StatusRequestEntityTooLarge)
		if resp.StatusCode == http.StatusRequestEntityTooLarge && len(body) <= maxBodyBytes {
			t.Fatalf("413 for a body of %d bytes, at most 64 KiB", len(body))
		}
		if resp.StatusCode != http.StatusOK {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.ContainsFunc(formValuesOf(contentType, body), func(v string) bool { return issued[v] }) {
			t.Fatalf("200 for %q (Content-Type %q), which carries no issued refresh token", body, contentType)
		}
		issued[decodeBody[tokenResponse](t, resp).RefreshToken] = true
	})
}

// An operator who changes JWT_SECRET ends every access token, but a
// refresh token is no signature: it names a session in the database.
func TestChangingTheSecretEndsAccessTokensButNotRefreshTokens(t *testing.T) {
	cfg := newTestConfig(t)
	before := startTestEnv(t, cfg, time.Now)
	cook := before.signup("cook@example.com", "password123")
	tokens := before.loginTokens("cook@example.com", "password123")
	expectAccessTokenWorks(t, before, tokens.AccessToken, cook.ID)

	cfg.tokenSecret = []byte("another-secret-another-secret-another!")
	after := startTestEnv(t, cfg, time.Now)
	expectAccessTokenRefused(t, after, tokens.AccessToken)
	expectAccessTokenWorks(t, after, mustRefresh(t, after, tokens.RefreshToken).AccessToken, cook.ID)
}
