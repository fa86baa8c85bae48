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

// labelsFrom returns "Dish from..to", counting down, as the page lists them.
func dishLabels(from, to int) []string {
	var labels []string
	for i := from; i >= to; i-- {
		labels = append(labels, fmt.Sprintf("Dish %02d", i))
	}
	return labels
}

func TestHomePageSearch(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "searcher@example.com")
	postRecipe(t, e, token, "Chicken Soup", "Grandma", "https://example.com/chicken-soup")
	postRecipe(t, e, token, "50% Whole Wheat Bread", "Baker", "https://example.com/bread")

	t.Run("it finds what the API's search finds, in the same order", func(t *testing.T) {
		for _, keyword := range []string{"chicken", "CHICKEN", "curry", "50%", "n_s", "soup"} {
			resp := e.get("/api/v1/recipes/search/?max_results=100&keyword=" + url.QueryEscape(keyword))
			expectStatus(t, resp, http.StatusOK)
			var want []string
			for _, r := range decodeBody[struct{ Results []recipe }](t, resp).Results {
				want = append(want, r.Label)
			}
			page := getHome(t, e, "/?q="+url.QueryEscape(keyword))
			if got := homeLabels(page); !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
				t.Errorf("GET /?q=%s shows %q; the API finds %q", keyword, got, want)
			}
		}
	})
	t.Run("it shows the matches with the search in the box", func(t *testing.T) {
		page := getHome(t, e, "/?q=chicken")
		want := []string{"Chicken Vesuvio", "Chicken Paprikash", "Chicken Soup"}
		if got := homeLabels(page); !slices.Equal(got, want) {
			t.Errorf("GET /?q=chicken shows %q, want %q", got, want)
		}
		if !strings.Contains(page, `name="q" value="chicken"`) {
			t.Errorf("GET /?q=chicken does not show chicken in the search box")
		}
		if newer, older := pagerLinks(page); newer != "" || older != "" {
			t.Errorf("GET /?q=chicken has paging links %q %q", newer, older)
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
				t.Errorf("GET /?q=%s shows %q, want nothing", tc.q, got)
			}
			if !strings.Contains(page, tc.want) {
				t.Errorf("GET /?q=%s does not say %q", tc.q, tc.want)
			}
			if short := tc.want == "at least 3 characters"; short && strings.Contains(page, "Recipes whose label contains") {
				t.Errorf("GET /?q=%s says it shows what contains it, beside asking for more characters", tc.q)
			}
		})
	}
	t.Run("many matches show the first ones and say there are more", func(t *testing.T) {
		for i := range foundOnHome + 1 {
			postRecipe(t, e, token, fmt.Sprintf("Stew %02d", i), "Pot", "https://example.com/stew")
		}
		page := getHome(t, e, "/?q=stew")
		if got := homeLabels(page); len(got) != foundOnHome || got[0] != "Stew 00" {
			t.Errorf("GET /?q=stew shows %d recipes from %q, want the first %d", len(got), got[:1], foundOnHome)
		}
		if !strings.Contains(page, fmt.Sprintf("More than %d recipes match", foundOnHome)) {
			t.Errorf("GET /?q=stew does not say that more match")
		}
	})
}

