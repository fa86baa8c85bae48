// recipes_test.go tests recipes.go: reading, creating, changing and
// deleting recipes, a user's own list, and the checks on their fields.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

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

func TestRecipeCreationsAreLimitedPerAccount(t *testing.T) {
	clock := newTestClock()
	cfg := newTestConfig(t)
	defaultLimits(&cfg) // a burst of 200, then one a second
	e := startTestEnv(t, cfg, clock.Now)
	_, token := newRecipeUser(e, "importer@example.com")
	_, otherToken := newRecipeUser(e, "other@example.com")
	create := func(token string, i int) *http.Response {
		return e.postJSON("/api/v1/recipes/", recipeBody(fmt.Sprintf("Soup %d", i), "Me", "https://example.com/soup"), bearer(token)...)
	}

	t.Run("creations that fail use up nothing", func(t *testing.T) {
		for range 5 {
			expectProblems(t, e.postJSON("/api/v1/recipes/", `{"source":"Me","url":"https://example.com/soup"}`, bearer(token)...), "body.label")
			expectStatus(t, e.postJSON("/api/v1/recipes/", `{"label":"Soup","source":"Me","url":"https://example.com/soup","submitter_id":1}`, bearer(token)...),
				http.StatusForbidden)
		}
	})
	t.Run("an import of 200 recipes at once is served whole", func(t *testing.T) {
		for i := range 200 {
			expectStatus(t, create(token, i), http.StatusCreated)
		}
	})
	t.Run("the next is a 429 with Retry-After, and nothing is stored", func(t *testing.T) {
		resp := create(token, 200)
		if got := resp.Header.Get("Retry-After"); got != "1" {
			t.Errorf("POST /api/v1/recipes/: Retry-After = %q, want 1", got)
		}
		expectDetail(t, resp, http.StatusTooManyRequests, "Too many recipes created, try again later")
		resp = e.get("/api/v1/recipes/search/?keyword=Soup+200")
		if got := decodeBody[struct{ Results []recipe }](t, resp).Results; len(got) != 0 {
			t.Errorf("the refused recipe was stored: %v", got)
		}
	})
	t.Run("another account is not limited", func(t *testing.T) {
		expectStatus(t, create(otherToken, 0), http.StatusCreated)
	})
	t.Run("one creation comes back every second", func(t *testing.T) {
		clock.advance(time.Second)
		expectStatus(t, create(token, 201), http.StatusCreated)
		expectStatus(t, create(token, 202), http.StatusTooManyRequests)
	})
	t.Run("concurrent creations never outrun the budget", func(t *testing.T) {
		clock.advance(5 * time.Second)
		got := burstStatuses(20, func(i int) *http.Response { return create(token, 300+i) })
		if got[http.StatusCreated] != 5 || got[http.StatusTooManyRequests] != 15 {
			t.Errorf("20 concurrent creations with 5 left answered %v, want 5 × 201 and 15 × 429", got)
		}
	})
	t.Run("RECIPE_CREATION_BURST=0 turns the limit off", func(t *testing.T) {
		cfg := newTestConfig(t)
		defaultLimits(&cfg)
		cfg.recipeCreationBurst = 0
		unlimited := startTestEnv(t, cfg, clock.Now)
		_, token := newRecipeUser(unlimited, "importer@example.com")
		for i := range 250 {
			resp := unlimited.postJSON("/api/v1/recipes/", recipeBody(fmt.Sprintf("Stew %d", i), "Me", "https://example.com/stew"), bearer(token)...)
			expectStatus(t, resp, http.StatusCreated)
		}
	})
}

