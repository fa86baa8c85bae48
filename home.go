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

var homeTemplate = template.Must(template.New("home").Parse(homeHTML))

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
	Cards     []homeCard
	Paged     bool  // a page other than the newest
	Newer     int64 // the first id of this page, for the link to newer recipes; 0: none
	Older     int64 // the last id of this page, for the link to older recipes; 0: none
}

// homeCard is one recipe on the home page.
type homeCard struct {
	Label, Source string
	URL, Host     string // both "" unless urlProblem accepts the URL: the card then has no link
}

func homeCards(recipes []recipe) []homeCard {
	cards := make([]homeCard, len(recipes))
	for i, r := range recipes {
		cards[i] = homeCard{Label: r.Label, Source: r.Source}
		if msg, _ := urlProblem(r.URL); msg == "" {
			u, _ := url.Parse(r.URL)
			cards[i].URL, cards[i].Host = r.URL, strings.TrimPrefix(u.Hostname(), "www.")
		}
	}
	return cards
}

// handleHome shows the newest recipes, ten to a page, or the recipes that
// ?q= finds. html/template escapes every value for where it stands. A bad
// ?q=, ?before= or ?after= gets a friendly page, never an error page; so
// does a search cut off, but with the API's 503 and Retry-After, so that
// nothing keeps the page as the answer to that search.
func (a *app) handleHome(w http.ResponseWriter, r *http.Request) error {
	query := r.URL.Query()
	var page homePage
	var err error
	status := http.StatusOK
	if keyword := query.Get("q"); keyword != "" {
		page, err = a.homeSearch(r.Context(), keyword)
	} else {
		page, err = a.homeNewest(r.Context(), query)
	}
	if errors.Is(err, errSearchCutOff) {
		a.logger.Warn("search cut off", "request_id", requestID(r), "err", err)
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

// homeSearch finds what the API's search finds for keyword, with its
// rules; a search cut off returns a notice and errSearchCutOff.
func (a *app) homeSearch(ctx context.Context, keyword string) (homePage, error) {
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
	// One more than shown, to know whether there are more.
	found, err := a.store.searchRecipes(ctx, keyword, foundOnHome+1)
	if errors.Is(err, errSearchCutOff) {
		page.Notice = "That search took too long. Try a longer or more specific word, or try again in a moment."
		return page, err
	}
	if err != nil {
		return homePage{}, err
	}
	if len(found) > foundOnHome {
		found = found[:foundOnHome]
		page.Notice = fmt.Sprintf("More than %d recipes match; here are the first %d. A longer word finds fewer.", foundOnHome, foundOnHome)
	}
	page.Cards = homeCards(found)
	return page, nil
}

// homeNewest reads a page of the newest recipes: the first, or the one
// that ?before=ID (older than ID) or ?after=ID (newer than ID) asks for.
// Pages are named by ids, so a page costs its own rows however deep, and a
// recipe added meanwhile does not shift it. Anything else (both, neither,
// an id that is not a whole number above 0) shows the first page.
func (a *app) homeNewest(ctx context.Context, query url.Values) (page homePage, err error) {
	before, hasBefore := pageID(query, "before")
	after, hasAfter := pageID(query, "after")
	var recipes []recipe
	var newer, older bool
	if hasBefore == hasAfter {
		recipes, err = a.store.newestRecipes(ctx, newestOnHome+1) // the hot page, cached
		older = len(recipes) > newestOnHome
		recipes = recipes[:min(len(recipes), newestOnHome)]
	} else {
		page.Paged = true
		recipes, newer, older, err = a.store.recipePage(ctx, max(before, after), hasBefore, newestOnHome)
	}
	if err != nil {
		return homePage{}, err
	}
	page.Cards = homeCards(recipes)
	if len(recipes) > 0 && newer {
		page.Newer = recipes[0].ID
	}
	if len(recipes) > 0 && older {
		page.Older = recipes[len(recipes)-1].ID
	}
	return page, nil
}

// pageID reads ?name= as a recipe id: a whole number of at least 1.
func pageID(query url.Values, name string) (int64, bool) {
	if !query.Has(name) {
		return 0, false
	}
	id, err := strconv.ParseInt(query.Get(name), 10, 64)
	return id, err == nil && id > 0
}

// The home page's queries. A page takes one more row than it shows, to
// know whether there are more past it, and asks whether any recipe lies
// on the other side of the id it starts from.
const (
	newestSQL    = "SELECT " + recipeColumns + " FROM recipe ORDER BY id DESC LIMIT ?"
	olderPageSQL = "SELECT " + recipeColumns + ", EXISTS (SELECT 1 FROM recipe WHERE id >= ?1) FROM recipe WHERE id < ?1 ORDER BY id DESC LIMIT ?2"
	newerPageSQL = "SELECT " + recipeColumns + ", EXISTS (SELECT 1 FROM recipe WHERE id <= ?1) FROM recipe WHERE id > ?1 ORDER BY id LIMIT ?2"
)

// newestRecipes returns up to limit recipes, newest (highest id) first.
func (s *store) newestRecipes(ctx context.Context, limit int) ([]recipe, error) {
	return s.cache.load(cacheKey{read: "newest", n: int64(limit)}, func() ([]recipe, error) {
		recipes, err := scanRecipes(s.newestQuery.QueryContext(ctx, limit))
		return recipes, wrapErr(err, "newest recipes")
	})
}

// recipePage returns, newest first, the up to limit recipes just below id
// (or, unless below, just above it), and whether any recipe is newer, and
// any older, than them.
func (s *store) recipePage(ctx context.Context, id int64, below bool, limit int) (page []recipe, newer, older bool, err error) {
	query := olderPageSQL
	if !below {
		query = newerPageSQL
	}
	var beyondID bool
	rows, err := s.reader.QueryContext(ctx, query, id, limit+1)
	page, err = scanRecipes(rows, err, &beyondID)
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
