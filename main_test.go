// main_test.go tests main.go: the handler as a whole, running and
// stopping the server, TLS, and the start-up log.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
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
	resp := e.get("/healthz")
	expectStatus(t, resp, http.StatusOK)
	if got := decodeBody[map[string]string](t, resp); got["status"] != "ok" {
		t.Errorf("GET /healthz = %v, want status ok", got)
	}
	// The same service, once its database is gone, answers 503.
	e.store.close()
	expectDetail(t, e.get("/healthz"), http.StatusServiceUnavailable, "Database unavailable")
}

// loginStatus is the status of a login over HTTP at base.
func loginStatus(t *testing.T, client *http.Client, base, email, password string) int {
	t.Helper()
	resp, err := client.PostForm(base+"/api/v1/auth/login", url.Values{"username": {email}, "password": {password}})
	if err != nil {
		t.Errorf("login at %s: %v", base, err)
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// TestRunServesAndStops starts the program on a new database, logs in as
// the superuser its first start printed or was given, and stops it.
func TestRunServesAndStops(t *testing.T) {
	for _, tc := range []struct{ name, format, given string }{
		{"with text logs, a generated password ends the line that names the superuser", "text", ""},
		{"with JSON logs, a generated password is a member of the one JSON object printed", "json", ""},
		{"with JSON logs, a password from FIRST_SUPERUSER_PW is not printed", "json", "given-password-123"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER": "chef@example.com", "LOG_FORMAT": tc.format, "FIRST_SUPERUSER_PW": tc.given}
			base, stdout, logs, stop := startRun(t, env, "-db", filepath.Join(t.TempDir(), "app.db"))
			printed, password := stdout.String(), tc.given
			var object map[string]any
			switch words := strings.Fields(printed); {
			case tc.format == "text":
				if !strings.Contains(printed, "chef@example.com") || strings.Count(printed, "\n") != 1 {
					t.Fatalf("stdout = %q, want one line naming the superuser and ending with the password", printed)
				}
				password = words[len(words)-1]
			case strings.Count(printed, "\n") != 1 || json.Unmarshal([]byte(printed), &object) != nil:
				t.Fatalf("a first start with LOG_FORMAT=json printed %q; want one JSON object", printed)
			case object["email"] != "chef@example.com" || object["msg"] == "":
				t.Errorf("the first start printed %v; want the email chef@example.com as a member, and a message", object)
			case tc.given == "":
				password, _ = object["password"].(string)
			case object["password"] != nil || !strings.Contains(fmt.Sprint(object["msg"]), "FIRST_SUPERUSER_PW"):
				t.Errorf("printed %v; want a message naming FIRST_SUPERUSER_PW, and no password", object)
			}
			if status := loginStatus(t, newClient(t, nil), base, "chef@example.com", password); password == "" || status != http.StatusOK {
				t.Errorf("login with the password %q = %d, want 200", password, status)
			}
			if err := stop(); err != nil {
				t.Fatalf("run returned %v after a stop", err)
			}
			if strings.Contains(logs.String(), password) {
				t.Errorf("the password reached the log")
			}
		})
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
	holdWorkers(t, s.passwords) // until the test ends, before s.close: cleanups run last first
	if busy := s.passwords.busy(); busy != s.passwords.workers {
		t.Fatalf("%d of %d workers busy, want all", busy, s.passwords.workers)
	}

	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() { served <- serveHTTP(ctx, logger, newServer(cfg, logger, time.Now, s), listener, nil) }()
	answered := make(chan struct{})
	client := newClient(t, nil)
	go func() {
		defer close(answered)
		if resp, err := client.PostForm("http://"+listener.Addr().String()+"/api/v1/auth/login",
			url.Values{"username": {"admin@recipeapi.com"}, "password": {adminPassword}}); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, "the login to wait for a worker", func() bool { return s.passwords.queued() == 1 })

	stop()
	within := func(what string, wait func()) {
		t.Helper()
		done := make(chan struct{})
		go func() { wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(shutdownGrace + 5*time.Second):
			t.Fatalf("%s, 5 s after a stop's grace of %s", what, shutdownGrace)
		}
	}
	within("serving has not ended", func() { <-served })
	within("the waiting login has no answer", func() { <-answered })
	within("the services have not closed", s.close)
}

func TestRunStopsBeforeSeedingWhenTheAddressIsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	dbPath := filepath.Join(t.TempDir(), "app.db")
	var stdout bytes.Buffer
	err = run(t.Context(), []string{"-addr", taken.Addr().String(), "-db", dbPath}, envOf(nil), strings.NewReader(""), &stdout, io.Discard)
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

// writeTestCertificate writes httptest's own certificate for 127.0.0.1
// and its key as PEM files, for serve to load, and a pool that trusts it.
func writeTestCertificate(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	server := httptest.NewTLSServer(nil) // started only to make its certificate
	server.Close()
	cert := server.TLS.Certificates[0]
	key, err := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	for file, block := range map[string]*pem.Block{certFile: {Type: "CERTIFICATE", Bytes: cert.Certificate[0]}, keyFile: {Type: "PRIVATE KEY", Bytes: key}} {
		if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(server.Certificate())
	return certFile, keyFile, pool
}

func TestTLSServesHTTP2(t *testing.T) {
	certFile, keyFile, pool := writeTestCertificate(t)
	env := map[string]string{"BCRYPT_COST": "4", "TLS_CERT_FILE": certFile, "TLS_KEY_FILE": keyFile,
		"DATABASE_PATH": filepath.Join(t.TempDir(), "tls.db")}
	base, _ := serveInBackground(t, env)
	client := newClient(t, &tls.Config{RootCAs: pool})
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
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 || resp.TLS.Version < tls.VersionTLS12 {
		t.Errorf("GET /healthz over TLS = %d %s, TLS version %x; want 200 over HTTP/2, TLS 1.2 or later", resp.StatusCode, resp.Proto, resp.TLS.Version)
	}
	t.Run("the healthcheck command reaches it", func(t *testing.T) {
		if _, err := runCommand(t, env, "", "healthcheck", "-addr", strings.TrimPrefix(base, "https://")); err != nil {
			t.Errorf("healthcheck = %v", err)
		}
	})
	t.Run("TLS 1.1 is refused", func(t *testing.T) {
		if resp, err := newClient(t, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}).Get(base + "/healthz"); err == nil {
			resp.Body.Close()
			t.Error("a TLS 1.1 client was served")
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
	// Closed for another reason, or sooner, it would prove nothing.
	if took := time.Since(started); took < readHeaderTimeout-time.Second || took > readHeaderTimeout+3*time.Second {
		t.Errorf("the server closed the half-sent request after %s, want after about %s", took, readHeaderTimeout)
	}
}

func TestShutdownLetsRequestsInFlightFinish(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "shutdown.db")
	// A cost high enough that a login takes a while: the slow request.
	env := map[string]string{"BCRYPT_COST": "11", "FIRST_SUPERUSER_PW": adminPassword}
	base, _, _, stop := startRun(t, env, "-db", dbPath)
	status := make(chan int, 1)
	go func() { status <- loginStatus(t, newClient(t, nil), base, "admin@recipeapi.com", adminPassword) }()
	time.Sleep(30 * time.Millisecond) // the login is hashing now
	select {
	case s := <-status:
		t.Fatalf("the login was answered (%d) before the stop: nothing was in flight", s)
	default:
	}
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }() // as SIGTERM does, through signal.NotifyContext

	time.Sleep(20 * time.Millisecond)
	if conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second); err == nil {
		conn.Close()
		t.Error("a new connection was accepted after shutdown began")
	}
	if s := <-status; s != http.StatusOK {
		t.Errorf("the login in flight at shutdown = %d, want 200", s)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("run = %v after shutdown", err)
	}
	// A clean close checkpoints the WAL into the database and removes it.
	if info, err := os.Stat(dbPath + "-wal"); err == nil && info.Size() > 0 {
		t.Errorf("a %d-byte WAL is left after shutdown: the database was not closed cleanly", info.Size())
	}
	expectIntegrityOK(t, dbPath)
}

// net/http reads up to MaxHeaderBytes and 4 KiB more before it refuses.
func TestHeadersAreCappedAt64KiB(t *testing.T) {
	env := map[string]string{"BCRYPT_COST": "4", "DATABASE_PATH": filepath.Join(t.TempDir(), "headers.db")}
	base, _ := serveInBackground(t, env)
	client := newClient(t, nil)
	for _, tc := range []struct {
		name         string
		headerBytes  int
		wantedStatus int
	}{
		{"a request with 60 KiB of headers is served", 60 << 10, http.StatusOK},
		{"a request with 80 KiB of headers is a 431", 80 << 10, http.StatusRequestHeaderFieldsTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, _ := http.NewRequest("GET", base+"/healthz", nil)
			req.Header.Set("X-Padding", strings.Repeat("x", tc.headerBytes))
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != tc.wantedStatus {
				t.Errorf("GET /healthz with %d bytes of headers = %d, want %d", tc.headerBytes, resp.StatusCode, tc.wantedStatus)
			}
		})
	}
}
