// recipes.go owns the recipe routes (one by id, creation, the caller's
// own, changes and deletions), the rules of a recipe's fields, and the
// recipes' SQL. Who may change a recipe is decided in one place,
// mayChange, which the store applies in the transaction of the change.
package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// recipe is a recipe as the store keeps it and the API shows it.
type recipe struct {
	Label       string `json:"label"`
	Source      string `json:"source"`
	URL         string `json:"url"`
	ID          int64  `json:"id"`
	SubmitterID int64  `json:"submitter_id"`
}

// results is a list as the API shows it (scanRecipes makes none nil).
func results(recipes []recipe) map[string][]recipe { return map[string][]recipe{"results": recipes} }

func (a *app) handleRecipe(w http.ResponseWriter, r *http.Request) error {
	id, err := recipeIDFromPath(r)
	if err != nil {
		return err
	}
	rec, err := a.store.recipeByID(r.Context(), id)
	if err != nil {
		return recipeError(id, err, nil)
	}
	return writeJSON(w, http.StatusOK, rec)
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

// recipeCreationInterval is how often one more recipe creation comes back
// to an account that has used up its RECIPE_CREATION_BURST.
const recipeCreationInterval = time.Second

// limitRecipeCreations answers 429 past RECIPE_CREATION_BURST creations,
// then past one each recipeCreationInterval, so that one account cannot
// fill the table. Only creations that succeed count; the attempt is
// reserved first and given back on failure, so that concurrent creations
// cannot all pass the check together.
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

// handleCreateRecipe adds a recipe submitted by the caller: the token says
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
	return writeJSON(w, http.StatusCreated, created)
}

// handleMyRecipes lists the caller's recipes past ?skip=, at most ?limit=.
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
	return writeJSON(w, http.StatusOK, results(recipes))
}

// mayChange is the ownership rule: a recipe may be changed or deleted by
// the user who submitted it, and by a superuser.
func mayChange(caller user, rec recipe) bool {
	return rec.SubmitterID == caller.ID || caller.IsSuperuser
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
	f := readRecipeFields(&body)
	if err := body.err(); err != nil {
		return err
	}
	updated, err := a.store.changeRecipe(r.Context(), id, caller,
		"UPDATE recipe SET label = ?, source = ?, url = ? WHERE id = ?", f.Label, f.Source, f.URL, id)
	if err != nil {
		return recipeError(id, err, errUpdateNotOwner)
	}
	return writeJSON(w, http.StatusOK, updated)
}

