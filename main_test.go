// main_test.go holds the test harness that every test file shares, and the
// tests of configuration, start-up and stop (main.go) and of the HTTP
// plumbing (http.go).
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// testBcryptCost keeps tests fast; the service's default stays 12.
const testBcryptCost = 4

// testEnv is the real service over a fresh SQLite file in t.TempDir(),
// driven through its real handler.
type testEnv struct {
	t         testing.TB
	cfg       config
	store     *store
	passwords *passwordHasher
	handler   http.Handler
	logs      *bytes.Buffer
}

// newTestEnv starts a service with test settings; change lets a test
// adjust them first. The database is seeded as on a first start, with the
// superuser admin@recipeapi.com whose password is adminPassword.
func newTestEnv(t testing.TB, change ...func(*config)) *testEnv {
	t.Helper()
	cfg := newTestConfig(t)
	for _, c := range change {
		c(&cfg)
	}
	return startTestEnv(t, cfg, time.Now)
}

// newTestConfig is the settings of newTestEnv, for a test that starts with
// startTestEnv and a clock of its own: a database file of its own, a fixed
// secret, cost-4 bcrypt, and no limit (0) on login attempts, signups or
// recipe creations, which a test of a limit sets (see defaultLimits).
func newTestConfig(t testing.TB) config {
	return config{
		dbPath:                 filepath.Join(t.TempDir(), "test.db"),
		tokenSecret:            []byte("test-secret-test-secret-test-secret!"),
		accessTokenLifetime:    time.Hour,
		refreshTokenLifetime:   24 * time.Hour,
		bcryptCost:             testBcryptCost,
		firstSuperuser:         "admin@recipeapi.com",
		firstSuperuserPassword: adminPassword,
		loginAttemptsPerMinute: 0,
		signupsPerHour:         0,
		recipeCreationBurst:    0,
	}
}

// defaultLimits is a change for newTestEnv, or for a config before
// startTestEnv: the attempt limits at the defaults a server starts with.
func defaultLimits(c *config) {
	defaults, err := loadConfig("serve", nil, func(string) string { return "" }, io.Discard)
	if err != nil {
		panic(err)
	}
	c.loginAttemptsPerMinute = defaults.loginAttemptsPerMinute
	c.signupsPerHour = defaults.signupsPerHour
	c.recipeCreationBurst = defaults.recipeCreationBurst
}

// onDatabase is a change for newTestEnv: start over the database file at
// path, which a test made or will reopen, instead of a new one.
func onDatabase(path string) func(*config) {
	return func(c *config) { c.dbPath = path }
}

const adminPassword = "admin-password"

// startTestEnv starts a service with exactly cfg and the clock now: for a
// test that reopens a database file it made, or moves time by hand.
// Every other test starts with newTestEnv.
func startTestEnv(t testing.TB, cfg config, now func() time.Time) *testEnv {
	t.Helper()
	logs := &bytes.Buffer{}
	var logTo io.Writer = logs
	if _, isBenchmark := t.(*testing.B); isBenchmark {
		// Logging stays on, as in production, but into a discarding
		// handler, so that the numbers do not depend on a growing buffer.
		logTo = io.Discard
	}
	logger := slog.New(slog.NewTextHandler(logTo, nil))
	s, err := openServices(t.Context(), cfg, logger, io.Discard)
	if err != nil {
		t.Fatalf("openServices: %v", err)
	}
	t.Cleanup(s.close)
	return &testEnv{t: t, cfg: cfg, store: s.store, passwords: s.passwords, handler: newServer(cfg, logger, now, s), logs: logs}
}

// testClock is a clock that a test moves by hand, safe to read from the
// server's goroutines. It starts on a whole second, so that "the same
// second" is certain.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock {
	return &testClock{now: time.Now().Truncate(time.Second)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// reportingTo is e with its helpers failing t: a fuzz target must not
// fail the F that made e.
func (e *testEnv) reportingTo(t testing.TB) *testEnv {
	on := *e
	on.t = t
	return &on
}

// newRequest builds a request; header is name, value, name, value, …
func newRequest(method, target string, body io.Reader, header ...string) *http.Request {
	r := httptest.NewRequest(method, target, body)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Set(header[i], header[i+1])
	}
	return r
}

