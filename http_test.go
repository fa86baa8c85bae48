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
	"maps"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// The types of the problem decodeJSONObject refuses a body with.
const (
	refusedUTF8      = "value_error.jsondecode.utf8"
	refusedRepeat    = "value_error.jsondecode.duplicate_member"
	refusedSurrogate = "value_error.jsondecode.surrogate"
	refusedNotObject = "value_error.jsondecode"
	refusedMembers   = "value_error.jsondecode.members"
)

// objectOf is a JSON object of n members "m0": 0, "m1": 0, …, and
// membersOf is how decodeJSONObject reads them.
func objectOf(n int) string {
	members := make([]string, n)
	for i := range members {
		members[i] = fmt.Sprintf(`"m%d":0`, i)
	}
	return "{" + strings.Join(members, ",") + "}"
}

func membersOf(n int) map[string]string {
	members := map[string]string{}
	for i := range n {
		members[fmt.Sprintf("m%d", i)] = "0"
	}
	return members
}

// decodeCases are bodies and what decodeJSONObject must make of each:
// exactly these members, each value as sent, or one problem at loc of
// type typ. They are also FuzzDecodeJSONObject's seeds.
var decodeCases = []struct {
	name, body string
	members    map[string]string
	loc, typ   string
}{
	{"a signup body is accepted", `{"email":"cook@example.com","password":"password123"}`, map[string]string{"email": `"cook@example.com"`, "password": `"password123"`}, "", ""},
	{"an empty object is accepted", `{}`, map[string]string{}, "", ""},
	{"space around the object and its members is allowed", " {\"a\" : null }\n", map[string]string{"a": "null"}, "", ""},
	{"names that differ in case are different names", `{"email":"a@x.com","EMAIL":"b@x.com"}`, map[string]string{"email": `"a@x.com"`, "EMAIL": `"b@x.com"`}, "", ""},
	{"a repeat inside a nested value is kept as sent", `{"x":{"a":1,"a":2}}`, map[string]string{"x": `{"a":1,"a":2}`}, "", ""},
	{"a surrogate pair is one character beyond U+FFFF", `{"a":"\ud83d\ude00"}`, map[string]string{"a": `"\ud83d\ude00"`}, "", ""},
	{"an escaped backslash before ud800 is plain text", `{"a":"\\ud800"}`, map[string]string{"a": `"\\ud800"`}, "", ""},
	{"a replacement character sent as an escape is kept", `{"a":"\ufffd"}`, map[string]string{"a": `"\ufffd"`}, "", ""},
	{"64 members are accepted", objectOf(maxObjectMembers), membersOf(maxObjectMembers), "", ""},
	{"65 members are refused", objectOf(maxObjectMembers + 1), nil, "body", refusedMembers},
	{"a repeated name", `{"email":"a@x.com","email":"b@x.com"}`, nil, "body.email", refusedRepeat},
	{"a repeated name spelled with an escape", `{"email":"a@x.com","\u0065mail":"b@x.com"}`, nil, "body.email", refusedRepeat},
	{"a repeated null name", `{"first_name":null,"first_name":"Eve"}`, nil, "body.first_name", refusedRepeat},
	{"a lone 0xFF byte in a value", "{\"a\":\"\xff\"}", nil, "body", refusedUTF8},
	{"a broken two-byte sequence", "{\"a\":\"\xc3\x28\"}", nil, "body", refusedUTF8},
	{"an overlong encoding of '/'", "{\"a\":\"\xc0\xaf\"}", nil, "body", refusedUTF8},
	{"a surrogate encoded as UTF-8 bytes", "{\"a\":\"\xed\xa0\x80\"}", nil, "body", refusedUTF8},
	{"a bad byte outside any string", "{\"a\":1}\xff", nil, "body", refusedUTF8},
	{"a bad byte is named before a repeat", "{\"a\":1,\"a\":\"\xfe\"}", nil, "body", refusedUTF8},
	{"an escaped lone high surrogate", `{"a":"\ud800"}`, nil, "body", refusedSurrogate},
	{"an escaped lone low surrogate", `{"a":"\udc00"}`, nil, "body", refusedSurrogate},
	{"a high surrogate at the end of a string", `{"a":"ab\uD83D"}`, nil, "body", refusedSurrogate},
	{"a high surrogate followed by a letter", `{"a":"\ud800\u0041"}`, nil, "body", refusedSurrogate},
	{"a high surrogate followed by an escaped backslash", `{"a":"\ud800\\u0041"}`, nil, "body", refusedSurrogate},
	{"two high surrogates", `{"a":"\ud800\ud800"}`, nil, "body", refusedSurrogate},
	{"a low surrogate before a high one", `{"a":"\ude00\ud83d"}`, nil, "body", refusedSurrogate},
	{"a lone surrogate in a member name", `{"\ud800":1}`, nil, "body", refusedSurrogate},
	{"a lone surrogate in a nested value", `{"a":["\udfff"]}`, nil, "body", refusedSurrogate},
	{"an array", `[]`, nil, "body", refusedNotObject},
	{"null", `null`, nil, "body", refusedNotObject},
	{"nothing", ``, nil, "body", refusedNotObject},
	{"a string", `"{}"`, nil, "body", refusedNotObject},
	{"an object and trailing data", `{"a":1} {}`, nil, "body", refusedNotObject},
	{"an object cut short", `{"a":1,"b"`, nil, "body", refusedNotObject},
}

