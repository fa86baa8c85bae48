// ops_test.go tests what an operator who runs the service sees, through
// run(...) with arguments as on a command line: the commands, TLS with
// HTTP/2, X-Forwarded-For behind a trusted proxy and only then, JSON logs
// with request ids, and a client too slow to send its headers.
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
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// runCommand runs the binary's command line args with env, and returns
// what it printed and its error.
func runCommand(t *testing.T, env map[string]string, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout bytes.Buffer
	err := run(t.Context(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, io.Discard)
	return stdout.String(), err
}

// serveInBackground runs the serve command until the test ends, and
// returns its base URL and its log.
func serveInBackground(t *testing.T, env map[string]string, args ...string) (string, *syncBuffer) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	ctx, cancel := context.WithCancel(context.Background())
	var stderr syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"serve", "-addr", addr}, args...),
			func(k string) string { return env[k] }, strings.NewReader(""), io.Discard, &stderr)
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	scheme := "http"
	if env["TLS_CERT_FILE"] != "" {
		scheme = "https"
	} else {
		waitForHealthy(t, "http://"+addr)
	}
	return scheme + "://" + addr, &stderr
}

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword}

	t.Run("migrate creates and migrates the database and reports its version", func(t *testing.T) {
		out, err := runCommand(t, env, "", "migrate", "-db", db)
		want := fmt.Sprintf("is at schema version %d", knownMigrations(t))
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("migrate = %q, %v; want %q", out, err, want)
		}
	})
	t.Run("createsuperuser with a password on standard input makes a superuser who can log in", func(t *testing.T) {
		out, err := runCommand(t, env, "a-strong-password\n", "createsuperuser", "-db", db, "-email", "Boss@Example.com")
		if err != nil || !strings.Contains(out, "Boss@Example.com") || strings.Contains(out, "a-strong-password") {
			t.Fatalf("createsuperuser = %q, %v", out, err)
		}
		e := newTestEnv(t, onDatabase(db))
		token := e.login("boss@example.com", "a-strong-password")
		resp := e.get("/api/v1/auth/me", bearer(token)...)
		if u := decodeBody[userView](t, resp); !u.IsSuperuser {
			t.Errorf("me = %+v, want a superuser", u)
		}
		e.store.close()
	})
	t.Run("createsuperuser without a password generates one and prints it once", func(t *testing.T) {
		out, err := runCommand(t, env, "", "createsuperuser", "-db", db, "-email", "second@example.com")
		words := strings.Fields(out)
		if err != nil || len(words) == 0 || !strings.Contains(out, "second@example.com") {
			t.Fatalf("createsuperuser = %q, %v", out, err)
		}
		e := newTestEnv(t, onDatabase(db))
		e.login("second@example.com", words[len(words)-1])
		e.store.close()
	})
	t.Run("createsuperuser promotes an existing user", func(t *testing.T) {
		e := newTestEnv(t, onDatabase(db))
		e.signup("cook@example.com", "password123")
		e.store.close()
		if out, err := runCommand(t, env, "", "createsuperuser", "-db", db, "-email", "COOK@example.com"); err != nil || !strings.Contains(out, "now a superuser") {
			t.Fatalf("createsuperuser = %q, %v", out, err)
		}
		e = newTestEnv(t, onDatabase(db))
		resp := e.get("/api/v1/auth/me", bearer(e.login("cook@example.com", "password123"))...)
		if u := decodeBody[userView](t, resp); !u.IsSuperuser {
			t.Errorf("me = %+v, want a superuser with the old password", u)
		}
		e.store.close()
	})
	t.Run("version prints the module and the Go version", func(t *testing.T) {
		out, err := runCommand(t, env, "", "version")
		if err != nil || !strings.HasPrefix(out, "recipeapi ") || !strings.Contains(out, "go1.") {
			t.Errorf("version = %q, %v", out, err)
		}
	})
	t.Run("version prints the version set at build time, if any", func(t *testing.T) {
		defer func(saved string) { version = saved }(version)
		version = "v9.9.9"
		if out, err := runCommand(t, env, "", "version"); err != nil || !strings.HasPrefix(out, "recipeapi v9.9.9, ") {
			t.Errorf("version = %q, %v; want it to name v9.9.9", out, err)
		}
	})
	t.Run("-h on each command, or help before it, prints its flags and succeeds", func(t *testing.T) {
		for command, flag := range map[string]string{"serve": "-addr", "migrate": "-db", "createsuperuser": "-email", "backup": "-o", "healthcheck": "-addr", "version": "no flags"} {
			for _, args := range [][]string{{command, "-h"}, {command, "--help"}, {"help", command}} {
				out, err := runCommand(t, nil, "", args...)
				if err != nil || !strings.Contains(out, flag) || !strings.Contains(out, "recipeapi "+command) {
					t.Errorf("%q = %v, printed %q; want its usage with %s", args, err, out, flag)
				}
			}
		}
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"an unknown command is a usage error", []string{"frobnicate"}},
		{"an unknown flag is a usage error", []string{"migrate", "-nope"}},
		{"a flag of another command is a usage error", []string{"version", "-db", "x.db"}},
		{"createsuperuser without -email is a usage error", []string{"createsuperuser", "-db", db}},
		{"backup without -o is a usage error", []string{"backup", "-db", db}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, env, "", tc.args...)
			var usage usageError
			if !errors.As(err, &usage) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q = %v, want one line and a usage error (exit status 2)", tc.args, err)
			}
		})
	}
}