func TestGetRecipeByID(t *testing.T) {
	e := newTestEnv(t)
	t.Run("a seeded recipe is served exactly as the contract's table has it", func(t *testing.T) {
		resp := e.get("/api/v1/recipes/1")
		expectStatus(t, resp, http.StatusOK)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("GET /api/v1/recipes/1: Content-Type = %q, want application/json", ct)
		}
		if body := readBody(t, resp); body != vesuvioJSON {
			t.Errorf("GET /api/v1/recipes/1 = %s, want %s", body, vesuvioJSON)
		}
	})
	for _, tc := range []struct {
		name, id, detail string
	}{
		{"an unknown id is a 404 that names it", "7", "Recipe with ID 7 not found"},
		{"a negative id is a 404 that names it", "-3", "Recipe with ID -3 not found"},
		{"a zero id is a 404 that names it", "0", "Recipe with ID 0 not found"},
		{"the largest int64 is a 404 that names it", "9223372036854775807", "Recipe with ID 9223372036854775807 not found"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectDetail(t, e.get("/api/v1/recipes/"+tc.id), http.StatusNotFound, tc.detail)
		})
	}
	for _, tc := range []struct {
		name, id string
	}{
		{"a word is a 422 at path.recipe_id", "abc"},
		{"a fraction is a 422 at path.recipe_id", "1.5"},
		{"a number too big for int64 is a 422 at path.recipe_id", "9223372036854775808"},
		{"a number far too big is a 422 at path.recipe_id", "123456789012345678901234567890"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.get("/api/v1/recipes/"+tc.id), "path.recipe_id")
		})
	}
}

