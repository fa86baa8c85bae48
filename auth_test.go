// auth_test.go tests signup, login and the bearer-token check through the
// real handler, one contract row or fix at a time, and the two guards on
// password hashing: the limit on attempts and the bound on concurrent work.
package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

func TestSignup(t *testing.T) {
	e := newTestEnv(t)

	t.Run("a new user is created and shown without the password hash", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup",
			`{"email":" Cook@Example.com ","password":"password123","first_name":"Ada","surname":null}`)
		expectStatus(t, resp, http.StatusCreated)
		got := decodeBody[map[string]any](t, resp)
		want := map[string]any{"first_name": "Ada", "surname": nil, "email": "Cook@Example.com", "is_superuser": false, "id": got["id"]}
		if fmt.Sprint(got) != fmt.Sprint(want) || got["id"] == nil {
			t.Errorf("signup = %v, want %v", got, want)
		}
	})
	t.Run("the password is stored as a bcrypt hash at the configured cost", func(t *testing.T) {
		u, err := e.store.userByEmail(t.Context(), "cook@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if cost, err := bcrypt.Cost([]byte(u.HashedPassword)); err != nil || cost != testBcryptCost {
			t.Errorf("stored hash %q has cost %d, %v; want %d", u.HashedPassword[:7], cost, err, testBcryptCost)
		}
	})
	t.Run("is_superuser in the body never makes a superuser", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup", `{"email":"mallory@example.com","password":"password123","is_superuser":true}`)
		expectStatus(t, resp, http.StatusCreated)
		if decodeBody[userView](t, resp).IsSuperuser {
			t.Error("signup with is_superuser true made a superuser")
		}
		if u, _ := e.store.userByEmail(t.Context(), "mallory@example.com"); u.IsSuperuser {
			t.Error("the stored user is a superuser")
		}
	})
	t.Run("the reference clients' extra fields are ignored", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup", `{"email":"extra@example.com","password":"password123","full_name":"X","is_active":true}`)
		expectStatus(t, resp, http.StatusCreated)
	})
	t.Run("an email taken ignoring case is refused", func(t *testing.T) {
		for _, email := range []string{"cook@example.com", "COOK@EXAMPLE.COM", " cook@example.COM"} {
			resp := e.postJSON("/api/v1/auth/signup", fmt.Sprintf(`{"email":%q,"password":"password123"}`, email))
			expectDetail(t, resp, http.StatusBadRequest, "The user with this email already exists in the system")
		}
	})

	long := strings.Repeat("x", 257)
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
	}{
		{"a missing email is a 422", `{"password":"password123"}`, []string{"body.email"}},
		{"a null email is a 422", `{"email":null,"password":"password123"}`, []string{"body.email"}},
		{"an email that is not a string is a 422", `{"email":5,"password":"password123"}`, []string{"body.email"}},
		{"an address without @ is a 422", `{"email":"cook","password":"password123"}`, []string{"body.email"}},
		{"an address without a dot in its domain is a 422", `{"email":"cook@localhost","password":"password123"}`, []string{"body.email"}},
		{"an address with a display name is a 422", `{"email":"Cook <cook@x.com>","password":"password123"}`, []string{"body.email"}},
		{"two addresses are a 422", `{"email":"a@x.com, b@x.com","password":"password123"}`, []string{"body.email"}},
		{"a missing password is a 422", `{"email":"p@example.com"}`, []string{"body.password"}},
		{"a password of 7 bytes is a 422", `{"email":"p@example.com","password":"1234567"}`, []string{"body.password"}},
		{"a password of 73 bytes is a 422, not truncated", fmt.Sprintf(`{"email":"p@example.com","password":%q}`, strings.Repeat("p", 73)), []string{"body.password"}},
		{"a password of 37 two-byte letters (74 bytes) is a 422", fmt.Sprintf(`{"email":"p@example.com","password":%q}`, strings.Repeat("é", 37)), []string{"body.password"}},
		{"a first name over 256 characters is a 422", fmt.Sprintf(`{"email":"p@example.com","password":"password123","first_name":%q}`, long), []string{"body.first_name"}},
		{"a surname over 256 characters is a 422", fmt.Sprintf(`{"email":"p@example.com","password":"password123","surname":%q}`, long), []string{"body.surname"}},
		{"every bad field is listed", fmt.Sprintf(`{"email":"nope","password":"short","surname":%q}`, long), []string{"body.email", "body.password", "body.surname"}},
		{"a body that is not JSON is a 422 at body", `{"email":`, []string{"body"}},
		{"a JSON list is a 422 at body", `[]`, []string{"body"}},
		{"JSON null is a 422 at body", `null`, []string{"body"}},
		{"an empty body is a 422 at body", ``, []string{"body"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.postJSON("/api/v1/auth/signup", tc.body), tc.wantLocs...)
		})
	}
	t.Run("a password of exactly 72 bytes is accepted", func(t *testing.T) {
		e.signup("long@example.com", strings.Repeat("p", 72))
	})
	t.Run("a body over 1 MiB is a 413", func(t *testing.T) {
		body := fmt.Sprintf(`{"email":"big@example.com","password":"password123","x":%q}`, strings.Repeat("x", maxBodyBytes))
		expectDetail(t, e.postJSON("/api/v1/auth/signup", body), http.StatusRequestEntityTooLarge, "Request body too large")
	})
}

