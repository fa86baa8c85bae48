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
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// signupBody is a signup's JSON body.
func signupBody(email, password string) string {
	body, _ := json.Marshal(map[string]string{"email": email, "password": password})
	return string(body)
}

// loginRequest is a login form, as the tutorial's clients send it.
func loginRequest(email, password string, header ...string) *http.Request {
	form := url.Values{"username": {email}, "password": {password}}
	return newRequest("POST", "/api/v1/auth/login", strings.NewReader(form.Encode()),
		append([]string{"Content-Type", "application/x-www-form-urlencoded"}, header...)...)
}

// from sends r as the client at remoteAddr, the address the limits count.
func from(e *testEnv, remoteAddr string, r *http.Request) *http.Response {
	r.RemoteAddr = remoteAddr
	return e.serve(r)
}

func TestSignup(t *testing.T) {
	e := newTestEnv(t)

	t.Run("a new user is created as given, shown without the password hash, and stored at the configured cost", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup",
			`{"email":" Cook@Example.com ","password":"password123","first_name":"Ada","surname":null}`)
		expectStatus(t, resp, http.StatusCreated)
		got := decodeBody[map[string]any](t, resp)
		want := map[string]any{"first_name": "Ada", "surname": nil, "email": "Cook@Example.com", "is_superuser": false, "id": got["id"]}
		if fmt.Sprint(got) != fmt.Sprint(want) || got["id"] == nil {
			t.Errorf("signup = %v, want %v", got, want)
		}
		u, err := e.store.userByEmail(t.Context(), "cook@example.com")
		if err != nil {
			t.Fatal(err)
		}
		if cost, err := bcrypt.Cost([]byte(u.HashedPassword)); err != nil || cost != testBcryptCost {
			t.Errorf("stored hash %q has cost %d, %v; want %d", u.HashedPassword[:7], cost, err, testBcryptCost)
		}
	})
	t.Run("is_superuser in the body never makes a superuser; it and the reference clients' other extra fields are ignored", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup",
			`{"email":"mallory@example.com","password":"password123","is_superuser":true,"full_name":"X","is_active":true}`)
		expectStatus(t, resp, http.StatusCreated)
		if decodeBody[userView](t, resp).IsSuperuser {
			t.Error("signup with is_superuser true made a superuser")
		}
		if u, err := e.store.userByEmail(t.Context(), "mallory@example.com"); err != nil || u.IsSuperuser {
			t.Errorf("the stored user is a superuser (%v)", err)
		}
	})
	t.Run("every value at its limit is accepted", func(t *testing.T) {
		// 254 bytes of email, 8 bytes of password, 256 characters (512
		// bytes) of name; 72 bytes of password are TestLogin's.
		email := strings.Repeat("a", maxEmailBytes-len("@example.com")) + "@example.com"
		name := strings.Repeat("é", maxTextChars)
		body, _ := json.Marshal(map[string]string{"email": email, "password": "12345678", "first_name": name, "surname": name})
		expectStatus(t, e.postJSON("/api/v1/auth/signup", string(body)), http.StatusCreated)
		e.login(email, "12345678")
	})
	t.Run("an email taken ignoring case, in any script, is refused", func(t *testing.T) {
		e.signup("Taken@Example.com", "password123")
		e.signup("Ünï@example.com", "password123")
		for _, email := range []string{"taken@example.com", "TAKEN@EXAMPLE.COM", " taken@example.COM", "üNÏ@example.com"} {
			t.Run(email, func(t *testing.T) {
				expectDetail(t, e.postJSON("/api/v1/auth/signup", signupBody(email, "password123")),
					http.StatusBadRequest, "The user with this email already exists in the system")
			})
		}
	})

	long := strings.Repeat("x", maxTextChars+1)
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
	}{
		{"a missing email is a 422", `{"password":"password123"}`, []string{"body.email"}},
		{"a null email is a 422", `{"email":null,"password":"password123"}`, []string{"body.email"}},
		{"an email that is not a string is a 422", `{"email":5,"password":"password123"}`, []string{"body.email"}},
		{"an empty email is a 422", `{"email":" ","password":"password123"}`, []string{"body.email"}},
		{"an email of 255 bytes is a 422", signupBody(strings.Repeat("a", maxEmailBytes+1-len("@example.com"))+"@example.com", "password123"), []string{"body.email"}},
		{"an address without @ is a 422", `{"email":"cook","password":"password123"}`, []string{"body.email"}},
		{"an address without a dot in its domain is a 422", `{"email":"cook@localhost","password":"password123"}`, []string{"body.email"}},
		{"an address whose domain starts with a dot is a 422", `{"email":"cook@.example.com","password":"password123"}`, []string{"body.email"}},
		{"an address whose domain ends with a dot is a 422", `{"email":"cook@example.com.","password":"password123"}`, []string{"body.email"}},
		{"an address with a display name is a 422", `{"email":"Cook <cook@x.com>","password":"password123"}`, []string{"body.email"}},
		{"two addresses are a 422", `{"email":"a@x.com, b@x.com","password":"password123"}`, []string{"body.email"}},
		{"a missing password is a 422", `{"email":"p@example.com"}`, []string{"body.password"}},
		{"a password of 7 bytes is a 422", `{"email":"p@example.com","password":"1234567"}`, []string{"body.password"}},
		{"a password of 73 bytes is a 422, not truncated", signupBody("p@example.com", strings.Repeat("p", 73)), []string{"body.password"}},
		{"a password of 37 two-byte letters (74 bytes) is a 422", signupBody("p@example.com", strings.Repeat("é", 37)), []string{"body.password"}},
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
}