// serve sends r through the service and returns the response, with r on
// it so that a failure can name the request.
func (e *testEnv) serve(r *http.Request) *http.Response {
	rec := httptest.NewRecorder()
	e.handler.ServeHTTP(rec, r)
	resp := rec.Result()
	resp.Request = r
	return resp
}

func (e *testEnv) send(method, target string, body io.Reader, header ...string) *http.Response {
	return e.serve(newRequest(method, target, body, header...))
}

func (e *testEnv) get(target string, header ...string) *http.Response {
	return e.send("GET", target, nil, header...)
}

func (e *testEnv) sendJSON(method, target, body string, header ...string) *http.Response {
	return e.send(method, target, strings.NewReader(body),
		append([]string{"Content-Type", "application/json"}, header...)...)
}

func (e *testEnv) postJSON(target, body string, header ...string) *http.Response {
	return e.sendJSON("POST", target, body, header...)
}

func (e *testEnv) postForm(target string, form url.Values, header ...string) *http.Response {
	return e.serve(newRequest("POST", target, strings.NewReader(form.Encode()),
		append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...))
}

func (e *testEnv) postMultipart(target string, form map[string]string) *http.Response {
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for name, value := range form {
		mw.WriteField(name, value)
	}
	mw.Close()
	return e.serve(newRequest("POST", target, &body, "Content-Type", mw.FormDataContentType()))
}

// signup creates a user and fails the test if that does not work.
func (e *testEnv) signup(email, password string) userView {
	e.t.Helper()
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	resp := e.postJSON("/api/v1/auth/signup", string(body))
	expectStatus(e.t, resp, http.StatusCreated)
	return decodeBody[userView](e.t, resp)
}

// tryLogin sends a login form, as the tutorial's clients do, and returns
// the answer, whatever it is.
func (e *testEnv) tryLogin(email, password string) *http.Response {
	return e.postForm("/api/v1/auth/login", url.Values{"username": {email}, "password": {password}})
}

// loginTokens logs the user in and returns the whole token response,
// failing the test unless it is one (see expectTokenResponse).
func (e *testEnv) loginTokens(email, password string) tokenResponse {
	e.t.Helper()
	return expectTokenResponse(e.t, e, e.tryLogin(email, password))
}

// login returns an access token for the user, failing the test if it cannot.
func (e *testEnv) login(email, password string) string {
	e.t.Helper()
	return e.loginTokens(email, password).AccessToken
}

func bearer(token string) []string { return []string{"Authorization", "Bearer " + token} }

// expectStatus fails the test now unless resp has the wanted status.
func expectStatus(t testing.TB, resp *http.Response, want int) {
	t.Helper()
	if resp.StatusCode != want {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("%s %s = %d %s, want %d", resp.Request.Method, resp.Request.URL, resp.StatusCode, body, want)
	}
}

// expectDetail checks a {"detail": "..."} error response.
func expectDetail(t testing.TB, resp *http.Response, status int, detail string) {
	t.Helper()
	expectStatus(t, resp, status)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	got := decodeBody[struct {
		Detail string `json:"detail"`
	}](t, resp).Detail
	if got != detail {
		t.Errorf("detail = %q, want %q", got, detail)
	}
}

// expectProblems checks a 422 and that its problems are at exactly these
// locations, each written as "body.email".
func expectProblems(t testing.TB, resp *http.Response, wantLocs ...string) {
	t.Helper()
	expectStatus(t, resp, http.StatusUnprocessableEntity)
	got := decodeBody[struct {
		Detail []problem `json:"detail"`
	}](t, resp).Detail
	var locs []string
	for _, p := range got {
		if p.Msg == "" || p.Type == "" {
			t.Errorf("problem %v has no msg or type", p)
		}
		locs = append(locs, strings.Join(p.Loc, "."))
	}
	if strings.Join(locs, " ") != strings.Join(wantLocs, " ") {
		t.Errorf("422 problems at %q, want %q", locs, wantLocs)
	}
}