func TestLogin(t *testing.T) {
	e := newTestEnv(t)
	e.signup("Cook@Example.com", "password123")

	expectToken := func(t *testing.T, resp *http.Response) {
		t.Helper()
		expectStatus(t, resp, http.StatusOK)
		if cc := resp.Header.Get("Cache-Control"); cc != "no-store" {
			t.Errorf("Cache-Control = %q, want no-store", cc)
		}
		got := decodeBody[tokenResponse](t, resp)
		if got.TokenType != "bearer" || got.AccessToken == "" || got.RefreshToken == "" || got.ExpiresIn != 3600 {
			t.Fatalf("login = %+v, want a bearer token, a refresh token and expires_in 3600", got)
		}
		if _, err := verifyAccessToken(newTokenKey(e.cfg.tokenSecret), got.AccessToken, time.Now()); err != nil {
			t.Errorf("the token does not verify: %v", err)
		}
	}
	good := url.Values{"username": {"cook@example.com"}, "password": {"password123"}}

	t.Run("an urlencoded form logs in, ignoring the email's case", func(t *testing.T) {
		expectToken(t, e.postForm("/api/v1/auth/login", good))
	})
	t.Run("a multipart form logs in, as the tutorial's React client sends it", func(t *testing.T) {
		expectToken(t, e.postMultipart("/api/v1/auth/login", map[string]string{"username": "COOK@example.com", "password": "password123"}))
	})
	t.Run("Swagger UI's form with grant_type, scope and Basic Og== logs in", func(t *testing.T) {
		form := url.Values{"grant_type": {"password"}, "username": {"cook@example.com"}, "password": {"password123"}, "scope": {""}}
		expectToken(t, e.postForm("/api/v1/auth/login", form, "Authorization", "Basic Og=="))
	})
	t.Run("a wrong password and an unknown email get the same answer", func(t *testing.T) {
		for _, form := range []url.Values{
			{"username": {"cook@example.com"}, "password": {"wrong-password"}},
			{"username": {"nobody@example.com"}, "password": {"password123"}},
		} {
			expectDetail(t, e.postForm("/api/v1/auth/login", form), http.StatusBadRequest, "Incorrect username or password")
		}
	})
	t.Run("an unknown email costs one bcrypt compare at the configured cost, like a wrong password", func(t *testing.T) {
		for _, username := range []string{"cook@example.com", "nobody@example.com"} {
			before := e.passwords.compares.Load()
			e.postForm("/api/v1/auth/login", url.Values{"username": {username}, "password": {"wrong-password"}})
			if n := e.passwords.compares.Load() - before; n != 1 {
				t.Errorf("login as %s ran %d bcrypt compares, want 1", username, n)
			}
		}
		if cost, _ := bcrypt.Cost([]byte(e.passwords.dummyHash)); cost != e.cfg.bcryptCost {
			t.Errorf("dummy hash cost %d, want the configured %d", cost, e.cfg.bcryptCost)
		}
	})
	t.Run("a right password costs one bcrypt compare and no hash", func(t *testing.T) {
		compares, hashes := e.passwords.compares.Load(), e.passwords.hashes.Load()
		e.postForm("/api/v1/auth/login", good)
		if c, h := e.passwords.compares.Load()-compares, e.passwords.hashes.Load()-hashes; c != 1 || h != 0 {
			t.Errorf("login ran %d compares and %d hashes, want 1 and 0", c, h)
		}
	})
	for _, tc := range []struct {
		name     string
		form     url.Values
		wantLocs []string
	}{
		{"a missing username is a 422", url.Values{"password": {"password123"}}, []string{"body.username"}},
		{"a missing password is a 422", url.Values{"username": {"cook@example.com"}}, []string{"body.password"}},
		{"an empty form lists both fields", url.Values{}, []string{"body.username", "body.password"}},
		{"a grant_type other than password is a 422", url.Values{"username": {"cook@example.com"}, "password": {"password123"}, "grant_type": {"client_credentials"}}, []string{"body.grant_type"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.postForm("/api/v1/auth/login", tc.form), tc.wantLocs...)
		})
	}
	t.Run("a login form over 1 MiB is a 413", func(t *testing.T) {
		form := url.Values{"username": {"cook@example.com"}, "password": {"password123"}, "x": {strings.Repeat("x", maxBodyBytes)}}
		expectDetail(t, e.postForm("/api/v1/auth/login", form), http.StatusRequestEntityTooLarge, "Request body too large")
		big := map[string]string{"username": "cook@example.com", "password": "password123", "x": strings.Repeat("x", maxBodyBytes)}
		expectDetail(t, e.postMultipart("/api/v1/auth/login", big), http.StatusRequestEntityTooLarge, "Request body too large")
	})
	t.Run("a JSON body is not a login form", func(t *testing.T) {
		expectProblems(t, e.postJSON("/api/v1/auth/login", `{"username":"cook@example.com","password":"password123"}`),
			"body.username", "body.password")
	})
	t.Run("a password over 72 bytes is refused, not truncated to one that matches", func(t *testing.T) {
		e.signup("trunc@example.com", strings.Repeat("p", 72))
		form := url.Values{"username": {"trunc@example.com"}, "password": {strings.Repeat("p", 72) + "EXTRA"}}
		expectProblems(t, e.postForm("/api/v1/auth/login", form), "body.password")
	})
	t.Run("a user made by the reference logs in with a passlib $2b$12$ hash", func(t *testing.T) {
		// passlib and x/crypto write the same bcrypt; passlib names it $2b$.
		hash, _ := bcrypt.GenerateFromPassword([]byte("reference-pw"), 12)
		passlib := "$2b$" + string(hash[4:])
		if _, err := e.store.createUser(t.Context(), user{Email: "old@example.com", HashedPassword: passlib}); err != nil {
			t.Fatal(err)
		}
		expectToken(t, e.postForm("/api/v1/auth/login", url.Values{"username": {"old@example.com"}, "password": {"reference-pw"}}))
	})
	t.Run("no password or token reaches the log", func(t *testing.T) {
		resp := e.postForm("/api/v1/auth/login", good)
		token := decodeBody[tokenResponse](t, resp).AccessToken
		e.get("/api/v1/auth/me", bearer(token)...)
		for _, secret := range []string{"password123", token, string(e.cfg.tokenSecret)} {
			if strings.Contains(e.logs.String(), secret) {
				t.Errorf("the log contains %.12q…", secret)
			}
		}
		if !strings.Contains(e.logs.String(), "path=/api/v1/auth/login") {
			t.Errorf("the log has no line for the login: %s", e.logs)
		}
	})
}

