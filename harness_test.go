// harness_test.go holds what the test files share, and nothing else: the
// service over a real SQLite file in t.TempDir(), driven through its real
// handler (testEnv); a clock a test can move; request, login and recipe
// helpers; the checks of a status, a detail and a list of problems; a raw
// view of the database beside the service; and TestMain, which lets this
// test binary also run as the service in a child process.
//
// Every other X_test.go tests X.go, except three that say so at their
// top: openapi_test.go checks openapi.json, security_test.go checks that
// the tests SECURITY.md names exist, and load_test.go is the load script
// behind the loadtest build tag.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"database/sql"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// --- The test binary as the service

// TestMain lets this test binary also be the service itself, so that a
// test can run it as a child process and kill it (see startChild), or run
// one of its tests in a child (see inChild). The load script's floor is
// another role, in load_test.go.
func TestMain(m *testing.M) {
	if os.Getenv("RECIPEAPI_RUN_AS_SERVICE") == "1" {
		if err := run(context.Background(), nil, os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
			fmt.Fprintln(os.Stderr, "recipeapi:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	// The test process starts as a serving process does, with GOMAXPROCS
	// raised for the hashing workers, so that the tests that serve here
	// change nothing that the tests after them read. A child that runs one
	// test for its parent (inChild) starts as the program does.
	if os.Getenv(childTestEnv) == "" {
		reserveProcsForHashing()
	}
	os.Exit(m.Run())
}

// childTestEnv names, in a child process of this test binary, the test
// that it runs for its parent (see inChild).
const childTestEnv = "RECIPEAPI_CHILD_TEST"

// inChild reports whether this process is the child that runs t for its
// parent. If not, it runs t again in a child, for a test that changes what
// the whole process shares (GOMAXPROCS, the main thread), and fails t
// unless the child's t passed. The child counts in -cover's figures.
func inChild(t *testing.T) bool {
	t.Helper()
	if os.Getenv(childTestEnv) == t.Name() {
		return true
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	if dir := flag.Lookup("test.gocoverdir"); dir != nil && dir.Value.String() != "" {
		cmd.Args = append(cmd.Args, "-test.gocoverdir="+dir.Value.String())
	}
	cmd.Env = append(os.Environ(), childTestEnv+"="+t.Name())
	out, err := cmd.CombinedOutput()
	// -test.v prints the line, so that a child that ran no test fails.
	if err != nil || !strings.Contains(string(out), "--- PASS: "+t.Name()+" ") {
		t.Errorf("%s in a child process: %v\n%s", t.Name(), err, out)
	}
	return false
}

// --- The service under test, its settings and its clock

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
		tokenSecret:            bytes.Clone(testSecret),
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

// envOf is a getenv that reads vars.
func envOf(vars map[string]string) func(string) string {
	return func(name string) string { return vars[name] }
}

// --- Requests, and a user's first steps

// burstStatuses makes n attempts at once and counts the statuses they get.
func burstStatuses(n int, attempt func(i int) *http.Response) map[int]int {
	statuses := make(chan int, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { statuses <- attempt(i).StatusCode })
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	return counts
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

// caseVariant returns email with the letters chosen by the bits of n in
// upper case: each n below 2^(letters) gives a different spelling.
func caseVariant(email string, n int) string {
	out := []rune(email)
	bit := 0
	for i, r := range out {
		if unicode.IsLetter(r) {
			if n&(1<<bit) != 0 {
				out[i] = unicode.ToUpper(r)
			}
			bit++
		}
	}
	return string(out)
}

// --- Checks of an answer

// waitFor polls cond until it holds, failing the test after a few polls
// of the store's external-write watch.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * externalWritePoll); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited in vain for %s", what)
		}
	}
}

// checkFuzzResponse fails a fuzz input whose answer is not one of the
// allowed statuses, or not JSON.
func checkFuzzResponse(t *testing.T, resp *http.Response, allowed ...int) {
	t.Helper()
	if !slices.Contains(allowed, resp.StatusCode) {
		body, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d %s, want one of %v", resp.StatusCode, body, allowed)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("Content-Type %q, want application/json", ct)
	}
}

// problemsOf returns the problems of a 422, failing the test if resp is
// not one.
func problemsOf(t testing.TB, resp *http.Response) []problem {
	t.Helper()
	expectStatus(t, resp, http.StatusUnprocessableEntity)
	return decodeBody[struct {
		Detail []problem `json:"detail"`
	}](t, resp).Detail
}

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

// readBody returns the whole body of resp.
func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(body)
}

// within returns what f returns, failing the test if f takes over 30 s,
// as a bcrypt run at an unusable cost could.
func within[T any](t *testing.T, what string, f func() T) T {
	t.Helper()
	done := make(chan T, 1)
	go func() { done <- f() }()
	select {
	case v := <-done:
		return v
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not finish within 30 s", what)
		panic("unreachable")
	}
}

// goroutines is the number of goroutines whose stack, as a dump of every
// goroutine's stack shows it (the function names in it, with their
// arguments), matches: a way to see that a goroutine waits where a test
// needs it to, when the code keeps no count of its waiters.
func goroutines(match func(stack string) bool) int {
	var dump strings.Builder
	pprof.Lookup("goroutine").WriteTo(&dump, 2)
	n := 0
	for stack := range strings.SplitSeq(dump.String(), "\n\n") {
		if match(stack) {
			n++
		}
	}
	return n
}

// --- Tokens and sessions

var (
	testSecret = []byte("test-secret-test-secret-test-secret!")
	testNow    = time.Unix(1700000000, 0)
)

// makeToken signs any header and payload text with secret, so that tests
// can build tokens this service would never issue.
func makeToken(secret []byte, header, payload string) string {
	enc := base64.RawURLEncoding
	signingInput := enc.EncodeToString([]byte(header)) + "." + enc.EncodeToString([]byte(payload))
	return signingInput + "." + enc.EncodeToString(newTokenKey(secret).sum([]byte(signingInput)))
}

const goodHeader = `{"alg":"HS256","typ":"JWT"}`

// payloadOf decodes the payload of token, for a test to read a claim that
// verifyAccessToken checks but does not return.
func payloadOf(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	var payload map[string]any
	if err == nil {
		err = json.Unmarshal(raw, &payload)
	}
	if err != nil {
		t.Fatalf("payload of %q: %v", token, err)
	}
	return payload
}

// expectTokenResponse checks an answer "like login" (RFC 6749 §5.1) and
// returns it: 200, not to be cached, a bearer access token,
// a refresh token of 48 random bytes (a session's handle, then 32 bytes
// new at each refresh) in unpadded base64url, and expires_in equal to the
// access token lifetime.
func expectTokenResponse(t testing.TB, e *testEnv, resp *http.Response) tokenResponse {
	t.Helper()
	expectStatus(t, resp, http.StatusOK)
	what := resp.Request.Method + " " + resp.Request.URL.String()
	if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("%s: Cache-Control = %q, want no-store", what, cc)
	}
	got := decodeBody[tokenResponse](t, resp)
	if got.TokenType != "bearer" {
		t.Errorf("%s: token_type = %q, want bearer", what, got.TokenType)
	}
	if want := int64(e.cfg.accessTokenLifetime / time.Second); got.ExpiresIn != want {
		t.Errorf("%s: expires_in = %d, want %d", what, got.ExpiresIn, want)
	}
	if raw, err := base64.RawURLEncoding.Strict().DecodeString(got.RefreshToken); len(got.RefreshToken) != 64 || err != nil || len(raw) != 48 {
		t.Errorf("%s: refresh_token = %q, want 64 characters of base64url (48 bytes)", what, got.RefreshToken)
	}
	if got.AccessToken == "" {
		t.Fatalf("%s: no access_token in %+v", what, got)
	}
	return got
}

