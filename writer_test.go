// writer_test.go tests the write deadline (store.write): while another
// connection holds the database's write lock, as a sqlite3 shell or a
// backup tool in another process may, every write answers 503 with
// Retry-After within the deadline and commits nothing, then or later,
// while reads go on answering 200; and a write whose request goes away is
// rolled back, not committed late.
package main

import (
	"context"
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// holdWriteLock takes the write lock of the database at path on a
// connection of its own, as another program would with BEGIN IMMEDIATE,
// and keeps it until release is called (or the test ends).
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		db.Close()
	}
	t.Cleanup(release)
	return release
}

// everyRow is every row of the tables that a write could change.
func everyRow(t *testing.T, e *testEnv) string {
	t.Helper()
	return dump(t, e.store.reader, "SELECT id, email, hashed_password, token_generation FROM user ORDER BY id") +
		dump(t, e.store.reader, "SELECT * FROM recipe ORDER BY id") +
		dump(t, e.store.reader, "SELECT id, user_id, hex(digest), expires_at FROM session ORDER BY id")
}

func TestWhileAnotherProcessHoldsTheWriteLock(t *testing.T) {
	t.Parallel() // it waits out the write deadline
	e := newTestEnv(t)
	cook, token := newRecipeUser(e, "cook@example.com")
	mine := postRecipe(t, e, token, "Soup", "Cook", "https://example.com/soup")
	session := e.loginTokens("cook@example.com", "recipe-password")
	before := everyRow(t, e)

	release := holdWriteLock(t, e.cfg.dbPath)
	// All at once, so that the test waits out the deadline once; they queue
	// for the writer as concurrent requests do, under one deadline each.
	t.Run("every write", func(t *testing.T) { expectWritesRefused(t, e, token, mine.ID, session.RefreshToken) })
	for _, target := range []string{
		fmt.Sprintf("/api/v1/recipes/%d", mine.ID),
		"/api/v1/recipes/search/?keyword=soup",
		"/api/v1/recipes/my-recipes/",
		"/api/v1/auth/me",
		"/",
		"/healthz",
	} {
		t.Run("GET "+target+" answers 200 meanwhile, at once", func(t *testing.T) {
			start := time.Now()
			expectStatus(t, e.get(target, bearer(token)...), http.StatusOK)
			if took := time.Since(start); took > time.Second {
				t.Errorf("GET %s took %v, want under 1s", target, took)
			}
		})
	}

	release()
	t.Run("nothing refused was written, then or once the lock is gone", func(t *testing.T) {
		time.Sleep(time.Second) // room for a late commit, which would be a bug
		if after := everyRow(t, e); after != before {
			t.Errorf("rows after the refused writes:\n%s\nwant, as before:\n%s", after, before)
		}
	})
	t.Run("the same writes work once the lock is gone", func(t *testing.T) {
		expectStatus(t, e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Cook", "https://example.com/stew"), bearer(token)...), http.StatusCreated)
		expectAccessTokenWorks(t, e, mustRefresh(t, e, session.RefreshToken).AccessToken, cook.ID)
	})
	if logs := e.logs.String(); strings.Contains(logs, "internal error") {
		t.Errorf("the log has an internal error, want only warnings:\n%s", logs)
	}
}

// expectWritesRefused sends every kind of write, at once, while another
// connection holds the write lock: each must answer 503 with Retry-After
// within the write deadline.
func expectWritesRefused(t *testing.T, e *testEnv, token string, recipeID int64, refreshToken string) {
	for _, tc := range []struct {
		name string
		send func() *http.Response
	}{
		{"a create", func() *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Cook", "https://example.com/stew"), bearer(token)...)
		}},
		{"an update", func() *http.Response {
			return e.sendJSON("PUT", fmt.Sprintf("/api/v1/recipes/%d", recipeID), recipeBody("Broth", "Cook", "https://example.com/broth"), bearer(token)...)
		}},
		{"a delete", func() *http.Response {
			return e.send("DELETE", fmt.Sprintf("/api/v1/recipes/%d", recipeID), nil, bearer(token)...)
		}},
		{"a signup", func() *http.Response {
			return e.postJSON("/api/v1/auth/signup", `{"email":"new@example.com","password":"password123"}`)
		}},
		{"a login", func() *http.Response {
			return e.tryLogin("cook@example.com", "recipe-password")
		}},
		{"a refresh", func() *http.Response { return refresh(e, refreshToken) }},
		{"a logout", func() *http.Response {
			return e.send("POST", "/api/v1/auth/logout", nil, bearer(token)...)
		}},
		{"a password change", func() *http.Response {
			return e.postJSON("/api/v1/auth/password", passwordBody("recipe-password", "another-password"), bearer(token)...)
		}},
	} {
		t.Run(tc.name+" answers 503 with Retry-After within the deadline", func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			resp := tc.send()
			// The deadline, and room for a busy machine.
			if took := time.Since(start); took > writerWait+2*time.Second {
				t.Errorf("%s %s took %v, want about the deadline %v", resp.Request.Method, resp.Request.URL, took, writerWait)
			}
			if got := resp.Header.Get("Retry-After"); got != strconv.Itoa(int(writerRetryAfter/time.Second)) {
				t.Errorf("%s %s: Retry-After = %q, want %d", resp.Request.Method, resp.Request.URL, got, writerRetryAfter/time.Second)
			}
			expectDetail(t, resp, http.StatusServiceUnavailable, "Database busy, try again later")
		})
	}
}

