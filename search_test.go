// search_test.go tests search.go: the recipe search, its index, its case
// folding and its bounds under hostile keywords.
package main

import (
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"
)

// addRecipes inserts n recipes (see bulkLabel) into db in one transaction
// with one prepared statement, the quick way to a big table.
func addRecipes(tb testing.TB, db *sql.DB, n int) { addLabelledRecipes(tb, db, n, bulkLabel) }

// BenchmarkSearchAt100kRecipes searches 100,000 recipes for keywords the
// cache has not seen: "rare" finds one recipe, "common" the first ten of
// 10,000. Its cost should not depend on the size of the table.
func BenchmarkSearchAt100kRecipes(b *testing.B) {
	e, _ := benchEnv(b)
	addRecipes(b, e.store.writer, 100_000)
	for _, bench := range []struct {
		name    string
		keyword func(i int) string
	}{
		{"rare", func(i int) string { return fmt.Sprintf("%06d", i*7919%100_000) }},
		{"common", func(int) string { return "curry" }},
		// Every trigram of it is in most labels, the whole in none: the
		// index must read each trigram's list to the end.
		{"common-parts-no-match", func(int) string { return "with rice with" }},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.store.forgetRecipes() // never from the cache
				target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(bench.keyword(i))
				i++
				rec := httptest.NewRecorder()
				e.handler.ServeHTTP(rec, newRequest("GET", target, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s = %d %.100s", target, rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkHostileSearch searches 20,000 labels built to be the trigram
// index's worst case (see hostileLabel), written straight into the file,
// each time with the caches forgotten. Unbounded, one search took seconds;
// cut off, it should answer 503 in about searchTimeLimit, which shows that
// the driver really interrupts the statement. It reports the median and
// the longest search (ms-p50, ms-max).
//
//	go test -run '^$' -bench HostileSearch -benchtime 20x
func BenchmarkHostileSearch(b *testing.B) {
	for _, bench := range []struct{ name, label, keyword string }{
		{"run-break-aab", hostileLabel, hostileKeyword},
		// The same pieces the other way round: a little dearer.
		{"aab-then-run", "aab" + strings.Repeat("a", 253), hostileKeyword},
		// Longer than the API allows, as another program may write it:
		// the check walks four times the positions.
		{"1000-char-labels", strings.Repeat("a", 1000) + "xaab", hostileKeyword},
	} {
		b.Run(bench.name, func(b *testing.B) {
			e, _ := benchEnv(b)
			addRecipesAsAnotherProgram(b, e, 20_000, func(int) string { return bench.label })
			target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(bench.keyword)
			var took []time.Duration
			statuses := map[int]int{}
			for b.Loop() {
				e.store.forgetRecipes() // never from a cache, nor refused from memory
				began := time.Now()
				rec := httptest.NewRecorder()
				e.handler.ServeHTTP(rec, newRequest("GET", target, nil))
				took = append(took, time.Since(began))
				statuses[rec.Code]++
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms-p50")
			b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "ms-max")
			b.Logf("statuses %v", statuses)
		})
	}
}

// searchFixture is the search tests' recipes beside the three seeded ones,
// created in this order.
var searchFixture = []string{
	"Filler 01", "Filler 02", "Filler 03", "Filler 04", "Filler 05", "Filler 06",
	"Filler 07", "Filler 08", "Filler 09", "Filler 10", "Filler 11",
	"Late Gazpacho",
	"100% rye",
	"1000 rye", // "0% r" would match it if % were a wildcard
	"x_y",
	"xzy", // "x_y" would match it if _ were a wildcard
	`back\slash`,
	"Crème brûlée",
	"Paprika chicken", // a third chicken, after the fillers
}

// expectSearchFinds fails unless a search for chicken finds something: an
// empty answer shows nothing when every search finds nothing.
func expectSearchFinds(t *testing.T, e *testEnv) {
	t.Helper()
	if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=chicken"); len(got) == 0 {
		t.Errorf("GET /api/v1/recipes/search/?keyword=chicken finds nothing; an empty answer shows nothing")
	}
}

func TestSearchRecipes(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "searcher@example.com")
	idOf := map[string]int64{}
	var all, fillers []int64 // every recipe, in the order made; the fillers
	for _, r := range seedRecipes {
		idOf[r.Label], all = r.ID, append(all, r.ID)
	}
	for _, label := range searchFixture {
		id := postRecipe(t, e, token, label, "Test", "https://example.com/r").ID
		idOf[label], all = id, append(all, id)
		if strings.HasPrefix(label, "Filler") {
			fillers = append(fillers, id)
		}
	}
	if !slices.IsSorted(all) {
		t.Fatalf("recipe ids %v are not in the order made; the expected lists below assume they are", all)
	}
	ids := func(labels ...string) []int64 {
		found := []int64{}
		for _, label := range labels {
			found = append(found, idOf[label])
		}
		return found
	}
	chickens := ids("Chicken Vesuvio", "Chicken Paprikash", "Paprika chicken")

	for _, tc := range []struct {
		name, query string
		want        []int64
		locs        []string // of a 422
	}{
		{"a keyword finds the labels that contain it, in id order", "keyword=chicken&max_results=10", chickens, nil},
		{"an upper-case keyword finds the lower-case labels", "keyword=CHICKEN&max_results=10", chickens, nil},
		{"a mixed-case keyword of several words finds its label", "keyword=cHiCkEn%20PAPRIKASH", ids("Chicken Paprikash"), nil},
		{"a keyword in the middle of a label finds it", "keyword=tofu", ids("Cauliflower and Tofu Curry Recipe"), nil},
		{"a keyword that matches nothing finds nothing", "keyword=zzzzz", []int64{}, nil},
		{"no keyword returns the first ten recipes", "", all[:10], nil},
		{"no keyword returns the first max_results recipes", "max_results=3", all[:3], nil},
		{"max_results=100 returns every recipe", "max_results=100", all, nil},
		{"max_results=1 returns one recipe", "max_results=1", all[:1], nil},
		{"max_results limits the results of a keyword", "keyword=filler&max_results=2", fillers[:2], nil},
		{"the default max_results is ten", "keyword=filler", fillers[:10], nil},
		{"the whole table is searched, not only its first max_results rows", "keyword=gazpacho&max_results=1", ids("Late Gazpacho"), nil},
		{"a late match is found after the first max_results rows", "keyword=chicken&max_results=3", chickens, nil},
		{"a percent sign in a keyword matches only itself", "keyword=" + url.QueryEscape("0% r"), ids("100% rye"), nil},
		{"a keyword of percent signs matches no label", "keyword=" + url.QueryEscape("%%%"), []int64{}, nil},
		{"an underscore in a keyword matches only itself", "keyword=x_y", ids("x_y"), nil},
		{"a keyword of underscores matches no label", "keyword=___", []int64{}, nil},
		{"a label an underscore would match as a wildcard is found by its own text", "keyword=xzy", ids("xzy"), nil},
		{"a backslash in a keyword matches only itself", "keyword=" + url.QueryEscape(`k\s`), ids(`back\slash`), nil},
		{"three non-ASCII characters are a long enough keyword", "keyword=" + url.QueryEscape("rûl"), ids("Crème brûlée"), nil},
		{"case is ignored beyond ASCII too, as the reference's str.lower() does", "keyword=" + url.QueryEscape("CRÈME"), ids("Crème brûlée"), nil},
		{"a keyword under three characters is a 422", "keyword=ab", nil, []string{"query.keyword"}},
		{"an empty keyword is a 422", "keyword=", nil, []string{"query.keyword"}},
		{"two non-ASCII characters are too short a keyword", "keyword=" + url.QueryEscape("éé"), nil, []string{"query.keyword"}},
		{"max_results=0 is a 422", "max_results=0", nil, []string{"query.max_results"}},
		{"max_results=101 is a 422", "max_results=101", nil, []string{"query.max_results"}},
		{"max_results=-1 is a 422", "max_results=-1", nil, []string{"query.max_results"}},
		{"a max_results that is not a number is a 422", "max_results=abc", nil, []string{"query.max_results"}},
		{"a fractional max_results is a 422", "max_results=1.5", nil, []string{"query.max_results"}},
		{"an empty max_results is a 422", "max_results=", nil, []string{"query.max_results"}},
		{"a bad keyword and a bad max_results are both listed", "keyword=ab&max_results=0", nil, []string{"query.keyword", "query.max_results"}},
		{"a bad keyword and an unparsable max_results are both listed", "keyword=x&max_results=abc", nil, []string{"query.keyword", "query.max_results"}},
	} {
		t.Run(tc.name+", with or without the trailing slash", func(t *testing.T) {
			target := "/api/v1/recipes/search/?" + tc.query
			if tc.locs != nil {
				expectProblems(t, e.get(target), tc.locs...)
			} else if got := searchIDs(t, e, target); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s = ids %v, want %v", target, got, tc.want)
			}
			if tc.locs == nil && len(tc.want) == 0 {
				expectSearchFinds(t, e)
			}
			with, without := e.get(target), e.get("/api/v1/recipes/search?"+tc.query)
			if a, b := readBody(t, with), readBody(t, without); with.StatusCode != without.StatusCode || a != b {
				t.Errorf("GET /api/v1/recipes/search?%s = %d %s, want %d %s as with the slash", tc.query, without.StatusCode, b, with.StatusCode, a)
			}
		})
	}

	t.Run("every ASCII case of a keyword is one search, cached once", func(t *testing.T) {
		e.store.forgetRecipes()
		for _, keyword := range []string{"ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz", "aBcDeFgHiJkLmNoPqRsTuVwXyZ"} {
			searchIDs(t, e, "/api/v1/recipes/search/?keyword="+keyword)
		}
		if n := cacheEntries(e.store, "search"); n != 1 {
			t.Errorf("the search cache holds %d entries after one keyword in three cases, want 1", n)
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
}

func TestALongKeywordMatchesNothingAtOnce(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "long@example.com")
	longest := strings.Repeat("é", maxKeywordChars-1) + "x"
	id := postRecipe(t, e, token, longest, "Me", "https://example.com/l").ID

	t.Run("a keyword as long as the longest label finds it", func(t *testing.T) {
		target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(strings.ToUpper(longest))
		if got := searchIDs(t, e, target); !slices.Equal(got, []int64{id}) {
			t.Errorf("GET search with a %d-character keyword = ids %v, want [%d]", maxKeywordChars, got, id)
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
				t.Errorf("after a search for a %d-character keyword the search cache holds %d entries, want none", utf8.RuneCountInString(tc.keyword), n)
			}
			expectSearchFinds(t, e)
		})
	}
	t.Run("a long keyword does not touch the database", func(t *testing.T) {
		e := newTestEnv(t)
		e.store.close()
		resp := e.get("/api/v1/recipes/search/?keyword=" + strings.Repeat("a", 300))
		expectStatus(t, resp, http.StatusOK)
		expectStatus(t, e.get("/api/v1/recipes/search/?keyword=soup"), http.StatusInternalServerError)
	})
	t.Run("a long keyword is still checked for a bad max_results", func(t *testing.T) {
		expectProblems(t, e.get("/api/v1/recipes/search/?max_results=0&keyword="+strings.Repeat("a", 300)), "query.max_results")
	})
}

// oldScanFinds is the search as it was before the index: the label
// contains the keyword once both are lower-cased by Go.
func oldScanFinds(label, keyword string) bool {
	return strings.Contains(strings.ToLower(label), strings.ToLower(keyword))
}

// searchAlphabet is what the random labels are made of: characters on
// which Go's lower-casing and SQLite's case folding agree, and the
// characters that mean something to FTS5's query syntax or to LIKE.
var searchAlphabet = []rune(`aAbBcCeEnNoOrRsSxX019 %_*"'-^():+.,;!?\` +
	"éÉèÈüÜñÑçÇøØåÅœŒ" + // Latin-1 and beyond
	"αΑβΒγΓωΩ" + "дДжЖяЯ" + // Greek and Cyrillic
	"食物🍲🌶" + // CJK and emoji (4-byte UTF-8)
	"\u0301") // a combining acute accent

func randomText(rng *rand.Rand, minChars, maxChars int) string {
	n := minChars + rng.IntN(maxChars-minChars+1)
	var b strings.Builder
	for range n {
		b.WriteRune(searchAlphabet[rng.IntN(len(searchAlphabet))])
	}
	return b.String()
}

// storeRecipe adds a recipe with label through the store, past the API's
// checks, and returns its id: the API refuses a tab or a NUL in a label,
// but a database that another program wrote may hold one.
func storeRecipe(t *testing.T, e *testEnv, submitterID int64, label string) int64 {
	t.Helper()
	rec, err := e.store.createRecipe(t.Context(), recipe{Label: label, Source: "Test", URL: "https://example.com/o", SubmitterID: submitterID})
	if err != nil {
		t.Fatalf("createRecipe(%q): %v", label, err)
	}
	return rec.ID
}

// flipCase swaps the case of some of s's letters at random.
func flipCase(rng *rand.Rand, s string) string {
	return strings.Map(func(r rune) rune {
		if rng.IntN(2) == 0 {
			return unicode.ToUpper(r)
		}
		return unicode.ToLower(r)
	}, s)
}

func TestSearchFindsWhatTheOldScanFound(t *testing.T) {
	e := newTestEnv(t)
	oracleUser, token := newRecipeUser(e, "oracle@example.com")
	rng := rand.New(rand.NewPCG(9, 9))
	newLabels := []string{
		`He said "stop"`, `""""`, `100% rye`, `x_y`, `a*b*c`, `-minus-`, `^caret`, `col:on`,
		`NEAR(a b)`, `this AND that`, `this OR that`, `NOT this`, `and or near not`,
		"Crème brûlée", "CRÈME BRÛLÉE", "cre\u0300me", "e\u0301clair", "ÉCLAIR", "éclair",
		"🍲🍲🍲 soup", "食物食物", "two  spaces", "tab\there", `back\slash`, "O'Brien's pie",
	}
	for range 150 {
		newLabels = append(newLabels, randomText(rng, 1, 24))
	}
	// Every recipe, in id order: the seeded ones, then the new ones.
	var labels []string
	var ids []int64
	for _, r := range seedRecipes {
		labels, ids = append(labels, r.Label), append(ids, r.ID)
	}
	for _, label := range newLabels {
		var id int64
		if _, refused := hiddenControl(label); refused {
			id = storeRecipe(t, e, oracleUser.ID, label)
		} else {
			id = postRecipe(t, e, token, label, "Test", "https://example.com/o").ID
		}
		labels, ids = append(labels, label), append(ids, id)
	}
	oracle := func(keyword string) []int64 {
		found := []int64{}
		for i, label := range labels {
			if oldScanFinds(label, keyword) && len(found) < maxListLength {
				found = append(found, ids[i])
			}
		}
		return found
	}

	keywords := []string{
		`"st`, `"""`, `"sto`, `op"`, `%%%`, `0% r`, `x_y`, `___`, `*b*`, `a*b`, `***`, `-mi`, `^ca`, `:on`,
		`NEAR`, `near(a`, `(a b)`, `AND`, ` OR `, `or near`, `NOT`, `" OR "`, `' OR 1=1 --`,
		"crème", "CRÈME", "brûl", "e\u0301c", "\u0301cl", "ÉCLAIR", "éclair", "ècl",
		"🍲🍲🍲", "🍲 s", "食物食", "o  s", `k\s`, "'s ", "zzz",
	}
	pieces := 0 // keywords cut from a label, each of which finds at least that label
	for range 300 {
		label := []rune(labels[rng.IntN(len(labels))])
		if len(label) < 3 {
			continue
		}
		pieces++
		start := rng.IntN(len(label) - 2)
		end := start + 3 + rng.IntN(len(label)-start-2)
		keywords = append(keywords, flipCase(rng, string(label[start:end])))
	}
	for range 100 {
		keywords = append(keywords, randomText(rng, 3, 5))
	}
	withMatches := 0
	for _, keyword := range keywords {
		if utf8.RuneCountInString(keyword) < minKeywordChars {
			continue
		}
		target := "/api/v1/recipes/search/?max_results=100&keyword=" + url.QueryEscape(keyword)
		want := oracle(keyword)
		if got := searchIDs(t, e, target); !slices.Equal(got, want) {
			t.Errorf("search for %q = ids %v, want %v, as the old scan found", keyword, got, want)
		}
		if len(want) > 0 {
			withMatches++
		}
	}
	if withMatches < pieces {
		t.Errorf("only %d of the keywords find something, fewer than the %d cut from labels", withMatches, pieces)
	}
}

// TestSearchFoldsCaseAsUnicodeSimpleFolding lists where the index and the
// old scan part ways. The index folds case by Unicode's simple case
// folding (as strings.EqualFold does), from SQLite's own tables; Go's
// strings.ToLower maps each letter to its lower case. They differ on a few
// letters, and the index is right on all but the last group:
//
//   - a letter with two lower-case forms is one letter: Greek final
//     sigma "ς" is "σ", long s "ſ" is "s", "µ" (micro) is "μ";
//   - "İ" (dotted capital I) is a letter of its own: only Turkish folds it
//     to "i" (and then "I" to "ı"), which a search for every language
//     cannot do; Python's str.lower(), the reference's, makes it "i̇";
//   - letters that got a case pair after Unicode 6 (Georgian Mtavruli,
//     Cherokee small letters, a few Latin and Cyrillic ones) are not in
//     SQLite's table, so they match only in the case they are written.
func TestSearchFoldsCaseAsUnicodeSimpleFolding(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "fold@example.com")
	for _, tc := range []struct {
		name, label, keyword string
		found, oldScanFound  bool
	}{
		{"accented capitals fold to their small letters", "ÉCLAIR AU CAFÉ", "éclair", true, true},
		{"and small letters to capitals", "éclair au café", "ÉCLAIR", true, true},
		{"capital sharp s folds to ß", "STRAẞENKÜCHE", "straße", true, true},
		{"ß is not ss: simple folding maps one letter to one", "Straßenküche", "STRASSE", false, false},
		{"Greek final sigma is sigma (the old scan missed it)", "ΨΑΡΟΣΟΥΠΑ ΤΟΥ ΨΑΡΑΣ", "ψαρας", true, false},
		{"long s is s (the old scan missed it)", "ſoup of the day", "SOUP", true, false},
		{"dotted capital I is not i (the old scan took it for i)", "İSKENDER KEBAP", "iskender", false, true},
		{"dotted capital I finds itself, whatever the case of the rest", "İSKENDER KEBAP", "İskender", true, true},
		{"dotless small i is not i", "ıspanak", "ISPANAK", false, false},
		{"Georgian Mtavruli (Unicode 11) matches only as written", "ᲮᲐᲭᲐᲞᲣᲠᲘ", "ხაჭაპური", false, true},
		{"Georgian Mkhedruli finds itself", "ხაჭაპური", "ხაჭაპური", true, true},
		{"Cherokee small letters (Unicode 8) match only as written", "ᏌᏊ ᎦᏚ", "ꮜꮚ ꭶꮪ", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if old := oldScanFinds(tc.label, tc.keyword); old != tc.oldScanFound {
				t.Fatalf("the old scan finds %q in %q: %v; the table says %v", tc.keyword, tc.label, old, tc.oldScanFound)
			}
			id := postRecipe(t, e, token, tc.label, "Fold", "https://example.com/f").ID
			if !slices.Contains(searchIDs(t, e, "/api/v1/recipes/search/?keyword="+url.QueryEscape(tc.label)), id) {
				t.Fatalf("a search for the label %q as written does not find it", tc.label)
			}
			target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(tc.keyword)
			if found := slices.Contains(searchIDs(t, e, target), id); found != tc.found {
				t.Errorf("search for %q finds %q: %v, want %v", tc.keyword, tc.label, found, tc.found)
			}
		})
	}
}

