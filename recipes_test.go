// recipes_test.go tests recipes.go: reading, creating, changing and
// deleting recipes, a user's own list, and the checks on their fields.
package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// expectNothingStored runs refuse, which sends requests that must be
// refused, and fails the test if the number of recipes changed meanwhile.
func expectNothingStored(t *testing.T, e *testEnv, refuse func()) {
	t.Helper()
	const count = "SELECT count(*) FROM recipe"
	before := queryInt(t, e.store.reader, count)
	refuse()
	if after := queryInt(t, e.store.reader, count); after != before {
		t.Errorf("recipes = %d after refused requests, want %d", after, before)
	}
}

func TestEachURLProblemHasItsOwnMessage(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	mine := postRecipe(t, e, token, "Soup", "Me", "https://example.com/soup")
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
			// An update checks the URL by the same rules, and changes nothing.
			for _, method := range []string{"POST", "PUT"} {
				target := map[string]string{"POST": "/api/v1/recipes/", "PUT": recipePath(mine.ID)}[method]
				problems := problemsOf(t, e.sendJSON(method, target, recipeBody("Soup", "Me", tc.link), bearer(token)...))
				if len(problems) != 1 || strings.Join(problems[0].Loc, ".") != "body.url" ||
					problems[0].Msg != tc.wantMsg || problems[0].Type != tc.wantType {
					t.Errorf("%s %s with url %q = %+v, want one problem at body.url: %q (%s)", method, target, tc.link, problems, tc.wantMsg, tc.wantType)
				}
			}
			if got := decodeBody[recipe](t, e.get(recipePath(mine.ID))); got != mine {
				t.Errorf("GET %s after a refused update = %+v, want %+v", recipePath(mine.ID), got, mine)
			}
		})
	}
	for _, link := range []string{
		"http://example.com", "https://example.com/a/b?c=d&e=f#g", "https://EXAMPLE.com:8443/", "http://[::1]:8001/x",
		"https://xn--bcher-kva.example/", "https://bücher.example/kochen", "https://example.com/%20soup",
		"https://example.com/" + strings.Repeat("u", 236),
	} {
		t.Run("the URL "+link[:min(len(link), 40)]+" is fine", func(t *testing.T) {
			if got := postRecipe(t, e, token, "Soup", "Me", link); got.URL != link {
				t.Errorf("POST /api/v1/recipes/ with url %q: url = %q, want it kept", link, got.URL)
			}
		})
	}
}

