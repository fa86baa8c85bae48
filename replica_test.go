package main

import (
	"bytes"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	sqlite3 "modernc.org/sqlite/lib"
)

// nodePair is a primary and a replica over one database file, as LiteFS
// would give them, but without LiteFS: the replica's database is a link
// in a directory of its own, where .primary names the primary's server.
type nodePair struct {
	primary, replica *testEnv
	primaryHost      string // host:port of the primary's server
	primaryDB        string // the file
	replicaDir       string // the link's directory, with .primary
}

func newNodePair(t *testing.T, change ...func(*config)) nodePair {
	t.Helper()
	n := nodePair{primaryDB: filepath.Join(t.TempDir(), "test.db")}
	n.primary = newTestEnv(t, append(change, onDatabase(n.primaryDB))...)
	server := httptest.NewServer(n.primary.handler)
	t.Cleanup(server.Close)
	n.primaryHost = strings.TrimPrefix(server.URL, "http://")
	replicaDB := linkReplica(t, n.primaryDB, n.primaryHost)
	n.replicaDir = filepath.Dir(replicaDB)
	n.replica = newTestEnv(t, append(change, onDatabase(replicaDB))...)
	return n
}

// linkReplica makes a replica's database: a link to primaryDB, which need
// not exist yet, in a directory of its own whose .primary names primary.
// It returns the link's path.
func linkReplica(t *testing.T, primaryDB, primary string) string {
	t.Helper()
	replicaDB := filepath.Join(t.TempDir(), "test.db")
	if err := os.Symlink(primaryDB, replicaDB); err != nil {
		t.Fatal(err)
	}
	writePrimaryFile(t, filepath.Dir(replicaDB), primary)
	return replicaDB
}