func TestLogin(t *testing.T) {
	e := newTestEnv(t)
	cook := e.signup("Cook@Example.com", "password123")
	ünï := e.signup("Ünï@example.com", "password123")
	long := e.signup("long@example.com", strings.Repeat("p", 72))
	multipart := "--X\r\nContent-Disposition: form-data; name=\"username\"\r\n\r\ncook@example.com\r\n" +
		"--X\r\nContent-Disposition: form-data; name=\"password\"\r\n\r\npassword123\r\n--X--\r\n"
	for _, tc := range []struct {
		name   string
		send   func() *http.Response
		userID int64
	}{
		{"an urlencoded form logs in, ignoring the email's case", func() *http.Response { return e.tryLogin("cook@example.com", "password123") }, cook.ID},
		{"a multipart form logs in, as the tutorial's React client sends it", func() *http.Response {
			return e.postMultipart("/api/v1/auth/login", map[string]string{"username": "COOK@example.com", "password": "password123"})
		}, cook.ID},
		{"a multipart media type in mixed case is still multipart", func() *http.Response {
			return e.send("POST", "/api/v1/auth/login", strings.NewReader(multipart), "Content-Type", "Multipart/Form-Data; boundary=X")
		}, cook.ID},
		{"Swagger UI's form with grant_type, scope and Basic Og== logs in", func() *http.Response {
			form := url.Values{"grant_type": {"password"}, "username": {"cook@example.com"}, "password": {"password123"}, "scope": {""}}
			return e.postForm("/api/v1/auth/login", form, "Authorization", "Basic Og==")
		}, cook.ID},
		{"an email differing only in non-ASCII case logs in", func() *http.Response { return e.tryLogin("üNÏ@EXAMPLE.COM", "password123") }, ünï.ID},
		{"a password of exactly 72 bytes logs in", func() *http.Response { return e.tryLogin("long@example.com", strings.Repeat("p", 72)) }, long.ID},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectAccessTokenWorks(t, e, expectTokenResponse(t, e, tc.send()).AccessToken, tc.userID)
		})
	}
	t.Run("a user made by the reference logs in with a passlib $2b$12$ hash", func(t *testing.T) {
		// A service of its own: the hash at cost 12 would make its dummy
		// hash cost 12 too.
		ref := newTestEnv(t)
		u, err := ref.store.createUser(t.Context(), user{Email: "old@example.com", HashedPassword: hashAt(t, "reference-pw", 12)})
		if err != nil {
			t.Fatal(err)
		}
		expectAccessTokenWorks(t, ref, expectTokenResponse(t, ref, ref.tryLogin("old@example.com", "reference-pw")).AccessToken, u.ID)
	})
	// A wrong password and an unknown email get the same answer; each
	// login costs one bcrypt compare, at the configured cost.
	for _, tc := range []struct {
		name, email, password string
		want                  int
	}{
		{"a wrong password is a 400", "cook@example.com", "wrong-password", http.StatusBadRequest},
		{"an unknown email is the same 400", "nobody@example.com", "password123", http.StatusBadRequest},
		{"a right password is a 200", "cook@example.com", "password123", http.StatusOK},
	} {
		t.Run(tc.name+", after one bcrypt compare and no hash", func(t *testing.T) {
			dummy, before := e.passwords.dummy.Load(), stored(t, e, "cook@example.com")
			resp, n := hashingJobs(t, e, func() *http.Response { return e.tryLogin(tc.email, tc.password) })
			expectStatus(t, resp, tc.want)
			if tc.want == http.StatusBadRequest {
				expectDetail(t, resp, tc.want, "Incorrect username or password")
			}
			if n != 1 {
				t.Errorf("login as %s ran %d bcrypt runs, before and after its answer; want 1, the compare", tc.email, n)
			}
			// The one run compared: a hash would have made a new dummy, or
			// stored a new hash.
			if e.passwords.dummy.Load() != dummy || e.passwords.dummyCost() != e.cfg.bcryptCost {
				t.Errorf("login as %s made a new dummy hash, at cost %d, where it should compare against the one at the configured %d", tc.email, e.passwords.dummyCost(), e.cfg.bcryptCost)
			}
			if after := stored(t, e, "cook@example.com"); after.HashedPassword != before.HashedPassword {
				t.Errorf("login as %s stored a new hash at the configured cost", tc.email)
			}
		})
	}
	const urlencoded = "application/x-www-form-urlencoded"
	for _, tc := range []struct {
		name, contentType, body string
		wantLocs                []string
	}{
		{"a missing username is a 422", urlencoded, "password=password123", []string{"body.username"}},
		{"a missing password is a 422", urlencoded, "username=cook@example.com", []string{"body.password"}},
		{"an empty form lists both fields", urlencoded, "", []string{"body.username", "body.password"}},
		{"a grant_type other than password is a 422", urlencoded, "username=cook@example.com&password=password123&grant_type=client_credentials", []string{"body.grant_type"}},
		{"a JSON body is not a login form", "application/json", `{"username":"cook@example.com","password":"password123"}`, []string{"body.username", "body.password"}},
		// long's password is the first 72 bytes of this one.
		{"a password over 72 bytes is a 422, not truncated to one that matches", urlencoded,
			"username=long@example.com&password=" + strings.Repeat("p", 72) + "EXTRA", []string{"body.password"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.send("POST", "/api/v1/auth/login", strings.NewReader(tc.body), "Content-Type", tc.contentType), tc.wantLocs...)
		})
	}
	t.Run("no password or token reaches the log", func(t *testing.T) {
		token := e.login("cook@example.com", "password123")
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

	// A token signed with another secret: see TestChangingTheSecretEndsAccessTokensButNotRefreshTokens.
	sign := func(userID int64) string {
		return signAccessToken(newTokenKey(e.cfg.tokenSecret), userID, 0, clock.Now(), time.Hour)
	}
	for _, tc := range []struct {
		name, authorization, detail string
	}{
		{"no Authorization header is not authenticated", "", "Not authenticated"},
		{"a Basic header is not authenticated", "Basic Og==", "Not authenticated"},
		{"a bare token without a scheme is not authenticated", token, "Not authenticated"},
		{"a garbled token is refused", "Bearer not-a-token", "Could not validate credentials"},
		{"an empty bearer token is refused", "Bearer ", "Could not validate credentials"},
		{"a token for a user who does not exist is refused", "Bearer " + sign(999), "Could not validate credentials"},
		{"a token of another token generation of its user is refused", "Bearer " + sign(cook.ID), "Could not validate credentials"},
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
		u := e.signup("expiring@example.com", "password123")
		expiring := e.login("expiring@example.com", "password123")
		expectAccessTokenWorks(t, e, expiring, u.ID)
		clock.advance(e.cfg.accessTokenLifetime)
		defer clock.advance(-e.cfg.accessTokenLifetime)
		expectAccessTokenRefused(t, e, expiring)
	})
}

