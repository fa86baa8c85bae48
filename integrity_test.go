// integrity_test.go tests that bad input is refused, never rewritten: JSON
// bodies that are not valid UTF-8, hold a lone surrogate escape or repeat a
// member name; form values that are not valid UTF-8; invisible characters
// in emails and names; and each thing that can be wrong with a recipe's
// URL, with its own message.
package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode/utf8"
)

// problemsOf returns the problems of a 422, failing the test if resp is
// not one.
func problemsOf(t testing.TB, resp *http.Response) []problem {
	t.Helper()
	expectStatus(t, resp, http.StatusUnprocessableEntity)
	return decodeBody[struct {
		Detail []problem `json:"detail"`
	}](t, resp).Detail
}

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

func TestEachURLProblemHasItsOwnMessage(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	const (
		noScheme    = "URL has no scheme: want an absolute URL that starts with http:// or https://"
		invalid     = "not a valid URL: want an absolute http or https URL such as https://example.com/soup"
		noHost      = "URL has no host: want one such as https://example.com/soup"
		tooLong     = "ensure this value has at most 256 characters"
		badCharText = "URL holds a space or a control, format or invisible character"
	)
	for _, tc := range []struct{ name, link, wantMsg, wantType string }{
		{"an empty URL has no scheme", "", noScheme, "value_error.url.scheme"},
		{"a bare host has no scheme", "example.com/soup", noScheme, "value_error.url.scheme"},
		{"a relative path has no scheme", "/soup", noScheme, "value_error.url.scheme"},
		{"a scheme-relative URL has no scheme", "//example.com/soup", noScheme, "value_error.url.scheme"},
		{"a javascript: URL names its scheme", "javascript:alert(1)", `URL scheme "javascript" is not allowed: want http or https`, "value_error.url.scheme"},
		{"an ftp URL names its scheme", "ftp://example.com/soup", `URL scheme "ftp" is not allowed: want http or https`, "value_error.url.scheme"},
		{"a data: URL names its scheme", "data:text/html,hi", `URL scheme "data" is not allowed: want http or https`, "value_error.url.scheme"},
		{"https:// has no host", "https://", noHost, "value_error.url.host"},
		{"a port alone is no host", "https://:8080/soup", noHost, "value_error.url.host"},
		{"userinfo alone is no host", "http://user@/soup", noHost, "value_error.url.host"},
		{"an opaque https: URL has no host", "https:example.com", noHost, "value_error.url.host"},
		{"a garbage host is named", "https://exa<mple>.com/", `URL host "exa<mple>.com" is not a host name or an IP address`, "value_error.url.host"},
		{"the URL Swagger UI once made up is not a valid URL", "hTtp://cuthW@vR`!**1,Zb8+obe>QyYo}ZM", invalid, "value_error.url"},
		{"an empty label in the host is named", "https://example..com/", `URL host "example..com" is not a host name or an IP address`, "value_error.url.host"},
		{"a bad escape in the host is not a valid URL", "https://%zz/", invalid, "value_error.url"},
		{"a URL with no scheme before its colon is not a valid URL", "://example.com", invalid, "value_error.url"},
		{"a space in the host", "https://exa mple.com", badCharText + " (U+0020)", "value_error.url.characters"},
		{"a trailing space", "https://example.com/soup ", badCharText + " (U+0020)", "value_error.url.characters"},
		{"a NUL in the fragment", "https://example.com#\u0000", badCharText + " (U+0000)", "value_error.url.characters"},
		{"a tab in the path", "https://example.com/so\tup", badCharText + " (U+0009)", "value_error.url.characters"},
		{"a newline in the path", "https://example.com/so\nup", badCharText + " (U+000A)", "value_error.url.characters"},
		{"a DEL in the query", "https://example.com/?q=\u007f", badCharText + " (U+007F)", "value_error.url.characters"},
		{"a line separator in the host", "https://exam\u2028ple.com/", badCharText + " (U+2028)", "value_error.url.characters"},
		{"a no-break space in the host", "https://example\u00a0.com/", badCharText + " (U+00A0)", "value_error.url.characters"},
		{"a zero-width space in the host", "https://exam\u200bple.com/", badCharText + " (U+200B)", "value_error.url.characters"},
		{"a right-to-left override in the path", "https://example.com/\u202egpj.exe", badCharText + " (U+202E)", "value_error.url.characters"},
		{"a byte order mark before the scheme", "\ufeffhttps://example.com/", badCharText + " (U+FEFF)", "value_error.url.characters"},
		{"a URL over 256 characters", "https://example.com/" + strings.Repeat("u", 237), tooLong, "value_error.any_str.max_length"},
		{"a URL over 256 characters with a space says it is too long first", "https://example.com/ " + strings.Repeat("u", 236), tooLong, "value_error.any_str.max_length"},
	} {
		t.Run(tc.name+": "+tc.wantMsg, func(t *testing.T) {
			resp := e.postJSON("/api/v1/recipes/", recipeBody("Soup", "Me", tc.link), bearer(token)...)
			problems := problemsOf(t, resp)
			if len(problems) != 1 || strings.Join(problems[0].Loc, ".") != "body.url" ||
				problems[0].Msg != tc.wantMsg || problems[0].Type != tc.wantType {
				t.Errorf("POST /api/v1/recipes/ with url %q = %+v, want one problem at body.url: %q (%s)", tc.link, problems, tc.wantMsg, tc.wantType)
			}
			// An update checks the URL by the same rules.
			resp = e.sendJSON("PUT", "/api/v1/recipes/1", recipeBody("Soup", "Me", tc.link), bearer(token)...)
			if got := problemsOf(t, resp); len(got) != 1 || got[0].Msg != tc.wantMsg {
				t.Errorf("PUT /api/v1/recipes/1 with url %q = %+v, want %q", tc.link, got, tc.wantMsg)
			}
		})
	}
	for _, link := range []string{
		"http://example.com", "https://example.com/a/b?c=d&e=f#g", "https://EXAMPLE.com:8443/", "http://[::1]:8001/x",
		"https://xn--bcher-kva.example/", "https://bücher.example/kochen", "https://example.com/%20soup",
		"https://example.com/" + strings.Repeat("u", 236),
	} {
		t.Run("the URL "+link[:min(len(link), 40)]+" is fine", func(t *testing.T) {
			postRecipe(t, e, token, "Soup", "Me", link)
		})
	}
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
