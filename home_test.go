// home_test.go tests home.go: the HTML home page, its search and its
// paging.
package main

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// getHome fetches a home page that must answer 200 with HTML.
func getHome(t *testing.T, e *testEnv, target string) string {
	t.Helper()
	resp := e.get(target)
	expectStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
		t.Fatalf("GET %s: Content-Type = %q, want text/html", target, ct)
	}
	return readBody(t, resp)
}

// pagerLinks returns the page's links to newer and older recipes.
func pagerLinks(page string) (newer, older string) {
	for _, href := range attributeURLs(page)["href"] {
		switch {
		case strings.HasPrefix(href, "/?after="):
			newer = href
		case strings.HasPrefix(href, "/?before="):
			older = href
		}
	}
	return newer, older
}

// emptyHomeEnv is a service whose seeded recipes are deleted.
func emptyHomeEnv(t *testing.T) (e *testEnv, adminToken string) {
	t.Helper()
	e = newTestEnv(t)
	adminToken = e.login("admin@recipeapi.com", adminPassword)
	for _, r := range seedRecipes {
		expectStatus(t, e.send("DELETE", recipePath(r.ID), nil, bearer(adminToken)...), http.StatusNoContent)
	}
	return e, adminToken
}

func TestHomePageSearch(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "searcher@example.com")
	postRecipe(t, e, token, "Chicken Soup", "Grandma", "https://example.com/chicken-soup")
	postRecipe(t, e, token, "50% Whole Wheat Bread", "Baker", "https://example.com/bread")

	t.Run("it shows what the API's search finds, in the same order, with the search in the box", func(t *testing.T) {
		chickens := []string{"Chicken Vesuvio", "Chicken Paprikash", "Chicken Soup"}
		for keyword, want := range map[string][]string{
			"chicken": chickens, "CHICKEN": chickens, "curry": {"Cauliflower and Tofu Curry Recipe"},
			"50%": {"50% Whole Wheat Bread"}, "soup": {"Chicken Soup"},
			"n_s": {}, // "n S" in Chicken Soup, if _ were a wildcard
		} {
			resp := e.get("/api/v1/recipes/search/?max_results=100&keyword=" + url.QueryEscape(keyword))
			expectStatus(t, resp, http.StatusOK)
			api := []string{}
			for _, r := range decodeBody[struct{ Results []recipe }](t, resp).Results {
				api = append(api, r.Label)
			}
			page := getHome(t, e, "/?q="+url.QueryEscape(keyword))
			if got := homeLabels(page); !slices.Equal(got, want) || !slices.Equal(api, want) {
				t.Errorf("a search for %s shows %q on GET / and %q in the API, want %q", keyword, got, api, want)
			}
			if !strings.Contains(page, `name="q" value="`+keyword+`"`) {
				t.Errorf("GET /?q=%s does not show %s in the search box", keyword, keyword)
			}
			if newer, older := pagerLinks(page); newer != "" || older != "" {
				t.Errorf("GET /?q=%s has paging links %q %q", keyword, newer, older)
			}
		}
	})
	t.Run("the search as typed is escaped", func(t *testing.T) {
		page := getHome(t, e, "/?q="+url.QueryEscape(`"><script>alert(1)</script>`))
		if strings.Contains(page, "<script") || strings.Contains(page, `value="">`) {
			t.Errorf("GET /?q=<script>… shows the search unescaped")
		}
	})
	for _, tc := range []struct {
		name, q, want string
	}{
		{"a search of one or two characters asks for three, kindly", "ch", "at least 3 characters"},
		{"a search of one character asks for three, kindly", "%", "at least 3 characters"},
		{"a search that finds nothing says so", "zzz", "No recipe matches"},
		{"a search longer than any label finds nothing", strings.Repeat("chicken ", 33), "No recipe matches"},
		{"a search holding a NUL asks for it without, rather than search for less", "chi\x00cken", "control character"},
		{"a search holding a tab asks for it without", "chicken\t", "control character"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := getHome(t, e, "/?q="+url.QueryEscape(tc.q))
			if got := homeLabels(page); len(got) != 0 {
				t.Errorf("GET /?q=%q shows %q, want nothing", tc.q, got)
			}
			if !strings.Contains(page, tc.want) {
				t.Errorf("GET /?q=%q does not say %q", tc.q, tc.want)
			}
			if short := tc.want == "at least 3 characters"; short && strings.Contains(page, "Recipes whose label contains") {
				t.Errorf("GET /?q=%q says it shows what contains it, beside asking for more characters", tc.q)
			}
			// Nothing shown shows nothing unless a search shows something.
			if got := homeLabels(getHome(t, e, "/?q=chicken")); len(got) == 0 {
				t.Errorf("GET /?q=chicken shows nothing either")
			}
		})
	}
	t.Run("many matches show the first ones and say there are more", func(t *testing.T) {
		for i := range foundOnHome {
			postRecipe(t, e, token, fmt.Sprintf("Stew %02d", i), "Pot", "https://example.com/stew")
		}
		if page := getHome(t, e, "/?q=stew"); len(homeLabels(page)) != foundOnHome || strings.Contains(page, "recipes match") {
			t.Errorf("GET /?q=stew with %d matches shows %d and says more match: %v", foundOnHome, len(homeLabels(page)), strings.Contains(page, "recipes match"))
		}
		postRecipe(t, e, token, "Stew 99", "Pot", "https://example.com/stew")
		page := getHome(t, e, "/?q=stew")
		if got := homeLabels(page); len(got) != foundOnHome || got[0] != "Stew 00" {
			t.Errorf("GET /?q=stew shows %q, want the first %d, from Stew 00", got, foundOnHome)
		}
		if !strings.Contains(page, fmt.Sprintf("More than %d recipes match", foundOnHome)) {
			t.Errorf("GET /?q=stew does not say that more match")
		}
	})
}