// refresh presents refreshToken as RFC 6749 §6 asks.
func refresh(e *testEnv, refreshToken string) *http.Response {
	return e.postForm("/api/v1/auth/refresh",
		url.Values{"grant_type": {"refresh_token"}, "refresh_token": {refreshToken}})
}

// mustRefresh trades refreshToken for a new pair, failing the test if
// that does not work.
func mustRefresh(t *testing.T, e *testEnv, refreshToken string) tokenResponse {
	t.Helper()
	return expectTokenResponse(t, e, refresh(e, refreshToken))
}

// expectAccessTokenWorks checks that accessToken gets userID through /me.
func expectAccessTokenWorks(t *testing.T, e *testEnv, accessToken string, userID int64) {
	t.Helper()
	resp := e.get("/api/v1/auth/me", bearer(accessToken)...)
	expectStatus(t, resp, http.StatusOK)
	if got := decodeBody[userView](t, resp); got.ID != userID {
		t.Errorf("GET /api/v1/auth/me = user %d, want %d", got.ID, userID)
	}
}

// expectAccessTokenRefused checks that /me refuses accessToken as a bad token.
func expectAccessTokenRefused(t *testing.T, e *testEnv, accessToken string) {
	t.Helper()
	resp := e.get("/api/v1/auth/me", bearer(accessToken)...)
	if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
		t.Errorf("GET /api/v1/auth/me: WWW-Authenticate = %q, want Bearer", got)
	}
	expectDetail(t, resp, http.StatusUnauthorized, "Could not validate credentials")
}