func TestCreateRecipe(t *testing.T) {
	e := newTestEnv(t)
	cook, token := newRecipeUser(e, "cook@example.com")
	other, _ := newRecipeUser(e, "other@example.com")

	// recipeCount is how many recipes there are (fewer than 100 here).
	recipeCount := func(t *testing.T) int {
		t.Helper()
		return len(searchIDs(t, e, "/api/v1/recipes/search/?max_results=100"))
	}

	t.Run("a signed-in user creates a recipe as themselves", func(t *testing.T) {
		resp := e.postJSON("/api/v1/recipes/",
			recipeBody("Pasta e ceci", "Marcella", "https://example.com/pasta-e-ceci"), bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("POST /api/v1/recipes/: Content-Type = %q, want application/json", ct)
		}
		body := readBody(t, resp)
		want := fmt.Sprintf(`{"label":"Pasta e ceci","source":"Marcella","url":"https://example.com/pasta-e-ceci","id":4,"submitter_id":%d}`, cook.ID)
		if body != want {
			t.Fatalf("POST /api/v1/recipes/ = %s, want %s", body, want)
		}
		read := e.get("/api/v1/recipes/4")
		expectStatus(t, read, http.StatusOK)
		if got := readBody(t, read); got != want {
			t.Errorf("GET /api/v1/recipes/4 = %s, want the created recipe %s", got, want)
		}
	})

	t.Run("a submitter_id equal to the caller's id is fine", func(t *testing.T) {
		body := fmt.Sprintf(`{"label":"Mine","source":"Me","url":"http://example.com/mine","submitter_id":%d}`, cook.ID)
		resp := e.postJSON("/api/v1/recipes/", body, bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
		if got := decodeBody[recipe](t, resp); got.SubmitterID != cook.ID || got.Label != "Mine" {
			t.Errorf("POST /api/v1/recipes/ = %+v, want label Mine by %d", got, cook.ID)
		}
	})

	t.Run("a null submitter_id means the caller", func(t *testing.T) {
		body := `{"label":"Null submitter","source":"Me","url":"http://example.com/n","submitter_id":null}`
		resp := e.postJSON("/api/v1/recipes/", body, bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
		if got := decodeBody[recipe](t, resp); got.SubmitterID != cook.ID {
			t.Errorf("POST /api/v1/recipes/ submitter_id = %d, want %d", got.SubmitterID, cook.ID)
		}
	})

	t.Run("a submitter_id naming someone else is a 403 and creates nothing", func(t *testing.T) {
		before := recipeCount(t)
		for _, id := range []int64{other.ID, 1, 999} {
			body := fmt.Sprintf(`{"label":"Forged","source":"X","url":"http://example.com/f","submitter_id":%d}`, id)
			expectDetail(t, e.postJSON("/api/v1/recipes/", body, bearer(token)...),
				http.StatusForbidden, "You can only submit recipes as yourself")
		}
		if after := recipeCount(t); after != before {
			t.Errorf("recipes = %d after refused creates, want %d", after, before)
		}
		if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=forged"); len(got) != 0 {
			t.Errorf("GET /api/v1/recipes/search/?keyword=forged = ids %v, want none", got)
		}
	})

	t.Run("no token is a 401 Not authenticated that asks for a bearer token and creates nothing", func(t *testing.T) {
		before := recipeCount(t)
		for _, header := range [][]string{nil, {"Authorization", "Basic Og=="}, {"Authorization", ""}} {
			resp := e.postJSON("/api/v1/recipes/", recipeBody("Anon", "X", "http://example.com/a"), header...)
			if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("POST /api/v1/recipes/ with %q: WWW-Authenticate = %q, want Bearer", header, got)
			}
			expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
		}
		if after := recipeCount(t); after != before {
			t.Errorf("recipes = %d after unauthenticated creates, want %d", after, before)
		}
	})

	t.Run("a bad token is a 401 Could not validate credentials and creates nothing", func(t *testing.T) {
		before := recipeCount(t)
		for _, bad := range []string{"not-a-token", token + "x", token[:len(token)-2], ""} {
			resp := e.postJSON("/api/v1/recipes/", recipeBody("Bad token", "X", "http://example.com/b"), bearer(bad)...)
			if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("POST /api/v1/recipes/ with token %q: WWW-Authenticate = %q, want Bearer", bad, got)
			}
			expectDetail(t, resp, http.StatusUnauthorized, "Could not validate credentials")
		}
		if after := recipeCount(t); after != before {
			t.Errorf("recipes = %d after creates with bad tokens, want %d", after, before)
		}
	})

	long := strings.Repeat("a", 257)
	exact := strings.Repeat("b", 256)
	urlOf := func(n int) string { return "https://example.com/" + strings.Repeat("u", n-len("https://example.com/")) }
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
	}{
		{"a missing label is a 422", `{"source":"X","url":"http://example.com/x"}`, []string{"body.label"}},
		{"a null label is a 422", `{"label":null,"source":"X","url":"http://example.com/x"}`, []string{"body.label"}},
		{"a label that is not a string is a 422", `{"label":42,"source":"X","url":"http://example.com/x"}`, []string{"body.label"}},
		{"a missing url is a 422", `{"label":"L","source":"X"}`, []string{"body.url"}},
		{"a missing source is a 422", `{"label":"L","url":"http://example.com/x"}`, []string{"body.source"}},
		{"a javascript: url is a 422", recipeBody("L", "X", "javascript:alert(1)"), []string{"body.url"}},
		{"an ftp url is a 422", recipeBody("L", "X", "ftp://x.com/a"), []string{"body.url"}},
		{"a relative url is a 422", recipeBody("L", "X", "/relative"), []string{"body.url"}},
		{"an http url with no host is a 422", recipeBody("L", "X", "http://"), []string{"body.url"}},
		{"a url with no scheme is a 422", recipeBody("L", "X", "example.com/a"), []string{"body.url"}},
		{"an empty url is a 422", recipeBody("L", "X", ""), []string{"body.url"}},
		{"a label over 256 characters is a 422", recipeBody(long, "X", "http://example.com/x"), []string{"body.label"}},
		{"a source over 256 characters is a 422", recipeBody("L", long, "http://example.com/x"), []string{"body.source"}},
		{"a url over 256 characters is a 422", recipeBody("L", "X", urlOf(257)), []string{"body.url"}},
		{"a submitter_id that is not a number is a 422", `{"label":"L","source":"X","url":"http://example.com/x","submitter_id":"me"}`, []string{"body.submitter_id"}},
		{"several bad fields are all listed", `{"source":"` + long + `","url":"javascript:alert(1)","submitter_id":"me"}`,
			[]string{"body.label", "body.source", "body.url", "body.submitter_id"}},
		{"a body that is not JSON is a 422 at body", `{"label": "L",`, []string{"body"}},
		{"an empty body is a 422 at body", ``, []string{"body"}},
		{"a JSON array is a 422 at body", `[{"label":"L","source":"X","url":"http://example.com/x"}]`, []string{"body"}},
		{"a JSON null is a 422 at body", `null`, []string{"body"}},
		{"a JSON string is a 422 at body", `"label"`, []string{"body"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := recipeCount(t)
			expectProblems(t, e.postJSON("/api/v1/recipes/", tc.body, bearer(token)...), tc.wantLocs...)
			if after := recipeCount(t); after != before {
				t.Errorf("recipes = %d after a refused create, want %d", after, before)
			}
		})
	}

	for _, tc := range []struct {
		name, label, source, link string
	}{
		{"a label of exactly 256 characters is fine", exact, "X", "http://example.com/x"},
		{"a source of exactly 256 characters is fine", "L", exact, "http://example.com/x"},
		{"a url of exactly 256 characters is fine", "L", "X", urlOf(256)},
		{"256 characters are counted as characters, not bytes", strings.Repeat("é", 256), strings.Repeat("ü", 256), "http://example.com/x"},
		{"an empty source is fine", "L", "", "http://example.com/x"},
		{"an https url with a port, query and fragment is fine", "L", "X", "https://example.com:8443/a/b?c=d#e"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := postRecipe(t, e, token, tc.label, tc.source, tc.link)
			if got.Label != tc.label || got.Source != tc.source || got.URL != tc.link || got.SubmitterID != cook.ID {
				t.Errorf("POST /api/v1/recipes/ = %+v, want the fields echoed and submitter_id %d", got, cook.ID)
			}
		})
	}

	t.Run("a body over 64 KiB is a 413", func(t *testing.T) {
		before := recipeCount(t)
		body := recipeBody(strings.Repeat("a", 1<<20), "X", "http://example.com/x")
		resp := e.postJSON("/api/v1/recipes/", body, bearer(token)...)
		expectStatus(t, resp, http.StatusRequestEntityTooLarge)
		if got := decodeBody[map[string]any](t, resp); got["detail"] == nil || got["detail"] == "" {
			t.Errorf("POST /api/v1/recipes/ (over 64 KiB) = %v, want a detail", got)
		}
		if after := recipeCount(t); after != before {
			t.Errorf("recipes = %d after a refused create, want %d", after, before)
		}
	})

	t.Run("unknown fields are ignored, and id and submitter cannot be chosen", func(t *testing.T) {
		body := `{"label":"Extra","source":"X","url":"http://example.com/e","id":999,` +
			`"rating":5,"is_superuser":true,"tags":["a"],"owner":{"id":1}}`
		resp := e.postJSON("/api/v1/recipes/", body, bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
		got := decodeBody[recipe](t, resp)
		if got.ID == 999 || got.Label != "Extra" || got.SubmitterID != cook.ID {
			t.Errorf("POST /api/v1/recipes/ = %+v, want a new id, label Extra, submitter %d", got, cook.ID)
		}
		expectDetail(t, e.get("/api/v1/recipes/999"), http.StatusNotFound, "Recipe with ID 999 not found")
	})
}