// decodeForFuzz runs decodeJSONObject on body as a request would.
func decodeForFuzz(body []byte) (jsonFields, error) {
	return decodeJSONObject(httptest.NewRequest("POST", "/", bytes.NewReader(body)))
}

func TestDecodeJSONObject(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			fields, err := decodeForFuzz([]byte(tc.body))
			var invalid problems
			if tc.typ == "" {
				got := map[string]string{}
				for name, raw := range fields.members {
					got[name] = string(raw)
				}
				if err != nil || !maps.Equal(got, tc.members) || fields.members == nil {
					t.Errorf("decode %q = %q, %v; want %q accepted", tc.body, got, err, tc.members)
				}
			} else if !errors.As(err, &invalid) || len(invalid) != 1 || strings.Join(invalid[0].Loc, ".") != tc.loc || invalid[0].Type != tc.typ {
				t.Errorf("decode %q = %v %+v; want one problem at %s of type %s", tc.body, err, invalid, tc.loc, tc.typ)
			} else if fields.members != nil {
				t.Errorf("decode %q refused the body but returned its members %q", tc.body, fields.members)
			}
		})
	}
}

// surrogateEscape matches a \u escape of a UTF-16 surrogate.
var surrogateEscape = regexp.MustCompile(`(?i)\\ud[89a-f][0-9a-f]{2}`)

// FuzzDecodeJSONObject checks the JSON body decoder against encoding/json:
// whatever it accepts is valid UTF-8, has no repeated member name and no
// lone surrogate escape, and has exactly the members encoding/json sees,
// each string reading as encoding/json reads it; whatever it refuses has the fault the problem names (a body that
// encoding/json reads as an object is never refused as not one).
func FuzzDecodeJSONObject(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.body))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		fields, err := decodeForFuzz(body)
		var want map[string]json.RawMessage
		v1Err := json.Unmarshal(body, &want)
		if err != nil {
			invalid, ok := err.(problems)
			if !ok || len(invalid) != 1 {
				t.Fatalf("decode %q = %v, want one 422 problem", body, err)
			}
			if why := wrongRefusal(body, invalid[0], want, v1Err); why != "" {
				t.Fatalf("decode %q refused it as %s at %q, but %s", body, invalid[0].Type, invalid[0].Loc, why)
			}
			return
		}
		if !utf8.Valid(body) || hasLoneSurrogate(body) || v1Err != nil {
			t.Fatalf("decode accepted %q, which is not valid UTF-8, or holds a lone surrogate, or encoding/json refuses (%v)", body, v1Err)
		}
		counts := nameCounts(body)
		if len(fields.members) != len(want) || len(counts) != len(want) || len(want) > maxObjectMembers {
			t.Fatalf("decode saw %d members in %q, encoding/json %d, of names %v", len(fields.members), body, len(want), counts)
		}
		for name, n := range counts {
			if n > 1 {
				t.Fatalf("decode accepted %q, in which %q repeats", body, name)
			}
		}
		for name, raw := range want {
			var text string
			if string(fields.members[name]) != string(raw) {
				t.Fatalf("member %q of %q: decode saw %q, encoding/json %q", name, body, fields.members[name], raw)
			}
			if got := fields.text(name, false); raw[0] == '"' && json.Unmarshal(raw, &text) == nil && (got == nil || *got != text) {
				t.Fatalf("member %q of %q: decode read the string %v, encoding/json %q", name, body, got, text)
			}
		}
	})
}

