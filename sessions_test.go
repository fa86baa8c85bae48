// sessions_test.go tests sessions.go: refresh tokens, logout, password
// changes and the bounds on sessions.
package main

import (
	"bytes"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestASessionKeepsOneRowHoweverOftenItIsRefreshed(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	cook := e.signup("cook@example.com", "password123")
	tokens := e.loginTokens("cook@example.com", "password123")

	// Each refresh waits out the rate limit, as a patient client would.
	const refreshes = 100
	spent := []string{}
	for i := range refreshes {
		clock.advance(refreshInterval)
		spent = append(spent, tokens.RefreshToken)
		tokens = mustRefresh(t, e, tokens.RefreshToken)
		if n := sessionRows(t, e, cook.ID); n != 1 {
			t.Fatalf("after %d refreshes of one login, the user has %d session rows, want 1", i+1, n)
		}
	}
	t.Run("the newest refresh token still works, and its access token", func(t *testing.T) {
		clock.advance(refreshInterval)
		tokens = mustRefresh(t, e, tokens.RefreshToken)
		expectAccessTokenWorks(t, e, tokens.AccessToken, cook.ID)
	})
	t.Run("a token spent long ago is still known as reuse, and ends the session", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, spent[0])
		expectRefreshTokenRefused(t, e, tokens.RefreshToken)
		if n := sessionRows(t, e, cook.ID); n != 0 {
			t.Errorf("after reuse the user has %d session rows, want 0", n)
		}
	})
}

func TestRefreshesAreLimitedPerSession(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	e.signup("cook@example.com", "password123")
	busy := e.loginTokens("cook@example.com", "password123")
	other := e.loginTokens("cook@example.com", "password123")

	token := busy.RefreshToken
	for i := range refreshBurst {
		resp := refresh(e, token)
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("refresh %d of a burst of %d = %d, want 200", i+1, refreshBurst, resp.StatusCode)
		}
		token = decodeBody[tokenResponse](t, resp).RefreshToken
	}
	t.Run("one refresh past the burst is a 429 with Retry-After", func(t *testing.T) {
		resp := refresh(e, token)
		if got, want := resp.Header.Get("Retry-After"), strconv.Itoa(int(refreshInterval/time.Second)); got != want {
			t.Errorf("POST /api/v1/auth/refresh: Retry-After = %q, want %q", got, want)
		}
		expectDetail(t, resp, http.StatusTooManyRequests, "Too many refreshes, try again later")
	})
	t.Run("another session of the same user is not limited", func(t *testing.T) {
		mustRefresh(t, e, other.RefreshToken)
	})
	t.Run("the refused token was not used up: after the wait it works", func(t *testing.T) {
		clock.advance(refreshInterval - time.Second)
		expectStatus(t, refresh(e, token), http.StatusTooManyRequests)
		clock.advance(time.Second)
		token = mustRefresh(t, e, token).RefreshToken
	})
	t.Run("one more at once is refused again: the bucket refills one per interval", func(t *testing.T) {
		expectStatus(t, refresh(e, token), http.StatusTooManyRequests)
	})
	t.Run("after a whole burst's time the whole burst is back", func(t *testing.T) {
		clock.advance(refreshBurst * refreshInterval)
		for range refreshBurst {
			token = mustRefresh(t, e, token).RefreshToken
		}
		expectStatus(t, refresh(e, token), http.StatusTooManyRequests)
	})
}