func TestBackupWhileWritesGoOn(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "live.db")
	// One account writes as fast as it can: no limit on its creations.
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": db, "RECIPE_CREATION_BURST": "0"}
	base, _ := serveInBackground(t, env)
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)

	create := func(label string) bool {
		req, _ := http.NewRequest("POST", base+"/api/v1/recipes/", strings.NewReader(
			fmt.Sprintf(`{"label":%q,"source":"s","url":"https://example.com/x"}`, label)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated
	}
	var before []string
	for i := range 50 {
		label := fmt.Sprintf("before the backup %d", i)
		if !create(label) {
			t.Fatalf("could not create %q", label)
		}
		before = append(before, label)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 { // writers that go on during the backup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
					create(fmt.Sprintf("during the backup %d-%d", w, i))
				}
			}
		})
	}
	backup := filepath.Join(dir, "backup.db")
	out, err := runCommand(t, env, "", "backup", "-o", backup)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup = %q, %v", out, err)
	}

	t.Run("the backup passes an integrity check and holds every row written before it began", func(t *testing.T) {
		expectIntegrityOK(t, backup)
		e := newTestEnv(t, onDatabase(backup))
		defer e.store.close()
		for _, label := range before {
			resp := e.get("/api/v1/recipes/search/?max_results=100&keyword=" + url.QueryEscape(label))
			if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), label) {
				t.Errorf("the backup lacks %q", label)
			}
		}
	})
	t.Run("the backup is private to its owner", func(t *testing.T) {
		if info, err := os.Stat(backup); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("backup mode = %v, %v; want 0600", info.Mode().Perm(), err)
		}
	})
	t.Run("backup refuses to overwrite a file", func(t *testing.T) {
		if _, err := runCommand(t, env, "", "backup", "-o", backup); err == nil {
			t.Error("a second backup to the same file succeeded")
		}
		expectIntegrityOK(t, backup)
	})
}