// limitedEnv is a service with the attempt limits at their defaults (10
// failed logins a minute, 100 signups an hour), then change, on a clock
// that moves only when the test moves it: no attempt comes back by
// waiting unless the test says so.
func limitedEnv(t *testing.T, change ...func(*config)) (*testEnv, *testClock) {
	t.Helper()
	clock := newTestClock()
	cfg := newTestConfig(t)
	defaultLimits(&cfg)
	for _, c := range change {
		c(&cfg)
	}
	return startTestEnv(t, cfg, clock.Now), clock
}

// expectRetryAfter checks a 429 whose Retry-After is want seconds.
func expectRetryAfter(t *testing.T, resp *http.Response, want string) {
	t.Helper()
	expectDetail(t, resp, http.StatusTooManyRequests, "Too many attempts, try again later")
	if got := resp.Header.Get("Retry-After"); got != want {
		t.Errorf("%s %s: Retry-After = %q, want %s", resp.Request.Method, resp.Request.URL, got, want)
	}
}

func TestFailedLoginsAreLimitedPerClient(t *testing.T) {
	e, clock := limitedEnv(t) // 10 failed logins a minute: one back every 6 s
	for i := range 30 {
		e.signup(fmt.Sprintf("pupil%d@example.com", i), "password123")
	}
	// Each subtest is a client of its own, by the third part of its address.
	failTenTimes := func(t *testing.T, client string) {
		t.Helper()
		for i := range 10 {
			email := "pupil1@example.com"
			if i%2 == 1 {
				email = "nobody@example.com"
			}
			expectStatus(t, from(e, client+fmt.Sprint(1000+i), loginRequest(email, "wrong-password")), http.StatusBadRequest)
		}
	}

	t.Run("wrong passwords and unknown emails use up a client's 10 attempts; then a 429 costs no bcrypt run", func(t *testing.T) {
		failTenTimes(t, "192.0.2.1:")
		resp, n := hashingJobs(t, e, func() *http.Response {
			return from(e, "192.0.2.1:2000", loginRequest("pupil2@example.com", "password123"))
		})
		expectRetryAfter(t, resp, "6")
		if n != 0 {
			t.Errorf("a client out of attempts cost %d bcrypt runs, want 0", n)
		}
		expectRetryAfter(t, from(e, "192.0.2.1:2001", loginRequest("pupil2@example.com", "wrong-password", "X-Forwarded-For", "198.51.100.9")), "6")
		expectStatus(t, from(e, "192.0.2.2:1000", loginRequest("pupil2@example.com", "wrong-password")), http.StatusBadRequest)
	})
	t.Run("one attempt comes back every 6 s, not sooner", func(t *testing.T) {
		failTenTimes(t, "192.0.3.1:")
		clock.advance(5 * time.Second)
		expectRetryAfter(t, from(e, "192.0.3.1:2000", loginRequest("pupil1@example.com", "wrong-password")), "1")
		clock.advance(time.Second)
		expectStatus(t, from(e, "192.0.3.1:2001", loginRequest("pupil1@example.com", "wrong-password")), http.StatusBadRequest)
		expectRetryAfter(t, from(e, "192.0.3.1:2002", loginRequest("pupil1@example.com", "wrong-password")), "6")
	})
	t.Run("30 users behind one address logging in at once all get in", func(t *testing.T) {
		// The workers are held until the whole burst has arrived, so that
		// every login is pending at once.
		releaseOnceWaiting(t, e.passwords, 10, 20, holdWorkers(t, e.passwords))
		got := burstStatuses(30, func(i int) *http.Response {
			return from(e, "192.0.4.1:1000", loginRequest(fmt.Sprintf("pupil%d@example.com", i), "password123"))
		})
		if got[http.StatusOK] != 30 {
			t.Errorf("30 concurrent right logins from one address answered %v, want 30 × 200", got)
		}
	})
	t.Run("concurrent failures never outrun the budget", func(t *testing.T) {
		releaseOnceWaiting(t, e.passwords, 10, 20, holdWorkers(t, e.passwords))
		got := burstStatuses(30, func(int) *http.Response {
			return from(e, "192.0.5.1:1000", loginRequest("pupil3@example.com", "wrong-password"))
		})
		if got[http.StatusBadRequest] != 10 || got[http.StatusTooManyRequests] != 20 {
			t.Errorf("30 concurrent wrong passwords from one address answered %v, want 10 × 400 and 20 × 429", got)
		}
	})
	t.Run("a wrong current password counts, a right one does not", func(t *testing.T) {
		e.signup("changer@example.com", "password123")
		token := e.login("changer@example.com", "password123")
		change := func(current, next string) *http.Response {
			return from(e, "192.0.6.1:1000", newRequest("POST", "/api/v1/auth/password", strings.NewReader(passwordBody(current, next)),
				append([]string{"Content-Type", "application/json"}, bearer(token)...)...))
		}
		passwords := []string{"password123", "password456"}
		for i := range 12 {
			resp := change(passwords[i%2], passwords[(i+1)%2])
			expectStatus(t, resp, http.StatusOK)
			token = decodeBody[tokenResponse](t, resp).AccessToken
		}
		for range 10 {
			expectStatus(t, change("wrong-password", "password789"), http.StatusBadRequest)
		}
		expectRetryAfter(t, change("password123", "password789"), "6")
	})
}

