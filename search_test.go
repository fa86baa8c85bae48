// search_test.go checks the indexed search against the scan it replaced:
// the old search read every label and kept those whose strings.ToLower
// contained the keyword's. That scan is kept here as the oracle. Over
// labels and keywords made of awkward characters (quotes, '%', '_', '*',
// the words of FTS5's query language, accents, combining marks, emoji,
// spaces), both must find the same recipes in the same order; where the
// two fold case differently, the test says which letters and why.
package main

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

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
	var b strings.Builder
	for _, r := range s {
		if rng.IntN(2) == 0 {
			r = []rune(strings.ToUpper(string(r)))[0]
		} else {
			r = []rune(strings.ToLower(string(r)))[0]
		}
		b.WriteRune(r)
	}
	return b.String()
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
		"🍲🍲🍲", "🍲 s", "食物食", "o  s", "\tth", `k\s`, "'s ", "zzz",
	}
	for range 300 {
		label := []rune(labels[rng.IntN(len(labels))])
		if len(label) < 3 {
			continue
		}
		start := rng.IntN(len(label) - 2)
		end := start + 3 + rng.IntN(len(label)-start-2)
		keywords = append(keywords, flipCase(rng, string(label[start:end])))
	}
	for range 100 {
		keywords = append(keywords, randomText(rng, 3, 5))
	}
	for _, keyword := range keywords {
		if utf8.RuneCountInString(keyword) < minKeywordChars {
			continue
		}
		target := "/api/v1/recipes/search/?max_results=100&keyword=" + url.QueryEscape(keyword)
		if got, want := searchIDs(t, e, target), oracle(keyword); !slices.Equal(got, want) {
			t.Errorf("search for %q = ids %v, want %v, as the old scan found", keyword, got, want)
		}
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
		{"so a NUL in a keyword is dropped too", "b\x00cd", []int64{nul, plain}},
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
	for _, tc := range []struct{ name, keyword string }{
		{"a keyword of three NULs is a keyword of none", "\x00\x00\x00"},
		{"a keyword of three characters with a NUL among them is too short", "a\x00b"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			expectProblems(t, e.get("/api/v1/recipes/search/?keyword="+url.QueryEscape(tc.keyword)), "query.keyword")
		})
	}
	t.Run("no keyword still gives the first recipes, not a search", func(t *testing.T) {
		if got := searchIDs(t, e, "/api/v1/recipes/search/?max_results=2"); !slices.Equal(got, []int64{1, 2}) {
			t.Errorf("GET /api/v1/recipes/search/?max_results=2 = ids %v, want [1 2]", got)
		}
	})
	t.Run("an update and a delete are seen by the index at once", func(t *testing.T) {
		resp := e.sendJSON("PUT", fmt.Sprintf("/api/v1/recipes/%d", plain), recipeBody("wxyz", "Edge", "https://example.com/e"), bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=bcd"); !slices.Equal(got, []int64{nul}) {
			t.Errorf("search for bcd after the update = ids %v, want [%d]", got, nul)
		}
		if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=XYZ"); !slices.Equal(got, []int64{plain}) {
			t.Errorf("search for XYZ after the update = ids %v, want [%d]", got, plain)
		}
		expectStatus(t, e.sendJSON("DELETE", fmt.Sprintf("/api/v1/recipes/%d", plain), "", bearer(token)...), http.StatusNoContent)
		if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=XYZ"); len(got) != 0 {
			t.Errorf("search for XYZ after the delete = ids %v, want none", got)
		}
	})
}

func TestTheSearchIndexIsBuiltOverAReferenceDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reference.db")
	makeReferenceDB(t, path,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (4, 'ÉCLAIR AU CAFÉ', NULL, NULL, NULL)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (8, 'Old "quoted" 100% soup', NULL, NULL, NULL)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (9, 'Plain bread', NULL, NULL, NULL)`,
	)
	var logs bytes.Buffer
	st, err := openStore(t.Context(), path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	st.close()
	if !strings.Contains(logs.String(), "building the search index") || !strings.Contains(logs.String(), "recipes=3") {
		t.Errorf("the log = %q, want a line saying the search index is built over 3 recipes", logs.String())
	}

	e := newTestEnv(t, onDatabase(path))
	for _, tc := range []struct {
		keyword string
		want    []int64
	}{
		{"éclair", []int64{4}},
		{`"quoted"`, []int64{8}},
		{"0% s", []int64{8}},
		{"BREAD", []int64{9}},
		{"old", []int64{8}},
	} {
		target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(tc.keyword)
		if got := searchIDs(t, e, target); !slices.Equal(got, tc.want) {
			t.Errorf("GET %s on a migrated reference database = ids %v, want %v", target, got, tc.want)
		}
	}
	t.Run("a second start does not build the index again", func(t *testing.T) {
		logs.Reset()
		st, err := openStore(t.Context(), path, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		st.close()
		if strings.Contains(logs.String(), "search index") {
			t.Errorf("the log of a second start = %q, want nothing about the index", logs.String())
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