func TestCreateSuperuserRefusesAPasswordThatIsNotUTF8(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword}
	refused := func(t *testing.T, email string) {
		t.Helper()
		// Latin-1, as a terminal set to it would send "café-password".
		out, err := runCommand(t, env, "caf\xe9-password\n", "createsuperuser", "-db", db, "-email", email)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("createsuperuser with a Latin-1 password = %q, %v; want one line saying it is not UTF-8", out, err)
		}
		if strings.Contains(err.Error(), "caf") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	t.Run("for a new database, which is not even created", func(t *testing.T) {
		refused(t, "boss@example.com")
		if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s = %v; want no database made", db, err)
		}
	})
	t.Run("for an existing user, who is left as they were", func(t *testing.T) {
		e := newTestEnv(t, onDatabase(db))
		e.signup("cook@example.com", "password123")
		e.store.close()
		before := dump(t, openRawDB(t, db), "SELECT * FROM user ORDER BY id")
		refused(t, "cook@example.com")
		if after := dump(t, openRawDB(t, db), "SELECT * FROM user ORDER BY id"); after != before {
			t.Errorf("users after the refusal:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}

func TestHealthcheckDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		followed.Store(true)
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer elsewhere.Close()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprintf("a %d to a healthy server elsewhere is unhealthy", status), func(t *testing.T) {
			followed.Store(false)
			redirecting := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/healthz", status))
			defer redirecting.Close()
			_, err := runCommand(t, nil, "", "healthcheck", "-addr", strings.TrimPrefix(redirecting.URL, "http://"))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) || strings.Contains(err.Error(), "\n") {
				t.Errorf("healthcheck = %v, want one line naming %d", err, status)
			}
			if followed.Load() {
				t.Errorf("healthcheck followed the redirect to %s", elsewhere.URL)
			}
		})
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

func TestForwardedForIsTrustedOnlyFromConfiguredProxies(t *testing.T) {
	attempts := func(t *testing.T, trusted string, forwarded ...string) []int {
		env := map[string]string{"BCRYPT_COST": "4", "LOGIN_ATTEMPTS_PER_MINUTE": "1", "TRUSTED_PROXIES": trusted,
			"DATABASE_PATH": filepath.Join(t.TempDir(), "xff.db"), "LOG_FORMAT": "json"}
		base, _ := serveInBackground(t, env)
		var statuses []int
		for _, xff := range forwarded {
			req, _ := http.NewRequest("POST", base+"/api/v1/auth/login", strings.NewReader("username=a@b.co&password=wrong-password"))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", xff)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			statuses = append(statuses, resp.StatusCode)
		}
		return statuses
	}
	t.Run("without TRUSTED_PROXIES a spoofed X-Forwarded-For does not make a new client", func(t *testing.T) {
		got := attempts(t, "", "198.51.100.1", "198.51.100.2")
		if fmt.Sprint(got) != "[400 429]" {
			t.Errorf("two logins with different X-Forwarded-For = %v, want [400 429]", got)
		}
	})
	t.Run("from a trusted proxy X-Forwarded-For names the client", func(t *testing.T) {
		got := attempts(t, "127.0.0.0/8", "198.51.100.1", "198.51.100.2", "203.0.113.5, 198.51.100.1")
		if fmt.Sprint(got) != "[400 400 429]" {
			t.Errorf("logins from two forwarded clients, then the first again = %v, want [400 400 429]", got)
		}
	})
}

func TestJSONLogsCarryTheRequestID(t *testing.T) {
	env := map[string]string{"BCRYPT_COST": "4", "LOG_FORMAT": "json", "DATABASE_PATH": filepath.Join(t.TempDir(), "log.db")}
	base, logs := serveInBackground(t, env)
	resp, err := http.Get(base + "/api/v1/recipes/1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	id := resp.Header.Get("X-Request-ID")
	if id == "" {
		t.Fatal("no X-Request-ID on the response")
	}
	var found bool
	for line := range strings.Lines(logs.String()) {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line is not JSON: %q", line)
		}
		if entry["request_id"] == id && entry["path"] == "/api/v1/recipes/1" && entry["status"] == float64(200) {
			found = true
		}
	}
	if !found {
		t.Errorf("no JSON log line with request_id %s for the request:\n%s", id, logs)
	}
}

func TestTheRequestLogGivesTheDurationInMilliseconds(t *testing.T) {
	for _, tc := range []struct {
		format string
		// duration reads the request's duration_ms from its log line, and
		// whether the line has a member named duration beside it.
		duration func(t *testing.T, line string) (ms any, bare bool)
	}{
		{"json", func(t *testing.T, line string) (any, bool) {
			var entry map[string]any
			if err := json.Unmarshal([]byte(line), &entry); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			_, bare := entry["duration"]
			return entry["duration_ms"], bare
		}},
		{"text", func(t *testing.T, line string) (any, bool) {
			var ms any
			bare := false
			for _, field := range strings.Fields(line) {
				name, value, _ := strings.Cut(field, "=")
				bare = bare || name == "duration"
				if n, err := strconv.ParseFloat(value, 64); name == "duration_ms" && err == nil {
					ms = n
				}
			}
			return ms, bare
		}},
	} {
		t.Run("in "+tc.format+" logs, as a number named duration_ms", func(t *testing.T) {
			env := map[string]string{"BCRYPT_COST": "4", "LOG_FORMAT": tc.format, "DATABASE_PATH": filepath.Join(t.TempDir(), "log.db")}
			base, logs := serveInBackground(t, env)
			resp, err := http.Get(base + "/api/v1/recipes/1")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-ID")
			for line := range strings.Lines(logs.String()) {
				if !strings.Contains(line, id) {
					continue
				}
				ms, bare := tc.duration(t, line)
				if n, ok := ms.(float64); !ok || n < 0 || bare {
					t.Errorf("the request's log line has duration_ms %v and a bare duration %v; want a number of milliseconds alone:\n%s", ms, bare, line)
				}
				return
			}
			t.Errorf("no log line names the request %s:\n%s", id, logs)
		})
	}
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

func TestTheBinaryExplainsItself(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}} {
		t.Run(strings.Join(args, " ")+" lists every command and every setting with its default", func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
			if err != nil || stderr.Len() != 0 {
				t.Fatalf("recipeapi %s = %v, stderr %q; want success and the help on stdout", args, err, stderr.String())
			}
			lines := strings.Split(stdout.String(), "\n")
			for _, c := range commands {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "  "+c.name+" ") }) {
					t.Errorf("recipeapi %s does not list the command %s on a line of its own", args, c.name)
				}
			}
			for _, s := range settingsOf(new(config)) {
				if s.env == "" {
					continue // a command's own flag, which its -h lists
				}
				want := s.fallback
				if want == "" {
					want = s.shown
				}
				if !slices.ContainsFunc(lines, func(l string) bool {
					return strings.HasPrefix(l, "  "+s.env+" ") && strings.Contains(l, want)
				}) {
					t.Errorf("recipeapi %s has no line for %s with its default %q", args, s.env, want)
				}
			}
		})
	}

	t.Run("every variable loadConfig reads is in the help's settings", func(t *testing.T) {
		listed := map[string]bool{}
		for _, s := range settingsOf(new(config)) {
			listed[s.env] = true
		}
		for _, c := range commands {
			command := c.name
			args := map[string][]string{"createsuperuser": {"-email", "a@example.com"}, "backup": {"-o", "copy.db"}}[command]
			read := map[string]bool{}
			if _, err := loadConfig(command, args, func(name string) string { read[name] = true; return "" }, io.Discard); err != nil {
				t.Fatalf("loadConfig(%s) = %v", command, err)
			}
			for name := range read {
				if !listed[name] {
					t.Errorf("loadConfig(%s) reads %s, which the help does not list", command, name)
				}
			}
		}
	})

	t.Run("the defaults the help shows are the ones loadConfig applies", func(t *testing.T) {
		unset, err := loadConfig("serve", nil, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range settingsOf(new(config)) {
			if s.fallback == "" {
				continue
			}
			set, err := loadConfig("serve", nil, func(name string) string {
				if name == s.env {
					return s.fallback
				}
				return ""
			}, io.Discard)
			if err != nil || !reflect.DeepEqual(set, unset) {
				t.Errorf("%s=%s gives %+v, %v; want the same settings as leaving it unset, %+v", s.env, s.fallback, set, err, unset)
			}
		}
	})
}