func TestLabelsAndSourcesRefuseControlAndBidirectionalCharacters(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	mine := postRecipe(t, e, token, "Minestrone", "Nonna", "https://example.com/minestrone")
	target := fmt.Sprintf("/api/v1/recipes/%d", mine.ID)
	recipeCount := func(t *testing.T) int {
		t.Helper()
		return len(searchIDs(t, e, "/api/v1/recipes/search/?max_results=100"))
	}

	for _, bad := range []struct {
		name string
		char rune
	}{
		{"NUL", 0x00}, {"BEL", 0x07}, {"a tab", '\t'}, {"a newline", '\n'}, {"a carriage return", '\r'},
		{"DEL", 0x7F}, {"the C1 next line", 0x85}, {"the C1 control U+009F", 0x9F},
		{"the Arabic letter mark", 0x061C}, {"the left-to-right mark", 0x200E}, {"the right-to-left mark", 0x200F},
		{"a left-to-right embedding", 0x202A}, {"a right-to-left override", 0x202E},
		{"a left-to-right isolate", 0x2066}, {"a pop directional isolate", 0x2069},
	} {
		for _, field := range []string{"label", "source"} {
			fields := map[string]string{"label": "Chicken soup", "source": "Grandma", "url": "https://example.com/soup"}
			fields[field] = "Chicken " + string(bad.char) + "soup"
			body, _ := json.Marshal(fields)
			t.Run(fmt.Sprintf("a %s holding %s (U+%04X) is refused on create and stores nothing", field, bad.name, bad.char), func(t *testing.T) {
				before := recipeCount(t)
				expectProblems(t, e.postJSON("/api/v1/recipes/", string(body), bearer(token)...), "body."+field)
				if after := recipeCount(t); after != before {
					t.Errorf("recipes = %d after a refused create, want %d", after, before)
				}
			})
			t.Run(fmt.Sprintf("a %s holding %s (U+%04X) is refused on update and changes nothing", field, bad.name, bad.char), func(t *testing.T) {
				expectProblems(t, e.sendJSON("PUT", target, string(body), bearer(token)...), "body."+field)
				if got := decodeBody[recipe](t, e.get(target)); got != mine {
					t.Errorf("GET %s = %+v after a refused update, want %+v", target, got, mine)
				}
			})
		}
	}

	for _, tc := range []struct{ name, label, source string }{
		{"an emoji sequence joined by zero-width joiners is fine", "\U0001F469\u200D\U0001F373 Chef's stew", "Kitchen \U0001F468\u200D\U0001F467"},
		{"a no-break space is fine", "Crème\u00A0brûlée", "Paul\u00A0Bocuse"},
		{"an emoji variation selector is fine", "\u2615\uFE0F Coffee", "Café"},
		{"right-to-left text without controls is fine", "شوربة عدس", "مطبخ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := postRecipe(t, e, token, tc.label, tc.source, "https://example.com/fine")
			if got.Label != tc.label || got.Source != tc.source {
				t.Errorf("POST /api/v1/recipes/ = %+v, want label %q and source %q kept", got, tc.label, tc.source)
			}
		})
	}
}

