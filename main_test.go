// main_test.go tests main.go: the handler as a whole, running and
// stopping the server, TLS, and the start-up log.
package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// benchEachSide runs bench as sub-benchmarks "route/ours" and
// "route/floor", for every route, with the handler of that side.
func benchEachSide(b *testing.B, bench func(b *testing.B, route benchRoute, handler http.Handler)) {
	e, routes := benchEnv(b)
	for _, route := range routes {
		b.Run(route.name+"/ours", func(b *testing.B) { bench(b, route, e.handler) })
		b.Run(route.name+"/floor", func(b *testing.B) { bench(b, route, route.floor) })
	}
}

// BenchmarkHandler runs each route through the handler alone.
func BenchmarkHandler(b *testing.B) {
	benchEachSide(b, func(b *testing.B, route benchRoute, handler http.Handler) {
		r := newRequest("GET", route.target, nil, route.header...)
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				b.Fatalf("GET %s = %d", route.target, rec.Code)
			}
		}
	})
}

// BenchmarkLoopback runs each route through a real server on 127.0.0.1,
// with keep-alive clients in parallel.
func BenchmarkLoopback(b *testing.B) {
	benchEachSide(b, func(b *testing.B, route benchRoute, handler http.Handler) {
		server := httptest.NewServer(handler)
		defer server.Close()
		transport := &http.Transport{MaxIdleConnsPerHost: 64}
		defer transport.CloseIdleConnections()
		client := &http.Client{Transport: transport}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", server.URL+route.target, nil)
				for i := 0; i+1 < len(route.header); i += 2 {
					req.Header.Set(route.header[i], route.header[i+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s = %d", route.target, resp.StatusCode)
				}
			}
		})
	})
}

func TestHealthz(t *testing.T) {
	e := newTestEnv(t)
	t.Run("answers ok while the database answers", func(t *testing.T) {
		resp := e.get("/healthz")
		expectStatus(t, resp, http.StatusOK)
		if got := decodeBody[map[string]string](t, resp); got["status"] != "ok" {
			t.Errorf("GET /healthz = %v, want status ok", got)
		}
	})
	t.Run("answers 503 once the database is gone", func(t *testing.T) {
		e.store.close()
		expectDetail(t, e.get("/healthz"), http.StatusServiceUnavailable, "Database unavailable")
	})
}

// TestRunServesAndStops starts the program as a user would, through run,
// and stops it as a signal would, by cancelling its context.
func TestRunServesAndStops(t *testing.T) {
	dir := t.TempDir()
	addr := freeLoopbackAddress(t)
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER": "root@example.com"}
	ctx, cancel := context.WithCancel(t.Context())
	var stdout, stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-addr", addr, "-db", filepath.Join(dir, "app.db")},
			func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	}()
	waitForHealthy(t, "http://"+addr)

	line := strings.TrimSpace(stdout.String())
	words := strings.Fields(line)
	if !strings.Contains(line, "root@example.com") || len(words) == 0 {
		t.Fatalf("stdout = %q, want a line naming the superuser and ending with the password", line)
	}
	password := words[len(words)-1]
	resp, err := http.PostForm("http://"+addr+"/api/v1/auth/login",
		url.Values{"username": {"root@example.com"}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	expectStatus(t, resp, http.StatusOK)
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v after cancel", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
	if strings.Contains(stderr.String(), password) {
		t.Errorf("the generated password reached the log")
	}
}

// TestAStopEndsWithinItsGraceWhileEveryWorkerIsBusy stops the server, as
// a signal would, while every hashing worker runs a job that does not end
// and a login waits for a worker: the stop still ends, the login gets an
// answer, and the service closes.
func TestAStopEndsWithinItsGraceWhileEveryWorkerIsBusy(t *testing.T) {
	t.Parallel() // it waits out the grace, about 10 s
	cfg := newTestConfig(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	s, err := openServices(t.Context(), cfg, logger, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	release := make(chan struct{})
	t.Cleanup(func() { close(release) }) // before s.close: cleanups run last first
	for range s.passwords.workers {
		go s.passwords.do(context.Background(), func() { <-release })
	}
	waitFor(t, "every worker to be busy", func() bool { return s.passwords.busy() == s.passwords.workers })

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, logger, newServer(cfg, logger, time.Now, s), listener, nil) }()
	answered := make(chan struct{})
	go func() {
		defer close(answered)
		resp, err := http.PostForm("http://"+listener.Addr().String()+"/api/v1/auth/login",
			url.Values{"username": {"admin@recipeapi.com"}, "password": {adminPassword}})
		if err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the login to wait for a worker", func() bool { return s.passwords.queued() == 1 })

	stop()
	within := func(what string, done <-chan struct{}) {
		t.Helper()
		select {
		case <-done:
		case <-time.After(shutdownGrace + 5*time.Second):
			t.Fatalf("%s, 5 s after a stop's grace of %s", what, shutdownGrace)
		}
	}
	servedDone := make(chan struct{})
	go func() { <-served; close(servedDone) }()
	within("serving has not ended", servedDone)
	within("the waiting login has no answer", answered)
	closed := make(chan struct{})
	go func() { s.close(); close(closed) }()
	within("the services have not closed", closed)
}

func TestRunStopsBeforeSeedingWhenTheAddressIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dbPath := filepath.Join(t.TempDir(), "app.db")
	var stdout bytes.Buffer
	err = run(t.Context(), []string{"-addr", taken.Addr().String(), "-db", dbPath},
		func(string) string { return "" }, strings.NewReader(""), &stdout, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("run = %v, want a listen error", err)
	}
	if stdout.Len() != 0 {
		t.Errorf("run printed %q: a generated password for a server that never ran", stdout.String())
	}
	if _, err := os.Stat(dbPath); err == nil {
		t.Errorf("the database was created and seeded although the server could not listen")
	}
}

// writeTestCertificate writes a self-signed certificate for 127.0.0.1.
func writeTestCertificate(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	template := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "recipeapi test"},
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, template, template, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSServesHTTP2(t *testing.T) {
	certFile, keyFile, pool := writeTestCertificate(t)
	env := map[string]string{"BCRYPT_COST": "4", "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile,
		"DATABASE_PATH": filepath.Join(t.TempDir(), "tls.db")}
	base, _ := serveInBackground(t, env)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}}

	var resp *http.Response
	var err error
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if resp, err = client.Get(base + "/healthz"); err == nil {
			break
		}
	}
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Errorf("GET /healthz over TLS = %d %s, want 200 over HTTP/2", resp.StatusCode, resp.Proto)
	}
	if v := resp.TLS.Version; v < tls.VersionTLS12 {
		t.Errorf("TLS version %x, want 1.2 or later", v)
	}
	t.Run("the healthcheck command reaches it", func(t *testing.T) {
		if _, err := runCommand(t, env, "", "healthcheck", "-addr", strings.TrimPrefix(base, "https://")); err != nil {
			t.Errorf("healthcheck = %v", err)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		old := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
		if resp, err := old.Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			t.Error("a TLS 1.1 client was served")
		}
	})
}