// wrongRefusal says why body does not have the fault that p names, or ""
// if it does; v1 and v1Err are what encoding/json made of body.
func wrongRefusal(body []byte, p problem, v1 map[string]json.RawMessage, v1Err error) string {
	valid := utf8.Valid(body)
	switch {
	case p.Type == refusedUTF8 && valid:
		return "it is valid UTF-8"
	case p.Type == refusedUTF8:
		return ""
	case !valid:
		return "it is not valid UTF-8, which is to be named first"
	case p.Type == refusedRepeat:
		if len(p.Loc) != 2 || nameCounts(body)[p.Loc[1]] < 2 {
			return "encoding/json sees that name once"
		}
		return ""
	case len(p.Loc) != 1:
		return "the problem is not at body"
	case p.Type == refusedSurrogate && !surrogateEscape.Match(body):
		// Not hasLoneSurrogate: the body may be no JSON at all, and a
		// pair outside any string (\ud800\udc00) is refused as a lone one.
		return "it holds no escape of a surrogate"
	case p.Type == refusedMembers && (v1Err != nil || len(v1) <= maxObjectMembers):
		return "it has no more than 64 members"
	case p.Type == refusedNotObject && v1Err == nil && v1 != nil:
		return "encoding/json reads it as an object"
	case p.Type != refusedSurrogate && p.Type != refusedMembers && p.Type != refusedNotObject:
		return "that is no type of refusal"
	}
	return ""
}

func TestARepeatedEmptyNameIsNamed(t *testing.T) {
	_, err := decodeForFuzz([]byte(`{"":0,"":0}`))
	if invalid, _ := err.(problems); len(invalid) != 1 || !slices.Equal(invalid[0].Loc, []string{"body", ""}) {
		t.Errorf(`decode {"":0,"":0} = %v, want one problem at ["body", ""]`, err)
	}
}

// nameCounts counts each member name of the JSON object in body, as
// encoding/json's tokenizer reads them, as far as it can.
func nameCounts(body []byte) map[string]int {
	counts := map[string]int{}
	dec := json.NewDecoder(bytes.NewReader(body))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return counts
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return counts
		}
		counts[tok.(string)]++
		if err := dec.Decode(new(json.RawMessage)); err != nil {
			return counts
		}
	}
	return counts
}

// surrogatePair matches a \u escape of a high surrogate and one of a low
// surrogate after it, which together are one character.
var surrogatePair = regexp.MustCompile(`(?i)\\ud[89ab][0-9a-f]{2}\\ud[c-f][0-9a-f]{2}`)

// hasLoneSurrogate reports whether the JSON text body holds a \u escape
// of a surrogate that is not half of a pair.
func hasLoneSurrogate(body []byte) bool {
	unescaped := strings.ReplaceAll(string(body), `\\`, "") // an escaped backslash starts no escape
	return surrogateEscape.MatchString(surrogatePair.ReplaceAllString(unescaped, ""))
}

func TestAFormValueThatIsNotValidUTF8IsRefused(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "pässwörd-1")
	for _, tc := range []struct {
		name, form string
		wantLocs   []string
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
		resp := e.postMultipart("/api/v1/auth/login", map[string]string{"username": "cook@example.com", "password": "p\xe4sswörd-1"}) // Latin-1 ä
		expectProblems(t, resp, "body.password")
	})
	t.Run("a password in valid UTF-8 beyond ASCII logs in", func(t *testing.T) {
		e.login("cook@example.com", "pässwörd-1")
	})
}

