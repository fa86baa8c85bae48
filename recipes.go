// recipes.go owns the recipe routes: one recipe by id, search, creation by
// a signed-in user, the caller's own recipes, changes and deletions by
// their owner, and the HTML home page that lists the newest recipes.
//
// Who may change a recipe is decided in one place, mayChange, which the
// store applies to every change or deletion of a recipe.
package main

import (
	"bytes"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
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

func (a *app) handleRecipe() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		id, err := recipeIDFromPath(r)
		if err != nil {
			return err
		}
		rec, err := a.store.recipeByID(r.Context(), id)
		if err != nil {
			return recipeNotFound(id, err)
		}
		return writeJSON(w, http.StatusOK, viewRecipe(rec))
	})
}

// recipeIDFromPath reads the {recipe_id} of the path; anything but an
// integer is a 422, as FastAPI answers it.
func recipeIDFromPath(r *http.Request) (int64, error) {
	id, err := strconv.ParseInt(r.PathValue("recipe_id"), 10, 64)
	if err != nil {
		return 0, &validationError{problems: []problem{{
			Loc: []string{"path", "recipe_id"}, Msg: "value is not a valid integer", Type: "type_error.integer",
		}}}
	}
	return id, nil
}

// recipeNotFound turns errNotFound for recipe id into the client's 404.
func recipeNotFound(id int64, err error) error {
	if errors.Is(err, errNotFound) {
		return &apiError{status: http.StatusNotFound, detail: fmt.Sprintf("Recipe with ID %d not found", id)}
	}
	return err
}

const (
	minKeywordChars   = 3
	defaultMaxResults = 10
	maxMaxResults     = 100
)

// handleSearch finds recipes whose label contains ?keyword= (ignoring
// case), in id order, at most ?max_results= of them. Unlike the reference
// it searches the whole table, not only its first max_results rows.
func (a *app) handleSearch() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		query := r.URL.Query()
		var problems []problem
		keyword := query.Get("keyword")
		if query.Has("keyword") && utf8.RuneCountInString(keyword) < minKeywordChars {
			problems = append(problems, problem{Loc: []string{"query", "keyword"},
				Msg:  fmt.Sprintf("ensure this value has at least %d characters", minKeywordChars),
				Type: "value_error.any_str.min_length"})
		}
		maxResults := defaultMaxResults
		if query.Has("max_results") {
			n, err := strconv.Atoi(query.Get("max_results"))
			switch {
			case err != nil:
				problems = append(problems, problem{Loc: []string{"query", "max_results"},
					Msg: "value is not a valid integer", Type: "type_error.integer"})
			case n < 1 || n > maxMaxResults:
				problems = append(problems, problem{Loc: []string{"query", "max_results"},
					Msg:  fmt.Sprintf("ensure this value is from 1 to %d", maxMaxResults),
					Type: "value_error.number.not_in_range"})
			default:
				maxResults = n
			}
		}
		if len(problems) > 0 {
			return &validationError{problems: problems}
		}

		recipes, err := a.store.searchRecipes(r.Context(), keyword, maxResults)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, viewRecipes(recipes))
	})
}

// handleCreateRecipe adds a recipe submitted by the caller. The reference
// took submitter_id from the body and needed no token; here the token says
// who submits, and a submitter_id naming anyone else is refused.
func (a *app) handleCreateRecipe() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		caller := currentUser(r)
		body, err := decodeJSONObject(w, r)
		if err != nil {
			return err
		}
		fields := readRecipeFields(&body)
		submitterID := body.integer("submitter_id")
		if err := body.err(); err != nil {
			return err
		}
		if submitterID != nil && *submitterID != caller.ID {
			return &apiError{status: http.StatusForbidden, detail: "You can only submit recipes as yourself"}
		}

		fields.SubmitterID = caller.ID
		created, err := a.store.createRecipe(r.Context(), fields)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, viewRecipe(created))
	})
}

func (a *app) handleMyRecipes() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		recipes, err := a.store.recipesBySubmitter(r.Context(), currentUser(r).ID)
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusOK, viewRecipes(recipes))
	})
}