func TestRecipeCreationsAreLimitedPerAccount(t *testing.T) {
	// usedUp starts a service at the default limits (a burst of 200, then
	// one a second) on a clock of its own, with an account that has just
	// created 200 recipes; create adds one more as the holder of token.
	usedUp := func(t *testing.T) (e *testEnv, clock *testClock, token string, create func(token string) *http.Response) {
		t.Helper()
		clock = newTestClock()
		cfg := newTestConfig(t)
		defaultLimits(&cfg)
		e = startTestEnv(t, cfg, clock.Now)
		_, token = newRecipeUser(e, "importer@example.com")
		create = func(token string) *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody("Soup", "Me", "https://example.com/soup"), bearer(token)...)
		}
		// Creations that fail use up nothing: the 200 below still pass.
		for range 5 {
			expectProblems(t, e.postJSON("/api/v1/recipes/", `{"source":"Me","url":"https://example.com/soup"}`, bearer(token)...), "body.label")
			expectStatus(t, e.postJSON("/api/v1/recipes/", `{"label":"Soup","source":"Me","url":"https://example.com/soup","submitter_id":1}`, bearer(token)...),
				http.StatusForbidden)
		}
		for range 200 { // an import of 200 recipes at once is served whole
			expectStatus(t, create(token), http.StatusCreated)
		}
		return e, clock, token, create
	}

	t.Run("the 201st creation is a 429 with Retry-After, and nothing is stored", func(t *testing.T) {
		e, _, token, create := usedUp(t)
		expectNothingStored(t, e, func() {
			resp := create(token)
			if got := resp.Header.Get("Retry-After"); got != "1" {
				t.Errorf("POST /api/v1/recipes/: Retry-After = %q, want 1", got)
			}
			expectDetail(t, resp, http.StatusTooManyRequests, "Too many recipes created, try again later")
		})
	})
	t.Run("another account is not limited", func(t *testing.T) {
		e, _, _, create := usedUp(t)
		_, otherToken := newRecipeUser(e, "other@example.com")
		expectStatus(t, create(otherToken), http.StatusCreated)
	})
	t.Run("one creation comes back every second", func(t *testing.T) {
		_, clock, token, create := usedUp(t)
		clock.advance(time.Second)
		expectStatus(t, create(token), http.StatusCreated)
		expectStatus(t, create(token), http.StatusTooManyRequests)
	})
	t.Run("concurrent creations never outrun the budget", func(t *testing.T) {
		_, clock, token, create := usedUp(t)
		clock.advance(5 * time.Second)
		got := burstStatuses(20, func(int) *http.Response { return create(token) })
		if got[http.StatusCreated] != 5 || got[http.StatusTooManyRequests] != 15 {
			t.Errorf("20 concurrent creations with 5 left answered %v, want 5 × 201 and 15 × 429", got)
		}
	})
	t.Run("RECIPE_CREATION_BURST=0 turns the limit off", func(t *testing.T) {
		unlimited := newTestEnv(t, defaultLimits, func(c *config) { c.recipeCreationBurst = 0 })
		_, token := newRecipeUser(unlimited, "importer@example.com")
		for range 250 {
			postRecipe(t, unlimited, token, "Stew", "Me", "https://example.com/stew")
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
		name, id string
		notFound bool // a 404 that names the id; else a 422 at path.recipe_id
	}{
		{"an unknown id is a 404 that names it", "7", true},
		{"a negative id is a 404 that names it", "-3", true},
		{"a zero id is a 404 that names it", "0", true},
		{"the largest int64 is a 404 that names it", "9223372036854775807", true},
		{"a word is a 422 at path.recipe_id", "abc", false},
		{"a fraction is a 422 at path.recipe_id", "1.5", false},
		{"a number too big for int64 is a 422 at path.recipe_id", "9223372036854775808", false},
		{"a number far too big is a 422 at path.recipe_id", "123456789012345678901234567890", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if resp := e.get("/api/v1/recipes/" + tc.id); tc.notFound {
				expectDetail(t, resp, http.StatusNotFound, "Recipe with ID "+tc.id+" not found")
			} else {
				expectProblems(t, resp, "path.recipe_id")
			}
		})
	}
}