func TestTheRefreshLimiterForgetsIdleSessionsAndIsBounded(t *testing.T) {
	clock := newTestClock()
	l := newRateLimiter(refreshBurst, refreshBurst*refreshInterval, clock.Now)
	// refresh asks for one refresh of session id as handleRefresh does,
	// and returns the wait if it was refused; a refresh let through counts
	// only if it succeeds.
	refresh := func(id int64, succeeds bool) time.Duration {
		key := strconv.FormatInt(id, 10)
		if wait := l.wait(key); wait > 0 {
			return wait
		}
		if succeeds {
			l.take(key)
		}
		return 0
	}
	for id := range int64(100) {
		if wait := refresh(id, true); wait != 0 {
			t.Fatalf("the first refresh of session %d waits %v, want 0", id, wait)
		}
	}
	t.Run("a session that has not refreshed for a burst's time is forgotten", func(t *testing.T) {
		clock.advance(refreshBurst * refreshInterval)
		refresh(1000, true)
		if n := len(l.buckets); n != 1 {
			t.Errorf("the limiter remembers %d sessions after they were idle, want 1 (the one just seen)", n)
		}
	})
	t.Run("past maxLimiterKeys at once, new sessions evict old ones", func(t *testing.T) {
		for id := range int64(maxLimiterKeys + 500) {
			refresh(2000+id, true)
			if n := len(l.buckets); n > maxLimiterKeys {
				t.Fatalf("the limiter remembers %d sessions, more than the bound %d", n, maxLimiterKeys)
			}
		}
		if n := len(l.buckets); n != maxLimiterKeys {
			t.Errorf("the limiter remembers %d sessions, want the bound %d", n, maxLimiterKeys)
		}
	})
	t.Run("past maxLimiterKeys, a bucket with an attempt pending is never evicted", func(t *testing.T) {
		settle, _, err := l.reserve(t.Context(), "pending")
		if err != nil || settle == nil {
			t.Fatalf("reserve = %v, want an attempt", err)
		}
		defer settle(true)
		for id := range int64(maxLimiterKeys + 500) {
			refresh(1<<32+id, true)
		}
		if _, ok := l.buckets["pending"]; !ok {
			t.Error("the bucket of a pending attempt was evicted")
		}
	})
	t.Run("a session still in the map keeps its count", func(t *testing.T) {
		const id = 1 << 40
		for range refreshBurst {
			refresh(id, true)
		}
		if wait := refresh(id, true); wait != refreshInterval {
			t.Errorf("wait past the burst = %v, want %v", wait, refreshInterval)
		}
	})
	t.Run("only refreshes that succeed count", func(t *testing.T) {
		const id = 1 << 41
		for range 3 * refreshBurst {
			if wait := refresh(id, false); wait != 0 {
				t.Fatalf("wait of a session whose refreshes all failed = %v, want 0", wait)
			}
		}
	})
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
	t.Run("the user keeps maxSessionsPerUser session rows", func(t *testing.T) {
		if n := sessionRows(t, e, cook.ID); n != maxSessionsPerUser {
			t.Errorf("after %d logins the user has %d sessions, want %d", logins, n, maxSessionsPerUser)
		}
	})
	t.Run("the newest login's refresh token works", func(t *testing.T) {
		expectAccessTokenWorks(t, e, mustRefresh(t, e, all[logins-1].RefreshToken).AccessToken, cook.ID)
	})
	t.Run("the oldest kept login's refresh token works", func(t *testing.T) {
		mustRefresh(t, e, all[logins-maxSessionsPerUser].RefreshToken)
	})
	t.Run("the logins past the bound were ended, oldest first", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, all[logins-maxSessionsPerUser-1].RefreshToken)
		expectRefreshTokenRefused(t, e, all[0].RefreshToken)
	})
	t.Run("another user's session is untouched", func(t *testing.T) {
		mustRefresh(t, e, dinersOwn.RefreshToken)
		if n := sessionRows(t, e, diner.ID); n != 1 {
			t.Errorf("the other user has %d sessions, want 1", n)
		}
	})
}

