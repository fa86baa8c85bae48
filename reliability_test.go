// reliability_test.go checks what must hold when things go wrong: a
// process killed in the middle of many writes loses no acknowledged write
// and leaves an intact database; a shutdown lets the requests in flight
// finish, refuses new ones, and closes the database cleanly; a database
// whose files are removed or replaced under a running server is reported
// unhealthy, and nothing is cached while the server cannot watch it.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestMain lets this test binary also be the service itself, so that a
// test can run it as a child process and kill it (see startChild). It is
// here, built without the loadtest tag, because these tests need it; the
// load script's floor is another role, in load_test.go.
func TestMain(m *testing.M) {
	if os.Getenv("RECIPEAPI_RUN_AS_SERVICE") == "1" {
		if err := run(context.Background(), nil, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "recipeapi:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// startChild runs the service as a child process with env, and waits
// until it answers.
func startChild(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"RECIPEAPI_RUN_AS_SERVICE=1", "ADDR=" + addr}, env...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForHealthy(t, "http://"+addr)
	return cmd, "http://" + addr
}

func TestAcknowledgedWritesSurviveAKilledProcess(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "crash.db")
	env := []string{"DATABASE_PATH=" + dbPath, "BCRYPT_COST=4", "FIRST_SUPERUSER_PW=" + adminPassword, "LOGIN_ATTEMPTS_PER_MINUTE=0",
		"RECIPE_CREATION_BURST=0"} // one account writes as fast as it can
	child, base := startChild(t, env...)
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)

	// Many clients create recipes until the process dies under them.
	var (
		mu           sync.Mutex
		acknowledged = map[string]string{} // id → label
		wg           sync.WaitGroup
	)
	for client := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				label := fmt.Sprintf("crash test %d-%d", client, i)
				body := fmt.Sprintf(`{"label":%q,"source":"test","url":"https://example.com/%d/%d"}`, label, client, i)
				req, _ := http.NewRequest("POST", base+"/api/v1/recipes/", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the process is gone
				}
				created := struct {
					ID int64 `json:"id"`
				}{}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated && json.Unmarshal(data, &created) == nil {
					mu.Lock()
					acknowledged[fmt.Sprint(created.ID)] = label
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if err := child.Process.Kill(); err != nil { // SIGKILL: no chance to clean up
		t.Fatal(err)
	}
	child.Wait()
	wg.Wait()
	if len(acknowledged) == 0 {
		t.Fatal("no recipe was created before the kill; the test proves nothing")
	}

	_, base = startChild(t, env...)
	for id, label := range acknowledged {
		resp, err := http.Get(base + "/api/v1/recipes/" + id)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), label) {
			t.Errorf("GET /api/v1/recipes/%s after the crash = %d %s, want %q", id, resp.StatusCode, data, label)
		}
	}
	t.Logf("%d acknowledged recipes, all there after the kill", len(acknowledged))
	expectIntegrityOK(t, dbPath)
}

func TestShutdownLetsRequestsInFlightFinish(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "shutdown.db")
	addr := freeLoopbackAddress(t)
	// A cost high enough that a login takes a while: the slow request.
	env := map[string]string{"BCRYPT_COST": "11", "FIRST_SUPERUSER_PW": adminPassword}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", addr, "-db", dbPath}, func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, io.Discard)
	}()
	base := "http://" + addr
	waitForHealthy(t, base)

	loginStatus := make(chan int, 1)
	go func() {
		resp, err := http.PostForm(base+"/api/v1/auth/login", url.Values{"username": {"admin@recipeapi.com"}, "password": {adminPassword}})
		if err != nil {
			loginStatus <- 0
			return
		}
		resp.Body.Close()
		loginStatus <- resp.StatusCode
	}()
	time.Sleep(30 * time.Millisecond) // the login is hashing now
	cancel()                          // as SIGTERM does, through signal.NotifyContext

	time.Sleep(20 * time.Millisecond)
	if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		conn.Close()
		t.Error("a new connection was accepted after shutdown began")
	}
	if status := <-loginStatus; status != http.StatusOK {
		t.Errorf("the login in flight at shutdown = %d, want 200", status)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run = %v after shutdown", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("run did not return after shutdown")
	}
	// A clean close checkpoints the WAL into the database and removes it.
	if info, err := os.Stat(dbPath + "-wal"); err == nil && info.Size() > 0 {
		t.Errorf("a %d-byte WAL is left after shutdown: the database was not closed cleanly", info.Size())
	}
	expectIntegrityOK(t, dbPath)
}