func TestMyRecipesAnswersWithAndWithoutTheTrailingSlash(t *testing.T) {
	e := newTestEnv(t)
	e.signup("cook@example.com", "password123")
	token := e.login("cook@example.com", "password123")
	expectStatus(t, e.postJSON("/api/v1/recipes/", `{"label":"Soup","source":"Me","url":"https://example.com/soup"}`, bearer(token)...), http.StatusCreated)
	var bodies []string
	for _, path := range []string{"/api/v1/recipes/my-recipes/", "/api/v1/recipes/my-recipes"} {
		resp := e.get(path, bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		body, _ := io.ReadAll(resp.Body)
		bodies = append(bodies, string(body))
	}
	if bodies[0] != bodies[1] || !strings.Contains(bodies[0], `"label":"Soup"`) {
		t.Errorf("my-recipes with and without the slash = %s and %s, want the same list with Soup", bodies[0], bodies[1])
	}
}

// myRecipeIDs fetches target as the holder of token, which must answer
// 200, and returns the ids listed.
func myRecipeIDs(t *testing.T, e *testEnv, target, token string) []int64 {
	t.Helper()
	resp := e.get(target, bearer(token)...)
	expectStatus(t, resp, http.StatusOK)
	ids := []int64{}
	for _, r := range decodeBody[struct {
		Results []recipe `json:"results"`
	}](t, resp).Results {
		ids = append(ids, r.ID)
	}
	return ids
}

func TestMyRecipesArePaged(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "prolific@example.com")
	_, otherToken := newRecipeUser(e, "other@example.com")
	var mine []int64
	for i := range 105 {
		mine = append(mine, postRecipe(t, e, token, fmt.Sprintf("Dish %03d", i), "Me", "https://example.com/d").ID)
		if i%10 == 0 { // someone else's recipes in between, never listed
			postRecipe(t, e, otherToken, "Not mine", "Them", "https://example.com/n")
		}
	}

	for _, tc := range []struct {
		name, query string
		want        []int64
	}{
		{"no parameters give the first 100 recipes", "", mine[:100]},
		{"skip passes over recipes", "skip=100", mine[100:]},
		{"skip and limit pick a page", "skip=3&limit=2", mine[3:5]},
		{"limit=1 gives one recipe", "limit=1", mine[:1]},
		{"limit=100 is the most there is", "limit=100", mine[:100]},
		{"skip=0 is the start", "skip=0&limit=3", mine[:3]},
		{"a skip past the end gives none", "skip=1000", []int64{}},
		{"a skip as big as an int64 gives none", "skip=9223372036854775807", []int64{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/recipes/my-recipes/", "/api/v1/recipes/my-recipes"} {
				target := path + "?" + tc.query
				if got := myRecipeIDs(t, e, target, token); !slices.Equal(got, tc.want) {
					t.Errorf("GET %s = ids %v, want %v", target, got, tc.want)
				}
			}
		})
	}

	for _, tc := range []struct {
		name, query string
		wantLocs    []string
	}{
		{"a negative skip is a 422", "skip=-1", []string{"query.skip"}},
		{"a skip that is not a number is a 422", "skip=abc", []string{"query.skip"}},
		{"an empty skip is a 422", "skip=", []string{"query.skip"}},
		{"a fractional skip is a 422", "skip=1.5", []string{"query.skip"}},
		{"a skip too big for an int64 is a 422", "skip=9223372036854775808", []string{"query.skip"}},
		{"limit=0 is a 422", "limit=0", []string{"query.limit"}},
		{"limit=101 is a 422", "limit=101", []string{"query.limit"}},
		{"a negative limit is a 422", "limit=-5", []string{"query.limit"}},
		{"a limit that is not a number is a 422", "limit=all", []string{"query.limit"}},
		{"a bad skip and a bad limit are both listed", "skip=-1&limit=1000", []string{"query.skip", "query.limit"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, path := range []string{"/api/v1/recipes/my-recipes/", "/api/v1/recipes/my-recipes"} {
				expectProblems(t, e.get(path+"?"+tc.query, bearer(token)...), tc.wantLocs...)
			}
		})
	}
}