func TestALoginDeletesABoundedNumberOfExpiredSessions(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	e.signup("diner@example.com", "password123")
	// Expired sessions of cook, more than one login sweeps, as a server
	// that was down for a month would find them.
	const expired = sessionSweepRows + 30
	err := e.store.write(t.Context(), func(tx *sql.Tx) error {
		for i := range expired {
			if _, err := tx.Exec("INSERT INTO session (user_id, digest, expires_at) VALUES (?, ?, ?)",
				cook.ID, fmt.Sprintf("digest %d", i), time.Now().Add(-time.Hour).Unix()); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	t.Run("another user's login deletes sessionSweepRows of them", func(t *testing.T) {
		e.loginTokens("diner@example.com", "password123")
		if n := sessionRows(t, e, cook.ID); n != expired-sessionSweepRows {
			t.Errorf("after one login of another user, %d expired sessions are left, want %d", n, expired-sessionSweepRows)
		}
	})
	t.Run("the user's own login deletes all of the user's", func(t *testing.T) {
		e.loginTokens("cook@example.com", "password123")
		if n := sessionRows(t, e, cook.ID); n != 1 {
			t.Errorf("after the user's login, the user has %d sessions, want 1 (the new one)", n)
		}
	})
}

func TestARefreshTokenWhoseUserIsGoneIsInvalid(t *testing.T) {
	e := newTestEnv(t)
	leaver := e.signup("leaver@example.com", "password123")
	tokens := e.loginTokens("leaver@example.com", "password123")
	deleteUserByHand(t, e.cfg.dbPath, leaver.ID)
	if n := sessionRows(t, e, leaver.ID); n != 1 {
		t.Fatalf("the deleted user has %d session rows, want the 1 left behind", n)
	}

	t.Run("its refresh is a 400 Invalid refresh token, not a 500", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, tokens.RefreshToken)
	})
	t.Run("and the session left behind is deleted", func(t *testing.T) {
		if n := sessionRows(t, e, leaver.ID); n != 0 {
			t.Errorf("the deleted user has %d session rows after its refresh, want 0", n)
		}
	})
}

func TestANewUserStartsWithNoSessions(t *testing.T) {
	e := newTestEnv(t)
	// A session row left behind for the id that the next user would get,
	// as a user deleted by hand leaves its sessions.
	next := int64(queryInt(t, e.store.reader, "SELECT max(id) FROM user")) + 1
	raw := openRawDB(t, e.cfg.dbPath)
	execAll(t, raw, "PRAGMA foreign_keys = OFF",
		fmt.Sprintf("INSERT INTO session (user_id, digest, expires_at) VALUES (%d, x'00', %d)", next, time.Now().Add(time.Hour).Unix()))
	raw.Close()

	u := e.signup("newcomer@example.com", "password123")
	if n := sessionRows(t, e, u.ID); n != 0 {
		t.Errorf("a new user (id %d) has %d sessions, want 0", u.ID, n)
	}
}

// sessionRows is how many session rows userID has.
func sessionRows(t *testing.T, e *testEnv, userID int64) int {
	t.Helper()
	return queryInt(t, e.store.reader, "SELECT count(*) FROM session WHERE user_id = ?", userID)
}

func TestLoginAlsoGivesARefreshTokenAndExpiresIn(t *testing.T) {
	e := newTestEnv(t, func(c *config) { c.accessTokenLifetime = 90 * time.Minute })
	e.signup("cook@example.com", "password123")

	t.Run("the body carries refresh_token and expires_in, with Cache-Control no-store", func(t *testing.T) {
		resp := e.tryLogin("cook@example.com", "password123")
		got := expectTokenResponse(t, e, resp) // checks no-store, 64 base64url characters, expires_in
		if got.ExpiresIn != 5400 {
			t.Errorf("POST /api/v1/auth/login: expires_in = %d, want 5400 for a 90-minute lifetime", got.ExpiresIn)
		}
		if _, err := verifyAccessToken(newTokenKey(e.cfg.tokenSecret), got.AccessToken, time.Now()); err != nil {
			t.Fatalf("the access token does not verify: %v", err)
		}
		claims := payloadOf(t, got.AccessToken)
		if life := time.Duration(claims["exp"].(float64)-claims["iat"].(float64)) * time.Second; life != time.Duration(got.ExpiresIn)*time.Second {
			t.Errorf("the access token lives %v, but expires_in says %ds", life, got.ExpiresIn)
		}
	})
	t.Run("every login gets a refresh token of its own", func(t *testing.T) {
		seen := map[string]bool{}
		for range 5 {
			token := e.loginTokens("cook@example.com", "password123").RefreshToken
			if seen[token] {
				t.Fatalf("two logins got the same refresh token %q", token)
			}
			seen[token] = true
		}
	})
}

func TestARefreshTokenWorksOnce(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	login := func(t *testing.T) tokenResponse {
		t.Helper()
		return e.loginTokens("cook@example.com", "password123")
	}

	t.Run("a refresh token gives a new access token that works and a new, different refresh token", func(t *testing.T) {
		first := login(t)
		next := mustRefresh(t, e, first.RefreshToken)
		expectAccessTokenWorks(t, e, next.AccessToken, cook.ID)
		if next.RefreshToken == first.RefreshToken {
			t.Errorf("POST /api/v1/auth/refresh gave back the refresh token it was sent")
		}
		t.Run("presenting the first one again is refused", func(t *testing.T) {
			expectRefreshTokenRefused(t, e, first.RefreshToken)
		})
	})
	t.Run("the new refresh token works in its turn", func(t *testing.T) {
		next := mustRefresh(t, e, login(t).RefreshToken)
		expectAccessTokenWorks(t, e, mustRefresh(t, e, next.RefreshToken).AccessToken, cook.ID)
	})
	t.Run("a multipart form with grant_type is read", func(t *testing.T) {
		resp := e.postMultipart("/api/v1/auth/refresh",
			map[string]string{"grant_type": "refresh_token", "refresh_token": login(t).RefreshToken})
		expectAccessTokenWorks(t, e, expectTokenResponse(t, e, resp).AccessToken, cook.ID)
	})
	// RFC 6749 §6 makes grant_type required.
	t.Run("a multipart form without grant_type is a 422 at grant_type, and the token stays good", func(t *testing.T) {
		token := login(t).RefreshToken
		expectProblems(t, e.postMultipart("/api/v1/auth/refresh", map[string]string{"refresh_token": token}), "body.grant_type")
		mustRefresh(t, e, token)
	})
	t.Run("an urlencoded form without grant_type is a 422 at grant_type, and the token stays good", func(t *testing.T) {
		token := login(t).RefreshToken
		expectProblems(t, e.postForm("/api/v1/auth/refresh", url.Values{"refresh_token": {token}}), "body.grant_type")
		mustRefresh(t, e, token)
	})

	for _, tc := range []struct {
		name     string
		form     url.Values
		wantLocs []string
	}{
		{"a grant_type of password is a 422 at grant_type",
			url.Values{"grant_type": {"password"}, "refresh_token": {"x"}}, []string{"body.grant_type"}},
		{"a missing refresh_token is a 422 at refresh_token",
			url.Values{"grant_type": {"refresh_token"}}, []string{"body.refresh_token"}},
		{"an empty refresh_token is a 422 at refresh_token",
			url.Values{"grant_type": {"refresh_token"}, "refresh_token": {""}}, []string{"body.refresh_token"}},
		{"an empty form is a 422 at refresh_token and grant_type: both are required",
			url.Values{}, []string{"body.refresh_token", "body.grant_type"}},
		{"an empty grant_type is a 422 at grant_type",
			url.Values{"grant_type": {""}, "refresh_token": {"x"}}, []string{"body.grant_type"}},
		{"every bad field is listed",
			url.Values{"grant_type": {"client_credentials"}}, []string{"body.refresh_token", "body.grant_type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.postForm("/api/v1/auth/refresh", tc.form), tc.wantLocs...)
		})
	}
	t.Run("a refused grant_type does not use up the refresh token", func(t *testing.T) {
		token := login(t).RefreshToken
		expectProblems(t, e.postForm("/api/v1/auth/refresh",
			url.Values{"grant_type": {"password"}, "refresh_token": {token}}), "body.grant_type")
		mustRefresh(t, e, token)
	})
	t.Run("a refresh token in the query string is not read: tokens stay out of URLs", func(t *testing.T) {
		token := login(t).RefreshToken
		resp := e.postForm("/api/v1/auth/refresh?grant_type=refresh_token&refresh_token="+token, url.Values{})
		expectProblems(t, resp, "body.refresh_token", "body.grant_type")
		mustRefresh(t, e, token)
	})
	t.Run("a JSON body is not a refresh form", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/refresh",
			fmt.Sprintf(`{"grant_type":"refresh_token","refresh_token":%q}`, login(t).RefreshToken))
		expectProblems(t, resp, "body.refresh_token", "body.grant_type")
	})
	t.Run("a refresh form over 64 KiB is a 413", func(t *testing.T) {
		form := url.Values{"refresh_token": {login(t).RefreshToken}, "x": {strings.Repeat("x", maxBodyBytes)}}
		expectDetail(t, e.postForm("/api/v1/auth/refresh", form), http.StatusRequestEntityTooLarge, "Request body too large")
	})

	issued := login(t)
	flipped := []byte(issued.RefreshToken)
	if flipped[10] == 'A' {
		flipped[10] = 'B'
	} else {
		flipped[10] = 'A'
	}
	for _, tc := range []struct{ name, token string }{
		{"an unknown token of the right shape is refused", randomToken(sessionHandleBytes + refreshSecretBytes)},
		{"an unknown token of the shape issued before sessions had handles is refused", randomToken(32)},
		{"a token with one character changed is refused", string(flipped)},
		{"garbage is refused", "garbage"},
		{"a token one character short is refused", issued.RefreshToken[:42]},
		{"a token with one character more is refused", issued.RefreshToken + "A"},
		{"a token written with padding is refused", issued.RefreshToken + "="},
		{"64 characters outside base64url are refused", strings.Repeat("!", refreshTokenChars)},
		{"a very long token is refused", strings.Repeat("A", 60_000)},
		{"an access token is not a refresh token", issued.AccessToken},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectRefreshTokenRefused(t, e, tc.token)
		})
	}
	t.Run("the real token is still good after all those attempts", func(t *testing.T) {
		mustRefresh(t, e, issued.RefreshToken)
	})
}