func TestHomePagePaging(t *testing.T) {
	t.Run("with no recipes it says so and invites the first", func(t *testing.T) {
		e, _ := emptyHomeEnv(t)
		page := getHome(t, e, "/")
		if got := homeLabels(page); len(got) != 0 {
			t.Errorf("GET / shows %q, want nothing", got)
		}
		if !strings.Contains(page, "No recipes yet") || !strings.Contains(page, `href="/docs"`) {
			t.Errorf("GET / with no recipes does not say so and point to /docs:\n%s", page)
		}
		if newer, older := pagerLinks(page); newer != "" || older != "" {
			t.Errorf("GET / with no recipes has paging links %q %q", newer, older)
		}
	})
	t.Run("a recipe whose URL is not http or https is shown without a link", func(t *testing.T) {
		e, admin := emptyHomeEnv(t)
		id := postRecipe(t, e, admin, "Dish 01", "Kitchen", "https://example.com/dish").ID
		if _, err := e.store.writer.Exec("UPDATE recipe SET url = 'javascript:alert(1)' WHERE id = ?", id); err != nil {
			t.Fatal(err)
		}
		e.store.forgetRecipes()
		page := getHome(t, e, "/")
		if got, want := homeItems(page), []homeItem{{"", "Dish 01", "Kitchen"}}; !slices.Equal(got, want) {
			t.Errorf("GET / lists %+v, want %+v, without a link", got, want)
		}
		if strings.Contains(page, "javascript") {
			t.Errorf("GET / shows the javascript: URL")
		}
	})

	e, admin := emptyHomeEnv(t)
	ids := map[int]int64{}
	for i := 1; i <= 25; i++ {
		ids[i] = postRecipe(t, e, admin, fmt.Sprintf("Dish %02d", i), "Kitchen", "https://example.com/dish").ID
	}
	// dishes returns "Dish from".."Dish to", counting down, as a page lists them.
	dishes := func(from, to int) []string {
		labels := []string{}
		for i := from; i >= to; i-- {
			labels = append(labels, fmt.Sprintf("Dish %02d", i))
		}
		return labels
	}
	before := func(i int) string { return fmt.Sprintf("/?before=%d", ids[i]) }
	after := func(i int) string { return fmt.Sprintf("/?after=%d", ids[i]) }
	for _, tc := range []struct {
		name, target string
		want         []string
		newer, older string
	}{
		{"the first page shows the ten newest and links to older ones", "/", dishes(25, 16), "", before(16)},
		{"an older page links both ways", before(16), dishes(15, 6), after(15), before(6)},
		{"the oldest page links only to newer ones", before(6), dishes(5, 1), after(5), ""},
		{"a newer page is the ten just above the id", after(5), dishes(15, 6), after(15), before(6)},
		{"the newest page reached from below links only to older ones", after(15), dishes(25, 16), "", before(16)},
		{"a page past the newest shows the newest", fmt.Sprintf("/?before=%d", ids[25]+1000), dishes(25, 16), "", before(16)},
		{"a page past the oldest is empty", before(1), []string{}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			page := getHome(t, e, tc.target)
			if got := homeLabels(page); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s shows %q, want %q", tc.target, got, tc.want)
			}
			if newer, older := pagerLinks(page); newer != tc.newer || older != tc.older {
				t.Errorf("GET %s links to newer %q and older %q, want %q and %q", tc.target, newer, older, tc.newer, tc.older)
			}
			if paged := tc.target != "/"; paged && strings.Contains(page, "The newest recipes") {
				t.Errorf("GET %s, a page asked for by id, is headed \"The newest recipes\"", tc.target)
			}
			if empty := len(tc.want) == 0; empty && (!strings.Contains(page, "no recipes on this page") || !strings.Contains(page, `href="/">`)) {
				t.Errorf("GET %s does not say it is empty and link to the newest", tc.target)
			}
		})
	}

	for _, query := range []string{"before=abc", "before=-5", "before=0", "after=0", "before=99999999999999999999",
		"before=1.5", "before=", "after=%00", fmt.Sprintf("before=%d&after=%d", ids[16], ids[5])} {
		t.Run("a bad page ("+query+") shows the first page", func(t *testing.T) {
			if got, want := homeLabels(getHome(t, e, "/?"+query)), dishes(25, 16); !slices.Equal(got, want) {
				t.Errorf("GET /?%s shows %q, want the first page %q", query, got, want)
			}
		})
	}
}