// TestEveryJSONReaderRefusesTheSameThings spoils, in each case, a good
// token header, good claims (exp filled in by Sprintf), a good signup
// body and a good recipe body in the same way.
func TestEveryJSONReaderRefusesTheSameThings(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	const goodClaims = `{"type":"access_token","exp":%d,"sub":"7"}`
	const goodSignup, goodRecipe = `{"email":"u@example.com","password":"password123"}`, `{"label":"Soup","source":"Me","url":"https://example.com/soup"}`
	cases := []struct {
		name, header, claims, signup, recipe string
		loc, recipeLoc, msg, typ             string // of the one problem of each body's 422
	}{
		{"a repeated member", `{"alg":"HS256","typ":"JWT","alg":"HS256"}`, `{"type":"access_token","exp":%d,"sub":"7","sub":"8"}`,
			`{"email":"u@example.com","password":"password123","\u0065mail":"v@example.com"}`, `{"label":"Soup","source":"Me","url":"https://example.com/soup","label":"Stew"}`,
			"body.email", "body.label", "this member appears more than once in the body", refusedRepeat},
		{"invalid UTF-8", "{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\xff\"}", "{\"type\":\"access_token\",\"exp\":%d,\"sub\":\"7\",\"x\":\"\xff\"}",
			"{\"email\":\"\xff@example.com\",\"password\":\"password123\"}", "{\"label\":\"Soup\xff\",\"source\":\"Me\",\"url\":\"https://example.com/soup\"}",
			"body", "body", "the body is not valid UTF-8", refusedUTF8},
		{"a lone surrogate", `{"alg":"HS256","typ":"JWT","kid":"\ud800"}`, `{"type":"access_token","exp":%d,"sub":"7","x":"\udc00"}`,
			`{"email":"u@example.com","password":"password\ud800"}`, `{"label":"Soup","source":"Me\udc00","url":"https://example.com/soup"}`,
			"body", "body", `the body holds a \u escape of a lone UTF-16 surrogate, which is no character`, refusedSurrogate},
		{"trailing data", `{"alg":"HS256","typ":"JWT"}{}`, `{"type":"access_token","exp":%d,"sub":"7"}[]`,
			`{"email":"u@example.com","password":"password123"} {}`, `{"label":"Soup","source":"Me","url":"https://example.com/soup"}[]`,
			"body", "body", "the body must be a JSON object", refusedNotObject},
		{"the one name it needs in another case", `{"ALG":"HS256","typ":"JWT"}`, `{"type":"access_token","exp":%d,"SUB":"7"}`,
			`{"EMAIL":"u@example.com","password":"password123"}`, `{"LABEL":"Soup","source":"Me","url":"https://example.com/soup"}`,
			"body.email", "body.label", "field required", "value_error.missing"},
	}
	exp := testNow.Unix() + 60
	verify := func(header, claims string) error {
		_, err := verifyAccessToken(newTokenKey(testSecret), makeToken(testSecret, header, fmt.Sprintf(claims, exp)), testNow)
		return err
	}
	// post checks that body is a 422 with one problem at loc, and that no
	// user or recipe was stored.
	post := func(t *testing.T, target, body, loc, msg, typ string) {
		t.Helper()
		const stored = "SELECT (SELECT count(*) FROM user) + (SELECT count(*) FROM recipe)"
		before := queryInt(t, e.store.reader, stored)
		got := problemsOf(t, e.postJSON(target, body, bearer(token)...))
		if len(got) != 1 || strings.Join(got[0].Loc, ".") != loc || got[0].Msg != msg || got[0].Type != typ {
			t.Errorf("POST %s %q = %+v, want one problem at %s: %q (%s)", target, body, got, loc, msg, typ)
		}
		if after := queryInt(t, e.store.reader, stored); after != before {
			t.Errorf("POST %s %q stored %d users or recipes", target, body, after-before)
		}
	}
	for _, tc := range cases {
		t.Run("a token header with "+tc.name+" is refused as a bad header, and its claims as bad claims", func(t *testing.T) {
			if err := verify(tc.header, goodClaims); !errors.Is(err, errTokenHeader) {
				t.Errorf("verify(header %q) = %v, want %v", tc.header, err, errTokenHeader)
			}
			if err := verify(goodHeader, tc.claims); !errors.Is(err, errTokenClaims) {
				t.Errorf("verify(claims %q) = %v, want %v", tc.claims, err, errTokenClaims)
			}
		})
		t.Run("a signup or recipe body with "+tc.name+" is a 422 that says so, and nothing is stored", func(t *testing.T) {
			post(t, "/api/v1/auth/signup", tc.signup, tc.loc, tc.msg, tc.typ)
			post(t, "/api/v1/recipes/", tc.recipe, tc.recipeLoc, tc.msg, tc.typ)
		})
	}
	t.Run("the good header, claims and bodies that the cases spoil are accepted", func(t *testing.T) {
		if err := verify(goodHeader, goodClaims); err != nil {
			t.Errorf("verify = %v, want the token accepted", err)
		}
		expectStatus(t, e.postJSON("/api/v1/auth/signup", goodSignup), http.StatusCreated)
		expectStatus(t, e.postJSON("/api/v1/recipes/", goodRecipe, bearer(token)...), http.StatusCreated)
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
	const form = "application/x-www-form-urlencoded"
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
		hideLength                              bool // as a chunked body does: it fails as it is read
		want                                    int
	}{
		{"a JSON body of exactly 64 KiB is read", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes), false, http.StatusCreated},
		{"a JSON body one byte over 64 KiB is a 413", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes + 1), false, http.StatusRequestEntityTooLarge},
		{"a JSON body of unknown length that grows past 64 KiB is a 413", "POST", "/api/v1/auth/signup", "application/json", jsonBodyOfSize(maxBodyBytes + 1), true, http.StatusRequestEntityTooLarge},
		{"a login form of exactly 64 KiB is read", "POST", "/api/v1/auth/login", form, formOfSize(maxBodyBytes), false, http.StatusOK},
		{"a login form one byte over 64 KiB is a 413", "POST", "/api/v1/auth/login", form, formOfSize(maxBodyBytes + 1), false, http.StatusRequestEntityTooLarge},
		{"a login form of unknown length that grows past 64 KiB is a 413", "POST", "/api/v1/auth/login", form, formOfSize(maxBodyBytes + 1), true, http.StatusRequestEntityTooLarge},
		{"a multipart login of exactly 64 KiB is read", "POST", "/api/v1/auth/login", multipartType, multipartAtCap, false, http.StatusOK},
		{"a multipart login one byte over 64 KiB is a 413", "POST", "/api/v1/auth/login", multipartType, multipartOverCap, false, http.StatusRequestEntityTooLarge},
		{"a recipe body one byte over 64 KiB is a 413", "POST", "/api/v1/recipes/", "application/json", jsonBodyOfSize(maxBodyBytes + 1), false, http.StatusRequestEntityTooLarge},
		{"a body over 64 KiB is a 413 even where none is read", "GET", "/api/v1/recipes/1", "text/plain", strings.Repeat("x", maxBodyBytes+1), false, http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if n := len(tc.body); n != maxBodyBytes && n != maxBodyBytes+1 {
				t.Fatalf("the test's body is %d bytes, want %d or %d", n, maxBodyBytes, maxBodyBytes+1)
			}
			var body io.Reader = strings.NewReader(tc.body)
			if tc.hideLength {
				body = struct{ io.Reader }{body}
			}
			r := newRequest(tc.method, tc.target, body, append([]string{"Content-Type", tc.contentType}, bearer(token)...)...)
			if resp := e.serve(r); tc.want != http.StatusRequestEntityTooLarge {
				expectStatus(t, resp, tc.want)
			} else if expectDetail(t, resp, tc.want, "Request body too large"); resp.Header.Get("Connection") != "close" || tc.hideLength != (r.ContentLength < 0) {
				t.Errorf("%s %s: Connection = %q, want close: the rest of the body is not read; length %d", tc.method, tc.target, resp.Header.Get("Connection"), r.ContentLength)
			}
		})
	}

	t.Run("a body announced as 1 MB is refused before it is sent", func(t *testing.T) {
		server := httptest.NewServer(e.handler)
		defer server.Close()
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
		if took := time.Since(start); resp.StatusCode != http.StatusRequestEntityTooLarge || took > 2*time.Second {
			t.Errorf("POST /api/v1/auth/signup with Content-Length: 1000000 = %d after %s, want 413 at once", resp.StatusCode, took)
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
		for name, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := resp.Header.Get(name); got != want {
				t.Errorf("GET %s: %s = %q, want %q", path, name, got, want)
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		expectNoOtherSiteInPolicy(t, path, csp)
		if !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("GET %s: Content-Security-Policy = %q, want frame-ancestors 'none'", path, csp)
		}
	}
}

// The panic's request has a 64 KiB path, which the log must cut short.
func TestPanicsBecomeAJSON500WithTheCauseOnlyInTheLog(t *testing.T) {
	var logs bytes.Buffer
	a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	panicking := func(v any) http.Handler {
		return a.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(v) }))
	}
	rec := httptest.NewRecorder()
	panicking("secret cause").ServeHTTP(rec, newRequest("GET", "/"+strings.Repeat("x", 64<<10), nil))
	if body := rec.Body.String(); rec.Code != 500 || body != `{"detail":"Internal Server Error"}` || rec.Header().Get("Connection") != "close" {
		t.Errorf("panic = %d %s, Connection %q; want 500 Internal Server Error, and the connection closed", rec.Code, body, rec.Header().Get("Connection"))
	}
	_, logged, _ := strings.Cut(logs.String(), "path=")
	if path, _, _ := strings.Cut(logged, " "); len(path) > 600 || !strings.HasSuffix(path, "…(truncated)") || !strings.Contains(logs.String(), "secret cause") {
		t.Errorf("the log does not name the cause, or logs a path of %d bytes, not cut to 512: %.300s", len(path), logs.String())
	}
	t.Run("http.ErrAbortHandler is panicked on, for the server to drop the response", func(t *testing.T) {
		defer func() {
			if v := recover(); v != http.ErrAbortHandler {
				t.Errorf("recovered %v, want http.ErrAbortHandler", v)
			}
		}()
		panicking(http.ErrAbortHandler).ServeHTTP(httptest.NewRecorder(), newRequest("GET", "/", nil))
	})
}