func TestMe(t *testing.T) {
	now := time.Now()
	clock := func() time.Time { return now }
	e := newTestEnv(t)
	e = startTestEnv(t, e.cfg, clock) // same database, a clock the test moves
	cook := e.signup("cook@example.com", "password123")
	token := e.login("cook@example.com", "password123")

	t.Run("a valid token shows its user", func(t *testing.T) {
		resp := e.get("/api/v1/auth/me", bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		if got := decodeBody[userView](t, resp); got != cook {
			t.Errorf("me = %+v, want %+v", got, cook)
		}
	})
	t.Run("the scheme is case-insensitive", func(t *testing.T) {
		expectStatus(t, e.get("/api/v1/auth/me", "Authorization", "bearer "+token), http.StatusOK)
	})

	otherSecret := signAccessToken(newTokenKey([]byte("another-secret-another-secret-another")), cook.ID, 0, now, time.Hour)
	for _, tc := range []struct {
		name, authorization, detail string
	}{
		{"no Authorization header is not authenticated", "", "Not authenticated"},
		{"a Basic header is not authenticated", "Basic Og==", "Not authenticated"},
		{"a bare token without a scheme is not authenticated", token, "Not authenticated"},
		{"a garbled token is refused", "Bearer not-a-token", "Could not validate credentials"},
		{"an empty bearer token is refused", "Bearer ", "Could not validate credentials"},
		{"a token signed with another secret is refused", "Bearer " + otherSecret, "Could not validate credentials"},
		{"a token for a user who does not exist is refused", "Bearer " + signAccessToken(newTokenKey(e.cfg.tokenSecret), 999, 0, now, time.Hour), "Could not validate credentials"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.get("/api/v1/auth/me", "Authorization", tc.authorization)
			if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("WWW-Authenticate = %q, want Bearer", got)
			}
			expectDetail(t, resp, http.StatusUnauthorized, tc.detail)
		})
	}
	t.Run("a token is refused once it expires", func(t *testing.T) {
		now = now.Add(e.cfg.accessTokenLifetime)
		defer func() { now = now.Add(-e.cfg.accessTokenLifetime) }()
		expectDetail(t, e.get("/api/v1/auth/me", bearer(token)...), http.StatusUnauthorized, "Could not validate credentials")
	})
	t.Run("a token is refused once its user is gone, even if another connection deleted it", func(t *testing.T) {
		// Raw SQL, as another process would write: the store learns of it
		// through PRAGMA data_version within externalWritePoll.
		if _, err := e.store.writer.Exec("DELETE FROM user WHERE id = ?", cook.ID); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(3 * externalWritePoll)
		for e.get("/api/v1/auth/me", bearer(token)...).StatusCode == http.StatusOK && time.Now().Before(deadline) {
			time.Sleep(50 * time.Millisecond)
		}
		expectDetail(t, e.get("/api/v1/auth/me", bearer(token)...), http.StatusUnauthorized, "Could not validate credentials")
	})
}