func TestTheHomePageIsRenderedAgainWhenItsRecipesChange(t *testing.T) {
	// The newest page is cached: a page kept after its recipes changed
	// would show a recipe that is gone, or miss a new one.
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	first := getHome(t, e, "/")
	if got, want := homeLabels(first), []string{"Cauliflower and Tofu Curry Recipe", "Chicken Paprikash", "Chicken Vesuvio"}; !slices.Equal(got, want) {
		t.Errorf("GET / lists %q, want the seeded recipes, newest first: %q", got, want)
	}
	if again := getHome(t, e, "/"); again != first {
		t.Errorf("GET / twice with nothing changed gave two pages")
	}
	stew := postRecipe(t, e, token, "Brand New Stew", "Cook", "https://example.com/stew")
	if labels := homeLabels(getHome(t, e, "/")); len(labels) == 0 || labels[0] != "Brand New Stew" {
		t.Errorf("GET / after a recipe was added shows %q first, want Brand New Stew", labels)
	}
	if getHome(t, e, "/?q=stew"); !slices.Contains(homeLabels(getHome(t, e, "/")), "Brand New Stew") {
		t.Errorf("GET / after another page was rendered lost the new recipe")
	}
	expectStatus(t, e.send("DELETE", recipePath(stew.ID), nil, bearer(token)...), http.StatusNoContent)
	if labels := homeLabels(getHome(t, e, "/")); slices.Contains(labels, "Brand New Stew") {
		t.Errorf("GET / after the recipe was deleted shows %q, want Brand New Stew gone", labels)
	}
}

func TestHomePage(t *testing.T) {
	t.Run("everything user-written is escaped", func(t *testing.T) {
		e := newTestEnv(t)
		_, token := newRecipeUser(e, "home@example.com")
		label := `<script>alert(1)</script>`
		source := `Tom "&" Jerry's <b>kitchen</b>`
		link := `https://example.com/?q="><script>alert(2)</script>`
		postRecipe(t, e, token, label, source, link)
		page := getHome(t, e, "/")
		for _, raw := range []string{"<script", "</script>", "<b>", `"&"`, `q="`} {
			if strings.Contains(page, raw) {
				t.Errorf("GET / contains the raw text %q", raw)
			}
		}
		items := homeItems(page)
		if len(items) == 0 || items[0].label != label || items[0].source != source {
			t.Fatalf("GET / lists %+v, want first label %q and source %q, escaped", items, label, source)
		}
		if u, err := url.Parse(items[0].link); err != nil || u.Host != "example.com" || u.Query().Get("q") != `"><script>alert(2)</script>` {
			t.Errorf("GET / first link = %q, want %q, escaped", items[0].link, link)
		}
	})

	e := newTestEnv(t)
	_, token := newRecipeUser(e, "home@example.com")
	var created []recipe
	for i := 1; i <= 12; i++ {
		created = append(created, postRecipe(t, e, token,
			fmt.Sprintf("Home dish %02d", i), fmt.Sprintf("Kitchen %02d", i), fmt.Sprintf("https://example.com/dish/%02d", i)))
	}
	resp := e.get("/")
	expectStatus(t, resp, http.StatusOK)
	csp := resp.Header.Get("Content-Security-Policy")
	page := readBody(t, resp)

	t.Run("it is HTML listing the ten newest recipes, newest first", func(t *testing.T) {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /: Content-Type = %q, want text/html", ct)
		}
		var want []homeItem
		for i := 11; i >= 2; i-- {
			want = append(want, homeItem{created[i].URL, created[i].Label, created[i].Source})
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
	t.Run("its policy allows only its own inline style and no other site", func(t *testing.T) {
		expectNoOtherSiteInPolicy(t, "/", csp)
		if strings.Contains(csp, "script-src") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET /: Content-Security-Policy = %q, want no script and nothing unsafe allowed", csp)
		}
		_, rest, _ := strings.Cut(page, "<style>")
		css, _, found := strings.Cut(rest, "</style>")
		if !found {
			t.Fatalf("GET / has no <style> element")
		}
		sum := sha256.Sum256([]byte(css))
		if hash := "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"; !strings.Contains(csp, "style-src "+hash) {
			t.Errorf("GET /: Content-Security-Policy = %q, want style-src %s, the hash of the served <style>", csp, hash)
		}
	})
	t.Run("the page references no other site", func(t *testing.T) {
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