func TestHomePagePaging(t *testing.T) {
	e := newTestEnv(t)
	admin := e.login("admin@recipeapi.com", adminPassword)
	for id := 1; id <= 3; id++ {
		expectStatus(t, e.send("DELETE", fmt.Sprintf("/api/v1/recipes/%d", id), nil, bearer(admin)...), http.StatusNoContent)
	}

	t.Run("with no recipes it says so and invites the first", func(t *testing.T) {
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

	// Dishes 01–25 get ids 1–25: the deleted ids are free again.
	ids := map[int]int64{}
	for i := 1; i <= 25; i++ {
		ids[i] = postRecipe(t, e, admin, fmt.Sprintf("Dish %02d", i), "Kitchen", "https://example.com/dish").ID
	}
	for _, tc := range []struct {
		name, target string
		want         []string
		newer, older string
	}{
		{"the first page shows the ten newest and links to older ones", "/", dishLabels(25, 16), "", fmt.Sprintf("/?before=%d", ids[16])},
		{"an older page links both ways", fmt.Sprintf("/?before=%d", ids[16]), dishLabels(15, 6), fmt.Sprintf("/?after=%d", ids[15]), fmt.Sprintf("/?before=%d", ids[6])},
		{"the oldest page links only to newer ones", fmt.Sprintf("/?before=%d", ids[6]), dishLabels(5, 1), fmt.Sprintf("/?after=%d", ids[5]), ""},
		{"a newer page is the ten just above the id", fmt.Sprintf("/?after=%d", ids[5]), dishLabels(15, 6), fmt.Sprintf("/?after=%d", ids[15]), fmt.Sprintf("/?before=%d", ids[6])},
		{"the newest page reached from below links only to older ones", fmt.Sprintf("/?after=%d", ids[15]), dishLabels(25, 16), "", fmt.Sprintf("/?before=%d", ids[16])},
		{"a page past the newest shows the newest", fmt.Sprintf("/?before=%d", ids[25]+1000), dishLabels(25, 16), "", fmt.Sprintf("/?before=%d", ids[16])},
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
		})
	}

	t.Run("a page past the oldest is empty, says so and links to the newest", func(t *testing.T) {
		page := getHome(t, e, fmt.Sprintf("/?before=%d", ids[1]))
		if got := homeLabels(page); len(got) != 0 {
			t.Errorf("GET /?before=%d shows %q, want nothing", ids[1], got)
		}
		if !strings.Contains(page, "no recipes on this page") || !strings.Contains(page, `href="/">`) {
			t.Errorf("GET /?before=%d does not say it is empty and link to the newest", ids[1])
		}
	})

	for _, query := range []string{"before=abc", "before=-5", "before=0", "after=0", "before=99999999999999999999",
		"before=1.5", "before=", "after=%00", fmt.Sprintf("before=%d&after=%d", ids[16], ids[5])} {
		t.Run("a bad page ("+query+") shows the first page", func(t *testing.T) {
			page := getHome(t, e, "/?"+query)
			if got, want := homeLabels(page), dishLabels(25, 16); !slices.Equal(got, want) {
				t.Errorf("GET /?%s shows %q, want the first page %q", query, got, want)
			}
		})
	}

	t.Run("a recipe whose URL is not http or https is shown without a link", func(t *testing.T) {
		if _, err := e.store.writer.Exec("UPDATE recipe SET url = 'javascript:alert(1)' WHERE id = ?", ids[25]); err != nil {
			t.Fatal(err)
		}
		e.store.forgetRecipes()
		page := getHome(t, e, "/")
		items := homeItems(page)
		if len(items) == 0 || items[0].label != "Dish 25" || items[0].link != "" {
			t.Errorf("GET / first item = %+v, want Dish 25 without a link", items[:1])
		}
		if strings.Contains(page, "javascript") {
			t.Errorf("GET / shows the javascript: URL")
		}
	})
}

func TestTheHomePageIsRenderedAgainWhenItsRecipesChange(t *testing.T) {
	// The newest page is cached: a page kept after its recipes changed
	// would show a recipe that is gone, or miss a new one.
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	first := getHome(t, e, "/")
	if again := getHome(t, e, "/"); again != first {
		t.Errorf("GET / twice with nothing changed gave two pages")
	}
	postRecipe(t, e, token, "Brand New Stew", "Cook", "https://example.com/stew")
	if labels := homeLabels(getHome(t, e, "/")); len(labels) == 0 || labels[0] != "Brand New Stew" {
		t.Errorf("GET / after a recipe was added shows %q first, want Brand New Stew", labels)
	}
	if getHome(t, e, "/?q=stew"); !slices.Contains(homeLabels(getHome(t, e, "/")), "Brand New Stew") {
		t.Errorf("GET / after another page was rendered lost the new recipe")
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
