// recipes_test.go tests the recipe rows of the contract's first endpoint
// table, through the real handler over a real SQLite file: reading one
// recipe by id, searching (ignoring case, over the whole table, with '%'
// and '_' matching themselves, and every bad parameter listed in a 422),
// creating a recipe as the signed-in caller, the HTML home page (the ten
// newest recipes, escaped, loading nothing from other sites), the OpenAPI
// document (kept in step with the registered routes) and the Swagger UI
// pages at /docs.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

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

// readBody returns the whole body of resp.
func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read body: %v", err)
	}
	return string(body)
}

// searchIDs runs a search that must answer 200 and returns the ids found,
// in the order given.
func searchIDs(t *testing.T, e *testEnv, target string) []int64 {
	t.Helper()
	resp := e.get(target)
	expectStatus(t, resp, http.StatusOK)
	got := decodeBody[struct {
		Results []recipe `json:"results"`
	}](t, resp)
	ids := []int64{}
	for _, r := range got.Results {
		ids = append(ids, r.ID)
	}
	return ids
}

// idRange returns from, from+1, …, to.
func idRange(from, to int64) []int64 {
	var ids []int64
	for id := from; id <= to; id++ {
		ids = append(ids, id)
	}
	return ids
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

// searchFixture is the search tests' database: the three seeded recipes
// (ids 1–3), then these, which get ids 4 onwards in this order.
var searchFixture = []string{
	"Filler 01", "Filler 02", "Filler 03", "Filler 04", "Filler 05", "Filler 06", // 4–9
	"Filler 07", "Filler 08", "Filler 09", "Filler 10", "Filler 11", // 10–14
	"Late Gazpacho",   // 15
	"100% rye",        // 16
	"1000 rye",        // 17: "0% r" would match it if % were a wildcard
	"x_y",             // 18
	"xzy",             // 19: "x_y" would match it if _ were a wildcard
	`back\slash`,      // 20
	"Crème brûlée",    // 21
	"Paprika chicken", // 22: a third chicken, after the fillers
}

func TestSearchRecipes(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "searcher@example.com")
	for i, label := range searchFixture {
		if got := postRecipe(t, e, token, label, "Test", "https://example.com/r").ID; got != int64(4+i) {
			t.Fatalf("recipe %q got id %d, want %d", label, got, 4+i)
		}
	}
	const lastID = 22

	for _, tc := range []struct {
		name, query string
		want        []int64
	}{
		{"a keyword finds the labels that contain it, in id order", "keyword=chicken&max_results=10", []int64{1, 2, 22}},
		{"an upper-case keyword finds the lower-case labels", "keyword=CHICKEN&max_results=10", []int64{1, 2, 22}},
		{"a mixed-case keyword of several words finds its label", "keyword=cHiCkEn%20PAPRIKASH", []int64{2}},
		{"a keyword in the middle of a label finds it", "keyword=tofu", []int64{3}},
		{"a keyword that matches nothing finds nothing", "keyword=zzzzz", []int64{}},
		{"no keyword returns the first ten recipes", "", idRange(1, 10)},
		{"no keyword returns the first max_results recipes", "max_results=3", []int64{1, 2, 3}},
		{"max_results=100 returns every recipe", "max_results=100", idRange(1, lastID)},
		{"max_results=1 returns one recipe", "max_results=1", []int64{1}},
		{"max_results limits the results of a keyword", "keyword=filler&max_results=2", []int64{4, 5}},
		{"the default max_results is ten", "keyword=filler", idRange(4, 13)},
		{"the whole table is searched, not only its first max_results rows", "keyword=gazpacho&max_results=1", []int64{15}},
		{"a late match is found after the first max_results rows", "keyword=chicken&max_results=3", []int64{1, 2, 22}},
		{"a percent sign in a keyword matches only itself", "keyword=" + url.QueryEscape("0% r"), []int64{16}},
		{"a keyword of percent signs matches no label", "keyword=" + url.QueryEscape("%%%"), []int64{}},
		{"an underscore in a keyword matches only itself", "keyword=x_y", []int64{18}},
		{"a keyword of underscores matches no label", "keyword=___", []int64{}},
		{"a label an underscore would match as a wildcard is found by its own text", "keyword=xzy", []int64{19}},
		{"a backslash in a keyword matches only itself", "keyword=" + url.QueryEscape(`k\s`), []int64{20}},
		{"three non-ASCII characters are a long enough keyword", "keyword=" + url.QueryEscape("rûl"), []int64{21}},
		{"case is ignored beyond ASCII too, as the reference's str.lower() does", "keyword=" + url.QueryEscape("CRÈME"), []int64{21}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "/api/v1/recipes/search/?" + tc.query
			if got := searchIDs(t, e, target); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s = ids %v, want %v", target, got, tc.want)
			}
		})
	}

	t.Run("the search without the trailing slash answers the same", func(t *testing.T) {
		for _, query := range []string{"", "keyword=chicken&max_results=10", "max_results=3", "keyword=ab"} {
			with := e.get("/api/v1/recipes/search/?" + query)
			without := e.get("/api/v1/recipes/search?" + query)
			a, b := readBody(t, with), readBody(t, without)
			if with.StatusCode != without.StatusCode || a != b {
				t.Errorf("GET /api/v1/recipes/search?%s = %d %s, want %d %s as with the slash",
					query, without.StatusCode, b, with.StatusCode, a)
			}
		}
		if got := searchIDs(t, e, "/api/v1/recipes/search?keyword=chicken"); !slices.Equal(got, []int64{1, 2, 22}) {
			t.Errorf("GET /api/v1/recipes/search?keyword=chicken = ids %v, want [1 2 22]", got)
		}
	})

	t.Run("each result is a whole recipe", func(t *testing.T) {
		resp := e.get("/api/v1/recipes/search/?keyword=vesuvio")
		expectStatus(t, resp, http.StatusOK)
		want := `{"results":[` + vesuvioJSON + `]}`
		if body := readBody(t, resp); body != want {
			t.Errorf("GET /api/v1/recipes/search/?keyword=vesuvio = %s, want %s", body, want)
		}
	})

	for _, tc := range []struct {
		name, query string
		wantLocs    []string
	}{
		{"a keyword under three characters is a 422", "keyword=ab", []string{"query.keyword"}},
		{"an empty keyword is a 422", "keyword=", []string{"query.keyword"}},
		{"two non-ASCII characters are too short a keyword", "keyword=" + url.QueryEscape("éé"), []string{"query.keyword"}},
		{"max_results=0 is a 422", "max_results=0", []string{"query.max_results"}},
		{"max_results=101 is a 422", "max_results=101", []string{"query.max_results"}},
		{"max_results=-1 is a 422", "max_results=-1", []string{"query.max_results"}},
		{"a max_results that is not a number is a 422", "max_results=abc", []string{"query.max_results"}},
		{"a fractional max_results is a 422", "max_results=1.5", []string{"query.max_results"}},
		{"an empty max_results is a 422", "max_results=", []string{"query.max_results"}},
		{"a bad keyword and a bad max_results are both listed", "keyword=ab&max_results=0", []string{"query.keyword", "query.max_results"}},
		{"a bad keyword and an unparsable max_results are both listed", "keyword=x&max_results=abc", []string{"query.keyword", "query.max_results"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.get("/api/v1/recipes/search/?"+tc.query), tc.wantLocs...)
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

func TestHomePage(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "home@example.com")

	t.Run("the seeded recipes are listed, newest first", func(t *testing.T) {
		resp := e.get("/")
		expectStatus(t, resp, http.StatusOK)
		var labels []string
		for _, it := range homeItems(readBody(t, resp)) {
			labels = append(labels, it.label)
		}
		want := []string{"Cauliflower and Tofu Curry Recipe", "Chicken Paprikash", "Chicken Vesuvio"}
		if !slices.Equal(labels, want) {
			t.Errorf("GET / lists %q, want %q", labels, want)
		}
	})

	// Twelve more: ids 4–15.
	var created []recipe
	for i := 1; i <= 12; i++ {
		created = append(created, postRecipe(t, e, token,
			fmt.Sprintf("Home dish %02d", i), fmt.Sprintf("Kitchen %02d", i), fmt.Sprintf("https://example.com/dish/%02d", i)))
	}

	t.Run("it is HTML listing the ten newest recipes, newest first", func(t *testing.T) {
		resp := e.get("/")
		expectStatus(t, resp, http.StatusOK)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /: Content-Type = %q, want text/html", ct)
		}
		page := readBody(t, resp)
		var want []homeItem
		for i := 11; i >= 2; i-- {
			r := created[i]
			want = append(want, homeItem{r.URL, r.Label, r.Source})
		}
		if got := homeItems(page); !slices.Equal(got, want) {
			t.Errorf("GET / lists\n%q\nwant\n%q", got, want)
		}
		for _, older := range []string{"Home dish 01", "Home dish 02", "Chicken Vesuvio", "Chicken Paprikash", "Cauliflower"} {
			if strings.Contains(page, older) {
				t.Errorf("GET / shows %q, which is older than the ten newest", older)
			}
		}
	})

	t.Run("everything user-written is escaped", func(t *testing.T) {
		label := `<script>alert(1)</script>`
		source := `Tom "&" Jerry's <b>kitchen</b>`
		link := `https://example.com/?q="><script>alert(2)</script>`
		postRecipe(t, e, token, label, source, link)
		resp := e.get("/")
		expectStatus(t, resp, http.StatusOK)
		page := readBody(t, resp)
		for _, raw := range []string{"<script", "</script>", "<b>", `"&"`, `q="`} {
			if strings.Contains(page, raw) {
				t.Errorf("GET / contains the raw text %q", raw)
			}
		}
		items := homeItems(page)
		if len(items) == 0 || items[0].label != label || items[0].source != source {
			t.Fatalf("GET / first item = %+v, want label %q and source %q, escaped", items, label, source)
		}
		if u, err := url.Parse(items[0].link); err != nil || u.Host != "example.com" || u.Query().Get("q") != `"><script>alert(2)</script>` {
			t.Errorf("GET / first link = %q, want %q, escaped", items[0].link, link)
		}
	})

	t.Run("its policy allows only its own inline style and no other site", func(t *testing.T) {
		resp := e.get("/")
		expectStatus(t, resp, http.StatusOK)
		csp := resp.Header.Get("Content-Security-Policy")
		expectNoOtherSiteInPolicy(t, "/", csp)
		if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET /: Content-Security-Policy = %q, want no script and nothing unsafe allowed", csp)
		}
		page := readBody(t, resp)
		_, rest, _ := strings.Cut(page, "<style>")
		css, _, found := strings.Cut(rest, "</style>")
		if !found {
			t.Fatalf("GET / has no <style> element")
		}
		sum := sha256.Sum256([]byte(css))
		hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
		if !strings.Contains(csp, "style-src "+hash) {
			t.Errorf("GET /: Content-Security-Policy = %q, want style-src %s, the hash of the served <style>", csp, hash)
		}
	})

	t.Run("the page references no other site", func(t *testing.T) {
		resp := e.get("/")
		expectStatus(t, resp, http.StatusOK)
		page := readBody(t, resp)
		recipeLinks := map[string]bool{}
		for _, it := range homeItems(page) {
			recipeLinks[it.link] = true
		}
		attrs := attributeURLs(page)
		for name, values := range attrs {
			if name != "href" && !(name == "action" && slices.Equal(values, []string{"/"})) {
				t.Errorf("GET / has %s=%q; want no attribute that loads anything but the search form's action=\"/\"", name, values)
			}
		}
		ownPage := regexp.MustCompile(`^/(docs|api/v1/openapi\.json|favicon\.ico)?(\?(before|after)=[0-9]+)?$`)
		for _, href := range attrs["href"] {
			if !ownPage.MatchString(href) && !recipeLinks[href] {
				t.Errorf("GET / links to %q, which is neither a page of this site nor a recipe", href)
			}
		}
		// The one <link> allowed is the site's own icon.
		lower := strings.ToLower(strings.Replace(page, `<link rel="icon" href="/favicon.ico" type="image/svg+xml">`, "", 1))
		for _, tag := range []string{"<link", "<script", "<img", "<iframe", "<object", "<embed", "@import", "url(", "<base", "<meta http-equiv"} {
			if strings.Contains(lower, tag) {
				t.Errorf("GET / contains %q", tag)
			}
		}
	})
}