func TestLoginAttemptsAreLimitedPerClient(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := newTestEnv(t).cfg
	cfg.loginAttemptsPerMinute = 3
	e := startTestEnv(t, cfg, clock)

	attempt := func(remoteAddr string, header ...string) *http.Response {
		r := newRequest("POST", "/api/v1/auth/login", strings.NewReader("username=a@b.co&password=wrong-password"),
			append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
		r.RemoteAddr = remoteAddr
		return e.serve(r)
	}
	for i := range 3 {
		expectStatus(t, attempt("192.0.2.1:1000"), http.StatusBadRequest)
		_ = i
	}
	t.Run("the attempt past the limit is a 429 with Retry-After", func(t *testing.T) {
		resp := attempt("192.0.2.1:1001")
		if ra := resp.Header.Get("Retry-After"); ra == "" || ra == "0" {
			t.Errorf("Retry-After = %q, want a positive number of seconds", ra)
		}
		expectStatus(t, resp, http.StatusTooManyRequests)
	})
	t.Run("X-Forwarded-For does not make a new client", func(t *testing.T) {
		expectStatus(t, attempt("192.0.2.1:1002", "X-Forwarded-For", "198.51.100.9"), http.StatusTooManyRequests)
	})
	t.Run("signup counts against the same limit", func(t *testing.T) {
		r := newRequest("POST", "/api/v1/auth/signup", strings.NewReader(`{}`), "Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.1:1003"
		expectStatus(t, e.serve(r), http.StatusTooManyRequests)
	})
	t.Run("another client is not slowed", func(t *testing.T) {
		expectStatus(t, attempt("192.0.2.2:1000"), http.StatusBadRequest)
	})
	t.Run("the client may try again once time has passed", func(t *testing.T) {
		mu.Lock()
		now = now.Add(21 * time.Second) // 3 per minute: one attempt every 20 s
		mu.Unlock()
		expectStatus(t, attempt("192.0.2.1:1004"), http.StatusBadRequest)
		expectStatus(t, attempt("192.0.2.1:1005"), http.StatusTooManyRequests)
	})
}

func TestRateLimiterForgetsIdleClients(t *testing.T) {
	now := time.Now()
	l := newRateLimiter(2, time.Minute, func() time.Time { return now })
	for i := range 100 {
		l.take(fmt.Sprintf("client-%d", i))
	}
	now = now.Add(2 * time.Minute)
	l.take("late")
	if len(l.buckets) != 1 {
		t.Errorf("%d buckets kept after every client went idle, want 1", len(l.buckets))
	}
	if newRateLimiter(0, time.Minute, time.Now) != nil {
		t.Error("a limit of 0 should turn the limiter off")
	}
}

func TestHashingIsBoundedAndAnswers503WhenTheQueueIsFull(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")

	// Take every admission slot, as a flood of slow hashes would.
	for range cap(e.passwords.admitted) {
		e.passwords.admitted <- struct{}{}
	}
	for _, resp := range []*http.Response{
		e.postForm("/api/v1/auth/login", url.Values{"username": {"cook@example.com"}, "password": {"password123"}}),
		e.postJSON("/api/v1/auth/signup", `{"email":"new@example.com","password":"password123"}`),
	} {
		if ra := resp.Header.Get("Retry-After"); ra != "1" {
			t.Errorf("Retry-After = %q, want 1", ra)
		}
		expectDetail(t, resp, http.StatusServiceUnavailable, "Server busy, try again shortly")
	}
	t.Run("reads do not wait for hashing", func(t *testing.T) {
		expectStatus(t, e.get("/api/v1/recipes/1"), http.StatusOK)
	})
	for range cap(e.passwords.admitted) {
		<-e.passwords.admitted
	}
	t.Run("logins work again once the queue drains", func(t *testing.T) {
		e.login("cook@example.com", "password123")
	})
}

func TestHashingRunsAtMostOnePerCPU(t *testing.T) {
	p := newPasswordHasher(testBcryptCost, testBcryptCost)
	var mu sync.Mutex
	running, most := 0, 0
	var wg sync.WaitGroup
	for range cap(p.admitted) {
		wg.Go(func() {
			p.do(context.Background(), func() {
				mu.Lock()
				running++
				most = max(most, running)
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				running--
				mu.Unlock()
			})
		})
	}
	wg.Wait()
	if most > cap(p.running) {
		t.Errorf("%d hashes ran at once, want at most %d", most, cap(p.running))
	}
}

// FuzzSignupBody sends arbitrary bodies to signup: whatever arrives, the
// answer is a JSON 201, 400 or 422, never a 500.
func FuzzSignupBody(f *testing.F) {
	for _, seed := range []string{
		`{"email":"cook@example.com","password":"password123"}`,
		`{"email":"cook@example.com","password":"password123","is_superuser":true,"first_name":null}`,
		`{"email":5,"password":[],"surname":{}}`, `[]`, `null`, `{"email":"a@b.c","email":"x"}`, "{\"email\":\"\xff@x.com\"}", ``,
	} {
		f.Add(seed)
	}
	e := newFuzzEnv(f)
	f.Fuzz(func(t *testing.T, body string) {
		resp := e.postJSON("/api/v1/auth/signup", body)
		checkFuzzResponse(t, resp, http.StatusCreated, http.StatusBadRequest, http.StatusUnprocessableEntity)
		if resp.StatusCode == http.StatusCreated && decodeBody[userView](t, resp).IsSuperuser {
			t.Fatalf("signup %q made a superuser", body)
		}
	})
}

// FuzzLoginForm sends arbitrary login bodies, urlencoded and multipart: the
// answer is a JSON 200, 400 or 422, never a 500, and 200 only for the
// right password.
func FuzzLoginForm(f *testing.F) {
	for _, seed := range []struct {
		contentType, body string
	}{
		{"application/x-www-form-urlencoded", "username=cook%40example.com&password=password123"},
		{"application/x-www-form-urlencoded", "username=cook@example.com&password=password123&grant_type=password&scope="},
		{"application/x-www-form-urlencoded", "username=&password=%zz"},
		{"multipart/form-data; boundary=X", "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\ncook@example.com\r\n--X\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\npassword123\r\n--X--\r\n"},
		{"multipart/form-data; boundary=X", "--X\r\n"},
		{"application/json", `{"username":"cook@example.com"}`},
	} {
		f.Add(seed.contentType, seed.body)
	}
	e := newFuzzEnv(f)
	e.signup("cook@example.com", "password123")
	f.Fuzz(func(t *testing.T, contentType, body string) {
		resp := e.send("POST", "/api/v1/auth/login", strings.NewReader(body), "Content-Type", contentType)
		checkFuzzResponse(t, resp, http.StatusOK, http.StatusBadRequest, http.StatusUnprocessableEntity)
		// Read the form again, apart from the service, to see what it held.
		sent := newRequest("POST", "/", strings.NewReader(body), "Content-Type", contentType)
		if resp.StatusCode == http.StatusOK && sent.PostFormValue("password") != "password123" {
			t.Fatalf("logged in with %q", body)
		}
	})
}

// newFuzzEnv is a test service shared by every input of one fuzz run.
func newFuzzEnv(f *testing.F) *testEnv {
	cfg := newTestConfig(f)
	return startTestEnv(f, cfg, time.Now)
}

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

func TestEmailsIgnoreCaseBeyondASCII(t *testing.T) {
	e := newTestEnv(t)
	e.signup("Ünï@example.com", "password123")
	t.Run("a signup differing only in non-ASCII case is refused", func(t *testing.T) {
		expectDetail(t, e.postJSON("/api/v1/auth/signup", `{"email":"üNÏ@example.com","password":"password123"}`),
			http.StatusBadRequest, "The user with this email already exists in the system")
	})
	t.Run("login ignores non-ASCII case too", func(t *testing.T) {
		e.login("üNÏ@EXAMPLE.COM", "password123")
	})
}

func TestLoginEdgeCases(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")

	t.Run("a multipart media type in mixed case is still multipart", func(t *testing.T) {
		body := "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\ncook@example.com\r\n" +
			"--X\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\npassword123\r\n--X--\r\n"
		resp := e.serve(newRequest("POST", "/api/v1/auth/login", strings.NewReader(body),
			"Content-Type", "Multipart/Form-Data; boundary=X"))
		expectStatus(t, resp, http.StatusOK)
	})
	t.Run("an unreadable stored hash answers like a wrong password, and is logged", func(t *testing.T) {
		if _, err := e.store.createUser(t.Context(), user{Email: "broken@example.com", HashedPassword: "not-a-bcrypt-hash"}); err != nil {
			t.Fatal(err)
		}
		resp := e.postForm("/api/v1/auth/login", url.Values{"username": {"broken@example.com"}, "password": {"password123"}})
		expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
		if !strings.Contains(e.logs.String(), "stored password hash is unusable") {
			t.Errorf("the unreadable hash was not logged: %s", e.logs)
		}
	})
	t.Run("the dummy hash costs as much as the dearest stored hash", func(t *testing.T) {
		dear, _ := bcrypt.GenerateFromPassword([]byte("reference-pw"), testBcryptCost+2)
		if _, err := e.store.createUser(t.Context(), user{Email: "dear@example.com", HashedPassword: "$2b$" + string(dear[4:])}); err != nil {
			t.Fatal(err)
		}
		p, err := newPasswordHasherFor(t.Context(), e.store, testBcryptCost)
		if err != nil {
			t.Fatal(err)
		}
		if cost, _ := bcrypt.Cost([]byte(p.dummyHash)); cost != testBcryptCost+2 {
			t.Errorf("dummy hash cost %d, want %d, the stored hash's", cost, testBcryptCost+2)
		}
		if p.cost != testBcryptCost {
			t.Errorf("new hashes cost %d, want the configured %d", p.cost, testBcryptCost)
		}
	})
}

func TestClientAddressGroupsIPv6ByItsSlash64(t *testing.T) {
	for _, tc := range []struct {
		remoteAddr, want string
	}{
		{"192.0.2.1:1234", "192.0.2.1"},
		{"[::ffff:192.0.2.1]:1234", "192.0.2.1"},
		{"[2001:db8:1:2:3:4:5:6]:1234", "2001:db8:1:2::/64"},
		{"[2001:db8:1:2:ffff::1]:80", "2001:db8:1:2::/64"},
		{"[2001:db8:1:3::1]:80", "2001:db8:1:3::/64"},
	} {
		r := newRequest("GET", "/", nil)
		r.RemoteAddr = tc.remoteAddr
		if got := (&app{}).clientAddress(r); got != tc.want {
			t.Errorf("clientAddress(%s) = %s, want %s", tc.remoteAddr, got, tc.want)
		}
	}
}