func TestNoListAnswersMoreThan100Recipes(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "bulk@example.com")
	for i := range 150 {
		postRecipe(t, e, token, fmt.Sprintf("Bulk %03d", i), "Me", "https://example.com/b")
	}
	for _, target := range []string{
		"/api/v1/recipes/search/?max_results=100",
		"/api/v1/recipes/search/?keyword=bulk&max_results=100",
		"/api/v1/recipes/my-recipes/",
		"/api/v1/recipes/my-recipes/?limit=100",
	} {
		if got := myRecipeIDs(t, e, target, token); len(got) != 100 {
			t.Errorf("GET %s = %d recipes, want 100, the most any list answers", target, len(got))
		}
	}
	page := readBody(t, e.get("/"))
	if shown := len(regexp.MustCompile(`Bulk \d{3}`).FindAllString(page, -1)); shown == 0 || shown > 100 {
		t.Errorf("GET / shows %d recipes, want 1 to 100", shown)
	}
}

func TestOnlyTheSubmitterOrASuperuserChangesARecipe(t *testing.T) {
	e := newTestEnv(t)
	alice, aliceToken := newRecipeUser(e, "alice@example.com")
	bob, bobToken := newRecipeUser(e, "bob@example.com")
	adminToken := e.login("admin@recipeapi.com", adminPassword)

	aliceFirst := postRecipe(t, e, aliceToken, "Alice's Soup", "Alice", "https://example.com/soup")
	bobs := postRecipe(t, e, bobToken, "Bob's Bread", "Bob", "https://example.com/bread")
	aliceSecond := postRecipe(t, e, aliceToken, "Alice's Stew", "Alice", "https://example.com/stew")

	recipePath := func(id int64) string { return "/api/v1/recipes/" + strconv.FormatInt(id, 10) }
	put := func(id int64, body, token string) *http.Response {
		return e.sendJSON("PUT", recipePath(id), body, bearer(token)...)
	}
	del := func(id int64, token string) *http.Response {
		return e.send("DELETE", recipePath(id), nil, bearer(token)...)
	}
	current := func(t *testing.T, id int64) recipe {
		t.Helper()
		resp := e.get(recipePath(id))
		expectStatus(t, resp, http.StatusOK)
		return decodeBody[recipe](t, resp)
	}
	myRecipes := func(t *testing.T, token string) []recipe {
		t.Helper()
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		return decodeBody[struct {
			Results []recipe `json:"results"`
		}](t, resp).Results
	}
	newBody := recipeBody("Changed", "Changer", "https://example.com/changed")

	t.Run("my-recipes lists only the caller's recipes, in id order", func(t *testing.T) {
		if got, want := myRecipes(t, aliceToken), []recipe{aliceFirst, aliceSecond}; !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/recipes/my-recipes/ as alice = %+v, want %+v", got, want)
		}
		if got, want := myRecipes(t, bobToken), []recipe{bobs}; !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/recipes/my-recipes/ as bob = %+v, want %+v", got, want)
		}
	})
	t.Run("my-recipes is empty, not null, for a user with none", func(t *testing.T) {
		_, token := newRecipeUser(e, "idle@example.com")
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		if body := readBody(t, resp); body != `{"results":[]}` {
			t.Errorf("GET /api/v1/recipes/my-recipes/ = %s, want {\"results\":[]}", body)
		}
	})
	t.Run("another user cannot update a recipe, which stays unchanged", func(t *testing.T) {
		expectDetail(t, put(aliceFirst.ID, newBody, bobToken), http.StatusForbidden, "You can only update your recipes")
		if got := current(t, aliceFirst.ID); got != aliceFirst {
			t.Errorf("after a refused PUT, recipe = %+v, want %+v", got, aliceFirst)
		}
	})
	t.Run("another user cannot update a seeded recipe of the superuser", func(t *testing.T) {
		expectDetail(t, put(1, newBody, bobToken), http.StatusForbidden, "You can only update your recipes")
	})
	t.Run("another user cannot delete a recipe, which stays", func(t *testing.T) {
		expectDetail(t, del(aliceFirst.ID, bobToken), http.StatusForbidden, "You can only delete your recipes")
		if got := current(t, aliceFirst.ID); got != aliceFirst {
			t.Errorf("after a refused DELETE, recipe = %+v, want %+v", got, aliceFirst)
		}
	})
	t.Run("the submitter updates a recipe: new fields, same id and submitter", func(t *testing.T) {
		resp := put(aliceFirst.ID, newBody, aliceToken)
		expectStatus(t, resp, http.StatusOK)
		want := recipe{Label: "Changed", Source: "Changer", URL: "https://example.com/changed", ID: aliceFirst.ID, SubmitterID: alice.ID}
		if got := decodeBody[recipe](t, resp); got != want {
			t.Errorf("PUT %s = %+v, want %+v", recipePath(aliceFirst.ID), got, want)
		}
		if got := current(t, aliceFirst.ID); got != want {
			t.Errorf("GET %s after PUT = %+v, want %+v", recipePath(aliceFirst.ID), got, want)
		}
	})
	t.Run("a submitter_id in an update body does not give the recipe away", func(t *testing.T) {
		body := fmt.Sprintf(`{"label":"Still Alice's","source":"Alice","url":"https://example.com/a","submitter_id":%d}`, bob.ID)
		resp := put(aliceSecond.ID, body, aliceToken)
		expectStatus(t, resp, http.StatusOK)
		if got := decodeBody[recipe](t, resp); got.SubmitterID != alice.ID {
			t.Errorf("PUT with submitter_id %d: submitter_id = %d, want %d", bob.ID, got.SubmitterID, alice.ID)
		}
		aliceSecond = current(t, aliceSecond.ID)
	})
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
	}{
		{"an update without a label is a 422", `{"source":"Alice","url":"https://example.com/a"}`, []string{"body.label"}},
		{"an update with a URL that is not http(s) is a 422", recipeBody("X", "Alice", "javascript:alert(1)"), []string{"body.url"}},
		{"an update with a relative URL is a 422", recipeBody("X", "Alice", "/soup"), []string{"body.url"}},
		{"an update lists every bad field", `{"source":"Alice","url":"ftp://example.com/a"}`, []string{"body.label", "body.url"}},
		{"an update body that is not JSON is a 422 at body", `{"label":`, []string{"body"}},
	} {
		t.Run(tc.name+" and changes nothing", func(t *testing.T) {
			expectProblems(t, put(aliceSecond.ID, tc.body, aliceToken), tc.wantLocs...)
			if got := current(t, aliceSecond.ID); got != aliceSecond {
				t.Errorf("after a refused PUT, recipe = %+v, want %+v", got, aliceSecond)
			}
		})
	}
	t.Run("the superuser updates anyone's recipe, which keeps its submitter", func(t *testing.T) {
		resp := put(bobs.ID, recipeBody("Admin's edit", "Admin", "http://example.com/edit"), adminToken)
		expectStatus(t, resp, http.StatusOK)
		want := recipe{Label: "Admin's edit", Source: "Admin", URL: "http://example.com/edit", ID: bobs.ID, SubmitterID: bob.ID}
		if got := decodeBody[recipe](t, resp); got != want {
			t.Errorf("PUT %s as the superuser = %+v, want %+v", recipePath(bobs.ID), got, want)
		}
	})
	t.Run("the submitter deletes a recipe: 204, then it is gone", func(t *testing.T) {
		resp := del(aliceFirst.ID, aliceToken)
		expectStatus(t, resp, http.StatusNoContent)
		if body := readBody(t, resp); body != "" {
			t.Errorf("DELETE %s body = %q, want none", recipePath(aliceFirst.ID), body)
		}
		expectDetail(t, e.get(recipePath(aliceFirst.ID)), http.StatusNotFound,
			fmt.Sprintf("Recipe with ID %d not found", aliceFirst.ID))
		if got, want := myRecipes(t, aliceToken), []recipe{aliceSecond}; !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/recipes/my-recipes/ after the delete = %+v, want %+v", got, want)
		}
	})
	t.Run("the superuser deletes anyone's recipe", func(t *testing.T) {
		expectStatus(t, del(bobs.ID, adminToken), http.StatusNoContent)
		expectDetail(t, e.get(recipePath(bobs.ID)), http.StatusNotFound,
			fmt.Sprintf("Recipe with ID %d not found", bobs.ID))
	})

	for _, who := range []struct{ name, token string }{
		{"its submitter", aliceToken}, {"another user", bobToken}, {"the superuser", adminToken},
	} {
		for _, id := range []int64{aliceFirst.ID, 99999} { // one deleted, one never made
			detail := fmt.Sprintf("Recipe with ID %d not found", id)
			t.Run(fmt.Sprintf("an update of missing recipe %d by %s is a 404", id, who.name), func(t *testing.T) {
				expectDetail(t, put(id, newBody, who.token), http.StatusNotFound, detail)
			})
			t.Run(fmt.Sprintf("a delete of missing recipe %d by %s is a 404", id, who.name), func(t *testing.T) {
				expectDetail(t, del(id, who.token), http.StatusNotFound, detail)
			})
		}
	}
	for _, id := range []string{"abc", "1.5", "my-recipes"} {
		for _, method := range []string{"PUT", "DELETE"} {
			t.Run(fmt.Sprintf("%s of recipe %q is a 422 at path.recipe_id", method, id), func(t *testing.T) {
				resp := e.send(method, "/api/v1/recipes/"+id, strings.NewReader(newBody),
					append([]string{"Content-Type", "application/json"}, bearer(aliceToken)...)...)
				expectProblems(t, resp, "path.recipe_id")
			})
		}
	}
	for _, tc := range []struct {
		method, target, body string
	}{
		{"PUT", recipePath(aliceSecond.ID), newBody},
		{"DELETE", recipePath(aliceSecond.ID), ""},
		{"GET", "/api/v1/recipes/my-recipes/", ""},
	} {
		t.Run(fmt.Sprintf("%s %s without a token is a 401 Not authenticated", tc.method, tc.target), func(t *testing.T) {
			resp := e.send(tc.method, tc.target, strings.NewReader(tc.body), "Content-Type", "application/json")
			if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
				t.Errorf("%s %s: WWW-Authenticate = %q, want Bearer", tc.method, tc.target, got)
			}
			expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
		})
	}
	t.Run("a refused update without a token changes nothing", func(t *testing.T) {
		if got := current(t, aliceSecond.ID); got != aliceSecond {
			t.Errorf("recipe = %+v, want %+v", got, aliceSecond)
		}
	})
}