func TestSearchEdgeCases(t *testing.T) {
	e := newTestEnv(t)
	edge, token := newRecipeUser(e, "edge@example.com")
	nul := storeRecipe(t, e, edge.ID, "ab\x00cd")
	plain := postRecipe(t, e, token, "abcd", "Edge", "https://example.com/e").ID
	bad := postRecipe(t, e, token, "caf\uFFFDs", "Edge", "https://example.com/e").ID

	for _, tc := range []struct {
		name, keyword string
		want          []int64
	}{
		{"the index passes over a NUL in a label", "bcd", []int64{nul, plain}},
		{"a byte that is not UTF-8 stands for U+FFFD, as a label's would", "f\xffs", []int64{bad}},
		{"a keyword of exactly three characters is searched", "BCD", []int64{nul, plain}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(tc.keyword)
			if got := searchIDs(t, e, target); !slices.Equal(got, tc.want) {
				t.Errorf("GET %s = ids %v, want %v", target, got, tc.want)
			}
		})
	}
	// Dropped, a NUL would make "b\x00cd" a search for "bcd": a keyword
	// must never be searched for as less than it is.
	for _, tc := range []struct{ name, keyword string }{
		{"a keyword holding a NUL is refused, not shortened", "b\x00cd"},
		{"a keyword of three NULs is refused", "\x00\x00\x00"},
		{"a keyword of two characters and a NUL is refused", "a\x00b"},
		{"a keyword holding a tab is refused", "ab\tcd"},
		{"a keyword holding a line break is refused", "ab\ncd"},
		{"a keyword holding DEL is refused", "ab\x7fcd"},
		{"a keyword holding a C1 control is refused", "ab\u0085cd"},
		{"a keyword holding a right-to-left override is refused, as a label holding one is", "ab\u202ecd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.get("/api/v1/recipes/search/?keyword="+url.QueryEscape(tc.keyword)), "query.keyword")
		})
	}
	t.Run("the store finds nothing for a keyword holding a NUL", func(t *testing.T) {
		found, err := e.store.searchRecipes(t.Context(), "b\x00cd", 10)
		if err != nil || len(found) != 0 {
			t.Errorf("searchRecipes(b\\x00cd) = %v, %v; want nothing", found, err)
		}
		expectSearchFinds(t, e)
	})
	t.Run("an update and a delete are seen by the index at once", func(t *testing.T) {
		id := postRecipe(t, e, token, "mnopq", "Edge", "https://example.com/e").ID
		expectStatus(t, e.sendJSON("PUT", recipePath(id), recipeBody("wxyz", "Edge", "https://example.com/e"), bearer(token)...), http.StatusOK)
		for keyword, want := range map[string][]int64{"NOP": {}, "XYZ": {id}} {
			if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword="+keyword); !slices.Equal(got, want) {
				t.Errorf("search for %s after the update = ids %v, want %v", keyword, got, want)
			}
		}
		expectStatus(t, e.sendJSON("DELETE", recipePath(id), "", bearer(token)...), http.StatusNoContent)
		if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=XYZ"); len(got) != 0 {
			t.Errorf("search for XYZ after the delete = ids %v, want none", got)
		}
	})
}

