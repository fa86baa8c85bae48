// http_test.go tests http.go: reading JSON bodies and forms, the error
// shapes, body limits, security headers, CORS, panics and the request log.
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestAJSONBodyThatIsNotValidUTF8IsRefused(t *testing.T) {
	e := newTestEnv(t)
	signupWith := func(member string) string {
		return `{"email":"u@example.com","password":"password123",` + member + `}`
	}
	for _, tc := range []struct{ name, body string }{
		{"a lone 0xFF byte in the email", "{\"email\":\"\xff@example.com\",\"password\":\"password123\"}"},
		{"a broken two-byte sequence in the password", signupWith("\"first_name\":\"\xc3\x28\"")},
		{"an overlong encoding of '/'", signupWith("\"first_name\":\"\xc0\xaf\"")},
		{"a surrogate encoded as UTF-8 bytes", signupWith("\"first_name\":\"\xed\xa0\x80\"")},
		{"a bad byte in an ignored member", signupWith("\"x\":\"\xfe\"")},
		{"a bad byte outside any string", "{\"email\":\"u@example.com\",\"password\":\"password123\"}\xff"},
		{"an escaped lone high surrogate", signupWith(`"first_name":"\ud800"`)},
		{"an escaped lone low surrogate", signupWith(`"first_name":"\udc00"`)},
		{"a high surrogate at the end of a string", signupWith(`"first_name":"ab\uD83D"`)},
		{"a high surrogate followed by a letter", signupWith(`"first_name":"\ud800\u0041"`)},
		{"two high surrogates", signupWith(`"first_name":"\ud800\ud800"`)},
		{"a low surrogate before a high one", signupWith(`"first_name":"\ude00\ud83d"`)},
		{"a lone surrogate in a member name", signupWith(`"\ud800":1`)},
		{"a lone surrogate in a nested ignored value", signupWith(`"x":{"y":["\udfff"]}`)},
		{"a lone surrogate in the password", `{"email":"u@example.com","password":"password\ud800"}`},
	} {
		t.Run(tc.name+" is a 422 at body, and nothing is stored", func(t *testing.T) {
			expectProblems(t, e.postJSON("/api/v1/auth/signup", tc.body), "body")
			if _, err := e.store.userByEmail(t.Context(), "u@example.com"); err == nil {
				t.Fatalf("signup %q created the user", tc.body)
			}
		})
	}
	t.Run("a recipe body with a bad byte is a 422 at body", func(t *testing.T) {
		_, token := newRecipeUser(e, "cook@example.com")
		body := "{\"label\":\"Soup\xff\",\"source\":\"Me\",\"url\":\"https://example.com/soup\"}"
		expectProblems(t, e.postJSON("/api/v1/recipes/", body, bearer(token)...), "body")
	})
	for _, tc := range []struct{ name, firstName, want string }{
		{"a surrogate pair is one character beyond U+FFFF", `"\ud83d\ude00"`, "😀"},
		{"an escaped backslash before ud800 is plain text", `"\\ud800"`, `\ud800`},
		{"a replacement character sent as such is kept", `"\ufffd"`, "\ufffd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			email := fmt.Sprintf("ok-%x@example.com", tc.want)
			resp := e.postJSON("/api/v1/auth/signup", `{"email":"`+email+`","password":"password123","first_name":`+tc.firstName+`}`)
			expectStatus(t, resp, http.StatusCreated)
			if got := decodeBody[userView](t, resp); got.FirstName == nil || *got.FirstName != tc.want {
				t.Errorf("first_name = %v, want %q", got.FirstName, tc.want)
			}
		})
	}
}