// registeredRoutes lists the patterns of app.routes, after checking each
// on a real ServeMux, which must send a request for it to that very
// pattern.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	mux := http.NewServeMux()
	var patterns []string
	for _, rt := range (&app{}).routes() { // routes only builds closures, so a zero app will do
		mux.Handle(rt.pattern, rt.handler)
		patterns = append(patterns, rt.pattern)
	}
	sample := strings.NewReplacer("{recipe_id}", "1", "{file}", "index.html", "{$}", "")
	for _, pattern := range patterns {
		method, path, _ := strings.Cut(pattern, " ")
		r := newRequest(method, sample.Replace(path), nil)
		if _, got := mux.Handler(r); got != pattern {
			t.Errorf("%s %s reaches the route %q, want %q", r.Method, r.URL, got, pattern)
		}
	}
	return patterns
}

func TestOpenAPIDocument(t *testing.T) {
	e := newTestEnv(t)
	resp := e.get("/api/v1/openapi.json")
	expectStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /api/v1/openapi.json: Content-Type = %q, want application/json", ct)
	}
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]struct {
				Type  string `json:"type"`
				Flows struct {
					Password *struct {
						TokenURL string `json:"tokenUrl"`
					} `json:"password"`
				} `json:"flows"`
			} `json:"securitySchemes"`
		} `json:"components"`
	}
	body := readBody(t, resp)
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("GET /api/v1/openapi.json is not JSON: %v", err)
	}

	t.Run("it is an OpenAPI 3 document", func(t *testing.T) {
		if !strings.HasPrefix(doc.OpenAPI, "3") {
			t.Errorf("GET /api/v1/openapi.json: openapi = %q, want 3.x", doc.OpenAPI)
		}
	})

	t.Run("it has an OAuth2 password flow whose tokenUrl is the login route", func(t *testing.T) {
		found := false
		for name, s := range doc.Components.SecuritySchemes {
			if s.Type == "oauth2" && s.Flows.Password != nil {
				found = true
				if s.Flows.Password.TokenURL != "/api/v1/auth/login" {
					t.Errorf("security scheme %s: tokenUrl = %q, want /api/v1/auth/login", name, s.Flows.Password.TokenURL)
				}
			}
		}
		if !found {
			t.Errorf("GET /api/v1/openapi.json has no OAuth2 password flow")
		}
	})

	t.Run("the document and the registered routes are in step", func(t *testing.T) {
		patterns := registeredRoutes(t)
		if len(patterns) == 0 {
			t.Fatal("routes registered nothing")
		}
		undocumented := map[string]bool{
			"GET /api/v1/openapi.json": true,
			"GET /docs":                true,
			"GET /docs/{file}":         true,
			"GET /favicon.ico":         true,
		}
		// The paths without their trailing slash answer as the documented
		// ones do; /docs lists each operation once.
		aliases := map[string]string{
			"GET /api/v1/recipes/search":     "/api/v1/recipes/search/",
			"GET /api/v1/recipes/my-recipes": "/api/v1/recipes/my-recipes/",
		}
		methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true,
			"options": true, "head": true, "patch": true, "trace": true}

		registered := map[string]bool{}
		for _, pattern := range patterns {
			method, path, ok := strings.Cut(pattern, " ")
			if !ok {
				t.Errorf("route %q has no method", pattern)
				continue
			}
			path = strings.TrimSuffix(path, "{$}")
			route := method + " " + path
			registered[route] = true
			if undocumented[route] {
				continue
			}
			if documented, ok := aliases[route]; ok {
				if _, twice := doc.Paths[path]; twice {
					t.Errorf("openapi.json documents the alias %s beside %s", path, documented)
				}
				path = documented
			}
			if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
				t.Errorf("route %s is not documented in openapi.json", route)
			}
		}
		for route := range undocumented {
			if !registered[route] {
				t.Errorf("allow-listed undocumented route %s is not registered; drop it from the list", route)
			}
		}
		for route := range aliases {
			if !registered[route] {
				t.Errorf("alias %s is not registered; drop it from the list", route)
			}
		}
		var documented []string
		for path, item := range doc.Paths {
			for method := range item {
				if methods[method] {
					documented = append(documented, strings.ToUpper(method)+" "+path)
				}
			}
		}
		sort.Strings(documented)
		for _, route := range documented {
			if !registered[route] {
				t.Errorf("openapi.json documents %s, which is not a registered route", route)
			}
		}
	})
}