// writePrimaryFile writes .primary in dir, naming primary, as LiteFS does.
func writePrimaryFile(t *testing.T, dir, primary string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, ".primary"), []byte(primary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// namePrimary writes .primary beside the replica's database, as LiteFS does.
func (n nodePair) namePrimary(t *testing.T, name string) { writePrimaryFile(t, n.replicaDir, name) }

// setPosition writes a -pos file as LiteFS does, at TXID txid.
func setPosition(t *testing.T, dbPath string, txid string) {
	t.Helper()
	if err := os.WriteFile(dbPath+"-pos", []byte(txid+"/8d2b1c0a9e7f6d5c\n"), 0o600); err != nil {
		t.Fatal(err)
	}
}

// fromClient is r as if sent by a client at addr.
func fromClient(addr string, r *http.Request) *http.Request {
	r.RemoteAddr = addr + ":40000"
	return r
}

func TestAReplicaForwardsEveryWriteToThePrimary(t *testing.T) {
	n := newNodePair(t)
	r := n.replica

	r.signup("cook@example.com", "correct horse")
	if n.primary.tryLogin("cook@example.com", "correct horse").StatusCode != http.StatusOK {
		t.Fatal("a signup sent to the replica did not reach the primary")
	}
	tokens := r.loginTokens("cook@example.com", "correct horse")
	expectAccessTokenWorks(t, r, tokens.AccessToken, 2)
	tokens = mustRefresh(t, r, tokens.RefreshToken)

	created := postRecipe(t, r, tokens.AccessToken, "Chicken Soup", "Grandma", "https://example.com/soup")
	expectStatus(t, r.get(recipePath(created.ID)), http.StatusOK)
	resp := r.sendJSON("PUT", recipePath(created.ID), recipeBody("Chicken Noodle Soup", "Grandma", "https://example.com/soup"), bearer(tokens.AccessToken)...)
	expectStatus(t, resp, http.StatusOK)
	if got := decodeBody[recipe](t, r.get(recipePath(created.ID))).Label; got != "Chicken Noodle Soup" {
		t.Errorf("the replica read %q after an update sent to it", got)
	}

	t.Run("the answer is the primary's, with one of each header, and none meant for nodes", func(t *testing.T) {
		resp := r.send("DELETE", recipePath(created.ID), nil, bearer(tokens.AccessToken)...)
		expectStatus(t, resp, http.StatusNoContent)
		for _, name := range []string{"X-Request-Id", "Content-Security-Policy", "X-Content-Type-Options"} {
			if got := resp.Header.Values(name); len(got) != 1 {
				t.Errorf("%s: %q, want one value", name, got)
			}
		}
		if got := resp.Header.Get(positionHeader); got != "" {
			t.Errorf("the client got %s: %s", positionHeader, got)
		}
		id := resp.Header.Get("X-Request-Id")
		if !strings.Contains(n.primary.logs.String(), "request_id="+id+" method=DELETE") {
			t.Errorf("the primary did not log the request under the replica's id %s:\n%s", id, n.primary.logs)
		}
	})

	t.Run("a body over the limit gets a 413, said with its length or not", func(t *testing.T) {
		big := `{"email": "` + strings.Repeat("a", maxBodyBytes) + `@example.com", "password": "correct horse"}`
		expectStatus(t, r.postJSON("/api/v1/auth/signup", big), http.StatusRequestEntityTooLarge)
		unsized := newRequest("POST", "/api/v1/auth/signup", io.MultiReader(strings.NewReader(big)), "Content-Type", "application/json")
		unsized.ContentLength = -1
		expectStatus(t, r.serve(unsized), http.StatusRequestEntityTooLarge)
	})

	t.Run("the primary takes a request id only from a node", func(t *testing.T) {
		resp := n.primary.postJSON("/api/v1/auth/signup", `{"email": "own-id@example.com", "password": "correct horse"}`, "X-Request-ID", "chosenByUser")
		expectStatus(t, resp, http.StatusCreated)
		if got := resp.Header.Get("X-Request-Id"); got == "chosenByUser" {
			t.Error("the primary logged a client's request under the id the client chose")
		}
	})

	t.Run("reads are answered by the replica alone", func(t *testing.T) {
		before := strings.Count(n.primary.logs.String(), "msg=request")
		for _, method := range []string{"GET", "HEAD"} {
			r.send(method, recipePath(1), nil)
			r.send(method, "/api/v1/auth/me", nil, bearer(tokens.AccessToken)...)
		}
		r.send("OPTIONS", recipePath(1), nil)
		if after := strings.Count(n.primary.logs.String(), "msg=request"); after != before {
			t.Errorf("the primary served %d of the replica's reads", after-before)
		}
	})

	t.Run("a logout through the replica ends the token on the replica at once", func(t *testing.T) {
		expectStatus(t, r.send("POST", "/api/v1/auth/logout", nil, bearer(tokens.AccessToken)...), http.StatusNoContent)
		expectAccessTokenRefused(t, r, tokens.AccessToken)
	})
}

func TestAReplicaPassesOnThePrimarysAnswerWhole(t *testing.T) {
	const origin = "https://app.example.com"
	n := newNodePair(t, func(c *config) { c.corsOrigins = []string{origin} })
	// Over a real connection, on which a 100 Continue is sent.
	replica := httptest.NewServer(n.replica.handler)
	t.Cleanup(replica.Close)
	client := newClient(t, nil)
	client.Transport.(*http.Transport).ExpectContinueTimeout = 5 * time.Second
	for _, c := range []struct {
		name   string
		header []string
	}{
		{"with CORS, Vary keeps the primary's values as well as this node's", []string{"Origin", origin}},
		// The body is whole by then: the primary's 100 Continue would
		// clear the headers that this node set.
		{"a client that expects 100 Continue gets this node's headers", []string{"Origin", origin, "Expect", "100-continue"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			token := n.replica.login("admin@recipeapi.com", adminPassword)
			// A handler that reads the body, as a 100 Continue waits for.
			req := newRequest("POST", replica.URL+"/api/v1/recipes/", strings.NewReader(recipeBody("Soup", "Grandma", "https://example.com/soup")),
				append(append(bearer(token), "Content-Type", "application/json"), c.header...)...)
			req.RequestURI = ""
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			expectStatus(t, resp, http.StatusCreated)
			if got, want := resp.Header.Values("Vary"), []string{"Origin", "Authorization"}; !slices.Equal(got, want) {
				t.Errorf("Vary: %q, want %q", got, want)
			}
			for _, name := range []string{"X-Request-Id", "Content-Security-Policy", "Access-Control-Allow-Origin"} {
				if got := resp.Header.Values(name); len(got) != 1 {
					t.Errorf("%s: %q, want one value", name, got)
				}
			}
		})
	}
}

func TestAWriteMarkedAsForwardedIsNotRunOnAReplica(t *testing.T) {
	n := newNodePair(t, func(c *config) { c.loginAttemptsPerMinute = 1 })
	setPosition(t, n.primaryDB, "00000000000000a0")
	setPosition(t, filepath.Join(n.replicaDir, "test.db"), "00000000000000a0")
	form := url.Values{"username": {"admin@recipeapi.com"}, "password": {"a wrong password"}}

	t.Run("from a client, so that no limit is counted there", func(t *testing.T) {
		for range 3 {
			resp := n.replica.postForm("/api/v1/auth/login", form, forwardedHeader, "1")
			expectDetail(t, resp, http.StatusServiceUnavailable, errNoPrimary.detail)
		}
	})

	t.Run("from a node, with no position in the answer: the replica wrote nothing", func(t *testing.T) {
		proof := nodeProof(nodeKeyOf(testSecret), time.Now(), "POST", "example.com", "/api/v1/auth/login", "198.51.100.1")
		resp := n.replica.postForm("/api/v1/auth/login", form,
			forwardedHeader, "1", forwardedForHeader, "198.51.100.1", nodeProofHeader, proof)
		expectDetail(t, resp, http.StatusServiceUnavailable, errNoPrimary.detail)
		if got := resp.Header.Get(positionHeader); got != "" {
			t.Errorf("the replica's 503 names the position %s", got)
		}
	})
}

func TestThePrimaryCountsTheClientThatTheReplicaForwardedFor(t *testing.T) {
	n := newNodePair(t, func(c *config) { c.loginAttemptsPerMinute = 2 })
	failedLogin := func(e *testEnv, client string, header ...string) int {
		form := url.Values{"username": {"nobody@example.com"}, "password": {"wrong"}}
		r := newRequest("POST", "/api/v1/auth/login", strings.NewReader(form.Encode()),
			append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
		return e.serve(fromClient(client, r)).StatusCode
	}

	t.Run("each client through the replica has its own attempts", func(t *testing.T) {
		for range 2 {
			expectCode(t, "a failed login of 198.51.100.1", failedLogin(n.replica, "198.51.100.1"), http.StatusBadRequest)
		}
		expectCode(t, "198.51.100.1's third failed login", failedLogin(n.replica, "198.51.100.1"), http.StatusTooManyRequests)
		expectCode(t, "198.51.100.2's first failed login", failedLogin(n.replica, "198.51.100.2"), http.StatusBadRequest)
	})

	t.Run("a client that claims to be a node is counted as itself", func(t *testing.T) {
		// Signed with another key: only a node knows the secret.
		other := nodeKeyOf([]byte("not the secret that the nodes share"))
		forged := func(i int) []string {
			claimed := "203.0.113." + itoa(int64(i))
			proof := nodeProof(other, time.Now(), "POST", "example.com", "/api/v1/auth/login", claimed)
			return []string{forwardedForHeader, claimed, nodeProofHeader, proof}
		}
		for i := range 2 {
			expectCode(t, "a forged failed login", failedLogin(n.primary, "192.0.2.7", forged(i)...), http.StatusBadRequest)
		}
		expectCode(t, "the third forged failed login", failedLogin(n.primary, "192.0.2.7", forged(2)...), http.StatusTooManyRequests)
	})
}

func expectCode(t *testing.T, what string, got, want int) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %d, want %d", what, got, want)
	}
}