func TestCreateRecipe(t *testing.T) {
	e := newTestEnv(t)
	cook, token := newRecipeUser(e, "cook@example.com")
	other, _ := newRecipeUser(e, "other@example.com")

	t.Run("a signed-in user creates a recipe as themselves, which is then served", func(t *testing.T) {
		resp := e.postJSON("/api/v1/recipes/",
			recipeBody("Pasta e ceci", "Marcella", "https://example.com/pasta-e-ceci"), bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("POST /api/v1/recipes/: Content-Type = %q, want application/json", ct)
		}
		body := readBody(t, resp)
		var created recipe
		if err := json.Unmarshal([]byte(body), &created); err != nil || created.ID == 0 {
			t.Fatalf("POST /api/v1/recipes/ = %s, want a recipe with an id (%v)", body, err)
		}
		want := fmt.Sprintf(`{"label":"Pasta e ceci","source":"Marcella","url":"https://example.com/pasta-e-ceci","id":%d,"submitter_id":%d}`, created.ID, cook.ID)
		if body != want {
			t.Errorf("POST /api/v1/recipes/ = %s, want %s", body, want)
		}
		if got := readBody(t, e.get(recipePath(created.ID))); got != want {
			t.Errorf("GET %s = %s, want the created recipe %s", recipePath(created.ID), got, want)
		}
	})

	for _, tc := range []struct{ name, submitter string }{
		{"a submitter_id equal to the caller's id is fine", itoa(cook.ID)},
		{"a null submitter_id means the caller", "null"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := `{"label":"Mine","source":"Me","url":"http://example.com/mine","submitter_id":` + tc.submitter + `}`
			resp := e.postJSON("/api/v1/recipes/", body, bearer(token)...)
			expectStatus(t, resp, http.StatusCreated)
			if got := decodeBody[recipe](t, resp); got.SubmitterID != cook.ID || got.Label != "Mine" {
				t.Errorf("POST /api/v1/recipes/ with submitter_id %s = %+v, want label Mine by %d", tc.submitter, got, cook.ID)
			}
		})
	}

	t.Run("a submitter_id naming someone else is a 403 and creates nothing", func(t *testing.T) {
		expectNothingStored(t, e, func() {
			for _, id := range []int64{other.ID, 1, 999} {
				body := fmt.Sprintf(`{"label":"Forged","source":"X","url":"http://example.com/f","submitter_id":%d}`, id)
				expectDetail(t, e.postJSON("/api/v1/recipes/", body, bearer(token)...),
					http.StatusForbidden, "You can only submit recipes as yourself")
			}
		})
	})

	for _, tc := range []struct {
		name   string
		header []string
		detail string
	}{
		{"no Authorization header", nil, "Not authenticated"},
		{"a Basic Authorization header", []string{"Authorization", "Basic Og=="}, "Not authenticated"},
		{"a bearer token that is no token", bearer("not-a-token"), "Could not validate credentials"},
		{"a token with a character added", bearer(token + "x"), "Could not validate credentials"},
		{"a token cut short", bearer(token[:len(token)-2]), "Could not validate credentials"},
		{"an empty bearer token", bearer(""), "Could not validate credentials"},
	} {
		t.Run(tc.name+" is a 401 "+tc.detail+" that asks for a bearer token and creates nothing", func(t *testing.T) {
			expectNothingStored(t, e, func() {
				resp := e.postJSON("/api/v1/recipes/", recipeBody("Anon", "X", "http://example.com/a"), tc.header...)
				if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
					t.Errorf("POST /api/v1/recipes/: WWW-Authenticate = %q, want Bearer", got)
				}
				expectDetail(t, resp, http.StatusUnauthorized, tc.detail)
			})
		})
	}

	// TestEachURLProblemHasItsOwnMessage checks each bad URL.
	long := strings.Repeat("a", 257)
	exact := strings.Repeat("b", 256)
	for _, tc := range []struct {
		name, body string
		wantLocs   []string
	}{
		{"a missing label is a 422", `{"source":"X","url":"http://example.com/x"}`, []string{"body.label"}},
		{"a null label is a 422", `{"label":null,"source":"X","url":"http://example.com/x"}`, []string{"body.label"}},
		{"a label that is not a string is a 422", `{"label":42,"source":"X","url":"http://example.com/x"}`, []string{"body.label"}},
		{"a label of spaces only is a 422", recipeBody("   ", "X", "http://example.com/x"), []string{"body.label"}},
		{"a missing url is a 422", `{"label":"L","source":"X"}`, []string{"body.url"}},
		{"a missing source is a 422", `{"label":"L","url":"http://example.com/x"}`, []string{"body.source"}},
		{"a label over 256 characters is a 422", recipeBody(long, "X", "http://example.com/x"), []string{"body.label"}},
		{"a source over 256 characters is a 422", recipeBody("L", long, "http://example.com/x"), []string{"body.source"}},
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
			expectNothingStored(t, e, func() {
				expectProblems(t, e.postJSON("/api/v1/recipes/", tc.body, bearer(token)...), tc.wantLocs...)
			})
		})
	}

	for _, tc := range []struct {
		name, label, source, link string
	}{
		{"a label of exactly 256 characters is fine", exact, "X", "http://example.com/x"},
		{"a source of exactly 256 characters is fine", "L", exact, "http://example.com/x"},
		{"a url of exactly 256 characters is fine", "L", "X", "https://example.com/" + strings.Repeat("u", 236)},
		{"256 characters are counted as characters, not bytes", strings.Repeat("é", 256), strings.Repeat("ü", 256), "http://example.com/x"},
		{"an empty source is fine", "L", "", "http://example.com/x"},
		{"an https url with a port, query and fragment is fine", "L", "X", "https://example.com:8443/a/b?c=d#e"},
		{"an emoji sequence joined by zero-width joiners is fine", "\U0001F469\u200D\U0001F373 Chef's stew", "Kitchen \U0001F468\u200D\U0001F467", "https://example.com/fine"},
		{"a no-break space is fine", "Crème\u00A0brûlée", "Paul\u00A0Bocuse", "https://example.com/fine"},
		{"an emoji variation selector is fine", "\u2615\uFE0F Coffee", "Café", "https://example.com/fine"},
		{"right-to-left text without controls is fine", "شوربة عدس", "مطبخ", "https://example.com/fine"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := postRecipe(t, e, token, tc.label, tc.source, tc.link)
			if want := (recipe{tc.label, tc.source, tc.link, got.ID, cook.ID}); got != want || got.ID == 0 {
				t.Errorf("POST /api/v1/recipes/ = %+v, want the fields echoed, a new id and submitter_id %d", got, cook.ID)
			}
		})
	}

	t.Run("a body over 64 KiB is a 413", func(t *testing.T) {
		expectNothingStored(t, e, func() {
			body := recipeBody(strings.Repeat("a", 1<<20), "X", "http://example.com/x")
			resp := e.postJSON("/api/v1/recipes/", body, bearer(token)...)
			expectStatus(t, resp, http.StatusRequestEntityTooLarge)
			if got := decodeBody[map[string]any](t, resp); got["detail"] == nil || got["detail"] == "" {
				t.Errorf("POST /api/v1/recipes/ (over 64 KiB) = %v, want a detail", got)
			}
		})
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
			t.Run(fmt.Sprintf("a %s holding %s (U+%04X) is refused on create and update and changes nothing", field, bad.name, bad.char), func(t *testing.T) {
				expectNothingStored(t, e, func() {
					expectProblems(t, e.postJSON("/api/v1/recipes/", string(body), bearer(token)...), "body."+field)
				})
				expectProblems(t, e.sendJSON("PUT", recipePath(mine.ID), string(body), bearer(token)...), "body."+field)
				if got := decodeBody[recipe](t, e.get(recipePath(mine.ID))); got != mine {
					t.Errorf("GET %s = %+v after a refused update, want %+v", recipePath(mine.ID), got, mine)
				}
			})
		}
	}
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
		t.Run(tc.name+", with or without the trailing slash", func(t *testing.T) {
			target := "/api/v1/recipes/my-recipes/?" + tc.query
			if got := searchIDs(t, e, target, bearer(token)...); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s = ids %v, want %v", target, got, tc.want)
			}
			if len(tc.want) == 0 && len(searchIDs(t, e, "/api/v1/recipes/my-recipes/?limit=1", bearer(token)...)) == 0 {
				t.Errorf("GET /api/v1/recipes/my-recipes/?limit=1 lists nothing either; an empty answer shows nothing")
			}
			withSlash := readBody(t, e.get(target, bearer(token)...))
			if without := readBody(t, e.get("/api/v1/recipes/my-recipes?"+tc.query, bearer(token)...)); without != withSlash {
				t.Errorf("GET /api/v1/recipes/my-recipes?%s = %s, want %s as with the slash", tc.query, without, withSlash)
			}
		})
	}

	t.Run("no list answers more than 100 recipes", func(t *testing.T) {
		everyDish := searchIDs(t, e, "/api/v1/recipes/search/?keyword=dish&max_results=100")
		if all := searchIDs(t, e, "/api/v1/recipes/search/?max_results=100"); len(all) != 100 || !slices.Equal(everyDish, mine[:100]) {
			t.Errorf("a search with max_results=100 finds %d recipes, and one for dish %v; want 100, and the first 100 dishes %v", len(all), everyDish, mine[:100])
		}
	})

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

