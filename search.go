// search.go owns recipe search: the handler, and the query on the trigram
// index with its time limit and its share of the readers.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	minKeywordChars   = 3
	defaultMaxResults = 10
	// maxKeywordChars is the longest keyword worth searching for: no label
	// can hold more (256 characters), so a longer keyword matches nothing.
	// It is answered at once, without the cache or the database, so that
	// a client cannot make either hold a keyword of its own length.
	maxKeywordChars = maxTextChars
	// maxListLength is the most recipes any list answers with, so that no
	// response is built from an unbounded list; my-recipes pages past it.
	maxListLength = 100
)

// handleSearch finds recipes whose label contains ?keyword= (ignoring
// case), in id order, at most ?max_results= of them. Unlike the reference
// it searches the whole table, not only its first max_results rows. A
// search that its keyword makes too costly, or that finds the searches'
// share of the database taken, is cut off with a 503 (store.searchRecipes).
func (a *app) handleSearch(w http.ResponseWriter, r *http.Request) error {
	query := r.URL.Query()
	var bad problems
	keyword := query.Get("keyword")
	chars := utf8.RuneCountInString(keyword)
	if control, ok := hiddenControl(keyword); ok {
		bad.add("query", "keyword", fmt.Sprintf("the keyword holds a control or bidirectional control character (U+%04X), which no label may hold", control),
			"value_error.str.control")
	} else if query.Has("keyword") && chars < minKeywordChars {
		bad.tooShort("query", "keyword", minKeywordChars)
	}
	maxResults := intParam(query, "max_results", defaultMaxResults, 1, maxListLength, &bad)
	if err := bad.err(); err != nil {
		return err
	}
	if chars > maxKeywordChars {
		return writeJSON(w, http.StatusOK, viewRecipes(nil))
	}
	recipes, err := a.store.searchRecipes(r.Context(), keyword, maxResults)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewRecipes(recipes))
}

// searchSQL finds recipes by the trigram index recipe_fts. The ids come
// from the index first, at most LIMIT of them, then their recipes: joined
// the other way round, SQLite would read every match to sort them by
// recipe.id.
const searchSQL = "SELECT " + recipeColumns + " FROM recipe WHERE id IN " +
	"(SELECT rowid FROM recipe_fts WHERE recipe_fts MATCH ? ORDER BY rowid LIMIT ?) ORDER BY id"

// searchRecipes returns, in id order, up to limit recipes whose label
// contains keyword, ignoring case in every script. Every character of
// keyword stands for itself: '%', '_', '*', quotes and words such as OR
// or NEAR are not operators. An empty keyword matches every recipe; a
// keyword that holds a NUL matches none (handleSearch refuses it first):
// SQLite would end the query at the NUL, and so search for less than was
// asked.
//
// The search runs on the trigram index recipe_fts (see schema.sql), so
// the table is not scanned: it costs time in proportion to the labels
// that hold every three-character piece of the keyword, and to how long
// each takes to check for the whole keyword. Labels built for it (a long
// run of "a" with an "aab" after a break, searched for "aaa…ab") make
// that check walk hundreds of positions in each label: 20,000 such
// labels took 5.6 s. So a search statement runs under a time limit and
// in a search slot (searchIndex), and is otherwise refused with
// errSearchCutOff, which is never cached as an answer. A keyword that
// ran out of time is remembered, its ASCII letters folded, and refused at
// once for slowSearchMemory or until the recipes change.
//
// Case is folded by SQLite's table, Unicode's simple case folding: "ς"
// finds "Σ" and "ſ" finds "S", as strings.EqualFold would say; "İ" is a
// letter of its own (Unicode folds it to "i" only for Turkish); letters
// given a case pair after Unicode 6 (Georgian Mtavruli, Cherokee lower
// case, a few Latin and Cyrillic ones) match only in the case they are
// written. A keyword needs at least 3 characters: a trigram index finds
// nothing shorter; handleSearch asks for that many.
func (s *store) searchRecipes(ctx context.Context, keyword string, limit int) ([]recipe, error) {
	if strings.ContainsRune(keyword, 0) {
		return []recipe{}, nil
	}
	// The index folds A–Z as this does, so every spelling of a keyword
	// in ASCII upper and lower case is one search, and one cache entry.
	key := searchKey{foldASCII(validUTF8(keyword)), limit}
	slowAt, generation, slow := s.slowSearches.get(key)
	if slow && time.Since(slowAt) < slowSearchMemory {
		return nil, fmt.Errorf("search recipes: %w (refused at once: it did %s ago)", errSearchTooSlow, time.Since(slowAt).Round(time.Millisecond))
	}
	return cached(&s.searches, key, func() ([]recipe, error) {
		if key.keyword == "" {
			recipes, err := scanRecipes(s.firstRecipesQuery.QueryContext(ctx, limit))
			return recipes, wrapErr(err, "first recipes")
		}
		recipes, err := s.searchIndex(ctx, key.keyword, limit)
		if errors.Is(err, errSearchTooSlow) {
			s.slowSearches.put(key, time.Now(), generation)
		}
		return recipes, wrapErr(err, "search recipes")
	})
}