func TestAWriteThatFindsNoPrimaryIsA503(t *testing.T) {
	closed := freeLoopbackAddress(t) // nothing listens there now
	n := newNodePair(t)
	replicaServer := httptest.NewServer(n.replica.handler)
	t.Cleanup(replicaServer.Close)
	for _, c := range []struct{ name, primary, logged string }{
		{"when the primary does not answer", closed, closed},
		{"when .primary names no host and port", "http://example.com/x", `not a host and port`},
		{"when .primary is empty", "", "names no primary"},
		// The replica answers a request that a node forwarded itself,
		// rather than send it round again.
		{"when .primary names the replica itself", strings.TrimPrefix(replicaServer.URL, "http://"), "read-only LiteFS replica"},
	} {
		t.Run(c.name, func(t *testing.T) {
			n.namePrimary(t, c.primary)
			resp := n.replica.postJSON("/api/v1/auth/signup", `{"email": "cook@example.com", "password": "correct horse"}`)
			expectDetail(t, resp, http.StatusServiceUnavailable, errNoPrimary.detail)
			if got := resp.Header.Get("Retry-After"); got != "2" {
				t.Errorf("Retry-After: %q, want 2", got)
			}
			if !strings.Contains(n.replica.logs.String(), c.logged) {
				t.Errorf("the log does not say %q:\n%s", c.logged, n.replica.logs)
			}
		})
	}
}

// countingPrimary is a stand-in for a primary that counts the requests
// that reach it, and answers each with 204 once release is called.
func countingPrimary(t *testing.T) (host string, arrived *atomic.Int64, release func()) {
	arrived = &atomic.Int64{}
	released := make(chan struct{})
	server := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Add(1)
		<-released
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(server.Close)
	release = sync.OnceFunc(func() { close(released) })
	t.Cleanup(release) // before Close, which waits for the handlers
	return strings.TrimPrefix(server.URL, "http://"), arrived, release
}

func TestAReplicaReadsTheWholeBodyBeforeItForwards(t *testing.T) {
	host, arrived, release := countingPrimary(t)
	n := newNodePair(t)
	n.namePrimary(t, host)

	t.Run("a body still being sent has not reached the primary", func(t *testing.T) {
		body, sending := io.Pipe()
		answered := make(chan int, 1)
		go func() {
			answered <- n.replica.serve(newRequest("POST", "/api/v1/auth/signup", body, "Content-Type", "application/json")).StatusCode
		}()
		sending.Write([]byte(`{"email": `))
		waitFor(t, "the replica to wait for the rest of the body", func() bool {
			return goroutines(func(stack string) bool { return strings.Contains(stack, "io.(*pipe).read") }) > 0
		})
		if got := arrived.Load(); got != 0 {
			t.Fatalf("%d requests reached the primary before their body was whole", got)
		}
		sending.Write([]byte(`"cook@example.com", "password": "correct horse"}`))
		sending.Close()
		release()
		if got := <-answered; got != http.StatusNoContent || arrived.Load() != 1 {
			t.Errorf("the whole body: %d, and %d at the primary; want the primary's 204", got, arrived.Load())
		}
	})

	t.Run("a body over the limit is refused here, with this node's headers", func(t *testing.T) {
		before := arrived.Load()
		big := `{"email": "` + strings.Repeat("a", maxBodyBytes) + `"}`
		unsized := newRequest("POST", "/api/v1/auth/signup", io.MultiReader(strings.NewReader(big)), "Content-Type", "application/json")
		unsized.ContentLength = -1
		resp := n.replica.serve(unsized)
		expectStatus(t, resp, http.StatusRequestEntityTooLarge)
		if resp.Header.Get("Content-Security-Policy") != apiPolicy {
			t.Errorf("the 413 has no Content-Security-Policy")
		}
		if got := arrived.Load(); got != before {
			t.Errorf("a body over the limit reached the primary")
		}
	})
}

func TestTwoNodesThatNameEachOtherAnswer503(t *testing.T) {
	// A primary makes the file; two replicas, each with a secret of its
	// own, so that neither believes the other's proof, each name the
	// other as the primary, as during a failover.
	primaryDB := filepath.Join(t.TempDir(), "test.db")
	newTestEnv(t, onDatabase(primaryDB))
	type node struct {
		env    *testEnv
		dir    string
		server *httptest.Server
	}
	nodes := make([]node, 2)
	for i := range nodes {
		replicaDB := linkReplica(t, primaryDB, "127.0.0.1:9")
		nodes[i].dir = filepath.Dir(replicaDB)
		nodes[i].env = newTestEnv(t, onDatabase(replicaDB), func(c *config) {
			c.tokenSecret = []byte(strings.Repeat(strconv.Itoa(i), minSecretBytes))
		})
		nodes[i].server = httptest.NewServer(nodes[i].env.handler)
		t.Cleanup(nodes[i].server.Close)
	}
	for i := range nodes {
		writePrimaryFile(t, nodes[i].dir, strings.TrimPrefix(nodes[1-i].server.URL, "http://"))
	}
	resp := nodes[0].env.postJSON("/api/v1/auth/signup", `{"email": "cook@example.com", "password": "correct horse"}`)
	expectDetail(t, resp, http.StatusServiceUnavailable, errNoPrimary.detail)
	for i, want := range []int{1, 1} {
		if got := strings.Count(nodes[i].env.logs.String(), "msg=request"); got != want {
			t.Errorf("node %d logged %d requests, want %d:\n%s", i, got, want, nodes[i].env.logs)
		}
	}
	if !strings.Contains(nodes[1].env.logs.String(), "proof of a forwarded client does not hold") {
		t.Errorf("the node that could not check the proof did not say so:\n%s", nodes[1].env.logs)
	}
	if resp.Header.Get("Content-Security-Policy") != apiPolicy || len(resp.Header.Values("X-Request-Id")) != 1 {
		t.Errorf("the 503 has CSP %q and request ids %q; want this node's own, once", resp.Header.Get("Content-Security-Policy"), resp.Header.Values("X-Request-Id"))
	}
}