func TestARepeatedMemberNameIsRefused(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct{ name, body, wantLoc string }{
		{"a repeated email", `{"email":"a@example.com","email":"b@example.com","password":"password123"}`, "body.email"},
		{"a repeated email spelled with an escape", `{"email":"a@example.com","\u0065mail":"b@example.com","password":"password123"}`, "body.email"},
		{"a repeated password", `{"email":"a@example.com","password":"password123","password":"password456"}`, "body.password"},
		{"a repeated member that is otherwise ignored", `{"email":"a@example.com","password":"password123","x":1,"x":1}`, "body.x"},
		{"a repeated null name", `{"email":"a@example.com","password":"password123","first_name":null,"first_name":"Eve"}`, "body.first_name"},
	} {
		t.Run(tc.name+" is a 422 at that name, and nobody signs up", func(t *testing.T) {
			expectProblems(t, e.postJSON("/api/v1/auth/signup", tc.body), tc.wantLoc)
			for _, email := range []string{"a@example.com", "b@example.com"} {
				if _, err := e.store.userByEmail(t.Context(), email); err == nil {
					t.Fatalf("signup %s created %s", tc.body, email)
				}
			}
		})
	}
	t.Run("a repeated recipe label is a 422 at body.label", func(t *testing.T) {
		_, token := newRecipeUser(e, "cook@example.com")
		body := `{"label":"Soup","label":"Stew","source":"Me","url":"https://example.com/soup"}`
		expectProblems(t, e.postJSON("/api/v1/recipes/", body, bearer(token)...), "body.label")
	})
	t.Run("names that differ in case are different names, and only the exact one is read", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup", `{"email":"c@example.com","EMAIL":"d@example.com","password":"password123"}`)
		expectStatus(t, resp, http.StatusCreated)
		if got := decodeBody[userView](t, resp); got.Email != "c@example.com" {
			t.Errorf("signup email = %q, want c@example.com", got.Email)
		}
	})
	t.Run("a repeat inside a nested value is no repeated member of the body", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup", `{"email":"n@example.com","password":"password123","x":{"a":1,"a":2}}`)
		expectStatus(t, resp, http.StatusCreated)
	})
}

func TestAFormValueThatIsNotValidUTF8IsRefused(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "pässwörd-1")
	for _, tc := range []struct {
		name     string
		form     string
		wantLocs []string
	}{
		{"a username with a lone byte", "username=cook%FF%40example.com&password=password123", []string{"body.username"}},
		{"a password with a broken sequence", "username=cook%40example.com&password=p%C3%28ssword", []string{"body.password"}},
		{"both at once, each named", "username=%FF&password=%FE%FE%FE%FE%FE%FE%FE%FE", []string{"body.password", "body.username"}},
		{"a bad grant_type", "username=cook%40example.com&password=password123&grant_type=%FF", []string{"body.grant_type"}},
		{"a bad name", "username=cook%40example.com&password=password123&%FF=1", []string{"body"}},
	} {
		t.Run(tc.name+" is a 422 at the field", func(t *testing.T) {
			resp := e.send("POST", "/api/v1/auth/login", strings.NewReader(tc.form), "Content-Type", "application/x-www-form-urlencoded")
			expectProblems(t, resp, tc.wantLocs...)
		})
	}
	t.Run("a multipart password with a bad byte is a 422 at the field", func(t *testing.T) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("username", "cook@example.com")
		mw.WriteField("password", "p\xe4sswörd-1") // Latin-1 ä
		mw.Close()
		resp := e.serve(newRequest("POST", "/api/v1/auth/login", &body, "Content-Type", mw.FormDataContentType()))
		expectProblems(t, resp, "body.password")
	})
	t.Run("a password in valid UTF-8 beyond ASCII logs in", func(t *testing.T) {
		e.login("cook@example.com", "pässwörd-1")
	})
}

// decodeForFuzz runs decodeJSONObject on body as a request would.
func decodeForFuzz(body []byte) (jsonFields, error) {
	r := httptest.NewRequest("POST", "/", bytes.NewReader(body))
	return decodeJSONObject(r)
}