func decodeBody[T any](t testing.TB, resp *http.Response) T {
	t.Helper()
	var v T
	body, _ := io.ReadAll(resp.Body)
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("decode %s: %v", body, err)
	}
	return v
}

func TestUnknownPathsAndMethodsAnswerJSON(t *testing.T) {
	e := newTestEnv(t)
	t.Run("an unknown path is a JSON 404", func(t *testing.T) {
		expectDetail(t, e.get("/no/such/page"), http.StatusNotFound, "Not Found")
	})
	t.Run("an unclean path is still redirected to its clean form", func(t *testing.T) {
		resp := e.get("//no/such/page")
		if resp.StatusCode != http.StatusTemporaryRedirect && resp.StatusCode != http.StatusMovedPermanently ||
			resp.Header.Get("Location") != "/no/such/page" {
			t.Errorf("GET //no/such/page = %d Location %q, want a redirect to /no/such/page", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("a wrong method is a JSON 405 that keeps the Allow header", func(t *testing.T) {
		resp := e.serve(newRequest("DELETE", "/api/v1/auth/me", nil))
		if allow := resp.Header.Get("Allow"); !strings.Contains(allow, "GET") {
			t.Errorf("Allow = %q, want GET listed", allow)
		}
		expectDetail(t, resp, http.StatusMethodNotAllowed, "Method Not Allowed")
	})
}

func TestEveryResponseCarriesSecurityHeaders(t *testing.T) {
	e := newTestEnv(t)
	for _, path := range []string{"/", "/api/v1/recipes/1", "/nope", "/docs"} {
		resp := e.get(path)
		for name, want := range map[string]string{
			"X-Content-Type-Options": "nosniff",
			"X-Frame-Options":        "DENY",
			"Referrer-Policy":        "no-referrer",
		} {
			if got := resp.Header.Get(name); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, name, got, want)
			}
		}
		if csp := resp.Header.Get("Content-Security-Policy"); !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy = %q, want frame-ancestors 'none'", path, csp)
		}
	}
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

func TestPanicsBecomeAJSON500WithTheCauseOnlyInTheLog(t *testing.T) {
	e := newTestEnv(t)
	a := &app{logger: slog.New(slog.NewTextHandler(e.logs, nil))}
	h := a.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("secret cause") }))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, newRequest("GET", "/", nil))
	resp := rec.Result()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 500 || string(body) != `{"detail":"Internal Server Error"}` {
		t.Errorf("panic = %d %s, want 500 Internal Server Error", resp.StatusCode, body)
	}
	if !strings.Contains(e.logs.String(), "secret cause") {
		t.Errorf("log does not name the cause: %s", e.logs)
	}
}