func TestSignupsAreLimitedPerClient(t *testing.T) {
	signup := func(e *testEnv, client, email string) *http.Response {
		return from(e, client, newRequest("POST", "/api/v1/auth/signup", strings.NewReader(signupBody(email, "password123")),
			"Content-Type", "application/json"))
	}
	t.Run("40 people behind one address sign up within 2 minutes and log in; then the budget runs out", func(t *testing.T) {
		e, clock := limitedEnv(t)       // 100 signups an hour: one back every 36 s
		const class = "192.0.2.40:1000" // a classroom behind one NAT
		for i := range 40 {
			expectStatus(t, signup(e, class, fmt.Sprintf("pupil%d@example.com", i)), http.StatusCreated)
			clock.advance(3 * time.Second)
		}
		for i := range 40 {
			expectStatus(t, from(e, class, loginRequest(fmt.Sprintf("pupil%d@example.com", i), "password123")), http.StatusOK)
		}
		created, retry := 40, 0
		for ; created < 1000; created++ {
			if resp := signup(e, class, fmt.Sprintf("late%d@example.com", created)); resp.StatusCode != http.StatusCreated {
				expectDetail(t, resp, http.StatusTooManyRequests, "Too many attempts, try again later")
				retry, _ = strconv.Atoi(resp.Header.Get("Retry-After"))
				break
			}
		}
		// 100 at once, and one back for each 36 s of the 2 minutes.
		if want := 100 + 120/36; created != want {
			t.Errorf("%d signups from one address were created before a 429, want %d", created, want)
		}
		expectStatus(t, from(e, class, loginRequest("pupil0@example.com", "password123")), http.StatusOK)
		// Retry-After is exact: a second sooner is too soon; then one
		// signup comes back every 36 s.
		if retry < 1 || retry > 36 {
			t.Fatalf("Retry-After = %d, want 1 to 36 seconds", retry)
		}
		clock.advance(time.Duration(retry-1) * time.Second)
		expectRetryAfter(t, signup(e, class, "early@example.com"), "1")
		clock.advance(time.Second)
		expectStatus(t, signup(e, class, "later@example.com"), http.StatusCreated)
		expectRetryAfter(t, signup(e, class, "later2@example.com"), "36")
		expectStatus(t, signup(e, "192.0.2.41:1000", "elsewhere@example.com"), http.StatusCreated)
	})
	t.Run("signups use up no failed logins, and failed logins no signups", func(t *testing.T) {
		e, _ := limitedEnv(t, func(c *config) { c.signupsPerHour, c.loginAttemptsPerMinute = 1, 1 })
		expectStatus(t, signup(e, "192.0.2.1:1000", "first@example.com"), http.StatusCreated)
		expectStatus(t, signup(e, "192.0.2.1:1001", "second@example.com"), http.StatusTooManyRequests)
		expectStatus(t, from(e, "192.0.2.1:1002", loginRequest("first@example.com", "wrong-password")), http.StatusBadRequest)
		expectStatus(t, from(e, "192.0.2.2:1000", loginRequest("first@example.com", "wrong-password")), http.StatusBadRequest)
		expectStatus(t, from(e, "192.0.2.2:1001", loginRequest("first@example.com", "wrong-password")), http.StatusTooManyRequests)
		expectStatus(t, signup(e, "192.0.2.2:1002", "third@example.com"), http.StatusCreated)
	})
	t.Run("SIGNUPS_PER_HOUR=0 turns the limit off", func(t *testing.T) {
		e, _ := limitedEnv(t, func(c *config) { c.signupsPerHour = 0 })
		for i := range 101 {
			expectStatus(t, signup(e, "192.0.2.1:1000", fmt.Sprintf("many%d@example.com", i)), http.StatusCreated)
		}
	})
}

func TestClientAddress(t *testing.T) {
	a := &app{trustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}}
	// forwarded is the X-Forwarded-For header, one line per header line.
	for _, tc := range []struct {
		name, remoteAddr, forwarded, want string
	}{
		{"an IPv4 client is its address", "192.0.2.1:1234", "", "192.0.2.1"},
		{"an IPv4-mapped IPv6 client is its IPv4 address", "[::ffff:192.0.2.1]:1234", "", "192.0.2.1"},
		{"an IPv6 client is its /64", "[2001:db8:1:2:3:4:5:6]:1234", "", "2001:db8:1:2::/64"},
		{"another IPv6 client in that /64 is the same", "[2001:db8:1:2:ffff::1]:80", "", "2001:db8:1:2::/64"},
		{"the next /64 is another client", "[2001:db8:1:3::1]:80", "", "2001:db8:1:3::/64"},
		{"a remote address that is no address and port is kept as it is", "@pipe", "", "@pipe"},
		{"X-Forwarded-For from a client that is no trusted proxy is ignored", "192.0.2.1:1234", "198.51.100.9", "192.0.2.1"},
		{"a forwarded IPv4 address", "10.0.0.1:5555", "192.0.2.1", "192.0.2.1"},
		{"a forwarded IPv4 address with a port", "10.0.0.1:5555", "192.0.2.1:4711", "192.0.2.1"},
		{"a forwarded bracketed IPv6 address", "10.0.0.1:5555", "[2001:db8:1:2::1]", "2001:db8:1:2::/64"},
		{"a forwarded bracketed IPv6 address with a port", "10.0.0.1:5555", "[2001:db8:1:2::1]:4711", "2001:db8:1:2::/64"},
		{"a forwarded plain IPv6 address", "10.0.0.1:5555", "2001:db8:1:2::1", "2001:db8:1:2::/64"},
		{"a forwarded IPv4-mapped IPv6 address with a port", "10.0.0.1:5555", "[::ffff:192.0.2.1]:4711", "192.0.2.1"},
		{"spaces around a forwarded entry", "10.0.0.1:5555", "  192.0.2.1:4711 ", "192.0.2.1"},
		{"the nearest forwarded entry that is no trusted proxy, each with a port", "10.0.0.1:5555", "203.0.113.9:1, 192.0.2.1:2, 10.0.0.2:3", "192.0.2.1"},
		{"the nearest forwarded entry of the last header line", "10.0.0.1:5555", "203.0.113.9\n192.0.2.1", "192.0.2.1"},
		{"forwarded garbage, which stops the walk at the proxy", "10.0.0.1:5555", "192.0.2.1, garbage", "10.0.0.1"},
		{"forwarded unknown, which names no address", "10.0.0.1:5555", "unknown", "10.0.0.1"},
		{"a forwarded obfuscated name, which names no address", "10.0.0.1:5555", "_hidden:_port", "10.0.0.1"},
		{"a forwarded IPv4 address in brackets, which RFC 7239 does not write", "10.0.0.1:5555", "[192.0.2.1]:4711", "10.0.0.1"},
		{"a forwarded port out of range", "10.0.0.1:5555", "192.0.2.1:70000", "10.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRequest("GET", "/", nil)
			r.RemoteAddr = tc.remoteAddr
			for line := range strings.SplitSeq(tc.forwarded, "\n") {
				if line != "" {
					r.Header.Add("X-Forwarded-For", line)
				}
			}
			if got := a.clientAddress(r); got != tc.want {
				t.Errorf("clientAddress from %s with X-Forwarded-For %q = %s, want %s", tc.remoteAddr, r.Header.Values("X-Forwarded-For"), got, tc.want)
			}
		})
	}
}