// expectRefreshTokenRefused checks that refreshToken is refused.
func expectRefreshTokenRefused(t *testing.T, e *testEnv, refreshToken string) {
	t.Helper()
	expectDetail(t, refresh(e, refreshToken), http.StatusBadRequest, "Invalid refresh token")
}

// refreshRows is how many session rows hold refreshToken's digest, that
// is, keep it as their current token.
func refreshRows(t *testing.T, e *testEnv, refreshToken string) int {
	t.Helper()
	digest := sha256.Sum256([]byte(refreshToken))
	return queryInt(t, e.store.reader, "SELECT count(*) FROM session WHERE digest = ?", digest[:])
}

// referenceAccessToken is a token as the Python reference signs it for
// userID: no "gen" claim.
func referenceAccessToken(e *testEnv, userID int64) string {
	now := time.Now().Unix()
	return makeToken(e.cfg.tokenSecret, goodHeader,
		fmt.Sprintf(`{"type":"access_token","exp":%d,"iat":%d,"sub":"%d"}`, now+3600, now, userID))
}

func passwordBody(current, next string) string {
	return fmt.Sprintf(`{"current_password":%q,"new_password":%q}`, current, next)
}

// flipLowBits returns the base64url letter that differs from c only in
// its two lowest bits, which the last letter of a 32-byte signature does
// not use.
func flipLowBits(c byte) byte {
	return base64URLAlphabet[strings.IndexByte(base64URLAlphabet, c)^1]
}

// --- The hashing pool, held busy

// queued is the number of jobs waiting for a worker.
func (p *passwordHasher) queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.Len()
}

// busy is the number of jobs the workers are running.
func (p *passwordHasher) busy() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.running)
}

// holdWorkers keeps every worker of p busy until release is called (or
// the test ends), so that a test can act while others wait to hash.
func holdWorkers(t testing.TB, p *passwordHasher) (release func()) {
	t.Helper()
	held, release := queueHolders(t, p)
	held()
	return release
}

// queueHolders queues one job for each worker of p, each of which holds
// its worker until release is called (or the test ends); held waits until
// every one of them has a worker.
func queueHolders(t testing.TB, p *passwordHasher) (held, release func()) {
	t.Helper()
	unblock := make(chan struct{})
	var running, holders sync.WaitGroup
	running.Add(p.workers)
	for range p.workers {
		holders.Go(func() {
			if err := p.do(context.Background(), func() { running.Done(); <-unblock }); err != nil {
				t.Errorf("holding a worker: %v", err)
				running.Done()
			}
		})
	}
	held = func() {
		t.Helper()
		allRunning := make(chan struct{})
		go func() { running.Wait(); close(allRunning) }()
		select {
		case <-allRunning:
		case <-time.After(5 * time.Second):
			t.Fatalf("the %d workers did not all take the holding jobs within 5 s", p.workers)
		}
	}
	var once sync.Once
	release = func() { once.Do(func() { close(unblock); holders.Wait() }) }
	t.Cleanup(release)
	return held, release
}