// mayChange is the ownership rule, and the only place it is written: a
// recipe may be changed or deleted by the user who submitted it, and by a
// superuser. The store applies it to the recipe as it stands, in the same
// transaction as the change (store.changeRecipe); forbidden is the 403's
// detail.
func mayChange(caller user, forbidden string) func(recipe) error {
	return func(rec recipe) error {
		if rec.SubmitterID != caller.ID && !caller.IsSuperuser {
			return &apiError{status: http.StatusForbidden, detail: forbidden}
		}
		return nil
	}
}

func (a *app) handleUpdateRecipe() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		id, err := recipeIDFromPath(r)
		if err != nil {
			return err
		}
		body, err := decodeJSONObject(w, r)
		if err != nil {
			return err
		}
		fields := readRecipeFields(&body)
		if err := body.err(); err != nil {
			return err
		}
		fields.ID = id
		updated, err := a.store.updateRecipe(r.Context(), fields, mayChange(currentUser(r), "You can only update your recipes"))
		if err != nil {
			return recipeNotFound(id, err)
		}
		return writeJSON(w, http.StatusOK, viewRecipe(updated))
	})
}

func (a *app) handleDeleteRecipe() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		id, err := recipeIDFromPath(r)
		if err != nil {
			return err
		}
		if err := a.store.deleteRecipe(r.Context(), id, mayChange(currentUser(r), "You can only delete your recipes")); err != nil {
			return recipeNotFound(id, err)
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	})
}

// readRecipeFields reads and checks the label, source and url of a recipe
// body, recording a problem for each bad one.
func readRecipeFields(body *jsonFields) recipe {
	var rec recipe
	if label := body.text("label", true); label != nil {
		rec.Label = *label
		body.check(strings.TrimSpace(rec.Label) != "", "label",
			"ensure this value has at least 1 characters", "value_error.any_str.min_length")
		checkMaxChars(body, "label", label)
	}
	if source := body.text("source", true); source != nil {
		rec.Source = *source
		checkMaxChars(body, "source", source)
	}
	if link := body.text("url", true); link != nil {
		rec.URL = *link
		if msg, typ := urlProblem(rec.URL); msg != "" {
			body.fail("url", msg, typ)
		}
	}
	return rec
}

// urlProblem says what keeps link from being a recipe's URL, with its
// error type, or returns "" if nothing does. A recipe's URL is an absolute
// http or https URL with a host, the only links the home page will show,
// of at most 256 characters, with no space, control, format or other
// invisible character anywhere (invisibleRune): browsers drop some of them
// silently, so a link could lead elsewhere than it reads.
func urlProblem(link string) (msg, typ string) {
	if utf8.RuneCountInString(link) > maxTextChars {
		return fmt.Sprintf("ensure this value has at most %d characters", maxTextChars), "value_error.any_str.max_length"
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

const newestOnHome = 10

//go:embed home.html
var homeHTML string

var homeTemplate = template.Must(template.New("home").Parse(homeHTML))

// homePolicy allows the page's one inline stylesheet, by its hash, and
// nothing else: no script, no image, nothing from another site.
var homePolicy = "default-src 'none'; style-src '" + inlineStyleHash(homeHTML) + "'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inlineStyleHash is the CSP source for the <style> element in page.
func inlineStyleHash(page string) string {
	_, rest, _ := strings.Cut(page, "<style>")
	css, _, _ := strings.Cut(rest, "</style>")
	sum := sha256.Sum256([]byte(css))
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

// handleHome shows the newest recipes. html/template escapes every value
// for where it stands, and refuses a link that is not http(s).
func (a *app) handleHome() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		recipes, err := a.store.newestRecipes(r.Context(), newestOnHome)
		if err != nil {
			return err
		}
		var page bytes.Buffer
		if err := homeTemplate.Execute(&page, recipes); err != nil {
			return fmt.Errorf("render home page: %w", err)
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Content-Security-Policy", homePolicy)
		w.Write(page.Bytes())
		return nil
	})
}