func TestCORS(t *testing.T) {
	e := newTestEnv(t, func(c *config) { c.corsOrigins = []string{"http://localhost:3000"} })
	preflight := func(origin string) *http.Response {
		return e.serve(newRequest("OPTIONS", "/api/v1/auth/me", nil,
			"Origin", origin, "Access-Control-Request-Method", "GET",
			"Access-Control-Request-Headers", "authorization"))
	}
	t.Run("a configured origin's preflight is allowed", func(t *testing.T) {
		resp := preflight("http://localhost:3000")
		expectStatus(t, resp, http.StatusOK)
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:3000" {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
		if got := resp.Header.Get("Access-Control-Allow-Headers"); got != "authorization" {
			t.Errorf("Access-Control-Allow-Headers = %q", got)
		}
	})
	t.Run("a configured origin's request gets the CORS headers", func(t *testing.T) {
		resp := e.get("/api/v1/recipes/1", "Origin", "http://localhost:3000")
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "http://localhost:3000" {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
	})
	t.Run("another origin gets no CORS headers", func(t *testing.T) {
		for _, resp := range []*http.Response{preflight("http://evil.example"), e.get("/api/v1/recipes/1", "Origin", "http://evil.example")} {
			if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "" {
				t.Errorf("Access-Control-Allow-Origin = %q for another origin", got)
			}
		}
	})
	t.Run("another origin's request is served as without an Origin", func(t *testing.T) {
		expectStatus(t, e.get("/api/v1/recipes/1", "Origin", "http://evil.example"), http.StatusOK)
	})
}

func TestACORSPreflightFromAnOriginNotConfiguredSaysWhichSettingIsMissing(t *testing.T) {
	preflight := func(e *testEnv, origin string) *http.Response {
		return e.serve(newRequest("OPTIONS", "/api/v1/auth/login", nil,
			"Origin", origin, "Access-Control-Request-Method", "POST"))
	}
	for _, tc := range []struct {
		name    string
		origins []string
	}{
		{"with no origins configured", nil},
		{"with other origins configured", []string{"http://app.example"}},
	} {
		t.Run(tc.name+", the preflight is a 403 naming BACKEND_CORS_ORIGINS, with no CORS headers", func(t *testing.T) {
			e := newTestEnv(t, func(c *config) { c.corsOrigins = tc.origins })
			resp := preflight(e, "http://localhost:3000")
			for name := range resp.Header {
				if strings.HasPrefix(name, "Access-Control-") {
					t.Errorf("OPTIONS /api/v1/auth/login from another origin: %s = %q, want no CORS headers", name, resp.Header.Get(name))
				}
			}
			expectDetail(t, resp, http.StatusForbidden,
				"Cross-origin request refused: this origin is not in the server's BACKEND_CORS_ORIGINS")
			if logs := e.logs.String(); !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "BACKEND_CORS_ORIGINS") ||
				!strings.Contains(logs, "origin=http://localhost:3000") {
				t.Errorf("the log has no warning naming BACKEND_CORS_ORIGINS and the origin:\n%s", logs)
			}
		})
		t.Run(tc.name+", requests that are not preflights are unchanged", func(t *testing.T) {
			e := newTestEnv(t, func(c *config) { c.corsOrigins = tc.origins })
			expectStatus(t, e.get("/api/v1/recipes/1", "Origin", "http://localhost:3000"), http.StatusOK)
			// An OPTIONS that asks no method is no preflight: the mux's 405.
			resp := e.serve(newRequest("OPTIONS", "/api/v1/auth/login", nil, "Origin", "http://localhost:3000"))
			expectDetail(t, resp, http.StatusMethodNotAllowed, "Method Not Allowed")
			if strings.Contains(e.logs.String(), "BACKEND_CORS_ORIGINS") {
				t.Errorf("a request that is no preflight logged a CORS refusal:\n%s", e.logs)
			}
		})
	}

	t.Run("the log names each origin once, then at most one refusal a minute", func(t *testing.T) {
		clock := newTestClock()
		e := startTestEnv(t, newTestConfig(t), clock.Now)
		refusals := func() int { return strings.Count(e.logs.String(), "CORS preflight refused") }
		for range 3 {
			expectStatus(t, preflight(e, "http://localhost:3000"), http.StatusForbidden)
		}
		if got := refusals(); got != 1 {
			t.Errorf("three preflights from one origin logged %d refusals, want 1", got)
		}
		for i := range 2 * maxLoggedRefusedOrigins {
			expectStatus(t, preflight(e, fmt.Sprintf("http://site%d.example", i)), http.StatusForbidden)
		}
		if got, want := refusals(), maxLoggedRefusedOrigins+1; got != want {
			t.Errorf("preflights from %d origins logged %d refusals, want %d: the first %d origins and one more",
				2*maxLoggedRefusedOrigins+1, got, want, maxLoggedRefusedOrigins)
		}
		clock.advance(refusedOriginLogInterval)
		for i := range 3 {
			preflight(e, fmt.Sprintf("http://later%d.example", i))
		}
		if got, want := refusals(), maxLoggedRefusedOrigins+2; got != want {
			t.Errorf("after a minute, three more origins' preflights brought the refusals to %d, want %d", got, want)
		}
	})

	t.Run("a long origin is logged cut short", func(t *testing.T) {
		e := newTestEnv(t)
		long := "http://" + strings.Repeat("a", 10000) + ".example"
		expectStatus(t, preflight(e, long), http.StatusForbidden)
		for line := range strings.Lines(e.logs.String()) {
			if strings.Contains(line, "CORS preflight refused") && (len(line) > 1000 || !strings.Contains(line, "…(truncated)")) {
				t.Errorf("a 10 KB origin was logged in a line of %d bytes, or not marked as cut: %.300s", len(line), line)
			}
		}
	})
}