// TestCORS sends each request of its table from the origin
// http://localhost:3000 to a service of its own, so that its log holds
// only that request's.
func TestCORS(t *testing.T) {
	const origin, other = "http://localhost:3000", "http://app.example"
	preflight := []string{"Access-Control-Request-Method", "GET", "Access-Control-Request-Headers", "authorization"}
	allowed := map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true"}
	for _, tc := range []struct {
		name       string
		configured []string
		method     string
		header     []string
		status     int
		cors       map[string]string // every Access-Control- header of the answer
		refusal    bool              // whether the log warns of a refused preflight
	}{
		{"a configured origin's preflight is allowed, with the headers it asked for", []string{origin}, "OPTIONS", preflight, http.StatusOK,
			map[string]string{"Access-Control-Allow-Origin": origin, "Access-Control-Allow-Credentials": "true", "Access-Control-Allow-Headers": "authorization",
				"Access-Control-Allow-Methods": "GET, POST, PUT, DELETE, OPTIONS", "Access-Control-Max-Age": "600"}, false},
		{"a configured origin's request gets the CORS headers", []string{origin}, "GET", nil, http.StatusOK, allowed, false},
		{"with no origins configured, a preflight is a 403 naming BACKEND_CORS_ORIGINS", nil, "OPTIONS", preflight, http.StatusForbidden, nil, true},
		{"with other origins configured, a preflight is a 403 naming BACKEND_CORS_ORIGINS", []string{other}, "OPTIONS", preflight, http.StatusForbidden, nil, true},
		{"with no origins configured, a request is served as without an Origin", nil, "GET", nil, http.StatusOK, nil, false},
		{"with other origins configured, a request is served as without an Origin", []string{other}, "GET", nil, http.StatusOK, nil, false},
		{"with no origins configured, an OPTIONS that asks no method is no preflight: the mux's 405", nil, "OPTIONS", nil, http.StatusMethodNotAllowed, nil, false},
		{"with other origins configured, an OPTIONS that asks no method is the mux's 405", []string{other}, "OPTIONS", nil, http.StatusMethodNotAllowed, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, func(c *config) { c.corsOrigins = tc.configured })
			resp := e.serve(newRequest(tc.method, "/api/v1/recipes/1", nil, append([]string{"Origin", origin}, tc.header...)...))
			if detail := map[int]string{403: errOriginNotAllowed.detail, 405: errMethodNotAllowed.detail}[tc.status]; detail != "" {
				expectDetail(t, resp, tc.status, detail)
			} else {
				expectStatus(t, resp, tc.status)
			}
			got := map[string]string{}
			for name := range resp.Header {
				if strings.HasPrefix(name, "Access-Control-") {
					got[name] = resp.Header.Get(name)
				}
			}
			if !maps.Equal(got, tc.cors) {
				t.Errorf("%s from %s: CORS headers %q, want %q", tc.method, origin, got, tc.cors)
			}
			// An answer that depends on the Origin must not be cached for another.
			if vary := resp.Header.Get("Vary"); (vary == "Origin") != (len(tc.configured) > 0) {
				t.Errorf("%s from %s with %d origins configured: Vary = %q", tc.method, origin, len(tc.configured), vary)
			}
			logs := e.logs.String()
			warned := strings.Contains(logs, "level=WARN") && strings.Contains(logs, "BACKEND_CORS_ORIGINS") && strings.Contains(logs, "origin="+origin)
			if warned != tc.refusal || !tc.refusal && strings.Contains(logs, "BACKEND_CORS_ORIGINS") {
				t.Errorf("the log warns of a refused preflight naming BACKEND_CORS_ORIGINS and the origin: %v, want %v:\n%s", warned, tc.refusal, logs)
			}
		})
	}

	refused := func(e *testEnv, origin string) *http.Response {
		return e.serve(newRequest("OPTIONS", "/api/v1/auth/login", nil, "Origin", origin, "Access-Control-Request-Method", "POST"))
	}
	t.Run("the log names each origin once, then at most one refusal a minute", func(t *testing.T) {
		clock := newTestClock()
		e := startTestEnv(t, newTestConfig(t), clock.Now)
		refusals := func() int { return strings.Count(e.logs.String(), "CORS preflight refused") }
		for range 3 {
			expectStatus(t, refused(e, "http://localhost:3000"), http.StatusForbidden)
		}
		if got := refusals(); got != 1 {
			t.Errorf("three preflights from one origin logged %d refusals, want 1", got)
		}
		for i := range 2 * maxLoggedRefusedOrigins {
			expectStatus(t, refused(e, fmt.Sprintf("http://site%d.example", i)), http.StatusForbidden)
		}
		if got, want := refusals(), maxLoggedRefusedOrigins+1; got != want {
			t.Errorf("preflights from %d origins logged %d refusals, want %d: the first %d origins and one more",
				2*maxLoggedRefusedOrigins+1, got, want, maxLoggedRefusedOrigins)
		}
		clock.advance(refusedOriginLogInterval)
		for i := range 3 {
			refused(e, fmt.Sprintf("http://later%d.example", i))
		}
		if got, want := refusals(), maxLoggedRefusedOrigins+2; got != want {
			t.Errorf("after a minute, three more origins' preflights brought the refusals to %d, want %d", got, want)
		}
	})

	t.Run("a long origin is logged cut short", func(t *testing.T) {
		e := newTestEnv(t)
		expectStatus(t, refused(e, "http://"+strings.Repeat("a", 10000)+".example"), http.StatusForbidden)
		line := regexp.MustCompile(`.*CORS preflight refused.*`).FindString(e.logs.String())
		if len(line) > 1000 || !strings.Contains(line, "…(truncated)") {
			t.Errorf("a 10 KB origin was logged in a line of %d bytes, or not marked as cut: %.300s", len(line), line)
		}
	})
}

