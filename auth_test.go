// auth_test.go tests auth.go: signup, login and /auth/me, the password
// check and its dummy hash, unusable and cheaper stored hashes, the limits
// on signups and failed logins, the client address they count by, and the
// users table.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

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
	t.Run("a body over 64 KiB is a 413", func(t *testing.T) {
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
			dummy := e.passwords.dummy.Load()
			resp, n := hashingJobs(t, e, func() *http.Response {
				return e.tryLogin(username, "wrong-password")
			})
			expectStatus(t, resp, http.StatusBadRequest)
			if n != 1 {
				t.Errorf("login as %s ran %d bcrypt runs, want 1, the compare", username, n)
			}
			// The one run compared: a hash would have made a new dummy.
			if e.passwords.dummy.Load() != dummy {
				t.Errorf("login as %s made a new dummy hash, where it should compare against the one there is", username)
			}
		}
		if cost := e.passwords.dummyCost(); cost != e.cfg.bcryptCost {
			t.Errorf("dummy hash cost %d, want the configured %d", cost, e.cfg.bcryptCost)
		}
	})
	t.Run("a right password costs one bcrypt compare and no hash", func(t *testing.T) {
		// A 200 needs the compare, so one run in all leaves none for a hash.
		before, err := e.store.userByEmail(t.Context(), "cook@example.com")
		if err != nil {
			t.Fatal(err)
		}
		resp, n := hashingJobs(t, e, func() *http.Response { return e.postForm("/api/v1/auth/login", good) })
		expectStatus(t, resp, http.StatusOK)
		if n != 1 {
			t.Errorf("login ran %d bcrypt runs, before and after its answer; want 1, the compare, and no hash", n)
		}
		if after, err := e.store.userByEmail(t.Context(), "cook@example.com"); err != nil || after.HashedPassword != before.HashedPassword {
			t.Errorf("a login at the configured cost stored a new hash (%v)", err)
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
	t.Run("a login form over 64 KiB is a 413", func(t *testing.T) {
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
		expectToken(t, e.tryLogin("old@example.com", "reference-pw"))
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
	clock := newTestClock()
	e := startTestEnv(t, newTestConfig(t), clock.Now)
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

	otherSecret := signAccessToken(newTokenKey([]byte("another-secret-another-secret-another")), cook.ID, 0, clock.Now(), time.Hour)
	for _, tc := range []struct {
		name, authorization, detail string
	}{
		{"no Authorization header is not authenticated", "", "Not authenticated"},
		{"a Basic header is not authenticated", "Basic Og==", "Not authenticated"},
		{"a bare token without a scheme is not authenticated", token, "Not authenticated"},
		{"a garbled token is refused", "Bearer not-a-token", "Could not validate credentials"},
		{"an empty bearer token is refused", "Bearer ", "Could not validate credentials"},
		{"a token signed with another secret is refused", "Bearer " + otherSecret, "Could not validate credentials"},
		{"a token for a user who does not exist is refused", "Bearer " + signAccessToken(newTokenKey(e.cfg.tokenSecret), 999, 0, clock.Now(), time.Hour), "Could not validate credentials"},
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
		clock.advance(e.cfg.accessTokenLifetime)
		defer clock.advance(-e.cfg.accessTokenLifetime)
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
	clock := newTestClock()
	cfg := newTestConfig(t)
	cfg.loginAttemptsPerMinute = 3
	e := startTestEnv(t, cfg, clock.Now)

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
	t.Run("signups do not count against it: they have a budget of their own", func(t *testing.T) {
		r := newRequest("POST", "/api/v1/auth/signup", strings.NewReader(`{}`), "Content-Type", "application/json")
		r.RemoteAddr = "192.0.2.1:1003"
		expectProblems(t, e.serve(r), "body.email", "body.password")
	})
	t.Run("another client is not slowed", func(t *testing.T) {
		expectStatus(t, attempt("192.0.2.2:1000"), http.StatusBadRequest)
	})
	t.Run("the client may try again once time has passed", func(t *testing.T) {
		clock.advance(21 * time.Second) // 3 per minute: one attempt every 20 s
		expectStatus(t, attempt("192.0.2.1:1004"), http.StatusBadRequest)
		expectStatus(t, attempt("192.0.2.1:1005"), http.StatusTooManyRequests)
	})
}

// hashingJobs sends the request that send makes and counts the jobs that
// it, and the work it leaves behind (p.later), run on e's hashing pool:
// every bcrypt run, compare or hash. The workers are held and let go one
// job at a time, so each job is seen in the queue before it runs: the
// next holders queue behind it, and all of them have a worker only once
// it has ended.
func hashingJobs(t *testing.T, e *testEnv, send func() *http.Response) (resp *http.Response, jobs int) {
	t.Helper()
	p := e.passwords
	release := holdWorkers(t, p)
	answer := make(chan *http.Response, 1)
	go func() { answer <- send() }()
	settled := make(chan struct{}) // answered, and the work it left is done
	for {
		for p.queued() == 0 {
			select {
			case resp = <-answer:
				answer = nil
				// Safe to wait on: the request called p.later, if at all,
				// before it answered.
				go func() { p.laterDone.Wait(); close(settled) }()
			case <-settled:
				release()
				return resp, jobs
			case <-time.After(time.Millisecond):
			}
		}
		jobs++
		held, releaseNext := queueHolders(t, p)
		waitFor(t, "the next holders to queue behind the job", func() bool { return p.queued() == 1+p.workers })
		release()
		held()
		release = releaseNext
	}
}

// releaseOnceQueued calls release once n jobs wait in p's queue, and a
// moment more for the rest of a burst to arrive; or after 5 s, whatever
// is queued.
func releaseOnceQueued(t *testing.T, p *passwordHasher, n int, release func()) {
	go func() {
		defer release()
		for deadline := time.Now().Add(5 * time.Second); p.queued() < n; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%d jobs queued, want %d", p.queued(), n)
				return
			}
		}
		time.Sleep(100 * time.Millisecond)
	}()
}

func TestLoginLimiterCountsOnlyFailures(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.loginAttemptsPerMinute = 10 // the default
	// A clock that stands still: no attempt comes back by waiting.
	e := startTestEnv(t, cfg, newTestClock().Now)
	hash, err := e.passwords.hash(t.Context(), "password123")
	if err != nil {
		t.Fatal(err)
	}
	for i := range 30 {
		if _, err := e.store.createUser(t.Context(), user{Email: fmt.Sprintf("pupil%d@example.com", i), HashedPassword: hash}); err != nil {
			t.Fatal(err)
		}
	}
	login := func(remoteAddr, email, password string) *http.Response {
		form := url.Values{"username": {email}, "password": {password}}
		r := newRequest("POST", "/api/v1/auth/login", strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
		r.RemoteAddr = remoteAddr
		return e.serve(r)
	}

	t.Run("30 users behind one address logging in at once all get in", func(t *testing.T) {
		// The workers are held until the whole burst has arrived, so that
		// every login is pending at once.
		releaseOnceQueued(t, e.passwords, 10, holdWorkers(t, e.passwords))
		got := burstStatuses(30, func(i int) *http.Response {
			return login("192.0.2.30:1000", fmt.Sprintf("pupil%d@example.com", i), "password123")
		})
		if got[http.StatusOK] != 30 {
			t.Errorf("30 concurrent right logins from one address answered %v, want 30 × 200", got)
		}
	})
	t.Run("wrong passwords and unknown emails use up the address's attempts", func(t *testing.T) {
		for i := range 10 {
			email := "pupil1@example.com"
			if i%2 == 1 {
				email = "nobody@example.com"
			}
			expectStatus(t, login("192.0.2.30:1001", email, "wrong-password"), http.StatusBadRequest)
		}
		resp, n := hashingJobs(t, e, func() *http.Response { return login("192.0.2.30:1002", "pupil2@example.com", "password123") })
		expectStatus(t, resp, http.StatusTooManyRequests)
		if resp.Header.Get("Retry-After") == "" {
			t.Error("429 without Retry-After")
		}
		if n != 0 {
			t.Errorf("a client out of attempts cost %d bcrypt runs, want 0", n)
		}
	})
	t.Run("concurrent failures never outrun the budget", func(t *testing.T) {
		releaseOnceQueued(t, e.passwords, 10, holdWorkers(t, e.passwords))
		got := burstStatuses(30, func(int) *http.Response { return login("192.0.2.31:1000", "pupil3@example.com", "wrong-password") })
		if got[http.StatusBadRequest] != 10 || got[http.StatusTooManyRequests] != 20 {
			t.Errorf("30 concurrent wrong passwords from one address answered %v, want 10 × 400 and 20 × 429", got)
		}
	})
	t.Run("a wrong current password counts, a right one does not", func(t *testing.T) {
		change := func(token, current, next string) *http.Response {
			r := newRequest("POST", "/api/v1/auth/password", strings.NewReader(passwordBody(current, next)),
				append([]string{"Content-Type", "application/json"}, bearer(token)...)...)
			r.RemoteAddr = "192.0.2.32:1000"
			return e.serve(r)
		}
		token := decodeBody[tokenResponse](t, login("192.0.2.33:1000", "pupil4@example.com", "password123")).AccessToken
		passwords := []string{"password123", "password456"}
		for i := range 12 {
			resp := change(token, passwords[i%2], passwords[(i+1)%2])
			expectStatus(t, resp, http.StatusOK)
			token = decodeBody[tokenResponse](t, resp).AccessToken
		}
		for range 10 {
			expectStatus(t, change(token, "wrong-password", "password789"), http.StatusBadRequest)
		}
		expectStatus(t, change(token, "password123", "password789"), http.StatusTooManyRequests)
	})
}

func TestSignupsHaveABudgetOfTheirOwn(t *testing.T) {
	clock := newTestClock()
	cfg := newTestConfig(t)
	defaultLimits(&cfg) // 10 failed logins a minute, 100 signups an hour
	e := startTestEnv(t, cfg, clock.Now)
	from := func(addr string, r *http.Request) *http.Response {
		r.RemoteAddr = addr
		return e.serve(r)
	}
	signup := func(addr, email string) *http.Response {
		return from(addr, newRequest("POST", "/api/v1/auth/signup",
			strings.NewReader(fmt.Sprintf(`{"email":%q,"password":"password123"}`, email)), "Content-Type", "application/json"))
	}
	login := func(addr, email, password string) *http.Response {
		return from(addr, newRequest("POST", "/api/v1/auth/login", strings.NewReader(url.Values{"username": {email}, "password": {password}}.Encode()),
			"Content-Type", "application/x-www-form-urlencoded"))
	}
	const class = "192.0.2.40:1000" // a classroom behind one NAT

	t.Run("40 people behind one address all sign up within 2 minutes, then all log in", func(t *testing.T) {
		for i := range 40 {
			expectStatus(t, signup(class, fmt.Sprintf("pupil%d@example.com", i)), http.StatusCreated)
			clock.advance(3 * time.Second)
		}
		for i := range 40 {
			expectStatus(t, login(class, fmt.Sprintf("pupil%d@example.com", i), "password123"), http.StatusOK)
		}
	})
	t.Run("past the budget a signup is a 429 with Retry-After, and a correct login still gets in", func(t *testing.T) {
		created := 40
		for ; created < 1000; created++ {
			if resp := signup(class, fmt.Sprintf("late%d@example.com", created)); resp.StatusCode != http.StatusCreated {
				expectDetail(t, resp, http.StatusTooManyRequests, "Too many attempts, try again later")
				if ra, _ := strconv.Atoi(resp.Header.Get("Retry-After")); ra < 1 || ra > 36 {
					t.Errorf("Retry-After = %q, want 1 to 36 seconds: one signup comes back every 36 s", resp.Header.Get("Retry-After"))
				}
				break
			}
		}
		// 100 at once, and one back for each 36 s of the 2 minutes.
		if want := 100 + 120/36; created != want {
			t.Errorf("%d signups from one address were created before a 429, want %d", created, want)
		}
		expectStatus(t, login(class, "pupil0@example.com", "password123"), http.StatusOK)
	})
	t.Run("one signup comes back every 36 s", func(t *testing.T) {
		clock.advance(36 * time.Second)
		expectStatus(t, signup(class, "later@example.com"), http.StatusCreated)
		expectStatus(t, signup(class, "later2@example.com"), http.StatusTooManyRequests)
	})
	t.Run("another address has a budget of its own", func(t *testing.T) {
		expectStatus(t, signup("192.0.2.41:1000", "elsewhere@example.com"), http.StatusCreated)
	})
	t.Run("failed logins use up no signups, and signups no failed logins", func(t *testing.T) {
		const office = "192.0.2.42:1000"
		for range 10 {
			expectStatus(t, login(office, "pupil1@example.com", "wrong-password"), http.StatusBadRequest)
		}
		expectStatus(t, login(office, "pupil1@example.com", "wrong-password"), http.StatusTooManyRequests)
		expectStatus(t, signup(office, "office@example.com"), http.StatusCreated)
		expectStatus(t, login(class, "pupil1@example.com", "wrong-password"), http.StatusBadRequest)
	})
	t.Run("SIGNUPS_PER_HOUR=0 turns the limit off", func(t *testing.T) {
		cfg := newTestConfig(t)
		defaultLimits(&cfg)
		cfg.signupsPerHour = 0
		unlimited := startTestEnv(t, cfg, clock.Now)
		for i := range 150 {
			r := newRequest("POST", "/api/v1/auth/signup",
				strings.NewReader(fmt.Sprintf(`{"email":"many%d@example.com","password":"password123"}`, i)), "Content-Type", "application/json")
			r.RemoteAddr = class
			expectStatus(t, unlimited.serve(r), http.StatusCreated)
		}
	})
}

func TestTheDummyHashFollowsTheDearestStoredHash(t *testing.T) {
	unknownLogin := func(t *testing.T, e *testEnv) {
		t.Helper()
		resp, n := hashingJobs(t, e, func() *http.Response {
			return e.tryLogin("nobody@example.com", "password123")
		})
		expectStatus(t, resp, http.StatusBadRequest)
		if n != 1 {
			t.Errorf("an unknown email ran %d bcrypt runs, want 1: the compare, or the new dummy hash in its place", n)
		}
	}
	expectDummyCost := func(t *testing.T, e *testEnv, want int) {
		t.Helper()
		unknownLogin(t, e)
		if got := e.passwords.dummyCost(); got != want {
			t.Errorf("after an unknown email, the dummy hash costs %d, want %d", got, want)
		}
	}
	e := newTestEnv(t)

	t.Run("a dearer hash written by another process raises it", func(t *testing.T) {
		// Another store on the same file, as the createsuperuser command
		// opens one: this server learns of the write by polling.
		other, err := openStore(t.Context(), e.cfg.dbPath, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		defer other.close()
		dear, _ := bcrypt.GenerateFromPassword([]byte("password123"), testBcryptCost+2)
		if _, err := other.createUser(t.Context(), user{Email: "dear@example.com", HashedPassword: string(dear)}); err != nil {
			t.Fatal(err)
		}
		expectDummyCost(t, e, testBcryptCost+2)

		t.Run("and it falls back once that hash is gone", func(t *testing.T) {
			if _, err := other.writer.Exec("DELETE FROM user WHERE email = 'dear@example.com'"); err != nil {
				t.Fatal(err)
			}
			expectDummyCost(t, e, testBcryptCost)
		})
	})
	t.Run("a server at a higher cost over cheaper hashes starts at the stored cost, and follows its own signups", func(t *testing.T) {
		dearer := newTestEnv(t, onDatabase(e.cfg.dbPath), func(c *config) { c.bcryptCost = testBcryptCost + 1 })
		if got := dearer.passwords.dummyCost(); got != testBcryptCost {
			t.Errorf("the dummy hash costs %d, want %d, the dearest stored", got, testBcryptCost)
		}
		dearer.signup("new@example.com", "password123")
		expectDummyCost(t, dearer, testBcryptCost+1)
	})
}

func TestTheHighestStoredCostIsReadFromAnIndex(t *testing.T) {
	// The store reads it after every write it notices: reading every user
	// each time would cost a scan of the table for every signup.
	e := newTestEnv(t)
	if plan := queryPlan(t, e.store.reader, highestCostQuery, "31", testBcryptCost); !strings.Contains(plan, "USING INDEX user_password_cost") {
		t.Errorf("the highest cost is read by\n%s, want a search of the index user_password_cost", plan)
	}
}

func TestLoginRehashesACheaperHash(t *testing.T) {
	cheap := newTestEnv(t)
	cheap.signup("cook@example.com", "password123")
	e := newTestEnv(t, onDatabase(cheap.cfg.dbPath), func(c *config) { c.bcryptCost = testBcryptCost + 1 })

	stored := func(t *testing.T) user {
		t.Helper()
		e.passwords.laterDone.Wait() // the rehash runs after the answer
		u, err := e.store.userByEmail(t.Context(), "cook@example.com")
		if err != nil {
			t.Fatal(err)
		}
		return u
	}
	costOf := func(u user) int { c, _ := bcrypt.Cost([]byte(u.HashedPassword)); return c }
	before := stored(t)

	t.Run("a wrong password does not rehash", func(t *testing.T) {
		expectStatus(t, e.tryLogin("cook@example.com", "wrong-password"), http.StatusBadRequest)
		if u := stored(t); u.HashedPassword != before.HashedPassword {
			t.Errorf("the hash changed to cost %d after a wrong password", costOf(u))
		}
	})
	t.Run("a right password stores a hash at BCRYPT_COST, and the session goes on", func(t *testing.T) {
		tokens := e.loginTokens("cook@example.com", "password123")
		after := stored(t)
		if got := costOf(after); got != e.cfg.bcryptCost {
			t.Errorf("after a login the stored hash costs %d, want BCRYPT_COST %d", got, e.cfg.bcryptCost)
		}
		if after.TokenGeneration != before.TokenGeneration {
			t.Errorf("the token generation moved from %d to %d", before.TokenGeneration, after.TokenGeneration)
		}
		expectStatus(t, e.get("/api/v1/auth/me", bearer(tokens.AccessToken)...), http.StatusOK)
		expectStatus(t, e.postForm("/api/v1/auth/refresh", url.Values{"grant_type": {"refresh_token"}, "refresh_token": {tokens.RefreshToken}}), http.StatusOK)
		e.login("cook@example.com", "password123")
		if u := stored(t); u.HashedPassword != after.HashedPassword {
			t.Error("a hash already at BCRYPT_COST was replaced")
		}
	})
	t.Run("a hash changed meanwhile is not replaced", func(t *testing.T) {
		u := stored(t)
		replaced, err := e.store.replacePasswordHash(t.Context(), u.ID, before.HashedPassword, "$2a$10$other")
		if err != nil || replaced {
			t.Errorf("replacePasswordHash of a stale hash = %v, %v; want false, nil", replaced, err)
		}
		if stored(t).HashedPassword != u.HashedPassword {
			t.Error("a stale rehash overwrote the stored hash")
		}
	})
	t.Run("a rehash that the stopping pool refuses is logged, without password or hash", func(t *testing.T) {
		var logs strings.Builder
		p := newPasswordHasher(e.cfg.bcryptCost)
		p.close()
		a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil)), passwords: p, store: e.store}
		a.rehashLater(before, "password123")
		if !strings.Contains(logs.String(), "password not rehashed yet: the service is stopping") ||
			!strings.Contains(logs.String(), fmt.Sprintf("user_id=%d", before.ID)) {
			t.Errorf("the log does not say that user %d was not rehashed:\n%s", before.ID, logs.String())
		}
		if strings.Contains(logs.String(), "password123") || strings.Contains(logs.String(), before.HashedPassword[7:]) {
			t.Errorf("the log shows the password or the hash:\n%s", logs.String())
		}
	})
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
	e := newTestEnv(f) // one service for every input of the fuzz run
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
	e := newTestEnv(f) // one service for every input of the fuzz run
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
		resp := e.tryLogin("broken@example.com", "password123")
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
		defer p.close()
		if cost := p.dummyCost(); cost != testBcryptCost+2 {
			t.Errorf("dummy hash cost %d, want %d, the stored hash's", cost, testBcryptCost+2)
		}
		if p.cost != testBcryptCost {
			t.Errorf("new hashes cost %d, want the configured %d", p.cost, testBcryptCost)
		}
	})
}