func TestOnlyTheSubmitterOrASuperuserChangesARecipe(t *testing.T) {
	e := newTestEnv(t)
	adminToken := e.login("admin@recipeapi.com", adminPassword)
	users := 0
	// newCook signs up a user of the subtest's own, so that no subtest
	// sees another's recipes.
	newCook := func() (userView, string) {
		users++
		return newRecipeUser(e, fmt.Sprintf("cook%d@example.com", users))
	}
	myRecipes := func(t *testing.T, token string) []recipe {
		t.Helper()
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		return decodeBody[struct{ Results []recipe }](t, resp).Results
	}
	newBody := recipeBody("Changed", "Changer", "https://example.com/changed")
	const updateNotOwner, deleteNotOwner = "You can only update your recipes", "You can only delete your recipes"

	for _, tc := range []struct {
		name          string
		ownedByAdmin  bool
		actor, method string // actor: the owner, another user, the admin or nobody
		body          string // "OTHER" stands for the other user's id
		status        int
		detail        string   // of a 401 or 403
		locs          []string // of a 422
	}{
		{"another user cannot update a recipe", false, "another", "PUT", newBody, 403, updateNotOwner, nil},
		{"another user cannot delete a recipe", false, "another", "DELETE", "", 403, deleteNotOwner, nil},
		{"another user cannot update a recipe of the superuser", true, "another", "PUT", newBody, 403, updateNotOwner, nil},
		{"another user cannot delete a recipe of the superuser", true, "another", "DELETE", "", 403, deleteNotOwner, nil},
		{"the submitter updates a recipe: new fields, same id and submitter", false, "owner", "PUT", newBody, 200, "", nil},
		{"a submitter_id in an update body does not give the recipe away", false, "owner", "PUT",
			`{"label":"Changed","source":"Changer","url":"https://example.com/changed","submitter_id":OTHER}`, 200, "", nil},
		{"the superuser updates anyone's recipe, which keeps its submitter", false, "admin", "PUT", newBody, 200, "", nil},
		{"the submitter deletes a recipe: 204, then it is gone", false, "owner", "DELETE", "", 204, "", nil},
		{"the superuser deletes anyone's recipe", false, "admin", "DELETE", "", 204, "", nil},
		{"an update without a label is a 422", false, "owner", "PUT", `{"source":"Alice","url":"https://example.com/a"}`, 422, "", []string{"body.label"}},
		{"an update lists every bad field", false, "owner", "PUT", `{"source":"Alice","url":"ftp://example.com/a"}`, 422, "", []string{"body.label", "body.url"}},
		{"an update body that is not JSON is a 422 at body", false, "owner", "PUT", `{"label":`, 422, "", []string{"body"}},
		{"an update without a token is a 401 Not authenticated", false, "nobody", "PUT", newBody, 401, "Not authenticated", nil},
		{"a delete without a token is a 401 Not authenticated", false, "nobody", "DELETE", "", 401, "Not authenticated", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, ownerToken := newCook()
			if tc.ownedByAdmin {
				ownerToken = adminToken
			}
			other, otherToken := newCook()
			mine := postRecipe(t, e, ownerToken, "Alice's Soup", "Alice", "https://example.com/soup")
			header := map[string][]string{"owner": bearer(ownerToken), "another": bearer(otherToken), "admin": bearer(adminToken)}[tc.actor]
			resp := e.sendJSON(tc.method, recipePath(mine.ID), strings.ReplaceAll(tc.body, "OTHER", itoa(other.ID)), header...)
			if got := resp.Header.Get("WWW-Authenticate"); tc.status == 401 && got != "Bearer" {
				t.Errorf("%s %s: WWW-Authenticate = %q, want Bearer", tc.method, recipePath(mine.ID), got)
			}
			switch {
			case tc.locs != nil:
				expectProblems(t, resp, tc.locs...)
			case tc.detail != "":
				expectDetail(t, resp, tc.status, tc.detail)
			default:
				expectStatus(t, resp, tc.status)
			}
			want := mine // a refused change changes nothing
			switch tc.status {
			case http.StatusOK:
				want = recipe{Label: "Changed", Source: "Changer", URL: "https://example.com/changed", ID: mine.ID, SubmitterID: mine.SubmitterID}
				if got := decodeBody[recipe](t, resp); got != want {
					t.Errorf("%s %s = %+v, want %+v", tc.method, recipePath(mine.ID), got, want)
				}
			case http.StatusNoContent:
				if body := readBody(t, resp); body != "" {
					t.Errorf("DELETE %s body = %q, want none", recipePath(mine.ID), body)
				}
				expectDetail(t, e.get(recipePath(mine.ID)), http.StatusNotFound, fmt.Sprintf("Recipe with ID %d not found", mine.ID))
				return
			}
			if got := decodeBody[recipe](t, e.get(recipePath(mine.ID))); got != want {
				t.Errorf("GET %s after the %s = %+v, want %+v", recipePath(mine.ID), tc.method, got, want)
			}
		})
	}

	t.Run("my-recipes lists only the caller's recipes, in id order, and not those deleted", func(t *testing.T) {
		_, aliceToken := newCook()
		_, bobToken := newCook()
		aliceFirst := postRecipe(t, e, aliceToken, "Alice's Soup", "Alice", "https://example.com/soup")
		bobs := postRecipe(t, e, bobToken, "Bob's Bread", "Bob", "https://example.com/bread")
		aliceSecond := postRecipe(t, e, aliceToken, "Alice's Stew", "Alice", "https://example.com/stew")
		aliceThird := postRecipe(t, e, aliceToken, "Alice's Pie", "Alice", "https://example.com/pie")
		if got, want := myRecipes(t, aliceToken), []recipe{aliceFirst, aliceSecond, aliceThird}; !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/recipes/my-recipes/ as alice = %+v, want %+v", got, want)
		}
		if got, want := myRecipes(t, bobToken), []recipe{bobs}; !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/recipes/my-recipes/ as bob = %+v, want %+v", got, want)
		}
		expectStatus(t, e.send("DELETE", recipePath(aliceSecond.ID), nil, bearer(aliceToken)...), http.StatusNoContent)
		if got, want := myRecipes(t, aliceToken), []recipe{aliceFirst, aliceThird}; !slices.Equal(got, want) {
			t.Errorf("GET /api/v1/recipes/my-recipes/ as alice after a delete = %+v, want %+v", got, want)
		}
	})
	t.Run("my-recipes is empty, not null, for a user with none", func(t *testing.T) {
		_, token := newCook()
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		if body := readBody(t, resp); body != `{"results":[]}` {
			t.Errorf("GET /api/v1/recipes/my-recipes/ = %s, want {\"results\":[]}", body)
		}
	})
	t.Run("my-recipes without a token is a 401 Not authenticated", func(t *testing.T) {
		resp := e.get("/api/v1/recipes/my-recipes/")
		if got := resp.Header.Get("WWW-Authenticate"); got != "Bearer" {
			t.Errorf("GET /api/v1/recipes/my-recipes/: WWW-Authenticate = %q, want Bearer", got)
		}
		expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
	})

	_, aliceToken := newCook()
	_, bobToken := newCook()
	deleted := postRecipe(t, e, aliceToken, "Deleted soup", "Alice", "https://example.com/soup")
	expectStatus(t, e.send("DELETE", recipePath(deleted.ID), nil, bearer(aliceToken)...), http.StatusNoContent)
	for _, who := range []struct{ name, token string }{
		{"its submitter", aliceToken}, {"another user", bobToken}, {"the superuser", adminToken},
	} {
		for _, id := range []int64{deleted.ID, deleted.ID + 1_000_000} { // one deleted, one never made
			t.Run(fmt.Sprintf("an update or a delete of missing recipe %d by %s is a 404", id, who.name), func(t *testing.T) {
				for _, method := range []string{"PUT", "DELETE"} {
					expectDetail(t, e.sendJSON(method, recipePath(id), newBody, bearer(who.token)...),
						http.StatusNotFound, fmt.Sprintf("Recipe with ID %d not found", id))
				}
			})
		}
	}
	for _, id := range []string{"abc", "1.5", "my-recipes"} {
		t.Run(fmt.Sprintf("an update or a delete of recipe %q is a 422 at path.recipe_id", id), func(t *testing.T) {
			for _, method := range []string{"PUT", "DELETE"} {
				expectProblems(t, e.sendJSON(method, "/api/v1/recipes/"+id, newBody, bearer(aliceToken)...), "path.recipe_id")
			}
		})
	}
}