func TestWithJSONLogsTheFirstStartLineIsOneJSONObject(t *testing.T) {
	// firstStart serves a new database with env until the test ends, and
	// returns its base URL, the one JSON object it printed, and its log.
	firstStart := func(t *testing.T, env map[string]string) (base string, printed map[string]any, logs *syncBuffer) {
		t.Helper()
		env["BCRYPT_COST"], env["LOG_FORMAT"], env["FIRST_SUPERUSER"] = "4", "json", "chef@example.com"
		env["DATABASE_PATH"] = filepath.Join(t.TempDir(), "first.db")
		addr := freeLoopbackAddress(t)
		ctx, cancel := context.WithCancel(context.Background())
		var stdout, stderr syncBuffer
		done := make(chan error, 1)
		go func() {
			done <- run(ctx, []string{"serve", "-addr", addr}, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
		}()
		t.Cleanup(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("serve: %v", err)
			}
		})
		waitForHealthy(t, "http://"+addr)
		lines := slices.Collect(strings.Lines(stdout.String()))
		if len(lines) != 1 || json.Unmarshal([]byte(lines[0]), &printed) != nil {
			t.Fatalf("a first start with LOG_FORMAT=json printed %q; want one JSON object", lines)
		}
		if printed["email"] != "chef@example.com" || printed["msg"] == "" {
			t.Errorf("the first start printed %v; want the email chef@example.com as a member, and a message", printed)
		}
		return "http://" + addr, printed, &stderr
	}

	t.Run("a generated password is a member of its own, and logs in", func(t *testing.T) {
		base, printed, logs := firstStart(t, map[string]string{})
		password, _ := printed["password"].(string)
		if password == "" || strings.Contains(logs.String(), password) {
			t.Errorf("printed %v; want a password member, and it not in the log", printed)
		}
		resp, err := http.PostForm(base+"/api/v1/auth/login", url.Values{"username": {"chef@example.com"}, "password": {password}})
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("login with the printed password %q = %d, want 200", password, resp.StatusCode)
		}
	})
	t.Run("a password from FIRST_SUPERUSER_PW is not printed", func(t *testing.T) {
		_, printed, _ := firstStart(t, map[string]string{"FIRST_SUPERUSER_PW": "given-password-123"})
		if _, has := printed["password"]; has || !strings.Contains(fmt.Sprint(printed["msg"]), "FIRST_SUPERUSER_PW") {
			t.Errorf("printed %v; want a message naming FIRST_SUPERUSER_PW, and no password", printed)
		}
	})
}

func TestASlowClientIsCutOffBeforeItFinishesItsHeaders(t *testing.T) {
	t.Parallel() // it waits out readHeaderTimeout, 10 s
	env := map[string]string{"BCRYPT_COST": "4", "DATABASE_PATH": filepath.Join(t.TempDir(), "slow.db")}
	base, _ := serveInBackground(t, env)

	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprint(conn, "GET /api/v1/recipes/1 HTTP/1.1\r\nHost: x\r\n") // and never the blank line
	conn.SetReadDeadline(time.Now().Add(readHeaderTimeout + 5*time.Second))
	started := time.Now()
	_, err = io.ReadAll(conn)
	if err != nil {
		t.Fatalf("the connection was not closed by the server: %v", err)
	}
	if took := time.Since(started); took > readHeaderTimeout+3*time.Second {
		t.Errorf("the server held the half-sent request for %s", took)
	}
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

// newClient is a client of the test's own, so that no connection is left
// in http.DefaultClient's pool for another test to meet.
func newClient(t *testing.T, tlsConfig *tls.Config) *http.Client {
	transport := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
}
