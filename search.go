// search.go owns recipe search: the handler, and the query on the trigram
// index with its time limit and its share of the readers.
package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	minKeywordChars   = 3 // a trigram index finds nothing shorter
	defaultMaxResults = 10
	// No label is longer: a longer keyword is answered at once, uncached.
	maxKeywordChars = maxTextChars
	maxListLength   = 100 // the most recipes any list answers with
)

// handleSearch answers at most ?max_results= recipes that hold ?keyword=.
func (a *app) handleSearch(w http.ResponseWriter, r *http.Request) error {
	query := r.URL.Query()
	var bad problems
	keyword := query.Get("keyword")
	if control, ok := hiddenControl(keyword); ok {
		bad.add("query", "keyword", fmt.Sprintf("the keyword holds a control or bidirectional control character (U+%04X), which no label may hold", control),
			"value_error.str.control")
	} else if query.Has("keyword") && utf8.RuneCountInString(keyword) < minKeywordChars {
		bad.tooShort("query", "keyword", minKeywordChars)
	}
	maxResults := intParam(query, "max_results", defaultMaxResults, 1, maxListLength, &bad)
	if err := bad.err(); err != nil {
		return err
	}
	recipes, err := a.store.searchRecipes(r.Context(), keyword, maxResults)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, results(recipes))
}

// searchSQL takes LIMIT ids from the index, then their recipes: joined the other way, SQLite would sort every match.
const (
	searchSQL = "SELECT " + recipeColumns + " FROM recipe WHERE id IN " +
		"(SELECT rowid FROM recipe_fts WHERE recipe_fts MATCH ? ORDER BY rowid LIMIT ?) ORDER BY id"
	firstRecipesSQL = "SELECT " + recipeColumns + " FROM recipe ORDER BY id LIMIT ?"
)

// searchRecipes returns, in id order, up to limit recipes whose label
// contains keyword in any case; "" matches all. A keyword no label can
// hold (too long, or hiddenControl: SQLite would stop at a NUL) matches none.
func (s *store) searchRecipes(ctx context.Context, keyword string, limit int) ([]recipe, error) {
	if _, ok := hiddenControl(keyword); ok || utf8.RuneCountInString(keyword) > maxKeywordChars {
		return []recipe{}, nil
	}
	// Every ASCII case of a keyword is one search, and one cache entry.
	key := cacheKey{read: "search", keyword: foldASCII(keyword), n: int64(limit)}
	recipes, err := s.cache.load(key, func() ([]recipe, error) {
		if key.keyword == "" {
			return scanRecipes(s.firstRecipesQuery.QueryContext(ctx, limit))
		}
		return s.searchIndex(ctx, key.keyword, limit)
	})
	return recipes, wrapErr(err, "search recipes")
}

// searchTimeLimit bounds one search statement (an honest one takes a few
// ms at 100,000 recipes, one built against the index seconds): with
// searchSlotWait, any answer comes within the contract's 250 ms.
const (
	searchTimeLimit  = 150 * time.Millisecond * raceSlowdown
	searchSlotWait   = 50 * time.Millisecond * raceSlowdown
	searchRetryAfter = time.Second // the Retry-After of a 503 for errSearchCutOff
)

// searchIndex runs searchSQL in a search slot for at most searchTimeLimit;
// a cut-off is an error, and so never cached.
func (s *store) searchIndex(ctx context.Context, keyword string, limit int) ([]recipe, error) {
	wait, stopWaiting := context.WithTimeout(ctx, searchSlotWait)
	defer stopWaiting()
	select {
	case s.searchSlots <- struct{}{}:
		defer func() { <-s.searchSlots }()
	case <-wait.Done():
		return nil, cmp.Or(ctx.Err(), errSearchBusy)
	}
	run, stop := context.WithTimeoutCause(ctx, searchTimeLimit, errSearchTooSlow)
	defer stop()
	recipes, err := scanRecipes(s.searchQuery.QueryContext(run, ftsPhrase(keyword), limit))
	if err != nil && errors.Is(context.Cause(run), errSearchTooSlow) {
		return nil, errSearchTooSlow
	}
	return recipes, err
}

// ftsPhrase quotes keyword as an FTS5 phrase, inside which nothing is an operator.
func ftsPhrase(keyword string) string {
	return `"` + strings.ReplaceAll(keyword, `"`, `""`) + `"`
}

// foldASCII folds A–Z as the index does; strings.Map also makes each
// byte that is not UTF-8 a U+FFFD, so SQLite sees no stray byte.
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// validUTF8 makes each byte that is not UTF-8 a U+FFFD, one for one.
func validUTF8(s string) string { return strings.Map(func(r rune) rune { return r }, s) }