func TestReusingARefreshTokenEndsItsSessionOnly(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")

	first := e.loginTokens("cook@example.com", "password123") // R1
	other := e.loginTokens("cook@example.com", "password123") // R', an independent login
	rotated := mustRefresh(t, e, first.RefreshToken)          // R2, and an access token

	t.Run("presenting the spent token again is refused", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, first.RefreshToken)
	})
	t.Run("the descendant of the reused token is refused too", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, rotated.RefreshToken)
	})
	t.Run("another login of the same user keeps its refresh token", func(t *testing.T) {
		expectAccessTokenWorks(t, e, mustRefresh(t, e, other.RefreshToken).AccessToken, cook.ID)
	})
	t.Run("another login of the same user keeps its access token", func(t *testing.T) {
		expectAccessTokenWorks(t, e, other.AccessToken, cook.ID)
	})
	// Reuse detection revokes refresh tokens only (the contract names
	// nothing else); access tokens are stateless and live out their
	// lifetime. Logout is what ends them.
	t.Run("access tokens of the ended session are not revoked", func(t *testing.T) {
		expectAccessTokenWorks(t, e, rotated.AccessToken, cook.ID)
		expectAccessTokenWorks(t, e, first.AccessToken, cook.ID)
	})
	t.Run("descendants several rotations down are revoked too", func(t *testing.T) {
		r1 := e.loginTokens("cook@example.com", "password123").RefreshToken
		r2 := mustRefresh(t, e, r1).RefreshToken
		r3 := mustRefresh(t, e, r2).RefreshToken
		r4 := mustRefresh(t, e, r3).RefreshToken
		expectRefreshTokenRefused(t, e, r2) // a middle one, reused
		expectRefreshTokenRefused(t, e, r4)
		for _, token := range []string{r1, r2, r3, r4} {
			if n := refreshRows(t, e, token); n != 0 {
				t.Errorf("a token of the ended session still has %d rows", n)
			}
		}
	})
	t.Run("a token with the session's handle but other random bytes ends the session too", func(t *testing.T) {
		r1 := e.loginTokens("cook@example.com", "password123").RefreshToken
		r2 := mustRefresh(t, e, r1).RefreshToken
		raw, _ := base64.RawURLEncoding.DecodeString(r2)
		made := base64.RawURLEncoding.EncodeToString(append(raw[:sessionHandleBytes:sessionHandleBytes], make([]byte, refreshSecretBytes)...))
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
	lifetime := e.cfg.refreshTokenLifetime
	var renewed tokenResponse

	t.Run("a refresh token still works a second before its lifetime ends", func(t *testing.T) {
		clock.advance(lifetime - time.Second)
		renewed = mustRefresh(t, e, early.RefreshToken)
	})
	t.Run("a refresh token is refused once its lifetime has passed", func(t *testing.T) {
		clock.advance(2 * time.Second) // the lifetime and one second
		expectRefreshTokenRefused(t, e, late.RefreshToken)
		if n := refreshRows(t, e, late.RefreshToken); n != 1 {
			t.Fatalf("the expired token has %d rows before the next login, want 1 (nothing to clean up yet)", n)
		}
	})
	t.Run("expired rows are deleted by the next login, anyone's, with no cleaning job", func(t *testing.T) {
		e.loginTokens("diner@example.com", "password123")
		if n := refreshRows(t, e, late.RefreshToken); n != 0 {
			t.Errorf("the expired refresh token still has %d rows after a later login, want 0", n)
		}
		if n := refreshRows(t, e, early.RefreshToken); n != 0 {
			t.Errorf("the spent and expired refresh token still has %d rows after a later login, want 0", n)
		}
		if n := refreshRows(t, e, renewed.RefreshToken); n != 1 {
			t.Errorf("the unexpired refresh token has %d rows after a later login, want 1", n)
		}
	})
	t.Run("a refreshed token gets a lifetime of its own", func(t *testing.T) {
		mustRefresh(t, e, renewed.RefreshToken)
	})
}

func TestRefreshTokensAreStoredOnlyAsSHA256Digests(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	token := e.loginTokens("cook@example.com", "password123").RefreshToken
	raw, err := base64.RawURLEncoding.DecodeString(token)
	if err != nil {
		t.Fatalf("refresh token %q is not base64url: %v", token, err)
	}

	t.Run("no column of session holds the token or its handle, as text or as bytes", func(t *testing.T) {
		cols, rows := queryRows(t, e.store.reader, "SELECT * FROM session")
		if len(rows) == 0 {
			t.Fatal("session has no rows after a login")
		}
		for _, values := range rows {
			for i, v := range values {
				var b []byte
				switch v := v.(type) {
				case []byte:
					b = v
				case string:
					b = []byte(v)
				default:
					b = fmt.Append(nil, v)
				}
				if bytes.Contains(b, []byte(token)) || bytes.Contains(b, raw[:sessionHandleBytes]) ||
					bytes.Contains(b, []byte(token[:sessionHandleBytes*4/3])) {
					t.Errorf("column %s of session holds the refresh token or its handle", cols[i])
				}
			}
		}
	})
	t.Run("the digests are the SHA-256 of the token and of its handle", func(t *testing.T) {
		var digest, handle []byte
		if err := e.store.reader.QueryRow("SELECT digest, handle FROM session WHERE user_id = ?", cook.ID).Scan(&digest, &handle); err != nil {
			t.Fatal(err)
		}
		if want := sha256.Sum256([]byte(token)); !bytes.Equal(digest, want[:]) {
			t.Errorf("digest = %x, want sha256(token) = %x", digest, want)
		}
		if want := sha256.Sum256(raw[:sessionHandleBytes]); !bytes.Equal(handle, want[:]) {
			t.Errorf("handle = %x, want sha256(first %d bytes of the token) = %x", handle, sessionHandleBytes, want)
		}
	})
}

func TestConcurrentRefreshesOfOneTokenHaveExactlyOneWinner(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")

	// race presents one refresh token from racers goroutines at once, and
	// returns the statuses seen and the winner's answer, if any. There are
	// more of them than a session's burst of refreshes: only refreshes
	// that succeed count against it.
	const racers = 2 * refreshBurst
	race := func(t *testing.T, token string) (map[int]int, *tokenResponse) {
		t.Helper()
		responses := make([]*http.Response, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			wg.Go(func() {
				<-start
				responses[i] = refresh(e, token)
			})
		}
		close(start)
		wg.Wait()
		statuses := map[int]int{}
		var winner *tokenResponse
		for _, resp := range responses {
			statuses[resp.StatusCode]++
			switch resp.StatusCode {
			case http.StatusOK:
				got := decodeBody[tokenResponse](t, resp)
				winner = &got
			case http.StatusBadRequest:
				if got := decodeBody[map[string]string](t, resp)["detail"]; got != "Invalid refresh token" {
					t.Errorf("a losing POST /api/v1/auth/refresh: detail = %q, want Invalid refresh token", got)
				}
			}
		}
		return statuses, winner
	}

	// A race is lost or won by timing, so it is run many times over.
	var winner *tokenResponse
	t.Run("exactly one gets 200 and the rest 400, never 500", func(t *testing.T) {
		for round := range 20 {
			statuses, w := race(t, e.loginTokens("cook@example.com", "password123").RefreshToken)
			if statuses[http.StatusOK] != 1 || statuses[http.StatusBadRequest] != racers-1 {
				t.Fatalf("round %d: %d concurrent POST /api/v1/auth/refresh of one token = statuses %v, want one 200 and %d 400",
					round, racers, statuses, racers-1)
			}
			winner = w
		}
	})
	if winner == nil {
		return
	}
	t.Run("the winner's access token works", func(t *testing.T) {
		expectAccessTokenWorks(t, e, winner.AccessToken, cook.ID)
	})
	// The losers presented a spent token, which the contract calls reuse:
	// the winner's new refresh token is of the same session.
	t.Run("the losers count as reuse: the winner's new refresh token is revoked too", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, winner.RefreshToken)
	})
}