// unusableHashes are stored hashes that nobody can log in with, each
// made from good, a usable hash: bcrypt would run some for years, fail
// others at once, and read the rest as hashes no password matches.
func unusableHashes(good string) []struct{ name, hash string } {
	return []struct{ name, hash string }{
		{"a cost of 31", "$2b$31$" + good[7:]},
		{"a cost one over the dearest a login runs", fmt.Sprintf("$2b$%02d$", maxStoredCost+1) + good[7:]},
		{"a cost under bcrypt's least", "$2b$03$" + good[7:]},
		{"no bcrypt hash at all", "not-a-bcrypt-hash"},
		{"a salt outside bcrypt's alphabet", good[:7] + strings.Repeat("!", 22) + good[29:]},
		{"a salt and digest one character short", good[:59]},
		{"a salt and digest one character long", good + "."},
	}
}

func TestUnusablePasswordHash(t *testing.T) {
	good := passlibHash(t, "password123")
	a := "$2a$" + good[4:]
	for _, tc := range []struct{ name, hash string }{
		{"passlib's $2b$", good},
		{"x/crypto's $2a$", a},
		{"PHP's $2y$", "$2y$" + good[4:]},
		{"a cost of 18, the dearest a login runs", "$2b$18$" + good[7:]},
	} {
		t.Run(tc.name+" is usable", func(t *testing.T) {
			if why := unusablePasswordHash(tc.hash, testBcryptCost); why != "" {
				t.Errorf("unusablePasswordHash = %q, want usable", why)
			}
		})
	}
	unusable := append(unusableHashes(good), []struct{ name, hash string }{
		{"crypt_blowfish's $2x$", "$2x$" + good[4:]},
		{"the bare $2$", "$2$" + good[3:]},
		{"a cost of one digit", "$2b$4$" + good[7:] + "."},
		{"a cost not in digits", "$2b$1a$" + good[7:]},
		{"a digest outside bcrypt's alphabet", good[:59] + "="},
		{"a salt with a NUL", good[:10] + "\x00" + good[11:]},
		{"empty", ""},
	}...)
	for _, tc := range unusable {
		t.Run(tc.name+" is unusable, and the reason shows none of it", func(t *testing.T) {
			why := unusablePasswordHash(tc.hash, testBcryptCost)
			if why == "" {
				t.Fatalf("unusablePasswordHash(%q) = usable", tc.hash)
			}
			if len(tc.hash) > 7 && strings.Contains(why, tc.hash[7:]) {
				t.Errorf("the reason %q shows the hash", why)
			}
		})
	}
	t.Run("a cost up to BCRYPT_COST is usable when that is over 18", func(t *testing.T) {
		if why := unusablePasswordHash("$2b$20$"+good[7:], 20); why != "" {
			t.Errorf("a cost-20 hash under BCRYPT_COST 20: %q, want usable", why)
		}
	})
}