// serveOnce starts the serve command, waits until it is healthy, stops it,
// and returns what it printed and logged.
func serveOnce(t *testing.T, env map[string]string) (stdout, stderr string) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-addr", addr}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &logs)
	}()
	waitForHealthy(t, "http://"+addr)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	return out.String(), logs.String()
}

func TestFirstSuperuserPasswordIsConfirmedOrSaidToBeIgnored(t *testing.T) {
	const password = "given-password-123"
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER": "chef@example.com", "FIRST_SUPERUSER_PW": password,
		"DATABASE_PATH": filepath.Join(t.TempDir(), "first.db")}

	t.Run("a first start says it created the superuser with the given password, without printing it", func(t *testing.T) {
		stdout, stderr := serveOnce(t, env)
		if !strings.Contains(stdout, "Created the first superuser chef@example.com") || !strings.Contains(stdout, "FIRST_SUPERUSER_PW") {
			t.Errorf("first start printed %q; want a line naming chef@example.com and FIRST_SUPERUSER_PW", stdout)
		}
		if strings.Contains(stdout+stderr, password) {
			t.Errorf("the given password was printed or logged")
		}
		if strings.Contains(stderr, "ignored") {
			t.Errorf("first start logged that the password is ignored:\n%s", stderr)
		}
	})
	t.Run("a later start logs once that the password is ignored and names createsuperuser", func(t *testing.T) {
		stdout, stderr := serveOnce(t, env)
		var said []string
		for line := range strings.Lines(stderr) {
			if strings.Contains(line, "FIRST_SUPERUSER_PW") {
				said = append(said, line)
			}
		}
		if len(said) != 1 || !strings.Contains(said[0], "ignored") || !strings.Contains(said[0], "createsuperuser") {
			t.Errorf("a later start logged %q; want one line saying FIRST_SUPERUSER_PW is ignored and naming createsuperuser", said)
		}
		if stdout != "" || strings.Contains(stderr, password) {
			t.Errorf("a later start printed %q, or logged the password", stdout)
		}
	})
	t.Run("a later start without the password says nothing of it", func(t *testing.T) {
		quiet := maps.Clone(env)
		delete(quiet, "FIRST_SUPERUSER_PW")
		if _, stderr := serveOnce(t, quiet); strings.Contains(stderr, "FIRST_SUPERUSER_PW") {
			t.Errorf("a start without FIRST_SUPERUSER_PW logged about it:\n%s", stderr)
		}
	})
}