func TestForwardedForIsTrustedOnlyFromConfiguredProxies(t *testing.T) {
	trusted, err := parsePrefixes("10.0.0.0/8") // as TRUSTED_PROXIES is read
	if err != nil {
		t.Fatal(err)
	}
	e, _ := limitedEnv(t, func(c *config) { c.loginAttemptsPerMinute, c.trustedProxies = 1, trusted })
	attempt := func(remoteAddr, forwarded string) int {
		return from(e, remoteAddr, loginRequest("a@b.co", "wrong-password", "X-Forwarded-For", forwarded)).StatusCode
	}
	// Through two trusted proxies, three clients with ports, then the
	// first again; then a client that is no proxy, spoofing the header.
	got := []int{attempt("10.0.0.1:5555", "192.0.2.1:1000"), attempt("10.0.0.2:5555", "[2001:db8::1]:1000"),
		attempt("10.0.0.1:5556", "192.0.2.2:2000"), attempt("10.0.0.2:5556", "192.0.2.1:3000"),
		attempt("192.0.2.9:1000", "198.51.100.1"), attempt("192.0.2.9:1001", "198.51.100.2")}
	if want := "[400 400 400 429 400 429]"; fmt.Sprint(got) != want {
		t.Errorf("failed logins = %v, want %s", got, want)
	}
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

// releaseOnceWaiting calls release once queued jobs wait in p's queue
// and parked requests of t's wait in a limiter for a pending attempt to
// settle: then the whole burst has arrived. After 5 s it fails the test,
// and releases.
func releaseOnceWaiting(t *testing.T, p *passwordHasher, queued, parked int, release func()) {
	go func() {
		defer release()
		for deadline := time.Now().Add(5 * time.Second); p.queued() < queued || parkedIn(t) < parked; time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Errorf("%d jobs queued and %d requests parked in the limiter, want %d and %d", p.queued(), parkedIn(t), queued, parked)
				return
			}
		}
	}()
}

// parkedIn is the number of t's requests that a rate limiter's reserve
// has parked until a pending attempt settles (the limiter keeps no count
// of them): goroutines waiting on a sync.Cond in reserve, with a function
// of t's top-level test below, which no test running beside it has.
func parkedIn(t *testing.T) int {
	test, _, _ := strings.Cut(t.Name(), "/")
	return goroutines(func(stack string) bool {
		return strings.Contains(stack, "sync.(*Cond).Wait") && strings.Contains(stack, ".(*rateLimiter).reserve(") &&
			strings.Contains(stack, "."+test+".")
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

func costOf(u user) int {
	cost, _ := bcrypt.Cost([]byte(u.HashedPassword))
	return cost
}

// hashAt is a bcrypt hash of password at cost, in passlib's $2b$ as the
// reference writes it.
func hashAt(t *testing.T, password string, cost int) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), cost)
	if err != nil {
		t.Fatal(err)
	}
	return "$2b$" + string(hash[4:])
}

func TestTheDummyHashFollowsTheDearestStoredHash(t *testing.T) {
	// expectDummyCost logs in as an unknown email, which must cost one
	// bcrypt run, and checks the cost of the dummy hash after it.
	expectDummyCost := func(t *testing.T, e *testEnv, want int) {
		t.Helper()
		resp, n := hashingJobs(t, e, func() *http.Response { return e.tryLogin("nobody@example.com", "password123") })
		expectStatus(t, resp, http.StatusBadRequest)
		if n != 1 {
			t.Errorf("an unknown email ran %d bcrypt runs, want 1: the compare, or the new dummy hash in its place", n)
		}
		if got := e.passwords.dummyCost(); got != want {
			t.Errorf("after an unknown email, the dummy hash costs %d, want %d", got, want)
		}
	}

	t.Run("a dearer hash written by another process raises it, and it falls back once that hash is gone", func(t *testing.T) {
		e := newTestEnv(t)
		// Another store on the same file, as the createsuperuser command
		// opens one: this server learns of the write by polling.
		other := openTestStore(t, e.cfg.dbPath)
		if _, err := other.createUser(t.Context(), user{Email: "dear@example.com", HashedPassword: hashAt(t, "password123", testBcryptCost+2)}); err != nil {
			t.Fatal(err)
		}
		expectDummyCost(t, e, testBcryptCost+2)
		if _, err := other.writer.Exec("DELETE FROM user WHERE email = 'dear@example.com'"); err != nil {
			t.Fatal(err)
		}
		expectDummyCost(t, e, testBcryptCost)
	})
	// A server starts at the dearest stored cost, above its own or below
	// it, and hashes at its own; its signups then raise the dummy's cost.
	for _, tc := range []struct{ storedCost, serverCost int }{
		{testBcryptCost + 2, testBcryptCost},
		{testBcryptCost, testBcryptCost + 1},
	} {
		t.Run(fmt.Sprintf("over a hash at cost %d, a server at cost %d", tc.storedCost, tc.serverCost), func(t *testing.T) {
			seeded := newTestEnv(t) // the superuser's hash at the test cost
			if _, err := seeded.store.createUser(t.Context(), user{Email: "stored@example.com", HashedPassword: hashAt(t, "password123", tc.storedCost)}); err != nil {
				t.Fatal(err)
			}
			e := newTestEnv(t, onDatabase(seeded.cfg.dbPath), func(c *config) { c.bcryptCost = tc.serverCost })
			if got := e.passwords.dummyCost(); got != tc.storedCost {
				t.Errorf("the dummy hash costs %d at the start, want %d, the dearest stored", got, tc.storedCost)
			}
			u := e.signup("new@example.com", "password123")
			if got := costOf(stored(t, e, u.Email)); got != tc.serverCost {
				t.Errorf("a signup's hash costs %d, want the server's %d", got, tc.serverCost)
			}
			expectDummyCost(t, e, max(tc.storedCost, tc.serverCost))
		})
	}
	t.Run("the highest cost is read from an index, not from every user", func(t *testing.T) {
		// The store reads it after every write it notices: reading every
		// user each time would cost a scan of the table for every signup.
		e := newTestEnv(t)
		if plan := queryPlan(t, e.store.reader, highestCostQuery, "31", testBcryptCost); !strings.Contains(plan, "USING INDEX user_password_cost") {
			t.Errorf("the highest cost is read by\n%s, want a search of the index user_password_cost", plan)
		}
	})
}

