// home.go owns the HTML home page: the newest recipes, ten to a page, and
// a search.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

const (
	newestOnHome = 10 // recipes on a page of the home page
	foundOnHome  = 30 // search results the home page shows
)

//go:embed home.html
var homeHTML string

var homeTemplate = template.Must(template.New("home").Funcs(template.FuncMap{"linkHost": linkHost}).Parse(homeHTML))

// homePolicy allows the page's one inline stylesheet, by its hash, its
// own favicon, and its search form, which sends to this site; nothing
// else: no script, nothing from another site.
var homePolicy = "default-src 'none'; style-src '" + inlineStyleHash(homeHTML) + "'; img-src 'self'; " +
	"base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// inlineStyleHash is the CSP source for the <style> element in page.
func inlineStyleHash(page string) string {
	_, rest, _ := strings.Cut(page, "<style>")
	css, _, _ := strings.Cut(rest, "</style>")
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// homePage is what home.html shows.
type homePage struct {
	Query     string // the search as typed, shown again in the search box
	Searching bool
	Notice    string // a word to the reader, instead of an error page
	Cards     []recipe
	Paged     bool  // a page other than the newest
	Newer     int64 // the first id of this page, for the link to newer recipes; 0: none
	Older     int64 // the last id of this page, for the link to older recipes; 0: none
}

// linkHost is the host that a card shows beside its link, or "" unless
// urlProblem accepts the URL: the card then has no link.
func linkHost(link string) string {
	if msg, _ := urlProblem(link); msg != "" {
		return ""
	}
	u, _ := url.Parse(link)
	return strings.TrimPrefix(u.Hostname(), "www.")
}

// handleHome shows the newest recipes, ten to a page, or the recipes that
// ?q= finds. html/template escapes every value for where it stands. A bad
// ?q=, ?before= or ?after= gets a friendly page, never an error page; so
// does a search cut off, but with the API's 503 and Retry-After, so that
// nothing keeps the page as the answer to that search.
func (a *app) handleHome(w http.ResponseWriter, r *http.Request) error {
	query := r.URL.Query()
	read := a.homeNewest
	if query.Get("q") != "" {
		read = a.homeSearch
	}
	page, err := read(r.Context(), query)
	status := http.StatusOK
	if errors.Is(err, errSearchCutOff) {
		a.logger.Warn("search cut off", "request_id", requestID(r), "err", err)
		page.Notice = "That search took too long. Try a longer or more specific word, or try again in a moment."
		status, err = errSearchTooLong.status, nil
		w.Header().Set("Retry-After", strconv.Itoa(int(errSearchTooLong.retryAfter/time.Second)))
	}
	if err != nil {
		return err
	}
	var body bytes.Buffer
	if err := homeTemplate.Execute(&body, page); err != nil {
		return fmt.Errorf("render home page: %w", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", homePolicy)
	w.WriteHeader(status)
	w.Write(body.Bytes())
	return nil
}

// homeSearch finds what the API's search finds for ?q=, with its rules.
func (a *app) homeSearch(ctx context.Context, query url.Values) (homePage, error) {
	keyword := query.Get("q")
	page := homePage{Query: validUTF8(keyword), Searching: true}
	if control, ok := hiddenControl(keyword); ok {
		page.Notice = fmt.Sprintf("A search cannot hold a control character such as a tab or a line break (here U+%04X); "+
			"type it again without one.", control)
		return page, nil
	}
	if utf8.RuneCountInString(keyword) < minKeywordChars {
		page.Notice = fmt.Sprintf("Type at least %d characters to search.", minKeywordChars)
		return page, nil
	}
	found, err := a.store.searchRecipes(ctx, keyword, foundOnHome+1) // one more, to know if there are more
	if err != nil {
		return page, err // with Query and Searching, for a search cut off
	}
	if len(found) > foundOnHome {
		found = found[:foundOnHome]
		page.Notice = fmt.Sprintf("More than %d recipes match; here are the first %d. A longer word finds fewer.", foundOnHome, foundOnHome)
	}
	page.Cards = found
	return page, nil
}

// homeNewest reads a page of the newest recipes: the first, or the one
// that ?before=ID (older than ID) or ?after=ID (newer than ID) asks for.
// Pages are named by ids, so a page costs its own rows however deep, and a
// recipe added meanwhile does not shift it. Anything else (both, neither,
// an id that is not a whole number above 0) shows the first page.
func (a *app) homeNewest(ctx context.Context, query url.Values) (homePage, error) {
	before, after := pageID(query, "before"), pageID(query, "after")
	if before != 0 && after != 0 {
		before, after = 0, 0
	}
	recipes, newer, older, err := a.store.recipePage(ctx, max(before, after), after == 0, newestOnHome)
	if err != nil {
		return homePage{}, err
	}
	page := homePage{Cards: recipes, Paged: before != after}
	if len(recipes) > 0 && newer {
		page.Newer = recipes[0].ID
	}
	if len(recipes) > 0 && older {
		page.Older = recipes[len(recipes)-1].ID
	}
	return page, nil
}

// pageID reads ?name= as a recipe id, a whole number of at least 1; else 0.
func pageID(query url.Values, name string) int64 {
	if id, err := strconv.ParseInt(query.Get(name), 10, 64); err == nil && id > 0 {
		return id
	}
	return 0
}

// The home page's queries. A page takes one more row than it shows, to
// know whether there are more past it, and asks whether any recipe lies
// on the other side of the id it starts from (none is above the newest).
const (
	newestSQL    = "SELECT " + recipeColumns + ", false FROM recipe ORDER BY id DESC LIMIT ?2"
	olderPageSQL = "SELECT " + recipeColumns + ", EXISTS (SELECT 1 FROM recipe WHERE id >= ?1) FROM recipe WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
	newerPageSQL = "SELECT " + recipeColumns + ", EXISTS (SELECT 1 FROM recipe WHERE id <= ?1) FROM recipe WHERE id > ?1 ORDER BY id LIMIT ?2"
)

// recipePage returns, newest first, the up to limit recipes just below id
// (or, unless below, just above it), or the newest if id is 0, and
// whether any recipe is newer, and any older, than them.
func (s *store) recipePage(ctx context.Context, id int64, below bool, limit int) (page []recipe, newer, older bool, err error) {
	query := olderPageSQL
	switch {
	case id == 0:
		query = newestSQL
	case !below:
		query = newerPageSQL
	}
	var beyondID bool
	read := func() ([]recipe, error) {
		rows, err := s.reader.QueryContext(ctx, query, id, limit+1)
		return scanRecipes(rows, err, &beyondID)
	}
	if id == 0 {
		page, err = s.cache.load(cacheKey{read: "newest", n: int64(limit)}, read) // the hot page
	} else {
		page, err = read()
	}
	if err != nil {
		return nil, false, false, wrapErr(err, "recipes from %d", id)
	}
	further := len(page) > limit
	page = page[:min(len(page), limit)]
	if below {
		return page, beyondID, further, nil
	}
	slices.Reverse(page)
	return page, further, beyondID, nil
}