// TestEveryRouteTheDocumentGuardsNeedsAToken sends each documented
// operation with no Authorization header to the real handler: those the
// document marks with a bearer token must answer 401 Not authenticated,
// the others must not. So a route that lost requireUser, or gained it,
// fails here, as registeredRoutes checks only the patterns.
func TestEveryRouteTheDocumentGuardsNeedsAToken(t *testing.T) {
	e := newTestEnv(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for path, operations := range doc.Paths {
		for method, op := range operations {
			guarded := len(op.Security) > 0
			target := strings.ReplaceAll(path, "{recipe_id}", "1")
			name := strings.ToUpper(method) + " " + path + " without a token is a 401"
			if !guarded {
				name = strings.ToUpper(method) + " " + path + " without a token is not a 401"
			}
			t.Run(name, func(t *testing.T) {
				resp := e.send(strings.ToUpper(method), target, strings.NewReader("{}"), "Content-Type", "application/json")
				if guarded {
					expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
				} else if resp.StatusCode == http.StatusUnauthorized {
					t.Errorf("%s %s without a token = 401, but the document says it needs none", method, path)
				}
			})
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d operations of openapi.json", checked)
	}
}

func TestDocs(t *testing.T) {
	e := newTestEnv(t)
	resp := e.get("/docs")
	expectStatus(t, resp, http.StatusOK)
	page := readBody(t, resp)
	csp := resp.Header.Get("Content-Security-Policy")

	t.Run("it is HTML that loads Swagger UI from this site", func(t *testing.T) {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /docs: Content-Type = %q, want text/html", ct)
		}
		srcs := attributeURLs(page)["src"]
		for _, want := range []string{"/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"} {
			if !slices.Contains(srcs, want) {
				t.Errorf("GET /docs loads scripts %q, want %s among them", srcs, want)
			}
		}
		for name, values := range attributeURLs(page) {
			for _, v := range values {
				if !strings.HasPrefix(v, "/docs/") {
					t.Errorf("GET /docs has %s=%q, want only this site's /docs/ files", name, v)
				}
			}
		}
	})

	for _, tc := range []struct {
		path      string
		wantTypes []string // the Content-Type starts with one of these
	}{
		{"/docs/swagger-ui-bundle.js", []string{"text/javascript", "application/javascript"}},
		{"/docs/swagger-initializer.js", []string{"text/javascript", "application/javascript"}},
		{"/docs/swagger-ui.css", []string{"text/css"}},
	} {
		t.Run(tc.path+" is served with its content type", func(t *testing.T) {
			resp := e.get(tc.path)
			expectStatus(t, resp, http.StatusOK)
			ct := resp.Header.Get("Content-Type")
			if !slices.ContainsFunc(tc.wantTypes, func(want string) bool { return strings.HasPrefix(ct, want) }) {
				t.Errorf("GET %s: Content-Type = %q, want one of %q", tc.path, ct, tc.wantTypes)
			}
			if body := readBody(t, resp); len(body) == 0 {
				t.Errorf("GET %s has an empty body", tc.path)
			}
		})
	}

	t.Run("the initializer reads this site's document and calls no other site", func(t *testing.T) {
		resp := e.get("/docs/swagger-initializer.js")
		expectStatus(t, resp, http.StatusOK)
		js := readBody(t, resp)
		if !strings.Contains(js, `"/api/v1/openapi.json"`) {
			t.Errorf("GET /docs/swagger-initializer.js does not load /api/v1/openapi.json")
		}
		if strings.Contains(js, "://") {
			t.Errorf("GET /docs/swagger-initializer.js names another site")
		}
	})

	t.Run("an unknown file is a JSON 404", func(t *testing.T) {
		expectDetail(t, e.get("/docs/nope.js"), http.StatusNotFound, "Not Found")
		expectDetail(t, e.get("/docs/README.md"), http.StatusNotFound, "Not Found")
	})

	t.Run("its policy runs only this site's scripts and allows no other site", func(t *testing.T) {
		expectNoOtherSiteInPolicy(t, "/docs", csp)
		if !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET /docs: Content-Security-Policy = %q, want script-src 'self'", csp)
		}
	})
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

func TestALongKeywordMatchesNothingAtOnce(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "long@example.com")
	longest := strings.Repeat("é", maxKeywordChars-1) + "x"
	postRecipe(t, e, token, longest, "Me", "https://example.com/l")

	t.Run("a keyword as long as the longest label finds it", func(t *testing.T) {
		target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(strings.ToUpper(longest))
		if got := searchIDs(t, e, target); len(got) != 1 {
			t.Errorf("GET search with a %d-character keyword = ids %v, want the one label", maxKeywordChars, got)
		}
	})
	for _, tc := range []struct{ name, keyword string }{
		{"a keyword one character longer than any label", longest + "x"},
		{"a 300-character keyword", strings.Repeat("a", 300)},
		{"a 60 KB keyword", strings.Repeat("chicken ", 7500)},
	} {
		t.Run(tc.name+" answers 200 with no results and is not cached", func(t *testing.T) {
			e.store.forgetRecipes()
			resp := e.get("/api/v1/recipes/search/?keyword=" + url.QueryEscape(tc.keyword))
			expectStatus(t, resp, http.StatusOK)
			if body := readBody(t, resp); body != `{"results":[]}` {
				t.Errorf("GET search = %.100s, want {\"results\":[]}", body)
			}
			if n := cacheEntries(e.store, "search"); n != 0 {
				t.Errorf("the search cache holds %d entries, want none", n)
			}
		})
	}
	t.Run("a long keyword does not touch the database", func(t *testing.T) {
		e.store.close()
		resp := e.get("/api/v1/recipes/search/?keyword=" + strings.Repeat("a", 300))
		expectStatus(t, resp, http.StatusOK)
		expectStatus(t, e.get("/api/v1/recipes/search/?keyword=soup"), http.StatusInternalServerError)
	})
	t.Run("a long keyword is still checked for a bad max_results", func(t *testing.T) {
		expectProblems(t, e.get("/api/v1/recipes/search/?max_results=0&keyword="+strings.Repeat("a", 300)), "query.max_results")
	})
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