// FuzzDecodeJSONObject checks the JSON body decoder against encoding/json:
// whatever it accepts is valid UTF-8, has no repeated member name and no
// lone surrogate escape, and has exactly the members encoding/json sees;
// whatever it refuses for a repeated name does repeat that name.
func FuzzDecodeJSONObject(f *testing.F) {
	for _, seed := range []string{
		`{"email":"cook@example.com","password":"password123"}`,
		`{"email":"a@x.com","email":"b@x.com"}`, `{"email":"a@x.com","\u0065mail":"b@x.com"}`,
		`{"email":"a@x.com","EMAIL":"b@x.com"}`, `{"x":{"a":1,"a":2}}`,
		"{\"a\":\"\xff\"}", "{\"a\":\"\xed\xa0\x80\"}", `{"a":"\ud800"}`, `{"a":"\udc00"}`,
		`{"a":"\ud83d\ude00"}`, `{"a":"\\ud800"}`, `{"a":"\ud800\u0041"}`, `{"a":"\ud800\\u0041"}`,
		`{"\ud800":1}`, `{"a":["\udfff"]}`, `{"a":"\ufffd"}`, `[]`, `null`, ``, `{}`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := decodeForFuzz(body)
		if err != nil {
			invalid, ok := err.(problems)
			if !ok || len(invalid) != 1 {
				t.Fatalf("decode %q = %v, want one 422 problem", body, err)
			}
			if loc := invalid[0].Loc; len(loc) == 2 && !repeatsName(body, loc[1]) {
				t.Fatalf("decode %q refused %q as repeated, but encoding/json sees it once", body, loc[1])
			}
			return
		}
		if !utf8.Valid(body) {
			t.Fatalf("decode accepted %q, which is not valid UTF-8", body)
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal(body, &want); err != nil {
			t.Fatalf("decode accepted %q, which encoding/json refuses: %v", body, err)
		}
		if len(fields.members) != len(want) || countNames(body) != len(want) {
			t.Fatalf("decode saw %d members in %q, encoding/json %d distinct of %d", len(fields.members), body, len(want), countNames(body))
		}
		for name, raw := range want {
			if string(fields.members[name]) != string(raw) {
				t.Fatalf("member %q of %q: decode saw %q, encoding/json %q", name, body, fields.members[name], raw)
			}
		}
		if got, sent := decodedReplacements(t, body), sentReplacements(body); got != sent {
			t.Fatalf("decode accepted %q, whose strings hold %d U+FFFD once decoded but %d as sent: a lone surrogate was replaced", body, got, sent)
		}
	})
}

// topLevelNames lists the member names of the JSON object in body, in
// order and with repeats, as encoding/json's tokenizer reads them.
func topLevelNames(body []byte) []string {
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil
	}
	var names []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return names
		}
		names = append(names, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return names
		}
	}
	return names
}

func countNames(body []byte) int { return len(topLevelNames(body)) }

func repeatsName(body []byte, name string) bool {
	n := 0
	for _, got := range topLevelNames(body) {
		if got == name {
			n++
		}
	}
	return n > 1
}

// decodedReplacements counts U+FFFD in every string of body once
// encoding/json has decoded it.
func decodedReplacements(t *testing.T, body []byte) int {
	dec := json.NewDecoder(bytes.NewReader(body))
	n := 0
	for {
		tok, err := dec.Token()
		if err != nil {
			return n
		}
		if s, ok := tok.(string); ok {
			n += strings.Count(s, "\ufffd")
		}
	}
}

// sentReplacements counts the U+FFFD that body spells out: as the
// character itself or as the escape \ufffd.
func sentReplacements(body []byte) int {
	n := strings.Count(string(body), "\ufffd")
	for i := 0; i < len(body); i++ {
		if body[i] != '\\' || i+1 >= len(body) {
			continue
		}
		i++
		if body[i] == 'u' && i+4 < len(body) && strings.EqualFold(string(body[i+1:i+5]), "fffd") {
			n++
		}
	}
	return n
}