// keepsReads reports whether the store's cache keeps what a read puts in
// it, and forgets it again. No recipe has id 0.
func keepsReads(s *store) bool {
	key := cacheKey{read: "recipe", n: 0}
	s.cache.load(key, func() ([]recipe, error) { return []recipe{{}}, nil })
	kept := cacheHolds(s, key)
	s.cache.forget()
	return kept
}

// cacheHolds reports whether the store's cache holds an entry for key.
func cacheHolds(s *store, key cacheKey) bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	_, ok := s.cache.entries[key]
	return ok
}

// cacheEntries counts the entries of the store's cache for reads of kind read.
func cacheEntries(s *store, read string) int {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	n := 0
	for k := range s.cache.entries {
		if k.read == read {
			n++
		}
	}
	return n
}

func TestADatabaseWhoseFilesAreRemovedOrReplacedIsUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		want   string // in the log
	}{
		{"removing the -wal and the -shm", func(t *testing.T, path string) {
			for _, name := range []string{path + "-wal", path + "-shm"} {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
		}, "test.db-wal was removed"},
		{"replacing the database file", func(t *testing.T, path string) {
			other := openRawDB(t, path+".new")
			execAll(t, other, "CREATE TABLE t (x)")
			other.Close()
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, "test.db was replaced"},
	} {
		t.Run(tc.name+" under a running server makes /healthz 503, stops the caches, and the log says why", func(t *testing.T) {
			e := newTestEnv(t)
			expectStatus(t, e.get("/healthz"), http.StatusOK)
			tc.change(t, e.cfg.dbPath)
			expectDetail(t, e.get("/healthz"), http.StatusServiceUnavailable, "Database unavailable")
			waitFor(t, "the caches to keep nothing", func() bool { return !keepsReads(e.store) })
			e.store.close() // the poller is done: its log can be read
			logs := e.logs.String()
			if !strings.Contains(logs, tc.want) || !strings.Contains(logs, "restart the server") {
				t.Errorf("the log does not say %q and that the server needs a restart:\n%s", tc.want, logs)
			}
			if n := strings.Count(logs, "cannot watch the database"); n != 1 {
				t.Errorf("the log says %d times that the database cannot be watched, want once:\n%s", n, logs)
			}
		})
	}
}

func TestTheWriteWatchSaysOnceThatItStoppedAndOnceThatItGoesOnAgain(t *testing.T) {
	e := newTestEnv(t)
	path := e.cfg.dbPath
	move := func(from, to string) {
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Rename(path+suffix+from, path+suffix+to); err != nil {
				t.Fatal(err)
			}
		}
	}
	move("", ".away")
	waitFor(t, "the caches to keep nothing", func() bool { return !keepsReads(e.store) })
	time.Sleep(4 * externalWritePoll) // a few more looks, in vain
	move(".away", "")
	waitFor(t, "the caches to keep reads again", func() bool { return keepsReads(e.store) })
	expectStatus(t, e.get("/healthz"), http.StatusOK)
	e.store.close() // the poller is done: its log can be read
	logs := e.logs.String()
	for _, said := range []string{"cannot watch the database", "watching the database for writes by other processes again"} {
		if n := strings.Count(logs, said); n != 1 {
			t.Errorf("the log says %q %d times, want once:\n%s", said, n, logs)
		}
	}
}

func loginOver(t *testing.T, base, email, password string) string {
	t.Helper()
	resp, err := http.PostForm(base+"/api/v1/auth/login", url.Values{"username": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	expectStatus(t, resp, http.StatusOK)
	return decodeBody[tokenResponse](t, resp).AccessToken
}

func expectIntegrityOK(t *testing.T, dbPath string) {
	t.Helper()
	db, err := sql.Open("sqlite", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var result string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&result); err != nil || result != "ok" {
		t.Errorf("PRAGMA integrity_check = %q, %v; want ok", result, err)
	}
}