// slowSearchMemory is how long a search that ran past searchTimeLimit is
// refused at once, unless the recipes change first. A search cut off by
// chance, in a moment when the machine was slow, is refused no longer.
const slowSearchMemory = time.Minute

// searchTimeLimit bounds the time one search statement may run. An
// honest search takes a few milliseconds, even at 100,000 recipes (see
// BenchmarkSearchAt100kRecipes), and one whose keyword is made of pieces
// that most labels hold about 10 ms there; a hostile one could take
// seconds. Past the limit the driver interrupts the statement inside
// SQLite, which stops within a few milliseconds (BenchmarkHostileSearch).
// With searchSlotWait it keeps the answer to any search, found or
// refused, near 200 ms, within the contract's 250 ms. (Under the race
// detector, both are raceSlowdown times longer: it slows SQLite as much.)
const searchTimeLimit = 150 * time.Millisecond * raceSlowdown

// searchSlotWait bounds how long a search waits for one of s.searchSlots;
// past it, the search is refused with errSearchBusy. The waiters are
// requests, at most one per connection (MAX_CONNECTIONS bounds them), and
// each waits no longer than this.
const searchSlotWait = 50 * time.Millisecond * raceSlowdown

// searchRetryAfter is the Retry-After of a 503 for errSearchCutOff: by
// then the slots are likely free again (a keyword that ran out of time is
// still refused, for slowSearchMemory, unless the recipes change).
const searchRetryAfter = time.Second

// searchIndex runs searchSQL for keyword (folded, and without a NUL) in a
// search slot, for at most searchTimeLimit: errSearchBusy if no slot came
// free within searchSlotWait, errSearchTooSlow if the statement ran out of
// time. A client that goes away ends either wait with its own error.
func (s *store) searchIndex(ctx context.Context, keyword string, limit int) ([]recipe, error) {
	wait, stopWaiting := context.WithTimeout(ctx, searchSlotWait)
	defer stopWaiting()
	select {
	case s.searchSlots <- struct{}{}:
		defer func() { <-s.searchSlots }()
	case <-wait.Done():
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errSearchBusy
	}
	run, stop := context.WithTimeoutCause(ctx, searchTimeLimit, errSearchTooSlow)
	defer stop()
	recipes, err := scanRecipes(s.searchQuery.QueryContext(run, ftsPhrase(keyword), limit))
	if err != nil && errors.Is(context.Cause(run), errSearchTooSlow) {
		return nil, errSearchTooSlow
	}
	return recipes, err
}

// ftsPhrase quotes keyword as an FTS5 phrase: inside double quotes (each
// one in keyword doubled) nothing is an operator, so the index is asked
// for exactly these characters in this order. keyword must hold no NUL,
// at which SQLite would end the query (searchRecipes sees to it).
func ftsPhrase(keyword string) string {
	return `"` + strings.ReplaceAll(keyword, `"`, `""`) + `"`
}

// foldASCII is s with the letters A–Z in lower case and every other
// character as it is: the part of the index's case folding that is
// certain to be the same in Go.
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// validUTF8 replaces each byte of s that is not part of a UTF-8 character
// with U+FFFD, one for one (as strings.Map does, and the scan that the
// index replaced did): the keyword keeps the number of characters it was
// checked for, and SQLite, which reads a stray byte its own way, never
// sees one.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune { return r }, s)
}

type searchKey struct {
	keyword string
	limit   int
}