func TestLogoutEndsEveryTokenOfTheUser(t *testing.T) {
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	cook := e.signup("cook@example.com", "password123")
	diner := e.signup("diner@example.com", "password123")

	first := e.loginTokens("cook@example.com", "password123")
	clock.advance(time.Second)
	second := e.loginTokens("cook@example.com", "password123")
	rotated := mustRefresh(t, e, second.RefreshToken)
	theirs := e.loginTokens("diner@example.com", "password123")
	clock.advance(time.Second)

	t.Run("logout with a bearer token is a 204 with an empty body", func(t *testing.T) {
		resp := e.send("POST", "/api/v1/auth/logout", nil, bearer(first.AccessToken)...)
		expectStatus(t, resp, http.StatusNoContent)
		if body, _ := io.ReadAll(resp.Body); len(body) != 0 {
			t.Errorf("POST /api/v1/auth/logout body = %q, want none", body)
		}
	})
	t.Run("the access token that logged out is refused", func(t *testing.T) {
		expectAccessTokenRefused(t, e, first.AccessToken)
	})
	t.Run("the user's other access tokens issued earlier are refused", func(t *testing.T) {
		expectAccessTokenRefused(t, e, second.AccessToken)
		expectAccessTokenRefused(t, e, rotated.AccessToken)
	})
	t.Run("every refresh token of the user is refused", func(t *testing.T) {
		for _, token := range []string{first.RefreshToken, rotated.RefreshToken} {
			expectRefreshTokenRefused(t, e, token)
		}
	})
	t.Run("another user's tokens keep working", func(t *testing.T) {
		expectAccessTokenWorks(t, e, theirs.AccessToken, diner.ID)
		mustRefresh(t, e, theirs.RefreshToken)
	})
	t.Run("a logged-out token cannot log out again", func(t *testing.T) {
		resp := e.send("POST", "/api/v1/auth/logout", nil, bearer(first.AccessToken)...)
		expectDetail(t, resp, http.StatusUnauthorized, "Could not validate credentials")
	})
	t.Run("a login in the same second as the logout gives tokens that work", func(t *testing.T) {
		again := e.loginTokens("cook@example.com", "password123")
		if again.AccessToken == first.AccessToken || again.AccessToken == second.AccessToken {
			t.Fatal("the login after the logout got an access token issued before it")
		}
		expectAccessTokenWorks(t, e, again.AccessToken, cook.ID)
		renewed := mustRefresh(t, e, again.RefreshToken)
		expectAccessTokenWorks(t, e, renewed.AccessToken, cook.ID)
	})
	t.Run("a second logout in the same second ends the tokens issued between the two", func(t *testing.T) {
		between := e.loginTokens("cook@example.com", "password123")
		expectStatus(t, e.send("POST", "/api/v1/auth/logout", nil, bearer(between.AccessToken)...), http.StatusNoContent)
		expectAccessTokenRefused(t, e, between.AccessToken)
		expectRefreshTokenRefused(t, e, between.RefreshToken)
		expectAccessTokenWorks(t, e, e.loginTokens("cook@example.com", "password123").AccessToken, cook.ID)
	})
	for _, tc := range []struct {
		name   string
		header []string
	}{
		{"logout without a token is a 401 Not authenticated", nil},
		{"logout with a Basic header is a 401 Not authenticated", []string{"Authorization", "Basic Og=="}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.send("POST", "/api/v1/auth/logout", nil, tc.header...)
			if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("POST /api/v1/auth/logout: WWW-Authenticate = %q, want Bearer", got)
			}
			expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
		})
	}
}