// answerWithHashingHeld sends a request with the hashing workers held,
// runs meanwhile, which waits for the request to queue, then lets the
// workers go and returns the answer: it shows what a request does when
// something changes while it waits to hash.
func answerWithHashingHeld(t *testing.T, e *testEnv, send func() *http.Response, meanwhile func(t *testing.T, waiting func() int)) *http.Response {
	t.Helper()
	release := holdWorkers(t, e.passwords)
	waiting := func() int { return e.passwords.queued() }
	answer := make(chan *http.Response, 1)
	go func() { answer <- send() }()
	meanwhile(t, waiting)
	release()
	return <-answer
}

// --- Recipes, searches and the home page

// The reference's three recipes, as the contract's table has them; the
// seeded superuser (id 1) submitted them.
const (
	vesuvioJSON = `{"label":"Chicken Vesuvio","source":"Serious Eats",` +
		`"url":"http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html","id":1,"submitter_id":1}`
)

// newRecipeUser signs up a user and returns it with an access token.
func newRecipeUser(e *testEnv, email string) (userView, string) {
	e.t.Helper()
	const password = "recipe-password"
	u := e.signup(email, password)
	return u, e.login(email, password)
}

// recipeBody is the JSON body of a create request.
func recipeBody(label, source, link string) string {
	b, _ := json.Marshal(map[string]string{"label": label, "source": source, "url": link})
	return string(b)
}

// postRecipe creates a recipe as the holder of token and fails the test
// unless that answers 201.
func postRecipe(t *testing.T, e *testEnv, token, label, source, link string) recipe {
	t.Helper()
	resp := e.postJSON("/api/v1/recipes/", recipeBody(label, source, link), bearer(token)...)
	expectStatus(t, resp, http.StatusCreated)
	return decodeBody[recipe](t, resp)
}

// searchIDs fetches a list of recipes (a search or my-recipes), which must
// answer 200, and returns the ids listed, in order.
func searchIDs(t *testing.T, e *testEnv, target string, header ...string) []int64 {
	t.Helper()
	resp := e.get(target, header...)
	expectStatus(t, resp, http.StatusOK)
	ids := []int64{}
	for _, r := range decodeBody[struct{ Results []recipe }](t, resp).Results {
		ids = append(ids, r.ID)
	}
	return ids
}

// homeItem is one recipe as the home page lists it, unescaped.
type homeItem struct{ link, label, source string }

var homeItemPattern = regexp.MustCompile(`<li class="card"><h2>([^<]*)</h2>(?:<p class="source">from ([^<]*)</p>)?` +
	`(?:<p class="host">[^<]*</p><p class="actions"><a class="visit" href="([^"]*)" rel="noopener noreferrer nofollow" aria-label="[^"]*">Visit site</a></p>)?</li>`)

// homeItems returns the recipes shown on a home page, in page order; link
// is "" for a recipe shown without one.
func homeItems(page string) []homeItem {
	var items []homeItem
	for _, m := range homeItemPattern.FindAllStringSubmatch(page, -1) {
		items = append(items, homeItem{html.UnescapeString(m[3]), html.UnescapeString(m[1]), html.UnescapeString(m[2])})
	}
	return items
}

// homeLabels returns the labels of the recipes a home page shows.
func homeLabels(page string) []string {
	labels := []string{}
	for _, it := range homeItems(page) {
		labels = append(labels, it.label)
	}
	return labels
}

// attributeURLs returns every src, href, action, srcset, poster, data and
// formaction attribute value in page, unescaped.
func attributeURLs(page string) map[string][]string {
	found := map[string][]string{}
	re := regexp.MustCompile(`(?i)\s(src|href|action|srcset|poster|data|formaction)\s*=\s*("[^"]*"|'[^']*'|[^\s>]+)`)
	for _, m := range re.FindAllStringSubmatch(page, -1) {
		name := strings.ToLower(m[1])
		found[name] = append(found[name], html.UnescapeString(strings.Trim(m[2], `"'`)))
	}
	return found
}

