// recipes.go owns the recipe routes: one recipe by id, search, creation by
// a signed-in user, the caller's own recipes, changes and deletions by
// their owner, and the HTML home page: the newest recipes, ten to a page,
// and a search.
//
// Who may change a recipe is decided in one place, mayChange, which the
// store applies to every change or deletion of a recipe.
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
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"
)

// recipeView is a recipe as the API shows it.
type recipeView struct {
	Label       string `json:"label"`
	Source      string `json:"source"`
	URL         string `json:"url"`
	ID          int64  `json:"id"`
	SubmitterID int64  `json:"submitter_id"`
}

func viewRecipe(r recipe) recipeView {
	return recipeView{Label: r.Label, Source: r.Source, URL: r.URL, ID: r.ID, SubmitterID: r.SubmitterID}
}

func viewRecipes(recipes []recipe) map[string][]recipeView {
	views := make([]recipeView, len(recipes))
	for i, r := range recipes {
		views[i] = viewRecipe(r)
	}
	return map[string][]recipeView{"results": views}
}

func (a *app) handleRecipe(w http.ResponseWriter, r *http.Request) error {
	id, err := recipeIDFromPath(r)
	if err != nil {
		return err
	}
	rec, err := a.store.recipeByID(r.Context(), id)
	if errors.Is(err, errNotFound) {
		return errRecipeNotFound(id)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewRecipe(rec))
}

// recipeIDFromPath reads the {recipe_id} of the path; anything but an
// integer is a 422, as FastAPI answers it.
func recipeIDFromPath(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("recipe_id"), 10, 64)
	var path problems
	if err != nil {
		path.notInteger("path", "recipe_id")
	}
	return id, path.err()
}

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

// intParam reads the optional integer query parameter name, fallback if
// absent, and records a problem unless it lies in low…high.
func intParam(query url.Values, name string, fallback, low, high int, p *problems) int {
	if !query.Has(name) {
		return fallback
	}
	n, err := strconv.Atoi(query.Get(name))
	switch {
	case err != nil:
		p.notInteger("query", name)
	case n < low && high == math.MaxInt:
		p.add("query", name, fmt.Sprintf("ensure this value is greater than or equal to %d", low), "value_error.number.not_ge")
	case n < low || n > high:
		p.add("query", name, fmt.Sprintf("ensure this value is from %d to %d", low, high), "value_error.number.not_in_range")
	default:
		return n
	}
	return fallback
}

// A search keyword that holds a character no label may hold (hiddenControl:
// a NUL, a tab, a bidirectional override, ...) is refused, by the API's
// search and the home page's alike, not searched for: SQLite would end the
// query at a NUL, so the search would silently be for a shorter keyword.

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

// recipeCreationInterval is how often one more recipe creation comes back
// to an account that has used up its RECIPE_CREATION_BURST.
const recipeCreationInterval = time.Second

// limitRecipeCreations answers 429 to a user who has created
// RECIPE_CREATION_BURST recipes at once, and then to one who goes on
// faster than one each recipeCreationInterval: a person typing, or an
// import script of a few hundred recipes, never meets it, and one account
// cannot fill the table. Only creations that succeed count, so a 422 or a
// 403 costs nothing. The attempt is reserved before the creation and given
// back if it fails, rather than checked first and spent after success, so
// that concurrent creations of one account cannot all pass the check
// together and outrun the limit. See rateLimiter.reserve.
func (a *app) limitRecipeCreations(next func(w http.ResponseWriter, r *http.Request, caller user) error) func(w http.ResponseWriter, r *http.Request, caller user) error {
	if a.recipeLimiter == nil {
		return next
	}
	return func(w http.ResponseWriter, r *http.Request, caller user) error {
		settle, wait, err := a.recipeLimiter.reserve(r.Context(), strconv.FormatInt(caller.ID, 10))
		if err != nil {
			return err
		}
		if settle == nil {
			return errTooManyRecipes.retryIn(wait)
		}
		created := false
		defer func() { settle(created) }() // a panic below gives it back too
		err = next(w, r, caller)
		created = err == nil
		return err
	}
}

// handleCreateRecipe adds a recipe submitted by the caller. The reference
// took submitter_id from the body and needed no token; here the token says
// who submits, and a submitter_id naming anyone else is refused.
func (a *app) handleCreateRecipe(w http.ResponseWriter, r *http.Request, caller user) error {
	body, err := decodeJSONObject(r)
	if err != nil {
		return err
	}
	fields := readRecipeFields(&body)
	submitterID := body.integer("submitter_id")
	if err := body.err(); err != nil {
		return err
	}
	if submitterID != nil && *submitterID != caller.ID {
		return errSubmitAsOther
	}
	fields.SubmitterID = caller.ID
	created, err := a.store.createRecipe(r.Context(), fields)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, viewRecipe(created))
}

// handleMyRecipes lists the caller's recipes a page at a time, as the
// tutorial's CRUDBase.get_multi(skip=0, limit=100) does: ?skip= recipes
// are passed over, then at most ?limit= (1 to 100) are answered.
func (a *app) handleMyRecipes(w http.ResponseWriter, r *http.Request, caller user) error {
	query := r.URL.Query()
	var bad problems
	skip := intParam(query, "skip", 0, 0, math.MaxInt, &bad)
	limit := intParam(query, "limit", maxListLength, 1, maxListLength, &bad)
	if err := bad.err(); err != nil {
		return err
	}
	recipes, err := a.store.recipesBySubmitter(r.Context(), caller.ID, skip, limit)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, viewRecipes(recipes))
}