func TestAClientThatGoesAwayIsNoInternalError(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")
	ctx, cancel := context.WithCancel(t.Context())
	login := func() *http.Response {
		return e.serve(newRequest("POST", "/api/v1/auth/login", strings.NewReader("username=cook%40example.com&password=password123"),
			"Content-Type", "application/x-www-form-urlencoded").WithContext(ctx))
	}
	resp := answerWithHashingHeld(t, e, login, func(t *testing.T, waiting func() int) {
		waitFor(t, "the login to wait to hash", func() bool { return waiting() == 1 })
		cancel()
		waitFor(t, "the login to leave the queue", func() bool { return waiting() == 0 })
	})
	if resp.StatusCode != errClientGone.status {
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
	line := regexp.MustCompile(`.*msg=request .*`).FindString(e.logs.String())
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
	for _, tc := range []struct{ name, path, wantPrefix string }{
		{"ASCII is cut at 512 bytes", strings.Repeat("a", 600), strings.Repeat("a", 512)},
		{"a three-byte character across the cut is left out whole", strings.Repeat("a", 511) + strings.Repeat("€", 100), strings.Repeat("a", 511)},
		{"stray bytes are cut no more than 3 bytes short, never emptied", strings.Repeat("\xbd", 600), strings.Repeat("\xbd", 509)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := loggedPath(&http.Request{URL: &url.URL{Path: tc.path}}); got != tc.wantPrefix+"…(truncated)" {
				t.Errorf("loggedPath = %.40q… (%d bytes), want %.40q…(truncated)", got, len(got), tc.wantPrefix)
			}
		})
	}
}