func TestLoginRehashesACheaperHash(t *testing.T) {
	// A server one above the test cost, over a database where cook's hash
	// is at the test cost.
	cheap := newTestEnv(t)
	cheap.signup("cook@example.com", "password123")
	e := newTestEnv(t, onDatabase(cheap.cfg.dbPath), func(c *config) { c.bcryptCost = testBcryptCost + 1 })
	before := stored(t, e, "cook@example.com")

	t.Run("a wrong password does not rehash; a right one stores a hash at BCRYPT_COST, says so in the log, and the session goes on", func(t *testing.T) {
		expectStatus(t, e.tryLogin("cook@example.com", "wrong-password"), http.StatusBadRequest)
		if u := stored(t, e, "cook@example.com"); u.HashedPassword != before.HashedPassword {
			t.Fatalf("the hash changed to cost %d after a wrong password", costOf(u))
		}
		tokens := e.loginTokens("cook@example.com", "password123")
		after := stored(t, e, "cook@example.com")
		if got := costOf(after); got != e.cfg.bcryptCost {
			t.Errorf("after a login the stored hash costs %d, want BCRYPT_COST %d", got, e.cfg.bcryptCost)
		}
		if want := fmt.Sprintf("password rehashed\" user_id=%d from_cost=%d to_cost=%d", before.ID, testBcryptCost, e.cfg.bcryptCost); !strings.Contains(e.logs.String(), want) {
			t.Errorf("the log does not say %s:\n%s", want, e.logs)
		}
		if after.TokenGeneration != before.TokenGeneration {
			t.Errorf("the token generation moved from %d to %d", before.TokenGeneration, after.TokenGeneration)
		}
		expectAccessTokenWorks(t, e, tokens.AccessToken, before.ID)
		mustRefresh(t, e, tokens.RefreshToken)
		e.login("cook@example.com", "password123")
		if u := stored(t, e, "cook@example.com"); u.HashedPassword != after.HashedPassword {
			t.Error("a hash already at BCRYPT_COST was replaced")
		}
	})
	t.Run("a hash changed meanwhile is not replaced", func(t *testing.T) {
		u := stored(t, e, "cook@example.com")
		replaced, err := e.store.replacePasswordHash(t.Context(), u.ID, hashAt(t, "password123", testBcryptCost), "$2a$10$other")
		if err != nil || replaced {
			t.Errorf("replacePasswordHash of a stale hash = %v, %v; want false, nil", replaced, err)
		}
		if stored(t, e, "cook@example.com").HashedPassword != u.HashedPassword {
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

// stored is the user of email as e stores it, once any rehash after
// the last answer has run.
func stored(t *testing.T, e *testEnv, email string) user {
	t.Helper()
	e.passwords.laterDone.Wait()
	u, err := e.store.userByEmail(t.Context(), email)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestARehashCommittedMeanwhileFailsNoLoginOrPasswordChange(t *testing.T) {
	// A rehash stores the same password at a new cost and moves no token
	// generation on, so a login or password change that read the user
	// before it committed must go on as if nothing happened.
	e := newTestEnv(t)
	rehashMeanwhile := func(email string) func(t *testing.T, waiting func() int) {
		return func(t *testing.T, waiting func() int) {
			t.Helper()
			waitFor(t, "the request to wait to hash", func() bool { return waiting() > 0 })
			u, err := e.store.userByEmail(t.Context(), email)
			if err != nil {
				t.Fatal(err)
			}
			if ok, err := e.store.replacePasswordHash(t.Context(), u.ID, u.HashedPassword, hashAt(t, "password123", testBcryptCost+1)); !ok || err != nil {
				t.Fatalf("replacePasswordHash = %v, %v; want true, nil", ok, err)
			}
		}
	}

	for _, tc := range []struct {
		name string
		send func(email, token string) *http.Response
	}{
		{"a login waiting to hash still succeeds", func(email, _ string) *http.Response { return e.tryLogin(email, "password123") }},
		{"a password change waiting to hash still succeeds", func(_, token string) *http.Response {
			return e.postJSON("/api/v1/auth/password", passwordBody("password123", "new-password-456"), bearer(token)...)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			email := strings.ReplaceAll(tc.name, " ", "-") + "@example.com"
			e.signup(email, "password123")
			token := e.login(email, "password123")
			expectStatus(t, answerWithHashingHeld(t, e, func() *http.Response { return tc.send(email, token) }, rehashMeanwhile(email)), http.StatusOK)
		})
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

// unusableHashes are stored hashes that nobody can log in with, each
// made from good, a usable hash: bcrypt would run some for years, fail
// others at once, and read the rest as hashes no password matches.
func unusableHashes(good string) []struct{ name, hash string } {
	return []struct{ name, hash string }{
		{"a cost of 99", "$2b$99$" + good[7:]},
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
	type hashCase struct {
		name, hash string
		bcryptCost int
		usable     bool
	}
	cases := []hashCase{
		{"passlib's $2b$", good, testBcryptCost, true},
		{"x/crypto's $2a$", "$2a$" + good[4:], testBcryptCost, true},
		{"PHP's $2y$", "$2y$" + good[4:], testBcryptCost, true},
		{"a cost of 4, bcrypt's least", "$2b$04$" + good[7:], testBcryptCost, true},
		{"a cost of 18, the dearest a login runs", "$2b$18$" + good[7:], testBcryptCost, true},
		{"a cost of 20 under BCRYPT_COST 20", "$2b$20$" + good[7:], 20, true},
		{"a cost of 21 under BCRYPT_COST 20", "$2b$21$" + good[7:], 20, false},
		{"crypt_blowfish's $2x$", "$2x$" + good[4:], testBcryptCost, false},
		{"the bare $2$", "$2$" + good[3:], testBcryptCost, false},
		{"a cost of one digit", "$2b$4$" + good[7:] + ".", testBcryptCost, false},
		{"a cost not in digits", "$2b$1a$" + good[7:], testBcryptCost, false},
		{"a digest outside bcrypt's alphabet", good[:59] + "=", testBcryptCost, false},
		{"a salt with a NUL", good[:10] + "\x00" + good[11:], testBcryptCost, false},
		{"empty", "", testBcryptCost, false},
	}
	for _, u := range unusableHashes(good) {
		cases = append(cases, hashCase{u.name, u.hash, testBcryptCost, false})
	}
	for _, tc := range cases {
		name := tc.name + " is usable"
		if !tc.usable {
			name = tc.name + " is unusable, and the reason shows none of it"
		}
		t.Run(name, func(t *testing.T) {
			why := unusablePasswordHash(tc.hash, tc.bcryptCost)
			if (why == "") != tc.usable {
				t.Fatalf("unusablePasswordHash(%q, %d) = %q, want usable = %v", tc.hash, tc.bcryptCost, why, tc.usable)
			}
			if len(tc.hash) > 7 && strings.Contains(why, tc.hash[7:]) {
				t.Errorf("the reason %q shows the hash", why)
			}
		})
	}
}

func TestEveryPasswordCheckTreatsAnUnusableHashAsAnUnknownEmail(t *testing.T) {
	// Each hash is put there by hand, or brought in a reference database,
	// before a start: the start must not run one either.
	seeded := newTestEnv(t)
	seeded.signup("fine@example.com", "password123")
	good := passlibHash(t, "password123")
	hashes := unusableHashes(good)
	tokens := map[string]string{}
	for i, tc := range hashes {
		email := fmt.Sprintf("unusable%d@example.com", i)
		seeded.signup(email, "password123")
		tokens[email] = seeded.login(email, "password123")
		if _, err := seeded.store.writer.Exec("UPDATE user SET hashed_password = ? WHERE email = ?", tc.hash, email); err != nil {
			t.Fatal(err)
		}
	}
	seeded.store.close()
	e := within(t, "the start", func() *testEnv { return newTestEnv(t, onDatabase(seeded.cfg.dbPath)) })

	t.Run("the dummy hash ignores the unusable costs", func(t *testing.T) {
		cost, err := dummyCost(t.Context(), e.store, bcrypt.DefaultCost)
		if err != nil || cost != testBcryptCost {
			t.Errorf("dummyCost = %d, %v; want %d, the only usable cost", cost, err, testBcryptCost)
		}
	})
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
	for i, tc := range hashes {
		t.Run(tc.name+": login and password change fail after a dummy run, change nothing, and log each attempt without the hash", func(t *testing.T) {
			email := fmt.Sprintf("unusable%d@example.com", i)
			for attempt := range 2 {
				resp, dummy := dummyRan(t, loginRequest(email, "password123"))
				expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
				if !dummy {
					t.Errorf("login %d: the bcrypt run was not the dummy's, at the usual cost", attempt+1)
				}
				resp, dummy = dummyRan(t, newRequest("POST", "/api/v1/auth/password", strings.NewReader(passwordBody("password123", "new-password-456")),
					append([]string{"Content-Type", "application/json"}, bearer(tokens[email])...)...))
				expectDetail(t, resp, http.StatusBadRequest, "Incorrect password")
				if !dummy {
					t.Errorf("password change %d: the bcrypt run was not the dummy's, at the usual cost", attempt+1)
				}
			}
			u, err := e.store.userByEmail(t.Context(), email)
			if err != nil || u.HashedPassword != tc.hash {
				t.Errorf("the stored hash changed (%v)", err)
			}
			expectAccessTokenWorks(t, e, tokens[email], u.ID)
			lines := 0
			for line := range strings.Lines(e.logs.String()) {
				if strings.Contains(line, "stored password hash is unusable") && strings.Contains(line, fmt.Sprintf("user_id=%d ", u.ID)) {
					lines++
				}
			}
			if lines != 4 { // two logins, two password changes
				t.Errorf("%d log lines about user %d's unusable hash, want 4, one per attempt", lines, u.ID)
			}
			if len(tc.hash) > 7 && strings.Contains(e.logs.String(), tc.hash[7:]) {
				t.Error("the log shows the stored hash")
			}
		})
	}
	t.Run("the other accounts log in", func(t *testing.T) {
		e.login("fine@example.com", "password123")
		e.login("admin@recipeapi.com", adminPassword)
	})
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
	// Else a check that refused every hash would pass.
	if reason := unusablePasswordHash(string(hash), bcrypt.MinCost); reason != "" {
		f.Fatalf("unusablePasswordHash(%q), a real bcrypt hash, = %q, want \"\"", hash, reason)
	}
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
	// Else a forwardedNode that read no entry would pass.
	if addr, ok := forwardedNode("203.0.113.7"); !ok || addr != netip.MustParseAddr("203.0.113.7") {
		f.Fatalf("forwardedNode(%q) = %v, %v; want 203.0.113.7, true", "203.0.113.7", addr, ok)
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
	b.Run("login", func(b *testing.B) {
		for b.Loop() {
			if resp := e.tryLogin("admin@recipeapi.com", adminPassword); resp.StatusCode != http.StatusOK {
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
	stew := recipeBody("Stew", "Me", "https://example.com/stew")
	// Each case is a user of its own, with a recipe of its own at {id}.
	for i, tc := range []struct {
		name, method, target, body string
		badToken                   bool
		want                       int
	}{
		{"GET /auth/me", "GET", "/api/v1/auth/me", "", false, http.StatusOK},
		{"GET /recipes/my-recipes/", "GET", "/api/v1/recipes/my-recipes/", "", false, http.StatusOK},
		{"GET /recipes/my-recipes", "GET", "/api/v1/recipes/my-recipes", "", false, http.StatusOK},
		{"POST /recipes/", "POST", "/api/v1/recipes/", stew, false, http.StatusCreated},
		{"PUT /recipes/{id}", "PUT", "/api/v1/recipes/{id}", stew, false, http.StatusOK},
		{"a refused PUT on another's recipe", "PUT", "/api/v1/recipes/1", stew, false, http.StatusForbidden},
		{"a 401 for a bad token", "GET", "/api/v1/auth/me", "", true, http.StatusUnauthorized},
		{"DELETE /recipes/{id}", "DELETE", "/api/v1/recipes/{id}", "", false, http.StatusNoContent},
		{"POST /auth/logout", "POST", "/api/v1/auth/logout", "", false, http.StatusNoContent},
	} {
		t.Run(tc.name+" carries Cache-Control: no-store", func(t *testing.T) {
			_, token := newRecipeUser(e, fmt.Sprintf("cook%d@example.com", i))
			soup := postRecipe(t, e, token, "Soup", "Me", "https://example.com/soup")
			if tc.badToken {
				token = "nope"
			}
			resp := e.sendJSON(tc.method, strings.ReplaceAll(tc.target, "{id}", itoa(soup.ID)), tc.body, bearer(token)...)
			expectStatus(t, resp, tc.want)
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s %s = %d with Cache-Control %q, want no-store", resp.Request.Method, resp.Request.URL, resp.StatusCode, got)
			}
		})
	}
}

func TestInvisibleCharactersInEmailsAndNamesAreRefused(t *testing.T) {
	e := newTestEnv(t)
	for _, r := range []rune{
		0x0000, '\t', 0x007F, 0x0085, // controls: NUL, tab, DEL, a C1 control (NEL)
		0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF, // zero-width space, non-joiner, joiner, word joiner, byte order mark
		0x200E, 0x200F, 0x202A, 0x202E, 0x2068, 0x061C, // bidirectional marks, embedding, override, isolate, Arabic letter mark
		0x2061, 0x2064, 0xFFF9, 0x00AD, 0x180E, // function application, invisible plus, annotation anchor, soft hyphen, Mongolian vowel separator
		0x2028, 0x2029, 0x00A0, 0x3000, // line and paragraph separators, no-break and ideographic spaces
		0x115F, 0x3164, 0xFFA0, 0x2800, // Hangul choseong, compatibility and halfwidth fillers, braille blank
		0x034F, 0x17B4, 0xFE0F, 0xE0100, 0xE0041, // combining grapheme joiner, Khmer inherent vowel, variation selectors, a tag
	} {
		char, code := string(r), fmt.Sprintf("U+%04X", r)
		t.Run(code+" in an email is a 422 at body.email", func(t *testing.T) {
			if strings.TrimSpace(char) != "" {
				// Spaces at either end are trimmed, as the contract says;
				// that leaves the address that is already taken.
				expectProblems(t, e.postJSON("/api/v1/auth/signup", signupBody("admin@recipeapi.com"+char, "password123")), "body.email")
			}
			expectProblems(t, e.postJSON("/api/v1/auth/signup", signupBody("ad"+char+"min@example.com", "password123")), "body.email")
		})
		t.Run(code+" in names is a 422 at body.first_name and body.surname, naming it", func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"email": "named@example.com", "password": "password123",
				"first_name": "Ada" + char, "surname": char + "Lovelace"})
			problems := problemsOf(t, e.postJSON("/api/v1/auth/signup", string(body)))
			if len(problems) != 2 || strings.Join(problems[0].Loc, ".") != "body.first_name" || strings.Join(problems[1].Loc, ".") != "body.surname" {
				t.Fatalf("problems = %+v, want body.first_name and body.surname", problems)
			}
			for _, p := range problems {
				if !strings.Contains(p.Msg, "invisible") || !strings.Contains(p.Msg, code) || p.Type != "value_error.str.invisible" {
					t.Errorf("%s: msg = %q, type = %q; want it to say invisible and name %s, of type value_error.str.invisible", strings.Join(p.Loc, "."), p.Msg, p.Type, code)
				}
			}
		})
	}
	t.Run("the first superuser's email is checked at start too", func(t *testing.T) {
		_, err := loadConfig("serve", nil, envOf(map[string]string{"FIRST_SUPERUSER": "admin@recipeapi.com\u200b"}), nil)
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
	for i, tc := range []struct{ name, first, surname string }{
		{"ordinary spaces", "Mary Ann", "van der Berg"},
		{"letters beyond ASCII, and marks", "José", "Nguyễn"},
		{"an e with a combining accent", "Rene\u0301e", "Zoë"},
		{"scripts other than Latin", "Дми́трий", "李"},
		{"an emoji", "Chef 🍳", "O'Brien-Smith"},
	} {
		t.Run("names with "+tc.name+" are fine", func(t *testing.T) {
			body, _ := json.Marshal(map[string]string{"email": fmt.Sprintf("n%d@example.com", i), "password": "password123",
				"first_name": tc.first, "surname": tc.surname})
			resp := e.postJSON("/api/v1/auth/signup", string(body))
			expectStatus(t, resp, http.StatusCreated)
			if got := decodeBody[userView](t, resp); got.FirstName == nil || got.Surname == nil || *got.FirstName != tc.first || *got.Surname != tc.surname {
				t.Errorf("signup names = %v %v, want %q %q", got.FirstName, got.Surname, tc.first, tc.surname)
			}
		})
	}
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
		got := burstStatuses(20, func(i int) *http.Response {
			body := signupBody(caseVariant("racer@example.com", i), "racer-password")
			// A 503 means the hashers were all busy: the contract's
			// answer to a flood, which a client retries.
			resp := e.postJSON("/api/v1/auth/signup", body)
			for attempt := 0; resp.StatusCode == http.StatusServiceUnavailable && attempt < 200; attempt++ {
				time.Sleep(5 * time.Millisecond)
				resp = e.postJSON("/api/v1/auth/signup", body)
			}
			if text, _ := io.ReadAll(resp.Body); resp.StatusCode == http.StatusBadRequest &&
				string(text) != `{"detail":"The user with this email already exists in the system"}` {
				t.Errorf("POST /api/v1/auth/signup %s = 400 %s, want the email taken", body, text)
			}
			return resp
		})
		if got[http.StatusCreated] != 1 || got[http.StatusBadRequest] != 19 {
			t.Errorf("20 racing signups answered %v, want 1 × 201 and 19 × 400", got)
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