func TestEveryPasswordCheckTreatsAnUnusableHashAsAnUnknownEmail(t *testing.T) {
	e := newTestEnv(t)
	good := passlibHash(t, "password123")
	// dummyRan sends a request with a context that ends in 10 s, and
	// reports whether its bcrypt run was the dummy's: with no dummy there
	// beforehand, a dummy compare makes one. A run of the stored hash
	// would make none, and one that never ends would run out the context.
	dummyRan := func(t *testing.T, r *http.Request) (*http.Response, bool) {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		e.passwords.dummy.Store(nil)
		resp := e.serve(r.WithContext(ctx))
		return resp, e.passwords.dummy.Load() != nil
	}
	for i, tc := range unusableHashes(good) {
		t.Run(tc.name, func(t *testing.T) {
			email := fmt.Sprintf("unusable%d@example.com", i)
			cook := e.signup(email, "password123")
			token := e.login(email, "password123")
			u, err := e.store.userByEmail(t.Context(), email)
			if err != nil {
				t.Fatal(err)
			}
			// Put there by hand, or brought in a reference database.
			if ok, err := e.store.replacePasswordHash(t.Context(), cook.ID, u.HashedPassword, tc.hash); !ok || err != nil {
				t.Fatalf("replacePasswordHash = %v, %v", ok, err)
			}
			login := func() *http.Request {
				return newRequest("POST", "/api/v1/auth/login", strings.NewReader(url.Values{"username": {email}, "password": {"password123"}}.Encode()),
					"Content-Type", "application/x-www-form-urlencoded")
			}
			change := func() *http.Request {
				return newRequest("POST", "/api/v1/auth/password", strings.NewReader(passwordBody("password123", "new-password-456")),
					append([]string{"Content-Type", "application/json"}, bearer(token)...)...)
			}
			for range 2 {
				resp, dummy := dummyRan(t, login())
				expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
				if !dummy {
					t.Errorf("login: the bcrypt run was not the dummy's, at the usual cost")
				}
				resp, dummy = dummyRan(t, change())
				expectDetail(t, resp, http.StatusBadRequest, "Incorrect password")
				if !dummy {
					t.Errorf("password change: the bcrypt run was not the dummy's, at the usual cost")
				}
			}
			t.Run("the password change changed nothing", func(t *testing.T) {
				if after, err := e.store.userByEmail(t.Context(), email); err != nil || after.HashedPassword != tc.hash {
					t.Errorf("the stored hash changed (%v)", err)
				}
				expectAccessTokenWorks(t, e, token, cook.ID)
			})
			t.Run("it is logged at each attempt, without the hash", func(t *testing.T) {
				lines := 0
				for line := range strings.Lines(e.logs.String()) {
					if strings.Contains(line, "stored password hash is unusable") && strings.Contains(line, fmt.Sprintf("user_id=%d ", cook.ID)) {
						lines++
					}
				}
				if lines != 4 { // two logins, two password changes
					t.Errorf("%d log lines about user %d's unusable hash, want 4, one per attempt", lines, cook.ID)
				}
				if len(tc.hash) > 7 && strings.Contains(e.logs.String(), tc.hash[7:]) {
					t.Error("the log shows the stored hash")
				}
			})
		})
	}
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

func TestForwardedForEntriesNameTheirClientInEveryNodeForm(t *testing.T) {
	a := &app{trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	for _, tc := range []struct {
		name, forwarded, want string
	}{
		{"an IPv4 address", "192.0.2.1", "192.0.2.1"},
		{"an IPv4 address with a port", "192.0.2.1:4711", "192.0.2.1"},
		{"a bracketed IPv6 address", "[2001:db8:1:2::1]", "2001:db8:1:2::/64"},
		{"a bracketed IPv6 address with a port", "[2001:db8:1:2::1]:4711", "2001:db8:1:2::/64"},
		{"a plain IPv6 address", "2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"an IPv4-mapped IPv6 address with a port", "[::ffff:192.0.2.1]:4711", "192.0.2.1"},
		{"spaces around an entry", "  192.0.2.1:4711 ", "192.0.2.1"},
		{"the nearest entry that is no trusted proxy, each with a port", "203.0.113.9:1, 192.0.2.1:2, 10.0.0.2:3", "192.0.2.1"},
		{"garbage, which stops the walk at the proxy", "192.0.2.1, garbage", "10.0.0.1"},
		{"unknown, which names no address", "unknown", "10.0.0.1"},
		{"an obfuscated name, which names no address", "_hidden:_port", "10.0.0.1"},
		{"an IPv4 address in brackets, which RFC 7239 does not write", "[192.0.2.1]:4711", "10.0.0.1"},
		{"a port out of range", "192.0.2.1:70000", "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest("GET", "/", nil, "X-Forwarded-For", tc.forwarded)
			r.RemoteAddr = "10.0.0.1:5555"
			if got := a.clientAddress(r); got != tc.want {
				t.Errorf("clientAddress with X-Forwarded-For %q = %s, want %s", tc.forwarded, got, tc.want)
			}
		})
	}
}

func TestClientsBehindATrustedProxyWhoseEntriesHavePortsAreLimitedApart(t *testing.T) {
	cfg := newTestConfig(t)
	cfg.loginAttemptsPerMinute = 1
	cfg.trustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	e := startTestEnv(t, cfg, newTestClock().Now)
	attempt := func(forwarded string) int {
		r := newRequest("POST", "/api/v1/auth/login", strings.NewReader("username=a@b.co&password=wrong-password"),
			"Content-Type", "application/x-www-form-urlencoded", "X-Forwarded-For", forwarded)
		r.RemoteAddr = "10.0.0.1:5555"
		return e.serve(r).StatusCode
	}
	got := []int{attempt("192.0.2.1:1000"), attempt("[2001:db8::1]:1000"), attempt("192.0.2.2:2000"), attempt("192.0.2.1:3000")}
	if fmt.Sprint(got) != "[400 400 400 429]" {
		t.Errorf("failed logins from three forwarded clients, then the first again = %v, want [400 400 400 429]", got)
	}
}

func TestARehashCommittedMeanwhileFailsNoLoginOrPasswordChange(t *testing.T) {
	// A rehash stores the same password at a new cost and moves no token
	// generation on, so a login or password change that read the user
	// before it committed must go on as if nothing happened.
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")
	rehashMeanwhile := func(t *testing.T, waiting func() int) {
		t.Helper()
		for waiting() == 0 {
			time.Sleep(time.Millisecond)
		}
		u, err := e.store.userByEmail(t.Context(), "cook@example.com")
		if err != nil {
			t.Fatal(err)
		}
		dearer, err := bcrypt.GenerateFromPassword([]byte("password123"), testBcryptCost+1)
		if err != nil {
			t.Fatal(err)
		}
		if ok, err := e.store.replacePasswordHash(t.Context(), u.ID, u.HashedPassword, string(dearer)); !ok || err != nil {
			t.Fatalf("replacePasswordHash = %v, %v; want true, nil", ok, err)
		}
	}

	t.Run("a login waiting to hash still succeeds", func(t *testing.T) {
		answer := answerWithHashingHeld(t, e, func() *http.Response {
			return e.tryLogin("cook@example.com", "password123")
		}, rehashMeanwhile)
		expectStatus(t, answer, http.StatusOK)
	})
	t.Run("a password change waiting to hash still succeeds", func(t *testing.T) {
		token := e.login("cook@example.com", "password123")
		answer := answerWithHashingHeld(t, e, func() *http.Response {
			return e.postJSON("/api/v1/auth/password",
				`{"current_password":"password123","new_password":"new-password-456"}`, bearer(token)...)
		}, rehashMeanwhile)
		expectStatus(t, answer, http.StatusOK)
	})
}

// dummyCost is the cost of the dummy hash, 0 before there is one.
func (p *passwordHasher) dummyCost() int {
	if d := p.dummy.Load(); d != nil {
		cost, _ := hashCost(*d)
		return cost
	}
	return 0
}

// FuzzUnusablePasswordHash checks the promise that passwordMatches relies
// on: a hash that unusablePasswordHash lets through is one that bcrypt
// reads, so that its compare is a whole compare, never an error that
// answers at once. Costs above 5 are left out to keep each run short; the
// cost bounds have their table in TestUnusablePasswordHash.
func FuzzUnusablePasswordHash(f *testing.F) {
	hash, err := bcrypt.GenerateFromPassword([]byte("password123"), bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(string(hash))
	f.Add("$2b$04$" + strings.Repeat(".", 53))
	f.Add("$2y$05$" + strings.Repeat("z", 53))
	f.Add("$2a$04$!!!!!!!!!!!!!!!!!!!!!!" + string(hash[29:]))
	f.Add(string(hash) + "x")
	f.Fuzz(func(t *testing.T, hash string) {
		if unusablePasswordHash(hash, bcrypt.MinCost) != "" {
			return
		}
		if cost := hash[4:6]; cost > "05" {
			t.Skip("dear to compare; the cost bound has its own test")
		}
		err := bcrypt.CompareHashAndPassword([]byte(hash), []byte("password123"))
		if err != nil && !errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
			t.Fatalf("unusablePasswordHash(%q) = \"\", but bcrypt cannot read it: %v", hash, err)
		}
	})
}

// FuzzForwardedNode checks that an X-Forwarded-For entry that
// forwardedNode reads names a valid address, which reads back as itself.
func FuzzForwardedNode(f *testing.F) {
	for _, seed := range []string{"203.0.113.7", "203.0.113.7:8080", "[2001:db8::1]", "[2001:db8::1]:443",
		"2001:db8::1", " 198.51.100.2 ", "unknown", "_hidden", "[203.0.113.7]", "203.0.113.7:99999", "[::1", "fe80::1%eth0"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, entry string) {
		addr, ok := forwardedNode(entry)
		if !ok {
			return
		}
		if !addr.IsValid() {
			t.Fatalf("forwardedNode(%q) = %v, true; want a valid address", entry, addr)
		}
		if back, err := netip.ParseAddr(addr.String()); err != nil || back != addr {
			t.Fatalf("forwardedNode(%q) = %v, which reads back as %v, %v", entry, addr, back, err)
		}
	})
}

// BenchmarkLogin is a whole login with the right password at bcrypt cost
// 12, the default, beside one bcrypt comparison at that cost: the login
// should cost that comparison and little more (no second hash).
func BenchmarkLogin(b *testing.B) {
	e := newTestEnv(b, func(c *config) { c.bcryptCost = 12 })
	form := url.Values{"username": {"admin@recipeapi.com"}, "password": {adminPassword}}.Encode()
	b.Run("login", func(b *testing.B) {
		for b.Loop() {
			resp := e.send("POST", "/api/v1/auth/login", strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("login = %d", resp.StatusCode)
			}
		}
	})
	b.Run("bcrypt-compare", func(b *testing.B) {
		u, _ := e.store.userByEmail(b.Context(), "admin@recipeapi.com")
		for b.Loop() {
			bcrypt.CompareHashAndPassword([]byte(u.HashedPassword), []byte(adminPassword))
		}
	})
}

func TestUserIDsAreNeverReused(t *testing.T) {
	e := newTestEnv(t)
	leaver, leaverToken := newRecipeUser(e, "leaver@example.com")
	soup := postRecipe(t, e, leaverToken, "Leaver's soup", "Leaver", "https://example.com/soup")
	deleteUserByHand(t, e.cfg.dbPath, leaver.ID)

	newcomer, newcomerToken := newRecipeUser(e, "newcomer@example.com")
	t.Run("the next signup gets a new id", func(t *testing.T) {
		if newcomer.ID <= leaver.ID {
			t.Errorf("newcomer id = %d, want above the deleted user's %d", newcomer.ID, leaver.ID)
		}
	})
	t.Run("the newcomer sees none of the deleted user's recipes", func(t *testing.T) {
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(newcomerToken)...)
		expectStatus(t, resp, http.StatusOK)
		if got := decodeBody[map[string][]recipe](t, resp)["results"]; len(got) != 0 {
			t.Errorf("GET /api/v1/recipes/my-recipes/ = %+v, want none", got)
		}
	})
	t.Run("the newcomer may not change them", func(t *testing.T) {
		expectDetail(t, e.sendJSON("PUT", "/api/v1/recipes/"+itoa(soup.ID), recipeBody("Mine now", "Me", "https://example.com/x"), bearer(newcomerToken)...),
			http.StatusForbidden, "You can only update your recipes")
		expectDetail(t, e.send("DELETE", "/api/v1/recipes/"+itoa(soup.ID), nil, bearer(newcomerToken)...),
			http.StatusForbidden, "You can only delete your recipes")
	})
	t.Run("the deleted user's access token is refused", func(t *testing.T) {
		expectAccessTokenRefused(t, e, leaverToken)
	})
}