func TestChangingThePasswordEndsEveryEarlierToken(t *testing.T) {
	clock := newTestClock() // frozen: every token here is issued in the same second
	e := startTestEnv(t, newTestConfig(t), clock.Now)
	cook := e.signup("cook@example.com", "password123")
	const newPassword = "new-password-456"

	first := e.loginTokens("cook@example.com", "password123")
	second := e.loginTokens("cook@example.com", "password123")
	changePassword := func(accessToken, body string) *http.Response {
		return e.postJSON("/api/v1/auth/password", body, bearer(accessToken)...)
	}
	// nothingChanged checks that first's tokens and the old password still
	// work, and that the new password does not; first's refresh token is
	// spent on the way and replaced.
	nothingChanged := func(t *testing.T) {
		t.Helper()
		expectAccessTokenWorks(t, e, first.AccessToken, cook.ID)
		first.RefreshToken = mustRefresh(t, e, first.RefreshToken).RefreshToken
		e.loginTokens("cook@example.com", "password123")
		expectDetail(t, e.tryLogin("cook@example.com", newPassword),
			http.StatusBadRequest, "Incorrect username or password")
	}

	t.Run("a wrong current_password is a 400 and changes nothing", func(t *testing.T) {
		expectDetail(t, changePassword(first.AccessToken, passwordBody("wrong-password", newPassword)),
			http.StatusBadRequest, "Incorrect password")
		nothingChanged(t)
	})
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
	}{
		{"a new_password of 7 bytes is a 422", passwordBody("password123", "1234567"), []string{"body.new_password"}},
		{"a new_password of 73 bytes is a 422, not truncated", passwordBody("password123", strings.Repeat("p", 73)), []string{"body.new_password"}},
		{"missing fields are a 422 listing both", `{}`, []string{"body.current_password", "body.new_password"}},
		{"a body that is not a JSON object is a 422 at body", `[]`, []string{"body"}},
	} {
		t.Run(tc.name+" and changes nothing", func(t *testing.T) {
			expectProblems(t, changePassword(first.AccessToken, tc.body), tc.wantLocs...)
			nothingChanged(t)
		})
	}
	t.Run("no token is a 401 Not authenticated", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/password", passwordBody("password123", newPassword))
		expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
		nothingChanged(t)
	})

	var changed tokenResponse
	t.Run("the right current_password answers like login", func(t *testing.T) {
		changed = expectTokenResponse(t, e, changePassword(first.AccessToken, passwordBody("password123", newPassword)))
	})
	t.Run("the returned access token works at once, in the same second", func(t *testing.T) {
		expectAccessTokenWorks(t, e, changed.AccessToken, cook.ID)
	})
	t.Run("every access token issued before is refused", func(t *testing.T) {
		for _, token := range []string{first.AccessToken, second.AccessToken} {
			expectAccessTokenRefused(t, e, token)
		}
	})
	t.Run("every refresh token issued before is refused", func(t *testing.T) {
		for _, token := range []string{first.RefreshToken, second.RefreshToken} {
			expectRefreshTokenRefused(t, e, token)
		}
	})
	t.Run("the old password no longer logs in and the new one does", func(t *testing.T) {
		expectDetail(t, e.tryLogin("cook@example.com", "password123"),
			http.StatusBadRequest, "Incorrect username or password")
		expectAccessTokenWorks(t, e, e.loginTokens("cook@example.com", newPassword).AccessToken, cook.ID)
	})
	t.Run("the returned refresh token works", func(t *testing.T) {
		expectAccessTokenWorks(t, e, mustRefresh(t, e, changed.RefreshToken).AccessToken, cook.ID)
	})
	t.Run("an old access token cannot change the password again", func(t *testing.T) {
		expectDetail(t, changePassword(second.AccessToken, passwordBody(newPassword, "third-password")),
			http.StatusUnauthorized, "Could not validate credentials")
		e.loginTokens("cook@example.com", newPassword)
	})
}

