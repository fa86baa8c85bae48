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
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
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
// ?q= finds. html/template escapes every value for where it stands, and
// only http and https URLs become links. A bad ?q=, ?before= or ?after=
// gets a friendly page, never an error page; so does a search that is cut
// off, but with the API's 503 and Retry-After, so that nothing keeps the
// page as the answer to that search.
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
	body, err := a.lastHomePage.render(page)
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Content-Security-Policy", homePolicy)
	w.WriteHeader(status)
	w.Write(body)
	return nil
}

// renderedPage keeps the last home page rendered. Rendering is most of the
// cost of GET /, and the first page, the one asked for most, changes only
// when a recipe does: the same homePage renders to the same bytes. It
// holds one page (at most foundOnHome cards, a few KB), never more.
type renderedPage struct {
	mu   sync.Mutex
	page homePage
	body []byte // shared: never written to once kept
}

func (p *renderedPage) render(page homePage) ([]byte, error) {
	p.mu.Lock()
	same := p.body != nil && reflect.DeepEqual(page, p.page)
	body := p.body
	p.mu.Unlock()
	if same {
		return body, nil
	}
	var rendered bytes.Buffer
	if err := homeTemplate.Execute(&rendered, page); err != nil {
		return nil, fmt.Errorf("render home page: %w", err)
	}
	p.mu.Lock()
	p.page, p.body = page, rendered.Bytes()
	p.mu.Unlock()
	return rendered.Bytes(), nil
}

// homeSearch finds what the API's search finds for keyword, with its
// rules: no control character, at least minKeywordChars characters, and
// a keyword longer than any label can be finds nothing. A search that is
// cut off returns the page with a notice that says so, and
// errSearchCutOff, for handleHome to answer 503.
func (a *app) homeSearch(ctx context.Context, keyword string) (homePage, error) {
	// Shown back as sent, less any bytes that are not UTF-8, which the
	// page, declared UTF-8, cannot hold.
	page := homePage{Query: strings.ToValidUTF8(keyword, "\uFFFD"), Searching: true}
	if control, ok := hiddenControl(keyword); ok {
		page.Notice = fmt.Sprintf("A search cannot hold a control character such as a tab or a line break (here U+%04X); "+
			"type it again without one.", control)
		return page, nil
	}
	switch n := utf8.RuneCountInString(keyword); {
	case n < minKeywordChars:
		page.Notice = fmt.Sprintf("Type at least %d characters to search.", minKeywordChars)
		return page, nil
	case n > maxKeywordChars:
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
// The links name ids, not page numbers, so a page costs its own rows
// however deep it is, and a recipe added meanwhile does not shift it. A
// missing or unreadable value, or both ?before= and ?after=, shows the
// first page.
func (a *app) homeNewest(ctx context.Context, query url.Values) (homePage, error) {
	before, hasBefore := pageID(query, "before")
	after, hasAfter := pageID(query, "after")
	if hasBefore == hasAfter {
		// The first page, the hot one, comes from the cache; one more
		// than shown says whether there are older ones.
		recipes, err := a.store.newestRecipes(ctx, newestOnHome+1)
		if err != nil {
			return homePage{}, err
		}
		var page homePage
		if len(recipes) > newestOnHome {
			recipes = recipes[:newestOnHome]
			page.Older = recipes[newestOnHome-1].ID
		}
		page.Cards = homeCards(recipes)
		return page, nil
	}
	var recipes []recipe
	var err error
	if hasBefore {
		recipes, err = a.store.olderRecipes(ctx, before, newestOnHome)
	} else {
		recipes, err = a.store.newerRecipes(ctx, after, newestOnHome)
	}
	if err != nil {
		return homePage{}, err
	}
	page := homePage{Paged: true, Cards: homeCards(recipes)}
	if len(recipes) == 0 {
		return page, nil
	}
	newest, oldest := recipes[0].ID, recipes[len(recipes)-1].ID
	if newer, err := a.store.newerRecipes(ctx, newest, 1); err != nil {
		return homePage{}, err
	} else if len(newer) > 0 {
		page.Newer = newest
	}
	if older, err := a.store.olderRecipes(ctx, oldest, 1); err != nil {
		return homePage{}, err
	} else if len(older) > 0 {
		page.Older = oldest
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

// newestRecipes returns up to limit recipes, newest (highest id) first.
func (s *store) newestRecipes(ctx context.Context, limit int) ([]recipe, error) {
	return cached(&s.newest, limit, func() ([]recipe, error) {
		recipes, err := scanRecipes(s.newestQuery.QueryContext(ctx, limit))
		return recipes, wrapErr(err, "newest recipes")
	})
}

// olderRecipes returns up to limit recipes with an id below id, newest
// first: a page of the home page after the one that ended at id. The
// primary key orders them, so a page costs its own rows, however deep.
func (s *store) olderRecipes(ctx context.Context, id int64, limit int) ([]recipe, error) {
	recipes, err := scanRecipes(s.reader.QueryContext(ctx,
		"SELECT "+recipeColumns+" FROM recipe WHERE id < ? ORDER BY id DESC LIMIT ?", id, limit))
	return recipes, wrapErr(err, "recipes older than %d", id)
}

// newerRecipes returns the up to limit recipes with an id just above id,
// newest first: a page of the home page before the one that began at id.
func (s *store) newerRecipes(ctx context.Context, id int64, limit int) ([]recipe, error) {
	recipes, err := scanRecipes(s.reader.QueryContext(ctx,
		"SELECT "+recipeColumns+" FROM recipe WHERE id > ? ORDER BY id LIMIT ?", id, limit))
	slices.Reverse(recipes)
	return recipes, wrapErr(err, "recipes newer than %d", id)
}