func TestEveryAuthenticatedResponseIsMarkedNoStore(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	soup := postRecipe(t, e, token, "Soup", "Me", "https://example.com/soup")
	for _, tc := range []struct {
		name string
		send func() *http.Response
	}{
		{"GET /auth/me", func() *http.Response { return e.get("/api/v1/auth/me", bearer(token)...) }},
		{"GET /recipes/my-recipes/", func() *http.Response { return e.get("/api/v1/recipes/my-recipes/", bearer(token)...) }},
		{"GET /recipes/my-recipes", func() *http.Response { return e.get("/api/v1/recipes/my-recipes", bearer(token)...) }},
		{"POST /recipes/", func() *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Me", "https://example.com/stew"), bearer(token)...)
		}},
		{"PUT /recipes/{id}", func() *http.Response {
			return e.sendJSON("PUT", "/api/v1/recipes/"+itoa(soup.ID), recipeBody("Soup", "Me", "https://example.com/soup"), bearer(token)...)
		}},
		{"a refused PUT on another's recipe", func() *http.Response {
			return e.sendJSON("PUT", "/api/v1/recipes/1", recipeBody("Soup", "Me", "https://example.com/soup"), bearer(token)...)
		}},
		{"a 401 for a bad token", func() *http.Response { return e.get("/api/v1/auth/me", bearer("nope")...) }},
		{"DELETE /recipes/{id}", func() *http.Response {
			return e.send("DELETE", "/api/v1/recipes/"+itoa(soup.ID), nil, bearer(token)...)
		}},
		{"POST /auth/logout", func() *http.Response { return e.send("POST", "/api/v1/auth/logout", nil, bearer(token)...) }},
	} {
		t.Run(tc.name+" carries Cache-Control: no-store", func(t *testing.T) {
			resp := tc.send()
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s %s = %d with Cache-Control %q, want no-store", resp.Request.Method, resp.Request.URL, resp.StatusCode, got)
			}
		})
	}
}