// TestTheRequestLogGivesTheDurationInMilliseconds finds the line that
// serve logs for a request, in each LOG_FORMAT, by the request's id.
func TestTheRequestLogGivesTheDurationInMilliseconds(t *testing.T) {
	for _, tc := range []struct{ format, line string }{
		// The whole line, %s being the id: duration_ms is the only duration.
		{"json", `{"time":"[^"]+","level":"INFO","msg":"request","request_id":"%s","method":"GET","path":"/api/v1/recipes/1","status":200,"duration_ms":[0-9.e-]+,"client":"127\.0\.0\.1"}`},
		{"text", `time=\S+ level=INFO msg=request request_id=%s method=GET path=/api/v1/recipes/1 status=200 duration_ms=[0-9.e-]+ client=127\.0\.0\.1`},
	} {
		t.Run("in "+tc.format+" logs, with the path but not its query, the status and a number named duration_ms", func(t *testing.T) {
			env := map[string]string{"BCRYPT_COST": "4", "LOG_FORMAT": tc.format, "DATABASE_PATH": filepath.Join(t.TempDir(), "log.db")}
			base, logs := serveInBackground(t, env)
			resp, err := newClient(t, nil).Get(base + "/api/v1/recipes/1?token=not-for-the-log")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			id := resp.Header.Get("X-Request-ID")
			line := regexp.MustCompile(".*" + regexp.QuoteMeta(id) + ".*").FindString(logs.String())
			if want := fmt.Sprintf(tc.line, regexp.QuoteMeta(id)); id == "" || !regexp.MustCompile("^"+want+"$").MatchString(line) {
				t.Errorf("the line logged for the request with X-Request-ID %q is\n%s\nwant it to match\n%s", id, line, want)
			}
			for line := range strings.Lines(logs.String()) {
				if tc.format == "json" && !json.Valid([]byte(line)) {
					t.Errorf("log line is not JSON: %q", line)
				}
			}
		})
	}
}