func TestAReferenceTokenWorksUntilItsUsersFirstLogoutOrPasswordChange(t *testing.T) {
	e := newTestEnv(t)
	// referenceUser signs up a user as the reference made them: at token
	// generation 0, the column's default, which its tokens (no "gen") fit.
	referenceUser := func(email string) userView {
		u := e.signup(email, "password123")
		if _, err := e.store.writer.Exec("UPDATE user SET token_generation = 0 WHERE id = ?", u.ID); err != nil {
			t.Fatal(err)
		}
		return u
	}
	bystander := referenceUser("bystander@example.com")
	bystanderToken := referenceAccessToken(e, bystander.ID)

	for _, tc := range []struct {
		name string
		end  func(t *testing.T, token string)
	}{
		{"logout", func(t *testing.T, token string) {
			expectStatus(t, e.send("POST", "/api/v1/auth/logout", nil, bearer(token)...), http.StatusNoContent)
		}},
		{"password change", func(t *testing.T, token string) {
			expectTokenResponse(t, e, e.postJSON("/api/v1/auth/password",
				passwordBody("password123", "another-password"), bearer(token)...))
		}},
	} {
		t.Run("a token the reference issued works until its user's first "+tc.name, func(t *testing.T) {
			u := referenceUser(strings.ReplaceAll(tc.name, " ", "-") + "@example.com")
			token := referenceAccessToken(e, u.ID)
			expectAccessTokenWorks(t, e, token, u.ID)
			tc.end(t, token) // with the reference's token itself
			expectAccessTokenRefused(t, e, token)
		})
	}
	t.Run("another user's reference token is untouched", func(t *testing.T) {
		expectAccessTokenWorks(t, e, bystanderToken, bystander.ID)
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
	for _, seed := range []struct{ contentType, body string }{
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
	} {
		f.Add(seed.contentType, seed.body)
	}
	e := newTestEnv(f) // one service for every input of the fuzz run
	e.signup("cook@example.com", "password123")
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

func TestASessionCannotOutliveAPasswordChangeItRacedWith(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("cook@example.com", "password123")
	newHash, _ := e.passwords.hash(t.Context(), "new-password-456")

	// endSessionsElsewhere changes cook's password as the createsuperuser
	// command would, while a request waits to hash.
	endSessionsElsewhere := func(t *testing.T, waiting func() int) {
		for deadline := time.Now().Add(5 * time.Second); waiting() == 0; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the request never reached the hashing queue")
			}
		}
		if err := e.store.promoteToSuperuser(t.Context(), cook.ID, newHash); err != nil {
			t.Fatal(err)
		}
	}

	t.Run("a login that checked the old password is refused", func(t *testing.T) {
		answer := answerWithHashingHeld(t, e, func() *http.Response {
			return e.tryLogin("cook@example.com", "password123")
		}, endSessionsElsewhere)
		expectDetail(t, answer, http.StatusBadRequest, "Incorrect username or password")
		if n := sessionRows(t, e, cook.ID); n != 0 {
			t.Errorf("%d sessions were stored for the ended login, want 0", n)
		}
	})
	t.Run("a password change whose session ended meanwhile changes nothing", func(t *testing.T) {
		e.store.endSessions(t.Context(), cook.ID) // back to a known state
		token := e.login("cook@example.com", "new-password-456")
		answer := answerWithHashingHeld(t, e, func() *http.Response {
			return e.postJSON("/api/v1/auth/password", passwordBody("new-password-456", "attacker-password"), bearer(token)...)
		}, endSessionsElsewhere)
		expectDetail(t, answer, http.StatusUnauthorized, "Could not validate credentials")
		e.login("cook@example.com", "new-password-456") // still the password set elsewhere
	})
}