func TestInvisibleCharactersInEmailsAndNamesAreRefused(t *testing.T) {
	e := newTestEnv(t)
	invisible := map[string]string{
		"a NUL":                               "\u0000",
		"a tab":                               "\t",
		"a DEL":                               "\u007f",
		"a C1 control (NEL)":                  "\u0085",
		"a zero-width space":                  "\u200b",
		"a zero-width non-joiner":             "\u200c",
		"a zero-width joiner":                 "\u200d",
		"a left-to-right mark":                "\u200e",
		"a right-to-left mark":                "\u200f",
		"a right-to-left override":            "\u202e",
		"a left-to-right embedding":           "\u202a",
		"a first-strong isolate":              "\u2068",
		"a word joiner":                       "\u2060",
		"an invisible plus":                   "\u2064",
		"a byte order mark":                   "\ufeff",
		"a soft hyphen":                       "\u00ad",
		"a Mongolian vowel separator":         "\u180e",
		"a line separator":                    "\u2028",
		"a paragraph separator":               "\u2029",
		"a no-break space":                    "\u00a0",
		"an ideographic space":                "\u3000",
		"a Hangul choseong filler":            "\u115f",
		"a Hangul filler":                     "\u3164",
		"a halfwidth Hangul filler":           "\uffa0",
		"a braille blank":                     "\u2800",
		"a variation selector":                "\ufe0f",
		"a variation selector beyond the BMP": "\U000E0100",
		"a tag character":                     "\U000E0041",
		"a combining grapheme joiner":         "\u034f",
		"a Khmer inherent vowel":              "\u17b4",
		"an Arabic letter mark":               "\u061c",
		"an interlinear annotation anchor":    "\ufff9",
		"a function application (U+2061)":     "\u2061",
	}
	for name, char := range invisible {
		t.Run("an email with "+name+" is a 422 at body.email", func(t *testing.T) {
			if strings.TrimSpace(char) != "" {
				// Spaces at either end are trimmed, as the contract says;
				// that leaves the address that is already taken.
				body, _ := json.Marshal(map[string]string{"email": "admin@recipeapi.com" + char, "password": "password123"})
				expectProblems(t, e.postJSON("/api/v1/auth/signup", string(body)), "body.email")
			}
			body, _ := json.Marshal(map[string]string{"email": "ad" + char + "min@example.com", "password": "password123"})
			expectProblems(t, e.postJSON("/api/v1/auth/signup", string(body)), "body.email")
		})
		t.Run("names with "+name+" are 422s at body.first_name and body.surname", func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"email": "named@example.com", "password": "password123",
				"first_name": "Ada" + char, "surname": char + "Lovelace"})
			problems := problemsOf(t, e.postJSON("/api/v1/auth/signup", string(body)))
			if len(problems) != 2 || strings.Join(problems[0].Loc, ".") != "body.first_name" || strings.Join(problems[1].Loc, ".") != "body.surname" {
				t.Fatalf("problems = %+v, want body.first_name and body.surname", problems)
			}
			want := fmt.Sprintf("U+%04X", []rune(char)[0])
			if !strings.Contains(problems[0].Msg, "invisible") || !strings.Contains(problems[0].Msg, want) {
				t.Errorf("msg = %q, want it to say invisible and name %s", problems[0].Msg, want)
			}
		})
	}
	t.Run("the first superuser's email is checked at start too", func(t *testing.T) {
		_, err := loadConfig("serve", nil, func(k string) string {
			return map[string]string{"FIRST_SUPERUSER": "admin@recipeapi.com\u200b"}[k]
		}, nil)
		if err == nil || !strings.Contains(err.Error(), "U+200B") {
			t.Errorf("loadConfig with a zero-width space in FIRST_SUPERUSER = %v, want an error naming U+200B", err)
		}
	})
	t.Run("an emoji joined by a zero-width joiner is refused, as every format character is", func(t *testing.T) {
		body, _ := json.Marshal(map[string]string{"email": "emoji@example.com", "password": "password123", "first_name": "Chef \U0001F469\u200d\U0001F373"})
		problems := problemsOf(t, e.postJSON("/api/v1/auth/signup", string(body)))
		if len(problems) != 1 || !strings.Contains(problems[0].Msg, "U+200D") {
			t.Errorf("problems = %+v, want one naming U+200D", problems)
		}
	})
	for _, tc := range []struct{ name, first, surname string }{
		{"ordinary spaces", "Mary Ann", "van der Berg"},
		{"letters beyond ASCII, and marks", "José", "Nguyễn"},
		{"an e with a combining accent", "Rene\u0301e", "Zoë"},
		{"scripts other than Latin", "Дми́трий", "李"},
		{"an emoji", "Chef 🍳", "O'Brien-Smith"},
	} {
		t.Run("names with "+tc.name+" are fine", func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"email": fmt.Sprintf("n%d@example.com", len(tc.name)), "password": "password123",
				"first_name": tc.first, "surname": tc.surname})
			resp := e.postJSON("/api/v1/auth/signup", string(body))
			expectStatus(t, resp, http.StatusCreated)
			if got := decodeBody[userView](t, resp); *got.FirstName != tc.first || *got.Surname != tc.surname {
				t.Errorf("signup names = %q %q, want %q %q", *got.FirstName, *got.Surname, tc.first, tc.surname)
			}
		})
	}
}