func TestLoadConfig(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(name string) string { return vars[name] }
	}
	t.Run("defaults are the contract's", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.addr != "localhost:8001" || cfg.dbPath != "example.db" || cfg.bcryptCost != 12 ||
			cfg.accessTokenLifetime != 11520*time.Minute || cfg.refreshTokenLifetime != 43200*time.Minute ||
			cfg.loginAttemptsPerMinute != 10 || cfg.signupsPerHour != 100 || cfg.recipeCreationBurst != 200 || cfg.maxConnections != 4096 ||
			cfg.firstSuperuser != "admin@recipeapi.com" || cfg.tokenSecret != nil || cfg.corsOrigins != nil {
			t.Errorf("defaults = %+v", cfg)
		}
	})
	t.Run("flags win over the environment", func(t *testing.T) {
		cfg, err := loadConfig("serve", []string{"-addr", "127.0.0.1:9", "-db", "flag.db"},
			env(map[string]string{"ADDR": "env:1", "DATABASE_PATH": "env.db"}), io.Discard)
		if err != nil || cfg.addr != "127.0.0.1:9" || cfg.dbPath != "flag.db" {
			t.Errorf("got %q %q %v, want the flags' values", cfg.addr, cfg.dbPath, err)
		}
	})
	t.Run("the environment wins over the defaults", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(map[string]string{
			"ADDR": "127.0.0.1:7", "DATABASE_PATH": "env.db", "BCRYPT_COST": "5",
			"ACCESS_TOKEN_EXPIRE_MINUTES": "30", "REFRESH_TOKEN_EXPIRE_MINUTES": "90", "LOGIN_ATTEMPTS_PER_MINUTE": "0", "SIGNUPS_PER_HOUR": "0",
			"RECIPE_CREATION_BURST": "5000", "JWT_SECRET": strings.Repeat("k", 32), "BACKEND_CORS_ORIGINS": `["http://a.example/", "http://b.example"]`,
		}), io.Discard)
		if err != nil || cfg.addr != "127.0.0.1:7" || cfg.dbPath != "env.db" || cfg.bcryptCost != 5 ||
			cfg.accessTokenLifetime != 30*time.Minute || cfg.refreshTokenLifetime != 90*time.Minute ||
			cfg.loginAttemptsPerMinute != 0 || cfg.signupsPerHour != 0 || cfg.recipeCreationBurst != 5000 ||
			string(cfg.tokenSecret) != strings.Repeat("k", 32) ||
			strings.Join(cfg.corsOrigins, " ") != "http://a.example http://b.example" {
			t.Errorf("got %+v, %v", cfg, err)
		}
	})
	t.Run("trusted proxies are addresses or prefixes, IPv4-mapped ones as IPv4", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, ::1, 192.0.2.7, ::ffff:198.51.100.0/120"}), io.Discard)
		if got := fmt.Sprint(cfg.trustedProxies); err != nil || got != "[10.0.0.0/8 ::1/128 192.0.2.7/32 198.51.100.0/24]" {
			t.Errorf("TRUSTED_PROXIES = %s, %v", got, err)
		}
		if _, err := loadConfig("serve", nil, env(map[string]string{"TRUSTED_PROXIES": "proxy.example"}), io.Discard); err == nil {
			t.Error("a host name was accepted as a trusted proxy")
		}
	})
	t.Run("the connection cap comes from -max-connections over MAX_CONNECTIONS", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(map[string]string{"MAX_CONNECTIONS": "10"}), io.Discard)
		if err != nil || cfg.maxConnections != 10 {
			t.Errorf("MAX_CONNECTIONS=10: cap %d, %v; want 10", cfg.maxConnections, err)
		}
		cfg, err = loadConfig("serve", []string{"-max-connections", "7"}, env(map[string]string{"MAX_CONNECTIONS": "10"}), io.Discard)
		if err != nil || cfg.maxConnections != 7 {
			t.Errorf("-max-connections 7 over MAX_CONNECTIONS=10: cap %d, %v; want 7", cfg.maxConnections, err)
		}
	})
	t.Run("CORS origins may be a comma-separated list", func(t *testing.T) {
		cfg, _ := loadConfig("serve", nil, env(map[string]string{"BACKEND_CORS_ORIGINS": "http://a.example, http://b.example"}), io.Discard)
		if strings.Join(cfg.corsOrigins, " ") != "http://a.example http://b.example" {
			t.Errorf("origins = %q", cfg.corsOrigins)
		}
	})
	for _, tc := range []struct {
		name, variable, value, wantInError string
	}{
		{"a secret under 32 bytes is refused", "JWT_SECRET", "short-secret", "at least 32"},
		{"an unparsable lifetime is refused", "ACCESS_TOKEN_EXPIRE_MINUTES", "soon", "ACCESS_TOKEN_EXPIRE_MINUTES"},
		{"a zero lifetime is refused", "ACCESS_TOKEN_EXPIRE_MINUTES", "0", "ACCESS_TOKEN_EXPIRE_MINUTES"},
		{"an unparsable refresh lifetime is refused", "REFRESH_TOKEN_EXPIRE_MINUTES", "1d", "REFRESH_TOKEN_EXPIRE_MINUTES"},
		{"a bcrypt cost under 4 is refused", "BCRYPT_COST", "3", "BCRYPT_COST"},
		{"a bcrypt cost over 31 is refused", "BCRYPT_COST", "32", "BCRYPT_COST"},
		{"a negative login limit is refused", "LOGIN_ATTEMPTS_PER_MINUTE", "-1", "LOGIN_ATTEMPTS_PER_MINUTE"},
		{"a negative signup limit is refused", "SIGNUPS_PER_HOUR", "-1", "SIGNUPS_PER_HOUR"},
		{"an unparsable signup limit is refused", "SIGNUPS_PER_HOUR", "lots", "SIGNUPS_PER_HOUR"},
		{"a signup limit over a million is refused", "SIGNUPS_PER_HOUR", "1000001", "from 0 to 1000000"},
		{"a negative recipe creation burst is refused", "RECIPE_CREATION_BURST", "-1", "RECIPE_CREATION_BURST"},
		{"an unparsable recipe creation burst is refused", "RECIPE_CREATION_BURST", "2e2", "RECIPE_CREATION_BURST"},
		{"a recipe creation burst over a million is refused", "RECIPE_CREATION_BURST", "1000001", "from 0 to 1000000"},
		{"a short first superuser password is refused", "FIRST_SUPERUSER_PW", "short", "FIRST_SUPERUSER_PW"},
		{"an invalid first superuser email is refused", "FIRST_SUPERUSER", "admin", "FIRST_SUPERUSER"},
		{"a broken JSON origin list is refused", "BACKEND_CORS_ORIGINS", `["http://a`, "BACKEND_CORS_ORIGINS"},
		{"a connection cap of zero is refused", "MAX_CONNECTIONS", "0", "MAX_CONNECTIONS"},
		{"a negative connection cap is refused", "MAX_CONNECTIONS", "-1", "MAX_CONNECTIONS"},
		{"an unparsable connection cap is refused", "MAX_CONNECTIONS", "many", "MAX_CONNECTIONS"},
		{"a wildcard origin is refused, naming it", "BACKEND_CORS_ORIGINS", "*", `"*"`},
		{"a null origin is refused, naming it", "BACKEND_CORS_ORIGINS", "http://a.example,null", `"null"`},
		{"an origin without a scheme is refused, naming it", "BACKEND_CORS_ORIGINS", "localhost:3000", `"localhost:3000"`},
		{"an origin with a path is refused, naming it", "BACKEND_CORS_ORIGINS", `["http://a.example/app"]`, `"http://a.example/app"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig("serve", nil, env(map[string]string{tc.variable: tc.value}), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantInError) {
				t.Fatalf("%s=%q: error %v, want one naming %q", tc.variable, tc.value, err, tc.wantInError)
			}
			if tc.variable == "JWT_SECRET" && strings.Contains(err.Error(), tc.value) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
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

func TestRunRefusesBadSettingsWithOneLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"a short secret", nil, map[string]string{"JWT_SECRET": "too-short"}, "JWT_SECRET"},
		{"an unwritable database", []string{"-db", "/proc/no/such/dir/app.db"}, nil, "database"},
		{"an unknown flag", []string{"-nope"}, nil, "nope"},
		{"a connection cap of zero", []string{"-max-connections", "0"}, nil, "MAX_CONNECTIONS"},
		{"a connection cap that is not a number", nil, map[string]string{"MAX_CONNECTIONS": "lots"}, "MAX_CONNECTIONS"},
		{"a short secret and a bad connection cap at once", nil, map[string]string{"JWT_SECRET": "too-short", "MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"},
		{"a CORS origin that is no origin", nil, map[string]string{"BACKEND_CORS_ORIGINS": "http://ok.example, notaurl"}, `"notaurl"`},
		// Latin-1, which no login form can send: nobody could log in with it.
		{"a first superuser password that is not UTF-8", nil, map[string]string{"FIRST_SUPERUSER_PW": "caf\xe9-password"}, "FIRST_SUPERUSER_PW is not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-db", filepath.Join(t.TempDir(), "x.db"), "-addr", "127.0.0.1:0"}, tc.args...)
			var stderr bytes.Buffer
			err := run(t.Context(), args, func(k string) string { return tc.env[k] }, strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run = %v, want one line naming %q", err, tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("run also wrote %q; the one line it returns should be all", stderr.String())
			}
		})
	}
}

// freeLoopbackAddress returns a 127.0.0.1 address with a port that was free
// a moment ago.
func freeLoopbackAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// waitForHealthy polls /healthz until it answers 200, or fails the test.
func waitForHealthy(t *testing.T, base string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s/healthz did not answer 200 within 10s", base)
}

// syncBuffer is a bytes.Buffer that a server goroutine may write while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func TestAClientThatGoesAwayIsNoInternalError(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")
	waiting, release := holdHashing(e)
	defer release()
	ctx, cancel := context.WithCancel(t.Context())
	answer := make(chan *http.Response, 1)
	go func() {
		r := newRequest("POST", "/api/v1/auth/login",
			strings.NewReader(url.Values{"username": {"cook@example.com"}, "password": {"password123"}}.Encode()),
			"Content-Type", "application/x-www-form-urlencoded")
		answer <- e.serve(r.WithContext(ctx))
	}()
	for waiting() == 0 {
		time.Sleep(time.Millisecond)
	}
	cancel()
	if resp := <-answer; resp.StatusCode != errClientGone.status {
		t.Errorf("a login whose client left while it waited to hash = %d, want %d", resp.StatusCode, errClientGone.status)
	}
	if logs := e.logs.String(); strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "client went away") {
		t.Errorf("the log says an internal error happened, or not that the client went away:\n%s", logs)
	}
}
