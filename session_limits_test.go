// session_limits_test.go tests what bounds the sessions one client can
// make the service keep: one row per session however often it is
// refreshed, at most maxSessionsPerUser sessions per user, the per-session
// refresh rate limit and the bound on its memory, the deletion of expired
// sessions, a session whose user was deleted by hand, and refresh tokens
// carried over from the refresh_token table by the migration that made
// sessions.
package main

import (
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
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

// migrationIndexOf is the index in schema.sql's migrations of the first
// one whose SQL contains text: tests find a migration by what it does.
func migrationIndexOf(t *testing.T, text string) int {
	t.Helper()
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations {
		if strings.Contains(m.sql, text) {
			return i
		}
	}
	t.Fatalf("no migration contains %q", text)
	return 0
}

func TestRefreshTokensOfTheOldTableCarryOverIntoSessions(t *testing.T) {
	// A database as it was just before the migration that made sessions,
	// with refresh tokens in every state.
	path := filepath.Join(t.TempDir(), "before-sessions.db")
	makeReferenceDB(t, path)
	migrations, _ := parseMigrations(schemaSQL)
	before := migrationIndexOf(t, "CREATE TABLE session")
	raw := openRawDB(t, path)
	for _, m := range migrations[:before] {
		execAll(t, raw, m.sql)
	}
	hash := passlibHash(t, "password123")
	live, spent, expired, orphan := randomToken(32), randomToken(32), randomToken(32), randomToken(32)
	digest := func(token string) string { // as a blob literal
		d := sha256.Sum256([]byte(token))
		return "x'" + hex.EncodeToString(d[:]) + "'"
	}
	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	execAll(t, raw,
		fmt.Sprintf(`INSERT INTO user (id, email, email_key, is_superuser, hashed_password) VALUES (4, 'cook@example.com', 'cook@example.com', 0, '%s')`, hash),
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 4, 'a', %d, 0)`, digest(live), future),
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 4, 'b', %d, 1)`, digest(spent), future),
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 4, 'c', %d, 0)`, digest(expired), past),
		"PRAGMA foreign_keys = OFF",
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 99, 'd', %d, 0)`, digest(orphan), future),
		"PRAGMA user_version = "+strconv.Itoa(before),
	)
	raw.Close()
	e := newTestEnv(t, onDatabase(path))

	t.Run("only the live token of an existing user becomes a session", func(t *testing.T) {
		if n := queryInt(t, e.store.reader, "SELECT count(*) FROM session"); n != 1 {
			t.Errorf("sessions after the migration = %d, want 1", n)
		}
		if n := refreshRows(t, e, live); n != 1 {
			t.Errorf("the live token has %d session rows, want 1", n)
		}
	})
	for _, tc := range []struct{ name, token string }{
		{"a spent token stays refused", spent},
		{"an expired token stays refused", expired},
		{"a token of a user deleted by hand is refused", orphan},
	} {
		t.Run(tc.name, func(t *testing.T) { expectRefreshTokenRefused(t, e, tc.token) })
	}
	var next tokenResponse
	t.Run("the live token works once, and gives a token of the new shape", func(t *testing.T) {
		next = mustRefresh(t, e, live)
		expectAccessTokenWorks(t, e, next.AccessToken, 4)
		raw, _ := base64.RawURLEncoding.DecodeString(live)
		if !strings.HasPrefix(next.RefreshToken, base64.RawURLEncoding.EncodeToString(raw[:15])) {
			t.Errorf("the next token %q does not keep the first bytes of %q as its session's handle", next.RefreshToken, live)
		}
	})
	t.Run("presenting the old token again is reuse: the session ends", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, live)
		expectRefreshTokenRefused(t, e, next.RefreshToken)
	})
}