func TestAStoredHashOfAnUnusableCostNeverStopsTheStart(t *testing.T) {
	seeded := newTestEnv(t)
	path := seeded.cfg.dbPath
	seeded.signup("fine@example.com", "password123")
	seeded.store.close()
	raw := openRawDB(t, path)
	good := passlibHash(t, "password123")
	for _, row := range []struct{ email, hash string }{
		{"cost99@example.com", "$2b$99$" + good[7:]},
		{"cost03@example.com", "$2b$03$" + good[7:]},
		{"cost31@example.com", "$2b$31$" + good[7:]},
		{"cost19@example.com", "$2b$19$" + good[7:]},
		{"garbage@example.com", "not a hash"},
	} {
		if _, err := raw.Exec("INSERT INTO user (email, email_key, is_superuser, hashed_password) VALUES (?, ?, 0, ?)",
			row.email, row.email, row.hash); err != nil {
			t.Fatal(err)
		}
	}

	started := make(chan *testEnv, 1)
	go func() { started <- newTestEnv(t, onDatabase(path)) }()
	var e *testEnv
	select {
	case e = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the start did not finish within 30 s")
	}
	t.Run("the dummy hash ignores the unusable costs", func(t *testing.T) {
		cost, err := dummyCost(t.Context(), e.store, bcrypt.DefaultCost)
		if err != nil || cost != testBcryptCost {
			t.Errorf("dummyCost = %d, %v; want %d, the only usable cost", cost, err, testBcryptCost)
		}
	})
	for _, email := range []string{"cost99@example.com", "cost03@example.com", "cost31@example.com", "cost19@example.com", "garbage@example.com"} {
		t.Run(email+" cannot log in, as with a wrong password", func(t *testing.T) {
			for range 3 {
				done := make(chan *http.Response, 1)
				go func() {
					done <- e.postForm("/api/v1/auth/login", map[string][]string{"username": {email}, "password": {"password123"}})
				}()
				select {
				case resp := <-done:
					expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
				case <-time.After(30 * time.Second):
					t.Fatal("the login did not answer within 30 s")
				}
			}
		})
	}
	t.Run("the log says so at each attempt, without the hash", func(t *testing.T) {
		logs := e.logs.String()
		if n := strings.Count(logs, "stored password hash is unusable"); n != 15 {
			t.Errorf("log has %d lines about unusable hashes, want 15 (one per attempt):\n%s", n, logs)
		}
		if strings.Contains(logs, good[7:]) || strings.Contains(logs, "not a hash") {
			t.Errorf("the log shows a stored hash:\n%s", logs)
		}
	})
	t.Run("the other accounts log in", func(t *testing.T) {
		e.login("fine@example.com", "password123")
		e.login("admin@recipeapi.com", adminPassword)
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

func TestEmailsAreUniqueIgnoringCase(t *testing.T) {
	t.Run("the store refuses an email that differs only in case", func(t *testing.T) {
		e := newTestEnv(t)
		first, err := e.store.createUser(t.Context(), user{Email: "A@x.com", HashedPassword: "x"})
		if err != nil {
			t.Fatalf("createUser(A@x.com) = %v", err)
		}
		for _, email := range []string{"a@X.COM", "A@x.com", "a@x.com", "A@X.COM"} {
			if _, err := e.store.createUser(t.Context(), user{Email: email, HashedPassword: "x"}); !errors.Is(err, errEmailTaken) {
				t.Errorf("createUser(%s) after A@x.com = %v, want errEmailTaken", email, err)
			}
		}
		if _, err := e.store.createUser(t.Context(), user{Email: "b@x.com", HashedPassword: "x"}); err != nil {
			t.Errorf("createUser(b@x.com) = %v, want no error", err)
		}
		found, err := e.store.userByEmail(t.Context(), "a@X.COM")
		if err != nil || found.ID != first.ID || found.Email != "A@x.com" {
			t.Errorf("userByEmail(a@X.COM) = %+v, %v; want user %d as A@x.com", found, err, first.ID)
		}
	})

	t.Run("of 20 racing signups of one email in different cases, exactly one wins", func(t *testing.T) {
		e := newTestEnv(t)
		const racers = 20
		type outcome struct {
			email  string
			status int
			body   string
		}
		outcomes := make(chan outcome, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			email := caseVariant("racer@example.com", i)
			wg.Go(func() {
				<-start
				body := fmt.Sprintf(`{"email":%q,"password":"racer-password"}`, email)
				// A 503 means the hashers were all busy: the contract's
				// answer to a flood, which a client retries.
				for attempt := 0; ; attempt++ {
					resp := e.postJSON("/api/v1/auth/signup", body)
					text, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != http.StatusServiceUnavailable || attempt == 200 {
						outcomes <- outcome{email, resp.StatusCode, string(text)}
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		close(start)
		wg.Wait()
		close(outcomes)

		var winners []string
		for o := range outcomes {
			switch o.status {
			case http.StatusCreated:
				winners = append(winners, o.email)
			case http.StatusBadRequest:
				if want := `{"detail":"The user with this email already exists in the system"}`; o.body != want {
					t.Errorf("POST /api/v1/auth/signup %s = 400 %s, want %s", o.email, o.body, want)
				}
			default:
				t.Errorf("POST /api/v1/auth/signup %s = %d %s, want 201 or 400", o.email, o.status, o.body)
			}
		}
		if len(winners) != 1 {
			t.Errorf("signups that won = %q, want exactly one", winners)
		}
		raw := openRawDB(t, e.cfg.dbPath)
		if n := queryInt(t, raw, "SELECT count(*) FROM user WHERE email = 'racer@example.com' COLLATE NOCASE"); n != 1 {
			t.Errorf("users with the racers' email = %d, want 1", n)
		}
	})
}

func TestOnceTheUserIDsAreUsedUpASignupSaysSo(t *testing.T) {
	// A reference database whose last user has the largest id SQLite
	// allows: the migration's AUTOINCREMENT can give no id after it.
	path := filepath.Join(t.TempDir(), "reference.db")
	makeReferenceDB(t, path, fmt.Sprintf(`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
		VALUES (%d, 'Last', 'One', 'last@example.com', 0, '%s')`, int64(math.MaxInt64), passlibHash(t, "last-password")))
	e := newTestEnv(t, onDatabase(path))

	t.Run("a signup answers 503, saying why, with no Retry-After, and the log tells the operator", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup", `{"email":"new@example.com","password":"password123"}`)
		if retry := resp.Header.Get("Retry-After"); retry != "" {
			t.Errorf("Retry-After = %q; want none: waiting will not help", retry)
		}
		expectDetail(t, resp, http.StatusServiceUnavailable, "No more accounts can be created: the user ids are used up")
		if logs := e.logs.String(); !strings.Contains(logs, "user ids are used up") {
			t.Errorf("the log does not say that the user ids are used up:\n%s", logs)
		}
	})
	t.Run("the users there log in and submit recipes as before", func(t *testing.T) {
		token := e.login("last@example.com", "last-password")
		resp := e.postJSON("/api/v1/recipes/", `{"label":"Last Soup","source":"s","url":"https://example.com/soup"}`, bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
	})
	t.Run("createsuperuser of a new email says why in one line", func(t *testing.T) {
		_, err := runCommand(t, map[string]string{"BCRYPT_COST": "4"}, "a-strong-password\n", "createsuperuser", "-db", path, "-email", "boss@example.com")
		if err == nil || !strings.Contains(err.Error(), "user ids are used up") || strings.Contains(err.Error(), "\n") {
			t.Errorf("createsuperuser = %v, want one line saying the user ids are used up", err)
		}
	})
}