func TestAReplicaOpensABoundedNumberOfConnectionsToThePrimary(t *testing.T) {
	var (
		mu         sync.Mutex
		open, most int
	)
	arrived, release := make(chan struct{}, maxConnectionsToPrimary+10), make(chan struct{})
	primary := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		w.WriteHeader(http.StatusNoContent)
	}))
	primary.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		mu.Lock()
		defer mu.Unlock()
		switch state {
		case http.StateNew:
			open++
			most = max(most, open)
		case http.StateClosed, http.StateHijacked:
			open--
		}
	}
	primary.Start()
	t.Cleanup(primary.Close)
	releaseOnce := sync.OnceFunc(func() { close(release) })
	t.Cleanup(releaseOnce) // before Close, which waits for the handlers
	n := newNodePair(t, func(c *config) { c.maxConnections = 4096 })
	n.namePrimary(t, strings.TrimPrefix(primary.URL, "http://"))
	if got := connectionsToPrimary(n.replica.cfg.maxConnections); got != maxConnectionsToPrimary {
		t.Fatalf("at MAX_CONNECTIONS=4096, connectionsToPrimary = %d, want %d", got, maxConnectionsToPrimary)
	}
	if got := connectionsToPrimary(1024); got != perClientShare(1024)/2 {
		t.Errorf("at MAX_CONNECTIONS=1024, connectionsToPrimary = %d, want half of one client's share, %d", got, perClientShare(1024)/2)
	}

	var answered sync.WaitGroup
	for range cap(arrived) {
		answered.Go(func() {
			expectStatus(t, n.replica.send("DELETE", recipePath(1), nil), http.StatusNoContent)
		})
	}
	waitFor(t, "maxConnectionsToPrimary requests at the primary, and the rest waiting for a connection", func() bool {
		waiting := goroutines(func(stack string) bool { return strings.Contains(stack, "net/http.(*Transport).getConn") })
		return len(arrived) == maxConnectionsToPrimary && waiting >= 10
	})
	releaseOnce()
	answered.Wait()
	if most != maxConnectionsToPrimary || len(arrived) != cap(arrived) {
		t.Errorf("the replica opened at most %d connections to the primary (want %d), and %d of %d requests arrived",
			most, maxConnectionsToPrimary, len(arrived), cap(arrived))
	}
}

func TestAReplicaWritesNothing(t *testing.T) {
	n := newNodePair(t)
	err := n.replica.store.write(t.Context(), func(tx *sql.Tx) error { return nil })
	if !errors.Is(err, errReadOnlyReplica) || !strings.Contains(err.Error(), n.primaryHost) {
		t.Errorf("a write on the replica's store: %v, want errReadOnlyReplica naming the primary %s", err, n.primaryHost)
	}
	if !strings.Contains(n.replica.logs.String(), "not seeding: the primary does") {
		t.Errorf("the replica did not say why it did not seed:\n%s", n.replica.logs)
	}
	_, err = runCommand(t, map[string]string{"DATABASE_PATH": filepath.Join(n.replicaDir, "test.db")}, "", "createsuperuser", "-email", "chef@example.com")
	if !errors.Is(err, errReadOnlyReplica) {
		t.Errorf("createsuperuser on the replica: %v, want errReadOnlyReplica", err)
	}
}

func TestAWriteThatLiteFSRefusesIsA503NotA500(t *testing.T) {
	e := newTestEnv(t)
	// LiteFS refuses a write on a node that is not the primary as SQLite
	// refuses one on a read-only connection, such as the store's readers.
	_, refused := e.store.reader.ExecContext(t.Context(), "DELETE FROM recipe")
	if code := sqliteCode(refused) & 0xff; code != sqlite3.SQLITE_READONLY {
		t.Fatalf("a write on a reader: %v (code %d), want SQLITE_READONLY", refused, code)
	}
	if err := e.store.writeFailure(t.Context(), refused); errors.Is(err, errReadOnlyReplica) {
		t.Errorf("without LiteFS, a refused write was taken for a replica's: %v", err)
	}
	setPosition(t, e.cfg.dbPath, "0000000000000001")
	err := e.store.writeFailure(t.Context(), refused)
	if !errors.Is(err, errReadOnlyReplica) {
		t.Fatalf("on LiteFS, a refused write: %v, want errReadOnlyReplica", err)
	}
	rec := httptest.NewRecorder()
	(&app{logger: slog.New(slog.NewTextHandler(io.Discard, nil))}).writeError(rec, httptest.NewRequest("POST", "/", nil), err)
	if rec.Code != http.StatusServiceUnavailable || rec.Header().Get("Retry-After") == "" {
		t.Errorf("answered %d, Retry-After %q; want 503 with Retry-After", rec.Code, rec.Header().Get("Retry-After"))
	}
}