// mayChange is the ownership rule, and the only place it is written: a
// recipe may be changed or deleted by the user who submitted it, and by a
// superuser. The store applies it to the recipe as it stands, in the same
// transaction as the change (store.changeRecipe), and answers errNotOwner
// when it says no.
func mayChange(caller user) func(recipe) bool {
	return func(rec recipe) bool { return rec.SubmitterID == caller.ID || caller.IsSuperuser }
}

func (a *app) handleUpdateRecipe(w http.ResponseWriter, r *http.Request, caller user) error {
	id, err := recipeIDFromPath(r)
	if err != nil {
		return err
	}
	body, err := decodeJSONObject(r)
	if err != nil {
		return err
	}
	fields := readRecipeFields(&body)
	if err := body.err(); err != nil {
		return err
	}
	fields.ID = id
	updated, err := a.store.updateRecipe(r.Context(), fields, mayChange(caller))
	if err != nil {
		return recipeChangeError(id, err, errUpdateNotOwner)
	}
	return writeJSON(w, http.StatusOK, viewRecipe(updated))
}

func (a *app) handleDeleteRecipe(w http.ResponseWriter, r *http.Request, caller user) error {
	id, err := recipeIDFromPath(r)
	if err != nil {
		return err
	}
	if err := a.store.deleteRecipe(r.Context(), id, mayChange(caller)); err != nil {
		return recipeChangeError(id, err, errDeleteNotOwner)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// recipeChangeError is what the client learns of a change to recipe id
// that failed with err: a 404 if there is no such recipe, notOwner if
// mayChange refused it.
func recipeChangeError(id int64, err, notOwner error) error {
	switch {
	case errors.Is(err, errNotFound):
		return errRecipeNotFound(id)
	case errors.Is(err, errNotOwner):
		return notOwner
	}
	return err
}

// readRecipeFields reads and checks the label, source and url of a recipe
// body, recording a problem for each bad one.
func readRecipeFields(body *jsonFields) recipe {
	var rec recipe
	if label := body.text("label", true); label != nil {
		rec.Label = *label
		if r, ok := hiddenControl(rec.Label); ok {
			body.add("body", "label", hiddenControlMessage(r), "value_error.str.control")
		} else if strings.TrimSpace(rec.Label) == "" {
			body.tooShort("body", "label", 1)
		}
		checkMaxChars(&body.problems, "label", rec.Label)
	}
	if source := body.text("source", true); source != nil {
		rec.Source = *source
		if r, ok := hiddenControl(rec.Source); ok {
			body.add("body", "source", hiddenControlMessage(r), "value_error.str.control")
		}
		checkMaxChars(&body.problems, "source", rec.Source)
	}
	if link := body.text("url", true); link != nil {
		rec.URL = *link
		if msg, typ := urlProblem(rec.URL); msg != "" {
			body.add("body", "url", msg, typ)
		}
	}
	return rec
}

// hiddenControl returns the first character of a label or source that
// does not belong in one line of text shown to readers: a control
// character (Unicode category Cc: NUL, BEL, tab, newline, DEL,
// U+0080–U+009F), or a bidirectional control (Unicode's Bidi_Control:
// U+061C, U+200E, U+200F, the embeddings and overrides U+202A–U+202E and
// the isolates U+2066–U+2069), with which a label could show its
// characters in another order than they are stored and searched.
// Labels and sources are freer than names (invisibleRune): a zero-width
// joiner inside an emoji sequence, a no-break space or a variation
// selector is ordinary text in a recipe's label.
func hiddenControl(s string) (rune, bool) {
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Bidi_Control) {
			return r, true
		}
	}
	return 0, false
}

func hiddenControlMessage(r rune) string {
	return fmt.Sprintf("value holds a control or bidirectional control character (U+%04X); "+
		"a label or source is one line of text, without tabs or line breaks", r)
}

// urlProblem says what keeps link from being a recipe's URL, with its
// error type, or returns "" if nothing does. A recipe's URL is an absolute
// http or https URL with a host, the only links the home page will show,
// of at most 256 characters, with no space, control, format or other
// invisible character anywhere (invisibleRune): browsers drop some of them
// silently, so a link could lead elsewhere than it reads.
func urlProblem(link string) (msg, typ string) {
	if utf8.RuneCountInString(link) > maxTextChars {
		return tooLongText(maxTextChars), "value_error.any_str.max_length"
	}
	r, hidden := invisibleRune(link)
	if strings.Contains(link, " ") {
		r, hidden = ' ', true
	}
	if hidden {
		return fmt.Sprintf("URL holds a space or a control, format or invisible character (U+%04X)", r), "value_error.url.characters"
	}
	u, err := url.Parse(link)
	switch {
	case link == "" || (err == nil && u.Scheme == ""):
		return "URL has no scheme: want an absolute URL that starts with http:// or https://", "value_error.url.scheme"
	case err != nil:
		return "not a valid URL: want an absolute http or https URL such as https://example.com/soup", "value_error.url"
	case u.Scheme != "http" && u.Scheme != "https":
		return fmt.Sprintf("URL scheme %q is not allowed: want http or https", u.Scheme), "value_error.url.scheme"
	case u.Host == "" || u.Hostname() == "":
		return "URL has no host: want one such as https://example.com/soup", "value_error.url.host"
	case !isHostName(u.Hostname()):
		return fmt.Sprintf("URL host %q is not a host name or an IP address", u.Hostname()), "value_error.url.host"
	}
	return "", ""
}

// isHostName reports whether host is an IP address, or dot-separated
// labels of letters (in any script, for internationalized names), digits,
// marks, '-' and '_', with an optional final dot.
func isHostName(host string) bool {
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	for label := range strings.SplitSeq(strings.TrimSuffix(host, "."), ".") {
		if label == "" {
			return false
		}
		for _, r := range label {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) && r != '-' && r != '_' {
				return false
			}
		}
	}
	return true
}

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