func TestSearchReadsTheIndexNotEveryLabel(t *testing.T) {
	// The contract's search budget: a search costs in proportion to what
	// it finds. A plan that scanned the recipe table would cost the same
	// small test data no more, so the plan itself is checked.
	e := newTestEnv(t)
	plan := queryPlan(t, e.store.reader, searchSQL, ftsPhrase("chicken"), 10)
	if !strings.Contains(plan, "VIRTUAL TABLE INDEX") || strings.Contains(plan, "SCAN recipe\n") {
		t.Errorf("a search runs as\n%s, want the recipe_fts index and recipes by their ids, no scan of recipe", plan)
	}
}

// addRecipesAsAnotherProgram writes n recipes, the i-th labelled
// label(i), straight into e's database file in one transaction, as
// another program could (through the API it would take minutes). Then it
// stops e's store from watching for such writes (watchExternalWrites)
// and forgets every cache itself: the watch would forget them too, but at
// a moment of its own, perhaps in the middle of a test. The caller must
// write nothing more.
func addRecipesAsAnotherProgram(tb testing.TB, e *testEnv, n int, label func(i int) string) {
	tb.Helper()
	db, err := sql.Open("sqlite", sqliteName(e.cfg.dbPath)+"?_pragma=busy_timeout(10000)")
	if err != nil {
		tb.Fatal(err)
	}
	defer db.Close()
	addLabelledRecipes(tb, db, n, label)
	e.store.stopPoll()
	e.store.polled.Wait()
	e.store.forgetRecipes()
}