func TestAWriteWhoseRequestEndsIsRolledBack(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	before := everyRow(t, e)

	t.Run("a create whose client goes away while it waits for the lock is never committed", func(t *testing.T) {
		release := holdWriteLock(t, e.cfg.dbPath)
		ctx, cancel := context.WithCancel(t.Context())
		r := newRequest("POST", "/api/v1/recipes/", strings.NewReader(recipeBody("Stew", "Cook", "https://example.com/stew")),
			append([]string{"Content-Type", "application/json"}, bearer(token)...)...).WithContext(ctx)
		answered := make(chan *http.Response, 1)
		go func() { answered <- e.serve(r) }()
		time.Sleep(200 * time.Millisecond)
		cancel()
		select {
		case resp := <-answered:
			if resp.StatusCode == http.StatusCreated {
				t.Errorf("POST /api/v1/recipes/ = 201 after its client went away")
			}
		case <-time.After(writerWait / 2): // the request's end, not the deadline, must stop the wait
			t.Fatalf("POST /api/v1/recipes/ still waits for the lock %v after its client went away", writerWait/2)
		}
		release()
		time.Sleep(100 * time.Millisecond)
		if after := everyRow(t, e); after != before {
			t.Errorf("rows after the abandoned create:\n%s\nwant, as before:\n%s", after, before)
		}
	})
	t.Run("a write whose request ends between its statements and its commit is rolled back", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		err := e.store.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO recipe (label) VALUES ('late')"); err != nil {
				return err
			}
			cancel() // the client goes away before the commit
			return nil
		})
		if err == nil {
			t.Error("store.write = nil after its request ended before the commit, want an error")
		}
		if n := queryInt(t, e.store.reader, "SELECT count(*) FROM recipe WHERE label = 'late'"); n != 0 {
			t.Errorf("%d rows of the abandoned write were committed, want 0", n)
		}
	})
}

func TestALockHeldByAnotherProcessGetsA503FromTheService(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the service's whole write deadline, which -short asks to leave out")
	}
	t.Parallel() // it waits out the write deadline
	dbPath := filepath.Join(t.TempDir(), "locked.db")
	_, base := startChild(t, "DATABASE_PATH="+dbPath, "BCRYPT_COST=4", "FIRST_SUPERUSER_PW="+adminPassword, "LOGIN_ATTEMPTS_PER_MINUTE=0")
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)
	create := func() (*http.Response, error) {
		req, _ := http.NewRequest("POST", base+"/api/v1/recipes/", strings.NewReader(recipeBody("Stew", "Cook", "https://example.com/stew")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultClient.Do(req)
	}

	release := holdWriteLock(t, dbPath) // this test's process, not the service's
	start := time.Now()
	resp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /api/v1/recipes/ under another process's lock = %d, Retry-After %q; want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if took < writerWait-time.Second || took > writerWait+5*time.Second {
		t.Errorf("POST /api/v1/recipes/ answered after %v, want about the write deadline %v", took, writerWait)
	}
	readStart := time.Now()
	if resp, err := http.Get(base + "/api/v1/recipes/1"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/recipes/1 under the lock = %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if took := time.Since(readStart); took > time.Second {
		t.Errorf("GET /api/v1/recipes/1 under the lock took %v, want under 1s", took)
	}
	release()

	time.Sleep(500 * time.Millisecond)
	raw := openRawDB(t, dbPath)
	if n := queryInt(t, raw, "SELECT count(*) FROM recipe WHERE label = 'Stew'"); n != 0 {
		t.Errorf("%d refused creates were committed after the lock was released, want 0", n)
	}
}