func TestAReplicaWaitsForThePrimaryToCreateAndMigrateTheDatabase(t *testing.T) {
	primaryDB := filepath.Join(t.TempDir(), "test.db")
	replicaDB := linkReplica(t, primaryDB, "127.0.0.1:9")
	// No JWT_SECRET on either: the replica must take the primary's.
	noSecret := func(c *config) { c.tokenSecret = nil }
	cfg := newTestConfig(t)
	noSecret(&cfg)
	cfg.dbPath = replicaDB
	logs := &syncBuffer{}
	opened := make(chan services, 1)
	go func() {
		s, err := openServices(t.Context(), cfg, slog.New(slog.NewTextHandler(logs, nil)), io.Discard)
		if err != nil {
			t.Errorf("the replica's openServices: %v", err)
		}
		opened <- s
	}()
	waitFor(t, "the replica to say that it waits for the database", func() bool {
		return strings.Contains(logs.String(), "waiting for the primary to create the database")
	})
	if _, err := os.Stat(primaryDB); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the replica created the database: %v", err)
	}
	// An empty file is a database at schema version 0.
	if err := os.WriteFile(primaryDB, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the replica to say that it waits for the migrations", func() bool {
		return strings.Contains(logs.String(), "waiting for the primary to migrate the database")
	})
	if info, err := os.Stat(primaryDB); err != nil || info.Size() != 0 {
		t.Fatalf("the replica wrote to the database: %v, %d bytes", err, info.Size())
	}

	primary := newTestEnv(t, onDatabase(primaryDB), noSecret)
	s := <-opened
	if s.store == nil {
		t.FailNow()
	}
	t.Cleanup(s.close)
	replica := &testEnv{t: t, cfg: cfg, store: s.store, passwords: s.passwords, handler: newServer(cfg, slog.New(slog.NewTextHandler(logs, nil)), time.Now, s), logs: &bytes.Buffer{}}
	token := primary.login("admin@recipeapi.com", adminPassword)
	expectAccessTokenWorks(t, replica, token, 1)
}

func TestAReplicaPromotedWhileItWaitsStopsWaiting(t *testing.T) {
	replicaDir := t.TempDir()
	writePrimaryFile(t, replicaDir, "127.0.0.1:9")
	primaryFile := filepath.Join(replicaDir, ".primary")
	logs := &syncBuffer{}
	opened := make(chan error, 1)
	go func() {
		_, err := openStore(t.Context(), filepath.Join(replicaDir, "test.db"), slog.New(slog.NewTextHandler(logs, nil)))
		opened <- err
	}()
	waitFor(t, "the replica to wait for the database", func() bool {
		return strings.Contains(logs.String(), "waiting for the primary to create the database")
	})
	if err := os.Remove(primaryFile); err != nil { // as LiteFS does, on promotion
		t.Fatal(err)
	}
	if err := within(t, "the wait", func() error { return <-opened }); !errors.Is(err, errPromoted) {
		t.Errorf("openStore: %v, want errPromoted", err)
	}
}

func TestAForwardedWriteIsAnsweredOnceTheReplicaHasIt(t *testing.T) {
	n := newNodePair(t)
	replicaDB := filepath.Join(n.replicaDir, "test.db")
	setPosition(t, n.primaryDB, "00000000000000a0")
	setPosition(t, replicaDB, "000000000000009f")

	caughtUp := make(chan time.Time, 1)
	time.AfterFunc(100*time.Millisecond, func() {
		if err := os.WriteFile(replicaDB+"-pos", []byte("00000000000000a0/8d2b1c0a9e7f6d5c\n"), 0o600); err != nil {
			t.Error(err)
		}
		caughtUp <- time.Now()
	})
	resp := n.replica.postJSON("/api/v1/auth/signup", `{"email": "cook@example.com", "password": "correct horse"}`)
	answered := time.Now()
	expectStatus(t, resp, http.StatusCreated)
	// Not before the replica caught up, nor so long after as to have
	// waited out positionWait instead.
	if at := <-caughtUp; answered.Before(at) || answered.Sub(at) > positionWait/2 {
		t.Errorf("the replica answered %v after its position reached the primary's", answered.Sub(at))
	}

	t.Run("past positionWait, the answer goes out all the same, and the log says so", func(t *testing.T) {
		setPosition(t, n.primaryDB, "00000000000000b0")
		start := time.Now()
		resp := n.replica.postJSON("/api/v1/auth/signup", `{"email": "baker@example.com", "password": "correct horse"}`)
		expectStatus(t, resp, http.StatusCreated)
		if waited := time.Since(start); waited < positionWait || waited > positionWait+time.Second {
			t.Errorf("answered after %v, not when positionWait (%v) passed", waited, positionWait)
		}
		if !strings.Contains(n.replica.logs.String(), "did not reach the primary's position in time") {
			t.Errorf("the log does not say that the replica was behind:\n%s", n.replica.logs)
		}
	})

	t.Run("the primary marks only what a node forwarded", func(t *testing.T) {
		resp := n.primary.postJSON("/api/v1/auth/signup", `{"email": "direct@example.com", "password": "correct horse"}`)
		expectStatus(t, resp, http.StatusCreated)
		if got := resp.Header.Get(positionHeader); got != "" {
			t.Errorf("a client's own write got %s: %s", positionHeader, got)
		}
	})
}