// idsFrom returns from and the n-1 ids after it.
func idsFrom(from int64, n int) []int64 {
	var ids []int64
	for id := from; id < from+int64(n); id++ {
		ids = append(ids, id)
	}
	return ids
}

func TestHostileSearchesAreBounded(t *testing.T) {
	e := newTestEnv(t)
	// 10,000 labels: unbounded, the search takes seconds, far past the
	// time limit however fast the machine.
	addRecipesAsAnotherProgram(t, e, 10_000, func(int) string { return hostileLabel })
	firstHostile := int64(queryInt(t, e.store.reader, "SELECT min(id) FROM recipe WHERE label = ?", hostileLabel))

	t.Run("the store names which bound cut a search off: the time limit, or every slot busy", func(t *testing.T) {
		if _, err := e.store.searchIndex(t.Context(), hostileKeyword, 10); !errors.Is(err, errSearchTooSlow) {
			t.Errorf("a worst-case search = %v, want errSearchTooSlow", err)
		}
		for range cap(e.store.searchSlots) {
			e.store.searchSlots <- struct{}{}
		}
		_, err := e.store.searchIndex(t.Context(), "chicken", 10)
		for range cap(e.store.searchSlots) {
			<-e.store.searchSlots
		}
		if !errors.Is(err, errSearchBusy) {
			t.Errorf("a search with every slot taken = %v, want errSearchBusy", err)
		}
	})
	t.Run("a worst-case search is cut off with 503 and Retry-After within the time limit, each time, in any case of its letters", func(t *testing.T) {
		// No memory of the cut-off answers a repeat: the time limit bounds
		// each one, and none is cached as an answer (every case of the
		// keyword folds to the one cache key). The first, on a cold file,
		// is not timed.
		for i, keyword := range []string{hostileKeyword, hostileKeyword, strings.ToUpper(hostileKeyword), "aA" + hostileKeyword[2:]} {
			start := time.Now()
			resp := e.get("/api/v1/recipes/search/?keyword=" + keyword)
			if took, bound := time.Since(start), searchSlotWait+searchTimeLimit+time.Second; i > 0 && took > bound {
				t.Errorf("GET search for %.6s… took %v, want under %v", keyword, took, bound)
			}
			if got := resp.Header.Get("Retry-After"); got != "1" {
				t.Errorf("GET search for %.6s…: Retry-After = %q, want 1", keyword, got)
			}
			expectDetail(t, resp, http.StatusServiceUnavailable, "Search took too long; try a longer or more specific keyword")
			if cacheHolds(e.store, cacheKey{read: "search", keyword: hostileKeyword, n: defaultMaxResults}) {
				t.Errorf("the cut-off search for %.6s… is cached as an answer", keyword)
			}
		}
	})
	t.Run("a search on the same labels that finds its matches early is answered", func(t *testing.T) {
		if got, want := searchIDs(t, e, "/api/v1/recipes/search/?keyword=XAAB"), idsFrom(firstHostile, 10); !slices.Equal(got, want) {
			t.Errorf("GET search for XAAB = ids %v, want the first ten hostile recipes, %v", got, want)
		}
	})
	t.Run("the home page shows a notice with 503 and Retry-After", func(t *testing.T) {
		resp := e.get("/?q=" + hostileKeyword)
		expectStatus(t, resp, http.StatusServiceUnavailable)
		if got := resp.Header.Get("Retry-After"); got != "1" {
			t.Errorf("GET /?q= for the worst case: Retry-After = %q, want 1", got)
		}
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /?q= for the worst case: Content-Type = %q, want the friendly page", ct)
		}
		page := readBody(t, resp)
		if !strings.Contains(page, "That search took too long") || len(homeLabels(page)) != 0 {
			t.Errorf("GET /?q= for the worst case shows %q and no notice that it took too long", homeLabels(page))
		}
	})
	t.Run("many at once never keep reads by id, logins or /healthz from a reader", func(t *testing.T) {
		// More hostile searches at once than there are readers: unbounded
		// they would hold every reader, and the reads beside them would
		// wait for one, which database/sql counts.
		searchers := e.store.reader.Stats().MaxOpenConnections + 3
		const rounds = 3
		waitsBefore := e.store.reader.Stats().WaitCount
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range searchers {
			wg.Go(func() {
				<-start
				for round := range rounds {
					// A key of its own for each: distinct searches, as a
					// hostile client would send.
					n := i*rounds + round
					keyword := strings.Repeat("a", 252-n/maxListLength) + "b"
					resp := e.get(fmt.Sprintf("/api/v1/recipes/search/?max_results=%d&keyword=%s", 1+n%maxListLength, keyword))
					if body, _ := io.ReadAll(resp.Body); resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "Search took too long") {
						t.Errorf("a hostile search answered %d %.100s, want 503 Search took too long", resp.StatusCode, body)
					}
				}
			})
		}
		searching := make(chan struct{})
		go func() { wg.Wait(); close(searching) }()
		close(start)
		reads := 0
		for n, done := 0, false; !done; n++ {
			select {
			case <-searching:
				done = true
			default:
			}
			// A hostile recipe not read before, so not from the cache.
			id := firstHostile + int64(n%10_000)
			for _, target := range []string{recipePath(id), "/healthz"} {
				if resp := e.get(target); resp.StatusCode != http.StatusOK {
					t.Errorf("GET %s while hostile searches ran = %d, want 200", target, resp.StatusCode)
				}
				reads++
			}
			if resp := e.tryLogin("admin@recipeapi.com", adminPassword); resp.StatusCode != http.StatusOK {
				t.Errorf("a login while hostile searches ran = %d, want 200", resp.StatusCode)
			}
			reads++
		}
		if waits := e.store.reader.Stats().WaitCount - waitsBefore; waits != 0 {
			t.Errorf("while %d searches ran at once, %d reads beside them, %d times a query waited for a reader connection; want never",
				searchers, reads, waits)
		}
	})
}