func TestEveryJSONReaderRefusesTheSameThings(t *testing.T) {
	e := newTestEnv(t)
	// Each case spoils a good header, good claims (exp filled in by
	// Sprintf) and a good signup body in the same way.
	cases := []struct {
		name, header, claims, body string
		wantLoc, wantMsg, wantType string // of the body's 422
	}{
		{
			"a repeated member",
			`{"alg":"HS256","typ":"JWT","alg":"HS256"}`,
			`{"type":"access_token","exp":%d,"sub":"7","sub":"8"}`,
			`{"email":"u@example.com","password":"password123","email":"v@example.com"}`,
			"body.email", "this member appears more than once in the body", "value_error.jsondecode.duplicate_member",
		},
		{
			"invalid UTF-8",
			"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\xff\"}",
			"{\"type\":\"access_token\",\"exp\":%d,\"sub\":\"7\",\"x\":\"\xff\"}",
			"{\"email\":\"u@example.com\",\"password\":\"password123\",\"x\":\"\xff\"}",
			"body", "the body is not valid UTF-8", "value_error.jsondecode.utf8",
		},
		{
			"a lone surrogate",
			`{"alg":"HS256","typ":"JWT","kid":"\ud800"}`,
			`{"type":"access_token","exp":%d,"sub":"7","x":"\udc00"}`,
			`{"email":"u@example.com","password":"password123","first_name":"\ud800"}`,
			"body", `the body holds a \u escape of a lone UTF-16 surrogate, which is no character`, "value_error.jsondecode.surrogate",
		},
		{
			"trailing data",
			`{"alg":"HS256","typ":"JWT"}{}`,
			`{"type":"access_token","exp":%d,"sub":"7"}[]`,
			`{"email":"u@example.com","password":"password123"} {}`,
			"body", "the body must be a JSON object", "value_error.jsondecode",
		},
		{
			"the one name it needs in another case",
			`{"ALG":"HS256","typ":"JWT"}`,
			`{"type":"access_token","exp":%d,"SUB":"7"}`,
			`{"EMAIL":"u@example.com","password":"password123"}`,
			"body.email", "field required", "value_error.missing",
		},
	}
	now := testNow.Unix()
	verify := func(header, claims string) error {
		_, err := verifyAccessToken(newTokenKey(testSecret), makeToken(testSecret, header, claims), testNow)
		return err
	}
	t.Run("the good header and claims that the cases spoil are accepted", func(t *testing.T) {
		if err := verify(`{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, now+60)); err != nil {
			t.Errorf("verify = %v, want the token accepted", err)
		}
	})
	for _, tc := range cases {
		t.Run("a token header with "+tc.name+" is refused as a bad header", func(t *testing.T) {
			if err := verify(tc.header, fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, now+60)); !errors.Is(err, errTokenHeader) {
				t.Errorf("verify(header %q) = %v, want %v", tc.header, err, errTokenHeader)
			}
		})
		t.Run("token claims with "+tc.name+" are refused as bad claims", func(t *testing.T) {
			claims := fmt.Sprintf(tc.claims, now+60)
			if err := verify(`{"alg":"HS256","typ":"JWT"}`, claims); !errors.Is(err, errTokenClaims) {
				t.Errorf("verify(claims %q) = %v, want %v", claims, err, errTokenClaims)
			}
		})
		t.Run("a request body with "+tc.name+" is a 422 that says so, and nobody signs up", func(t *testing.T) {
			problems := problemsOf(t, e.postJSON("/api/v1/auth/signup", tc.body))
			if len(problems) != 1 || strings.Join(problems[0].Loc, ".") != tc.wantLoc || problems[0].Msg != tc.wantMsg || problems[0].Type != tc.wantType {
				t.Errorf("signup %q = %+v, want one problem at %s: %q (%s)", tc.body, problems, tc.wantLoc, tc.wantMsg, tc.wantType)
			}
			if _, err := e.store.userByEmail(t.Context(), "u@example.com"); err == nil {
				t.Fatalf("signup %q created the user", tc.body)
			}
		})
	}
	t.Run("a good signup body like the ones the cases spoil is accepted", func(t *testing.T) {
		expectStatus(t, e.postJSON("/api/v1/auth/signup", `{"email":"u@example.com","password":"password123"}`), 201)
	})
}

// jsonBodyOfSize is a signup body of exactly size bytes.
func jsonBodyOfSize(size int) string {
	head := `{"email":"big@example.com","password":"password123","pad":"`
	return head + strings.Repeat("x", size-len(head)-2) + `"}`
}

func TestRequestBodiesAreCappedAt64KiB(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	formOfSize := func(size int) string {
		head := url.Values{"username": {"cook@example.com"}, "password": {"recipe-password"}}.Encode() + "&pad="
		return head + strings.Repeat("x", size-len(head))
	}
	multipartOfSize := func(size int) (string, string) {
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		mw.WriteField("username", "cook@example.com")
		mw.WriteField("password", "recipe-password")
		w, _ := mw.CreateFormField("pad")
		tail := "\r\n--" + mw.Boundary() + "--\r\n"
		w.Write([]byte(strings.Repeat("x", size-body.Len()-len(tail))))
		mw.Close()
		return body.String(), mw.FormDataContentType()
	}
	multipartAtCap, multipartType := multipartOfSize(maxBodyBytes)
	multipartOverCap, _ := multipartOfSize(maxBodyBytes + 1)
	for _, tc := range []struct {
		name, method, target, contentType, body string
		header                                  []string
		want                                    int
	}{
		{"a JSON body of exactly 64 KiB is read", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes), nil, http.StatusCreated},
		{"a JSON body one byte over 64 KiB is a 413", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes + 1), nil, http.StatusRequestEntityTooLarge},
		{"a login form of exactly 64 KiB is read", "POST", "/api/v1/auth/login", "application/x-www-form-urlencoded", formOfSize(maxBodyBytes), nil, http.StatusOK},
		{"a login form one byte over 64 KiB is a 413", "POST", "/api/v1/auth/login", "application/x-www-form-urlencoded", formOfSize(maxBodyBytes + 1), nil, http.StatusRequestEntityTooLarge},
		{"a multipart login of exactly 64 KiB is read", "POST", "/api/v1/auth/login", multipartType, multipartAtCap, nil, http.StatusOK},
		{"a multipart login one byte over 64 KiB is a 413", "POST", "/api/v1/auth/login", multipartType, multipartOverCap, nil, http.StatusRequestEntityTooLarge},
		{"a recipe body one byte over 64 KiB is a 413", "POST", "/api/v1/recipes/", "application/json", jsonBodyOfSize(maxBodyBytes + 1), bearer(token), http.StatusRequestEntityTooLarge},
		{"a body over 64 KiB is a 413 even where none is read", "GET", "/api/v1/recipes/1", "text/plain", strings.Repeat("x", maxBodyBytes+1), nil, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.send(tc.method, tc.target, strings.NewReader(tc.body), append([]string{"Content-Type", tc.contentType}, tc.header...)...)
			if len(tc.body) != maxBodyBytes && len(tc.body) != maxBodyBytes+1 {
				t.Fatalf("the test's body is %d bytes, want %d or %d", len(tc.body), maxBodyBytes, maxBodyBytes+1)
			}
			if tc.want == http.StatusRequestEntityTooLarge {
				expectDetail(t, resp, tc.want, "Request body too large")
				if got := resp.Header.Get("Connection"); got != "close" {
					t.Errorf("%s %s: Connection = %q, want close: the rest of the body is not read", tc.method, tc.target, got)
				}
				return
			}
			expectStatus(t, resp, tc.want)
		})
	}

	server := httptest.NewServer(e.handler)
	defer server.Close()
	t.Run("a body announced as 1 MB is refused before it is sent", func(t *testing.T) {
		conn, err := net.Dial("tcp", server.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		start := time.Now()
		fmt.Fprintf(conn, "POST /api/v1/auth/signup HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000000\r\n\r\n")
		conn.Write([]byte(`{"email":"slow@example.com","password":"`)) // and no more
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to a 1 MB body that was never sent: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST /api/v1/auth/signup with Content-Length: 1000000 = %d, want 413", resp.StatusCode)
		}
		if took := time.Since(start); took > 2*time.Second {
			t.Errorf("the 413 took %s, want it at once", took)
		}
	})
	t.Run("a chunked body that grows past 64 KiB is a 413", func(t *testing.T) {
		body := io.MultiReader(strings.NewReader(`{"email":"chunked@example.com","password":"password123","pad":"`),
			strings.NewReader(strings.Repeat("x", 2*maxBodyBytes)), strings.NewReader(`"}`))
		req, _ := http.NewRequest("POST", server.URL+"/api/v1/auth/signup", struct{ io.Reader }{body}) // no length: chunked
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if req.ContentLength != 0 || resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Errorf("POST /api/v1/auth/signup chunked, 128 KiB = %d (length %d), want 413", resp.StatusCode, req.ContentLength)
		}
	})
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

func TestLoggedPathsAreTruncated(t *testing.T) {
	e := newTestEnv(t)
	long := "/" + strings.Repeat("é", 32<<10) // 65 KB
	e.get(long)
	var line string
	for l := range strings.SplitSeq(e.logs.String(), "\n") {
		if strings.Contains(l, "msg=request") {
			line = l
		}
	}
	if len(line) >= 1024 || !strings.Contains(line, "…(truncated)") {
		t.Errorf("the log line for a %d-byte path is %d bytes: %.200q…; want under 1 KB, marked as cut", len(long), len(line), line)
	}
	if !strings.Contains(line, strings.Repeat("é", 200)) || strings.Contains(line, "\\x") {
		t.Errorf("the cut path lost its start or broke a character: %.300q", line)
	}
	t.Run("a short path is logged whole", func(t *testing.T) {
		e.get("/no/such/page")
		if !strings.Contains(e.logs.String(), "path=/no/such/page ") {
			t.Errorf("log = %q, want the whole path", e.logs.String())
		}
	})
}

func TestLoggedPathIsCutAtACharacterBoundaryAndNeverEmptied(t *testing.T) {
	for _, tc := range []struct{ name, path, wantPrefix string }{
		{"ASCII is cut at 512 bytes", strings.Repeat("a", 600), strings.Repeat("a", 512)},
		{"a three-byte character across the cut is left out whole", strings.Repeat("a", 511) + strings.Repeat("€", 100), strings.Repeat("a", 511)},
		{"stray bytes are cut no more than 3 bytes short, never emptied", strings.Repeat("\xbd", 600), strings.Repeat("\xbd", 509)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loggedPath(&http.Request{URL: &url.URL{Path: tc.path}})
			if got != tc.wantPrefix+"…(truncated)" {
				t.Errorf("loggedPath = %.40q… (%d bytes), want %.40q…(truncated)", got, len(got), tc.wantPrefix)
			}
		})
	}
}

func TestLoggedPathsAreTruncatedInPanicsToo(t *testing.T) {
	var logs bytes.Buffer
	a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	h := a.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	h.ServeHTTP(httptest.NewRecorder(), newRequest("GET", "/"+strings.Repeat("x", 64<<10), nil))
	path, _, _ := strings.Cut(logs.String()[strings.Index(logs.String(), "path="):], " ")
	if len(path) > 600 || !strings.Contains(path, "…(truncated)") {
		t.Errorf("logged path of %d bytes, want at most 512 and marked as cut: %.100q", len(path), path)
	}
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