func TestPrimaryURL(t *testing.T) {
	for _, c := range []struct{ name, want string }{
		{"127.0.0.1:18711", "http://127.0.0.1:18711"},
		{"db-1.internal:8001", "http://db-1.internal:8001"},
		{"db-1.internal", "http://db-1.internal:8443"}, // a bare host: this node's port
		{"[::1]:9000", "http://[::1]:9000"},
		{"::1", "http://[::1]:8443"},
		{"[::1]", "http://[::1]:8443"},
		{"", ""},
		{":8001", ""},
		{"http://db-1:8001", ""},
		{"user@db-1:8001", ""},
		{"db-1:8001/path", ""},
		{"db-1:1", "http://db-1:1"},
		{"db-1:65535", "http://db-1:65535"},
		{"db-1:0", ""},
		{"db-1:65536", ""},
		{"db-1:+80", ""},
		{"db-1:080", ""},
		{"db 1:80", ""},
		{"db-1:80?x", ""},
		{"\x00", ""},
		{"fe80::1%eth0", ""},
		{"[fe80::1%25eth0]:80", ""},
		{"db_1.internal", "http://db_1.internal:8443"},
	} {
		t.Run(c.name, func(t *testing.T) {
			u, err := primaryURL(c.name, "http", "8443")
			got := ""
			if err == nil {
				got = u.String()
			}
			if got != c.want {
				t.Errorf("primaryURL(%q) = %q, %v; want %q", c.name, got, err, c.want)
			}
		})
	}
}

// FuzzPrimaryURL checks that whatever .primary holds gives an error or a
// URL of a host and port alone, which the proxy then joins the path to.
func FuzzPrimaryURL(f *testing.F) {
	for _, seed := range []string{"127.0.0.1:18711", "db-1", "::1", "[::1]:80", "a@b:1", "h:1/x", "h:99999"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, name string) {
		u, err := primaryURL(name, "http", "8001")
		if err != nil {
			return
		}
		host, port, splitErr := net.SplitHostPort(u.Host)
		if splitErr != nil || host == "" || port == "" || u.Path != "" || u.User != nil || u.RawQuery != "" || u.Fragment != "" {
			t.Fatalf("primaryURL(%q) = %#v", name, u)
		}
		again, err := url.Parse(u.String())
		if err != nil || again.Host != u.Host {
			t.Fatalf("primaryURL(%q) = %q, which reads back as %v, %v", name, u, again, err)
		}
	})
}

func TestParsePosition(t *testing.T) {
	for _, c := range []struct {
		text string
		want uint64
		ok   bool
	}{
		{"00000000000000a0/8d2b1c0a9e7f6d5c", 0xa0, true},
		{"ffffffffffffffff/0000000000000000", 1<<64 - 1, true},
		{"0000000000000001", 1, true},
		{"", 0, false},
		{"a0/8d2b1c0a9e7f6d5c", 0, false},
		{"000000000000000g/8d2b1c0a9e7f6d5c", 0, false},
		{"+00000000000000a/8d2b1c0a9e7f6d5c", 0, false},
	} {
		t.Run(c.text, func(t *testing.T) {
			got, err := parsePosition(c.text)
			if got != c.want || (err == nil) != c.ok {
				t.Errorf("parsePosition(%q) = %d, %v; want %d, ok %v", c.text, got, err, c.want, c.ok)
			}
		})
	}
}