// expectNoOtherSiteInPolicy fails unless the Content-Security-Policy
// denies by default and every source it allows is a keyword or hash
// ('self', 'none', 'sha256-…') or data:, never a scheme, host or wildcard.
func expectNoOtherSiteInPolicy(t *testing.T, target, csp string) {
	t.Helper()
	if !strings.HasPrefix(csp, "default-src 'none'") {
		t.Errorf("GET %s: Content-Security-Policy = %q, want default-src 'none'", target, csp)
	}
	for _, directive := range strings.Split(csp, ";") {
		fields := strings.Fields(directive)
		if len(fields) == 0 {
			continue
		}
		for _, source := range fields[1:] {
			safe := source == "'self'" || source == "'none'" || source == "data:" ||
				strings.HasPrefix(source, "'sha256-") || strings.HasPrefix(source, "'sha384-") || strings.HasPrefix(source, "'sha512-")
			if !safe {
				t.Errorf("GET %s: Content-Security-Policy %s allows %q; want no other site", target, fields[0], source)
			}
		}
	}
}

// cacheEntries counts the entries of the store's cache for reads of kind
// read, or of every kind if read is "".
func cacheEntries(s *store, read string) int {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	n := 0
	for k := range s.cache.entries {
		if read == "" || k.read == read {
			n++
		}
	}
	return n
}

// cacheHolds reports whether the store's cache holds an entry for key.
func cacheHolds(s *store, key cacheKey) bool {
	s.cache.mu.Lock()
	defer s.cache.mu.Unlock()
	_, ok := s.cache.entries[key]
	return ok
}

func recipePath(id int64) string { return "/api/v1/recipes/" + itoa(id) }

// bulkLabel is the label of the i-th of many recipes: a few common words
// and the number i written out, so that searching for a number finds one
// recipe and a common word finds many.
func bulkLabel(i int) string {
	words := []string{"chicken", "soup", "curry", "tofu", "bread", "stew", "salad", "pie", "noodles", "rice"}
	return fmt.Sprintf("%s %s with %s, no. %06d", words[i%len(words)], words[i/len(words)%len(words)], words[i/100%len(words)], i)
}

// addLabelledRecipes is addRecipes with the i-th label label(i).
func addLabelledRecipes(tb testing.TB, db *sql.DB, n int, label func(i int) string) {
	tb.Helper()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	insert, err := tx.Prepare("INSERT INTO recipe (label, source, url, submitter_id) VALUES (?, 'Bench', 'https://example.com/r', 1)")
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := insert.Exec(label(i)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// hostileLabel and hostileKeyword are the trigram index's worst case, as
// an attack found it: each such label holds every three-character piece
// of the keyword ("aaa", "aab") but not the keyword, and checking a label
// for the whole phrase walks hundreds of positions. Over 20,000 such
// labels an unbounded search took 5.6 s.
var (
	hostileLabel   = strings.Repeat("a", 250) + "xaab"
	hostileKeyword = strings.Repeat("a", 252) + "b"
)

// --- The binary's command line and a server on loopback

// benchRoute is one route to measure: the request, and the floor handler
// that answers it with the same bytes and nothing else.
type benchRoute struct {
	name, target string
	header       []string
	floor        http.Handler
}

// benchEnv is a service with quiet logs and the routes to measure.
func benchEnv(b *testing.B) (*testEnv, []benchRoute) {
	b.Helper()
	e := newTestEnv(b)
	token := e.login("admin@recipeapi.com", adminPassword)

	capture := func(target string, header ...string) []byte {
		resp := e.get(target, header...)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s = %d %s", target, resp.StatusCode, body)
		}
		return body
	}
	writeBytes := func(contentType string, body []byte) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Write(body)
		})
	}
	me := capture("/api/v1/auth/me", bearer(token)...)
	key := newTokenKey(e.cfg.tokenSecret)
	meFloor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if _, err := verifyAccessToken(key, tok, time.Now()); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(me)
	})
	return e, []benchRoute{
		{"recipe", "/api/v1/recipes/1", nil, writeBytes("application/json", capture("/api/v1/recipes/1"))},
		{"search", "/api/v1/recipes/search/?keyword=chicken", nil, writeBytes("application/json", capture("/api/v1/recipes/search/?keyword=chicken"))},
		{"me", "/api/v1/auth/me", bearer(token), meFloor},
		{"home", "/", nil, writeBytes("text/html; charset=utf-8", capture("/"))},
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
	client := newClient(t, nil)
	defer client.CloseIdleConnections() // so as to hold none of the server's connections
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get(base + "/healthz")
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

// runCommand runs the binary's command line args with env, and returns
// what it printed and its error.
func runCommand(t *testing.T, env map[string]string, stdin string, args ...string) (string, error) {
	t.Helper()
	var stdout bytes.Buffer
	err := run(t.Context(), args, func(k string) string { return env[k] }, strings.NewReader(stdin), &stdout, io.Discard)
	return stdout.String(), err
}

// startRun runs the program as a user would, through run, with -addr and
// args, until stop cancels its context as a signal would; stop returns
// what run returned. It returns the base URL once /healthz answers (at
// once over TLS, which a test waits for itself), and what run printed and
// logged.
func startRun(t *testing.T, env map[string]string, args ...string) (base string, stdout, stderr *syncBuffer, stop func() error) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	ctx, cancel := context.WithCancel(context.Background())
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, append([]string{"-addr", addr}, args...), envOf(env), strings.NewReader(""), stdout, stderr)
		close(done) // for the cleanup, after stop has had the error
	}()
	stop = func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(shutdownGrace + 5*time.Second):
			return errors.New("run did not return within a stop's grace")
		}
	}
	t.Cleanup(func() { cancel(); <-done })
	if env["TLS_CERT_FILE"] != "" {
		return "https://" + addr, stdout, stderr, stop // the test waits for it
	}
	waitForHealthy(t, "http://"+addr)
	return "http://" + addr, stdout, stderr, stop
}