func (a *app) handleDeleteRecipe(w http.ResponseWriter, r *http.Request, caller user) error {
	id, err := recipeIDFromPath(r)
	if err != nil {
		return err
	}
	if _, err := a.store.changeRecipe(r.Context(), id, caller, "DELETE FROM recipe WHERE id = ?", id); err != nil {
		return recipeError(id, err, errDeleteNotOwner)
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// recipeError is what the client learns of a read or change that failed.
func recipeError(id int64, err, notOwner error) error {
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
	line := func(name string) string {
		text := body.text(name, true)
		if text == nil {
			return ""
		}
		if r, ok := hiddenControl(*text); ok {
			body.add("body", name, fmt.Sprintf("value holds a control or bidirectional control character (U+%04X); "+
				"a label or source is one line of text, without tabs or line breaks", r), "value_error.str.control")
		} else if name == "label" && strings.TrimSpace(*text) == "" {
			body.tooShort("body", "label", 1)
		}
		checkMaxChars(&body.problems, name, *text)
		return *text
	}
	rec := recipe{Label: line("label"), Source: line("source")}
	if link := body.text("url", true); link != nil {
		rec.URL = *link
		if msg, typ := urlProblem(rec.URL); msg != "" {
			body.add("body", "url", msg, typ)
		}
	}
	return rec
}

// hiddenControl returns the first character that no label, source or
// search keyword may hold: a control character (Cc: NUL, tab, newline,
// DEL, C1), at which SQLite would end a query, or a bidirectional control,
// with which a label could show its characters in another order than
// they are stored and searched. Zero-width joiners, no-break spaces and
// variation selectors are ordinary text in a label (unlike a name's).
func hiddenControl(s string) (rune, bool) {
	for _, r := range s {
		if unicode.In(r, unicode.Cc, unicode.Bidi_Control) {
			return r, true
		}
	}
	return 0, false
}

// urlProblem says what keeps link from being a recipe's URL, with its
// error type, or "": an absolute http or https URL with a host, of at most
// 256 characters, with no space or invisible character (invisibleRune),
// which browsers may drop silently, so that a link leads where it reads.
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
// labels of letters (any script), digits, marks, '-' and '_'.
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

// The reference may have left NULL source, url or submitter: "" and 0.
const (
	recipeColumns = "id, label, COALESCE(source, ''), COALESCE(url, ''), COALESCE(submitter_id, 0)"
	recipeByIDSQL = "SELECT " + recipeColumns + " FROM recipe WHERE id = ?"
)

// scanRecipe reads a recipe's columns, then the query's more, if any.
func scanRecipe(row rowScanner, more ...any) (recipe, error) {
	var r recipe
	err := row.Scan(append([]any{&r.ID, &r.Label, &r.Source, &r.URL, &r.SubmitterID}, more...)...)
	if errors.Is(err, sql.ErrNoRows) {
		return recipe{}, errNotFound
	}
	return r, err
}

// scanRecipes reads every recipe of a query that returned rows and err:
// an empty list, not nil, if it found none, so that JSON says [].
func scanRecipes(rows *sql.Rows, err error, more ...any) ([]recipe, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recipes := []recipe{}
	for rows.Next() {
		r, err := scanRecipe(rows, more...)
		if err != nil {
			return nil, err
		}
		recipes = append(recipes, r)
	}
	return recipes, rows.Err()
}

// recipeByID finds a recipe by id; errNotFound if none.
func (s *store) recipeByID(ctx context.Context, id int64) (recipe, error) {
	found, err := s.cache.load(cacheKey{read: "recipe", n: id}, func() ([]recipe, error) {
		r, err := scanRecipe(s.recipeByIDQuery.QueryRowContext(ctx, id))
		return []recipe{r}, err
	})
	if err != nil {
		return recipe{}, wrapErr(err, "recipe %d", id)
	}
	return found[0], nil
}

// createRecipe inserts r and returns it with its new id.
func (s *store) createRecipe(ctx context.Context, r recipe) (created recipe, err error) {
	err = s.writeThenForget(ctx, s.forgetRecipes, func(tx *sql.Tx) (err error) {
		created, err = scanRecipe(tx.QueryRowContext(ctx, "INSERT INTO recipe (label, source, url, submitter_id) VALUES (?, ?, ?, ?) RETURNING "+recipeColumns,
			r.Label, r.Source, r.URL, r.SubmitterID))
		return err
	})
	return created, wrapErr(err, "create recipe")
}

// recipesBySubmitter returns, in id order, the recipes userID submitted,
// passing over the first skip of them and returning at most limit.
func (s *store) recipesBySubmitter(ctx context.Context, userID int64, skip, limit int) ([]recipe, error) {
	recipes, err := scanRecipes(s.reader.QueryContext(ctx,
		"SELECT "+recipeColumns+" FROM recipe WHERE submitter_id = ? ORDER BY id LIMIT ? OFFSET ?", userID, limit, skip))
	return recipes, wrapErr(err, "recipes of user %d", userID)
}

// changeRecipe runs change (an UPDATE or DELETE of recipe id) if
// mayChange lets caller change the recipe as it stands, in one
// transaction: nothing can come between the check and the write (a
// delete, then a new recipe that reuses the id). It returns the recipe as
// change left it.
func (s *store) changeRecipe(ctx context.Context, id int64, caller user, change string, args ...any) (changed recipe, err error) {
	err = s.writeThenForget(ctx, s.forgetRecipes, func(tx *sql.Tx) error {
		current, err := scanRecipe(tx.QueryRowContext(ctx, recipeByIDSQL, id))
		if err == nil && !mayChange(caller, current) {
			err = errNotOwner
		}
		if err == nil {
			changed, err = scanRecipe(tx.QueryRowContext(ctx, change+" RETURNING "+recipeColumns, args...))
		}
		return err
	})
	return changed, wrapErr(err, "change recipe %d", id)
}