// TestVersionIsStampedByTheLinker builds the binary with -X main.version,
// as deploy/Dockerfile does: -X on a name that does not exist (or is a
// constant) is silently ignored, so only a real build shows that it works.
//
// It builds with the compiler settings this test binary was built with,
// not the Dockerfile's -trimpath and CGO_ENABLED=0: those change how every
// package compiles, SQLite's too, so a cold go test would compile them all
// a second time. With the same settings every package comes from the build
// cache that go test just filled, and only the link is new. What is
// checked, -X, is a link flag, and the link flags are the Dockerfile's.
func TestVersionIsStampedByTheLinker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, which -short asks to leave out")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		// go test puts its own GOROOT/bin first on PATH, so this skips only
		// a test binary run by hand where no Go toolchain is, never go test.
		t.Skip("no go tool on PATH: this is not a go test run")
	}
	bin := filepath.Join(t.TempDir(), "recipeapi")
	args := []string{"build", "-ldflags", "-s -w -X main.version=v9.9.9", "-o", bin}
	if builtWith("-race") {
		args = append(args, "-race") // else every package compiles again, without it
	}
	build := exec.CommandContext(t.Context(), goTool, append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "recipeapi v9.9.9, ") {
		t.Errorf("recipeapi version = %q, %v; want it to name v9.9.9", out, err)
	}
}

// builtWith reports whether the running binary was built with the boolean
// build flag name (such as "-race") set.
func builtWith(name string) bool {
	info, ok := debug.ReadBuildInfo()
	return ok && slices.ContainsFunc(info.Settings, func(s debug.BuildSetting) bool {
		return s.Key == name && s.Value == "true"
	})
}