// serveInBackground serves as startRun does until the test ends, failing
// the test if serving ends in an error, and returns the base URL and the
// log.
func serveInBackground(t *testing.T, env map[string]string, args ...string) (string, *syncBuffer) {
	t.Helper()
	base, _, stderr, stop := startRun(t, env, args...)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return base, stderr
}

func loginOver(t *testing.T, base, email, password string) string {
	t.Helper()
	resp, err := newClient(t, nil).PostForm(base+"/api/v1/auth/login", url.Values{"username": {email}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	expectStatus(t, resp, http.StatusOK)
	return decodeBody[tokenResponse](t, resp).AccessToken
}

// newClient is a client of the test's own, so that no connection is left
// in http.DefaultClient's pool for another test to meet.
func newClient(t *testing.T, tlsConfig *tls.Config) *http.Client {
	transport := &http.Transport{TLSClientConfig: tlsConfig, ForceAttemptHTTP2: true}
	t.Cleanup(transport.CloseIdleConnections)
	return &http.Client{Transport: transport, Timeout: 30 * time.Second}
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

// --- The database file, read and written as another program would

// queryPlan is how SQLite will run query, one step a line (EXPLAIN QUERY
// PLAN), so that a test can tell an index from a scan of every row.
func queryPlan(t *testing.T, db *sql.DB, query string, args ...any) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan strings.Builder
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan.WriteString(detail + "\n")
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return plan.String()
}

// deleteUserByHand deletes a user as an operator with the sqlite3 shell
// would: on a connection of its own, with foreign keys off (the shell's
// default), so that the user's recipes and sessions stay.
func deleteUserByHand(t *testing.T, path string, id int64) {
	t.Helper()
	raw := openRawDB(t, path)
	raw.SetMaxOpenConns(1) // so that the PRAGMA holds for the DELETE
	execAll(t, raw, "PRAGMA foreign_keys = OFF")
	if _, err := raw.Exec("DELETE FROM user WHERE id = ?", id); err != nil {
		t.Fatal(err)
	}
	raw.Close()
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// expectIntegrityOK fails the test unless SQLite finds the database file
// at dbPath intact.
func expectIntegrityOK(t *testing.T, dbPath string) {
	t.Helper()
	db := openRawDB(t, dbPath)
	defer db.Close()
	var result string
	if err := db.QueryRow("PRAGMA integrity_check").Scan(&result); err != nil || result != "ok" {
		t.Errorf("PRAGMA integrity_check = %q, %v; want ok", result, err)
	}
}

// referenceDDL is the schema the reference's Alembic revision ec46ad7fc181
// creates in SQLite, written out by hand so that the test does not depend
// on our schema.sql.
var referenceDDL = []string{
	`CREATE TABLE user (
		id INTEGER NOT NULL,
		first_name VARCHAR(256),
		surname VARCHAR(256),
		email VARCHAR NOT NULL,
		is_superuser BOOLEAN,
		hashed_password VARCHAR NOT NULL,
		PRIMARY KEY (id)
	)`,
	`CREATE INDEX ix_user_email ON user (email)`,
	`CREATE INDEX ix_user_id ON user (id)`,
	`CREATE TABLE recipe (
		id INTEGER NOT NULL,
		label VARCHAR(256) NOT NULL,
		url VARCHAR(256),
		source VARCHAR(256),
		submitter_id INTEGER,
		PRIMARY KEY (id),
		FOREIGN KEY(submitter_id) REFERENCES user (id)
	)`,
	`CREATE INDEX ix_recipe_id ON recipe (id)`,
	`CREATE INDEX ix_recipe_url ON recipe (url)`,
	`CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)`,
	`INSERT INTO alembic_version (version_num) VALUES ('ec46ad7fc181')`,
}

// passlibHash hashes password as passlib writes it: bcrypt with the $2b$
// prefix (the same algorithm as Go's $2a$).
func passlibHash(t *testing.T, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), testBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(hash), "$2a$") {
		t.Fatalf("bcrypt hash %q does not start with $2a$", hash)
	}
	return "$2b$" + strings.TrimPrefix(string(hash), "$2a$")
}

// openRawDB opens the database file directly, as another program would.
func openRawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// execAll runs statements on db, failing the test at the first error.
func execAll(t *testing.T, db *sql.DB, statements ...string) {
	t.Helper()
	for _, s := range statements {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// makeReferenceDB creates, at path, a database as the reference makes it,
// then runs rows (its INSERTs), and closes it.
func makeReferenceDB(t *testing.T, path string, rows ...string) {
	t.Helper()
	db := openRawDB(t, path)
	defer db.Close()
	execAll(t, db, referenceDDL...)
	execAll(t, db, rows...)
}

// queryRows returns the columns and every row that query yields, each
// value as the driver gives it.
func queryRows(t *testing.T, db *sql.DB, query string) (cols []string, rows [][]any) {
	t.Helper()
	result, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer result.Close()
	if cols, err = result.Columns(); err != nil {
		t.Fatal(err)
	}
	for result.Next() {
		values := make([]any, len(cols))
		pointers := make([]any, len(cols))
		for i := range values {
			pointers[i] = &values[i]
		}
		if err := result.Scan(pointers...); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, values)
	}
	if err := result.Err(); err != nil {
		t.Fatal(err)
	}
	return cols, rows
}

// dump returns every row query yields, one line per row, for comparing a
// table before and after.
func dump(t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	_, rows := queryRows(t, db, query)
	var out strings.Builder
	for _, values := range rows {
		for i, v := range values {
			if b, ok := v.([]byte); ok {
				values[i] = string(b)
			}
		}
		fmt.Fprintf(&out, "%q\n", values)
	}
	return out.String()
}

// dumpAll is every row of the reference's tables.
func dumpAll(t *testing.T, db *sql.DB) string {
	t.Helper()
	return dump(t, db, "SELECT id, first_name, surname, email, is_superuser, hashed_password FROM user ORDER BY id") +
		dump(t, db, "SELECT * FROM recipe ORDER BY id") +
		dump(t, db, "SELECT * FROM alembic_version ORDER BY version_num")
}

func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// knownMigrations is how many migrations schema.sql holds.
func knownMigrations(t *testing.T) int {
	t.Helper()
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		t.Fatalf("parseMigrations(schema.sql): %v", err)
	}
	return len(migrations)
}
