// home_test.go tests the home page beyond what TestHomePage checks
// (escaping, the policy, nothing from other sites): its search, which
// follows the API's rules, its newer/older paging, and what it shows when
// there is nothing to show.
package main

import (
	"fmt"
	"net/http"
	"net/url"
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