func TestNodeProof(t *testing.T) {
	key := nodeKeyOf(testSecret)
	now := time.Now().Truncate(time.Second) // a proof's time is in whole seconds
	request := func(header ...string) *http.Request {
		return newRequest("POST", "http://primary:8001/api/v1/recipes/?x=1", nil, header...)
	}
	proof := func(key *tokenKey, at time.Time, method, host, target, client string) []string {
		return []string{forwardedForHeader, client, nodeProofHeader, nodeProof(key, at, method, host, target, client)}
	}
	good := proof(key, now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1")
	for _, c := range []struct {
		name   string
		header []string
		want   string // the client believed, or "" for none
	}{
		{"a node's proof is believed", good, "198.51.100.1"},
		{"an IPv6 client, as its /64, is believed", proof(key, now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "2001:db8::/64"), "2001:db8::/64"},
		{"one made 30 s ago is believed", proof(key, now.Add(-30*time.Second), "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), "198.51.100.1"},
		{"one made 30 s ahead is believed", proof(key, now.Add(30*time.Second), "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), "198.51.100.1"},
		{"no headers name no client", nil, ""},
		{"a client without a proof is not believed", []string{forwardedForHeader, "198.51.100.1"}, ""},
		{"a proof under another key is not believed", proof(nodeKeyOf([]byte("another secret, not the nodes' one")), now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), ""},
		{"a proof under the token key itself is not believed", proof(newTokenKey(testSecret), now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), ""},
		{"a proof for another client is not believed", []string{forwardedForHeader, "198.51.100.2", nodeProofHeader, good[3]}, ""},
		{"a proof for another method is not believed", proof(key, now, "PUT", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), ""},
		{"a proof for another host is not believed", proof(key, now, "POST", "other:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), ""},
		{"a proof for another path is not believed", proof(key, now, "POST", "primary:8001", "/api/v1/auth/login", "198.51.100.1"), ""},
		{"a proof for another query is not believed", proof(key, now, "POST", "primary:8001", "/api/v1/recipes/?x=2", "198.51.100.1"), ""},
		{"a proof made 31 s ago is not believed", proof(key, now.Add(-31*time.Second), "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), ""},
		{"a proof made 31 s ahead is not believed", proof(key, now.Add(31*time.Second), "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1"), ""},
		{"a proof whose time is written otherwise is not believed", []string{forwardedForHeader, "198.51.100.1", nodeProofHeader, "+" + good[3]}, ""},
		{"a proof cut short is not believed", []string{forwardedForHeader, "198.51.100.1", nodeProofHeader, good[3][:len(good[3])-2]}, ""},
		{"a proof without its time is not believed", []string{forwardedForHeader, "198.51.100.1", nodeProofHeader, good[3][strings.Index(good[3], ".")+1:]}, ""},
		// A node never sends these; proven or not, they are no client.
		{"a client with a port is not believed", proof(key, now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "198.51.100.1:80"), ""},
		{"a whole IPv6 address is not believed", proof(key, now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "2001:db8::1"), ""},
		{"a name is not believed", proof(key, now, "POST", "primary:8001", "/api/v1/recipes/?x=1", "localhost"), ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, ok := verifyNodeProof(key, now, request(c.header...))
			if got != c.want || ok != (c.want != "") {
				t.Errorf("verifyNodeProof = %q, %v; want %q", got, ok, c.want)
			}
		})
	}
}

// FuzzNodeProof checks that no header a client can write, short of a
// node's own proof, makes the primary believe a forwarded client.
func FuzzNodeProof(f *testing.F) {
	key := nodeKeyOf(testSecret)
	now := time.Unix(1_800_000_000, 0)
	good := nodeProof(key, now, "POST", "example.com", "/api/v1/auth/login", "198.51.100.1")
	f.Add("198.51.100.1", good)
	f.Add("198.51.100.1", "1800000000.")
	f.Add("2001:db8::/64", "1800000000.AAAA")
	f.Fuzz(func(t *testing.T, client, proof string) {
		r := newRequest("POST", "http://example.com/api/v1/auth/login", nil)
		r.Header.Set(forwardedForHeader, client)
		r.Header.Set(nodeProofHeader, proof)
		got, ok := verifyNodeProof(key, now, r)
		if client == "198.51.100.1" && proof == good {
			if !ok || got != client {
				t.Fatalf("a node's own proof was refused: %q, %v", got, ok)
			}
			return
		}
		if ok {
			t.Fatalf("believed %q on the proof %q", got, proof)
		}
	})
}

// liteFSTools returns the litefs binary, or skips t, naming what this
// machine lacks for a LiteFS cluster.
func liteFSTools(t *testing.T) string {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("no LiteFS cluster: /dev/fuse: %v", err)
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		t.Skip("no LiteFS cluster: fusermount3 is not installed (Debian: fuse3)")
	}
	if path, err := exec.LookPath("litefs"); err == nil {
		return path
	}
	gopath, err := exec.Command("go", "env", "GOPATH").Output()
	if err == nil {
		path := filepath.Join(strings.TrimSpace(string(gopath)), "bin", "litefs")
		if _, err := os.Stat(path); err == nil {
			return path
		}
	}
	t.Skip("no LiteFS cluster: litefs is not installed (CGO_ENABLED=0 go install github.com/superfly/litefs/cmd/litefs@v0.5.14)")
	return ""
}

// TestATwoNodeLiteFSCluster starts a primary and a replica on LiteFS with
// deploy/litefs/cluster.sh, each running this test binary as the service,
// and sends the README's requests to the replica. It logs the lags it
// measures; it asserts only that they end.
func TestATwoNodeLiteFSCluster(t *testing.T) {
	litefs := liteFSTools(t)
	dir := t.TempDir()
	ports := map[string]string{}
	for _, name := range []string{"PRIMARY_PORT", "REPLICA_PORT", "PRIMARY_LITEFS_PORT", "REPLICA_LITEFS_PORT"} {
		_, ports[name], _ = net.SplitHostPort(freeLoopbackAddress(t))
	}
	script := func(args ...string) *exec.Cmd {
		cmd := exec.Command("deploy/litefs/cluster.sh", args...)
		cmd.Env = append(os.Environ(), "LITEFS="+litefs, "RECIPEAPI="+os.Args[0], "RECIPEAPI_RUN_AS_SERVICE=1", "BCRYPT_COST=4")
		for name, port := range ports {
			cmd.Env = append(cmd.Env, name+"="+port)
		}
		return cmd
	}
	t.Cleanup(func() {
		if out, err := script("stop", dir).CombinedOutput(); err != nil {
			t.Errorf("cluster.sh stop: %v\n%s", err, out)
		}
	})
	if out, err := script("start", dir).CombinedOutput(); err != nil {
		t.Fatalf("cluster.sh start: %v\n%s", err, out)
	}
	primary, replica := "http://127.0.0.1:"+ports["PRIMARY_PORT"], "http://127.0.0.1:"+ports["REPLICA_PORT"]
	client := newClient(t, nil)
	call := func(method, target, contentType, body string, header ...string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, target, strings.NewReader(body))
		req.Header.Set("Content-Type", contentType)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, target, err)
		}
		defer resp.Body.Close()
		got, _ := io.ReadAll(resp.Body)
		return resp, got
	}
	expect := func(want int, method, target, contentType, body string, header ...string) []byte {
		t.Helper()
		resp, got := call(method, target, contentType, body, header...)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", method, target, resp.StatusCode, got, want)
		}
		return got
	}
	const form, jsonType = "application/x-www-form-urlencoded", "application/json"
	newRecipe := recipeBody("Chicken Soup", "Grandma", "https://example.com/soup")
	createOn := func(base, token string) (recipe, time.Duration) {
		start := time.Now()
		got := expect(http.StatusCreated, "POST", base+"/api/v1/recipes/", jsonType, newRecipe, bearer(token)...)
		took := time.Since(start)
		var r recipe
		if err := json.Unmarshal(got, &r); err != nil {
			t.Fatal(err)
		}
		return r, took
	}
	login := func(base string) tokenResponse {
		var tokens tokenResponse
		if err := json.Unmarshal(expect(http.StatusOK, "POST", base+"/api/v1/auth/login", form, "username=cook%40example.com&password=correct+horse"), &tokens); err != nil {
			t.Fatal(err)
		}
		return tokens
	}
	// until polls f each millisecond, for at most 5 s, and says how long it took.
	until := func(what string, f func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !f() {
			if time.Since(start) > 5*time.Second {
				t.Fatalf("%s: not within 5 s", what)
			}
			time.Sleep(time.Millisecond)
		}
		return time.Since(start)
	}

	expect(http.StatusCreated, "POST", replica+"/api/v1/auth/signup", jsonType, `{"email": "cook@example.com", "password": "correct horse"}`)
	tokens := login(replica)
	var refreshed tokenResponse
	json.Unmarshal(expect(http.StatusOK, "POST", replica+"/api/v1/auth/refresh", form, "grant_type=refresh_token&refresh_token="+tokens.RefreshToken), &refreshed)
	token := refreshed.AccessToken
	for range 10 {
		created, _ := createOn(replica, token)
		expect(http.StatusOK, "GET", replica+recipePath(created.ID), "", "")
	}
	expect(http.StatusNoContent, "POST", replica+"/api/v1/auth/logout", "", "", bearer(token)...)
	refusedIn := until("the replica refusing a token logged out through it", func() bool {
		resp, _ := call("GET", replica+"/api/v1/auth/me", "", "", bearer(token)...)
		return resp.StatusCode == http.StatusUnauthorized
	})
	t.Logf("a token logged out through the replica was refused there after %v", refusedIn)

	var replication, revocation, direct, forwarded []time.Duration
	token = login(primary).AccessToken
	for range 10 {
		created, _ := createOn(primary, token)
		replication = append(replication, until("a recipe created on the primary, on the replica", func() bool {
			resp, _ := call("GET", replica+recipePath(created.ID), "", "")
			return resp.StatusCode == http.StatusOK
		}))
	}
	for range 10 {
		token := login(primary).AccessToken
		expect(http.StatusOK, "GET", replica+"/api/v1/auth/me", "", "", bearer(token)...)
		expect(http.StatusNoContent, "POST", primary+"/api/v1/auth/logout", "", "", bearer(token)...)
		revocation = append(revocation, until("a logout on the primary, on the replica", func() bool {
			resp, _ := call("GET", replica+"/api/v1/auth/me", "", "", bearer(token)...)
			return resp.StatusCode == http.StatusUnauthorized
		}))
	}
	token = login(primary).AccessToken
	for range 20 {
		_, took := createOn(primary, token)
		direct = append(direct, took)
		_, took = createOn(replica, token)
		forwarded = append(forwarded, took)
	}
	t.Logf("replication lag, a recipe created on the primary read on the replica: %s", spread(replication))
	t.Logf("revocation lag, a logout on the primary until the replica refuses the token: %s", spread(revocation))
	t.Logf("a recipe created on the primary: %s; through the replica: %s", spread(direct), spread(forwarded))

	for _, node := range []string{"primary", "replica"} {
		log, err := os.ReadFile(filepath.Join(dir, node+".log"))
		if err != nil {
			t.Fatal(err)
		}
		if lines := grepLines(string(log), "status=500"); len(lines) > 0 {
			t.Errorf("the %s answered 500:\n%s", node, strings.Join(lines, "\n"))
		}
	}

	t.Run("with the primary stopped, the replica serves reads and answers writes with 503", func(t *testing.T) {
		pid, err := os.ReadFile(filepath.Join(dir, "primary.pid"))
		if err != nil {
			t.Fatal(err)
		}
		if err := exec.Command("kill", "-TERM", strings.TrimSpace(string(pid))).Run(); err != nil {
			t.Fatal(err)
		}
		until("the primary to stop", func() bool {
			_, err := net.Dial("tcp", "127.0.0.1:"+ports["PRIMARY_PORT"])
			return err != nil
		})
		expect(http.StatusOK, "GET", replica+recipePath(4), "", "")
		resp, body := call("POST", replica+"/api/v1/auth/signup", jsonType, `{"email": "late@example.com", "password": "correct horse"}`)
		if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
			t.Errorf("a signup with the primary stopped: %d %s, Retry-After %q; want 503 with Retry-After", resp.StatusCode, body, resp.Header.Get("Retry-After"))
		}
		log, _ := os.ReadFile(filepath.Join(dir, "replica.log"))
		if lines := grepLines(string(log), "a write found no primary"); len(lines) == 0 || !strings.Contains(lines[0], "127.0.0.1:"+ports["PRIMARY_PORT"]) {
			t.Errorf("the replica's log does not name the primary it could not reach: %q", lines)
		}
	})
}

// spread is the median, the 90th percentile (nearest rank) and the worst
// of ds, as a log line.
func spread(ds []time.Duration) string {
	ds = slices.Sorted(slices.Values(ds))
	at := func(p int) time.Duration { return ds[max(0, (p*len(ds)+99)/100-1)] }
	return fmt.Sprintf("median %v, p90 %v, worst %v (of %s)", at(50).Round(10*time.Microsecond), at(90).Round(10*time.Microsecond), ds[len(ds)-1].Round(10*time.Microsecond), strconv.Itoa(len(ds)))
}

// grepLines returns the lines of text that hold s.
func grepLines(text, s string) []string {
	var lines []string
	for line := range strings.Lines(text) {
		if strings.Contains(line, s) {
			lines = append(lines, strings.TrimSpace(line))
		}
	}
	return lines
}
