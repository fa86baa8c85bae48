// openapi_test.go checks openapi.json, the document static.go serves:
// that it lists exactly the routes, and that its examples succeed when run
// unchanged against the service.
package main

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// exampleFlow is the order in which a reader of /docs tries the
// operations: sign up with the signup example, Authorize with the login
// example's email and password, add a recipe (in a fresh database it
// gets the id that the update and delete examples name), read, search and
// list it, change and delete it, then refresh, change the password and
// log out. Every documented operation is in it, and nothing else.
var exampleFlow = []string{
	"signup", "login", "read_users_me",
	"create_recipe", "fetch_recipe", "search_recipes", "fetch_user_recipes", "update_recipe", "delete_recipe",
	"refresh_token", "change_password", "logout",
	"root", "healthz",
}

// refreshExamplePlaceholder is the refresh form's example refresh_token. No
// fixed refresh token can work (each is random and single use), so the
// example says where to find one, and this test puts in the refresh token
// that the login example returned, as a reader would.
const refreshExamplePlaceholder = "paste-the-refresh_token-that-login-returned"

// documentedOperation is one method of one path of openapi.json.
type documentedOperation struct {
	method, path string
	op           map[string]any
}

// loadOpenAPI returns openapi.json as the service serves it, decoded.
func loadOpenAPI(t *testing.T, e *testEnv) map[string]any {
	t.Helper()
	resp := e.get("/api/v1/openapi.json")
	expectStatus(t, resp, http.StatusOK)
	return decodeBody[map[string]any](t, resp)
}

// documentedOperations returns every operation of doc by its operationId.
func documentedOperations(t *testing.T, doc map[string]any) map[string]documentedOperation {
	t.Helper()
	ops := map[string]documentedOperation{}
	for path, item := range doc["paths"].(map[string]any) {
		for method, op := range item.(map[string]any) {
			op, ok := op.(map[string]any)
			if !ok {
				continue
			}
			id, _ := op["operationId"].(string)
			if id == "" {
				t.Errorf("%s %s has no operationId", strings.ToUpper(method), path)
				continue
			}
			ops[id] = documentedOperation{strings.ToUpper(method), path, op}
		}
	}
	return ops
}

// resolve follows a local "$ref" ("#/components/parameters/keyword").
func resolve(t *testing.T, doc map[string]any, v any) map[string]any {
	t.Helper()
	m, _ := v.(map[string]any)
	ref, ok := m["$ref"].(string)
	if !ok {
		return m
	}
	var node any = doc
	for _, part := range strings.Split(strings.TrimPrefix(ref, "#/"), "/") {
		node = node.(map[string]any)[part]
	}
	if node == nil {
		t.Fatalf("unresolvable $ref %q", ref)
	}
	return node.(map[string]any)
}

// successStatus is the lowest 2xx status the operation documents.
func successStatus(t *testing.T, id string, op map[string]any) int {
	t.Helper()
	var statuses []int
	for code := range op["responses"].(map[string]any) {
		if n, err := strconv.Atoi(code); err == nil && n >= 200 && n < 300 {
			statuses = append(statuses, n)
		}
	}
	if len(statuses) == 0 {
		t.Fatalf("%s documents no success status", id)
	}
	return slices.Min(statuses)
}

// exampleRequest builds the request that Swagger UI sends for the
// operation with its examples untouched: path and query parameters from
// their example (or default), the body from its media type's example;
// paste is name, value, … of body members a reader pastes in.
func exampleRequest(t *testing.T, doc map[string]any, id string, o documentedOperation, paste ...string) *http.Request {
	t.Helper()
	path := o.path
	query := url.Values{}
	params, _ := o.op["parameters"].([]any)
	for _, p := range params {
		param := resolve(t, doc, p)
		name, _ := param["name"].(string)
		value, ok := param["example"]
		if !ok {
			value, ok = resolve(t, doc, param["schema"])["default"]
		}
		if !ok {
			if required, _ := param["required"].(bool); required {
				t.Errorf("%s: the required parameter %s has no example", id, name)
			}
			continue
		}
		text := fmt.Sprint(value)
		switch param["in"] {
		case "path":
			path = strings.ReplaceAll(path, "{"+name+"}", url.PathEscape(text))
		case "query":
			query.Set(name, text)
		default:
			t.Errorf("%s: parameter %s is in %v; this test sends only path and query parameters", id, name, param["in"])
		}
	}
	target := path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}

	body, ok := o.op["requestBody"].(map[string]any)
	if !ok {
		return newRequest(o.method, target, nil)
	}
	content := body["content"].(map[string]any)
	var types []string
	var first any
	for contentType, media := range content {
		example, ok := media.(map[string]any)["example"]
		if !ok {
			t.Errorf("%s: the %s body has no example, so Swagger UI makes one up from the schema", id, contentType)
			continue
		}
		if first != nil && fmt.Sprint(example) != fmt.Sprint(first) {
			t.Errorf("%s: the body examples differ between content types", id)
		}
		first = example
		types = append(types, contentType)
	}
	sort.Strings(types) // application/json, then the form types
	if len(types) == 0 {
		t.Fatalf("%s: no body example to send", id)
	}
	example := maps.Clone(first.(map[string]any))
	for i := 0; i+1 < len(paste); i += 2 {
		example[paste[i]] = paste[i+1]
	}
	switch contentType := types[0]; contentType {
	case "application/json":
		b, err := json.Marshal(example)
		if err != nil {
			t.Fatal(err)
		}
		return newRequest(o.method, target, strings.NewReader(string(b)), "Content-Type", contentType)
	case "application/x-www-form-urlencoded":
		form := url.Values{}
		for name, value := range example {
			form.Set(name, fmt.Sprint(value))
		}
		return newRequest(o.method, target, strings.NewReader(form.Encode()), "Content-Type", contentType)
	default:
		t.Fatalf("%s: this test cannot send a %s body", id, contentType)
		return nil
	}
}

// tokenPair is the part of a login, refresh or password answer that a
// reader would copy into Authorize or into the refresh form.
type tokenPair struct {
	AccessToken  string `json:"access_token"`
	RefreshToken string `json:"refresh_token"`
}

func TestOpenAPIExamplesSucceedWhenExecutedUnchanged(t *testing.T) {
	t.Run("the flow holds every documented operation and nothing else", func(t *testing.T) {
		ops := documentedOperations(t, loadOpenAPI(t, newTestEnv(t)))
		if got, want := slices.Sorted(maps.Keys(ops)), slices.Sorted(slices.Values(exampleFlow)); !slices.Equal(got, want) {
			t.Errorf("openapi.json documents the operations %q; exampleFlow, where a reader would try them, has %q", got, want)
		}
	})

	t.Run("as the user the signup example creates, signed in with the login example", func(t *testing.T) {
		e := newTestEnv(t)
		doc := loadOpenAPI(t, e)
		ops := documentedOperations(t, doc)
		var tokens tokenPair
		for _, id := range exampleFlow {
			o, ok := ops[id]
			if !ok {
				t.Fatalf("exampleFlow names %s, which openapi.json does not document", id)
			}
			r := exampleRequest(t, doc, id, o)
			if id == "refresh_token" {
				if got := r.FormValue("refresh_token"); got != refreshExamplePlaceholder {
					t.Errorf("the refresh example's refresh_token = %q, want the placeholder %q", got, refreshExamplePlaceholder)
				}
				r = exampleRequest(t, doc, id, o, "refresh_token", tokens.RefreshToken)
			}
			if security, ok := o.op["security"].([]any); ok && len(security) > 0 {
				r.Header.Set("Authorization", "Bearer "+tokens.AccessToken)
			}
			resp := e.serve(r)
			expectStatus(t, resp, successStatus(t, id, o.op))
			switch id {
			case "login", "refresh_token", "change_password":
				// The reader signs in again with what came back, as
				// Authorize would.
				tokens = decodeBody[tokenPair](t, resp)
			case "create_recipe":
				created := recipePath(decodeBody[recipe](t, resp).ID)
				for _, change := range []string{"update_recipe", "delete_recipe"} {
					if named := exampleRequest(t, doc, change, ops[change]).URL.Path; named != created {
						t.Errorf("the create example made %s; the %s example names %s", created, change, named)
					}
				}
			}
		}
	})

	t.Run("as the first superuser, the recipe examples succeed too", func(t *testing.T) {
		e := newTestEnv(t)
		doc := loadOpenAPI(t, e)
		ops := documentedOperations(t, doc)
		token := e.login("admin@recipeapi.com", adminPassword)
		for _, id := range []string{"create_recipe", "fetch_recipe", "fetch_user_recipes", "update_recipe", "delete_recipe"} {
			r := exampleRequest(t, doc, id, ops[id])
			r.Header.Set("Authorization", "Bearer "+token)
			expectStatus(t, e.serve(r), successStatus(t, id, ops[id].op))
		}
	})

	doc := loadOpenAPI(t, newTestEnv(t))
	t.Run("no example carries a submitter_id", func(t *testing.T) {
		content := documentedOperations(t, doc)["create_recipe"].op["requestBody"].(map[string]any)["content"].(map[string]any)
		if len(content) == 0 {
			t.Fatalf("the create operation documents no body")
		}
		for contentType, media := range content {
			if _, ok := media.(map[string]any)["example"].(map[string]any)["submitter_id"]; ok {
				t.Errorf("the create example (%s) has a submitter_id; any value but the reader's own id is a 403", contentType)
			}
		}
	})

	t.Run("every request property with a pattern has an example", func(t *testing.T) {
		// Swagger UI makes up a value from a pattern (a URL such as
		// hTtp://cuthW@vR`!) when a property has no example.
		patterns := 0
		for name, schema := range doc["components"].(map[string]any)["schemas"].(map[string]any) {
			props, _ := schema.(map[string]any)["properties"].(map[string]any)
			for prop, p := range props {
				if _, hasPattern := p.(map[string]any)["pattern"]; hasPattern {
					patterns++
					if _, ok := p.(map[string]any)["example"]; !ok {
						t.Errorf("%s.%s has a pattern but no example", name, prop)
					}
				}
			}
		}
		if patterns == 0 {
			t.Errorf("no property of openapi.json has a pattern; the url of a recipe should")
		}
	})
}

// TestEachValidationExampleNamesAPlaceItsRouteHas checks each operation's
// 422 example against the operation itself: every loc must name a path
// parameter of its path, a query parameter it declares, or a member of
// its request body's schema, so that no route shows an error about a
// body it does not take.
func TestEachValidationExampleNamesAPlaceItsRouteHas(t *testing.T) {
	e := newTestEnv(t)
	doc := loadOpenAPI(t, e)
	checked := 0
	for id, o := range documentedOperations(t, doc) {
		response, ok := o.op["responses"].(map[string]any)["422"]
		if !ok {
			continue
		}
		t.Run(id+"'s 422 example names only places it has", func(t *testing.T) {
			places := placesOf(t, doc, o)
			media, _ := resolve(t, doc, response)["content"].(map[string]any)["application/json"].(map[string]any)
			example, _ := media["example"].(map[string]any)
			detail, _ := example["detail"].([]any)
			if len(detail) == 0 {
				t.Fatalf("%s %s: the 422 has no example with a detail list", o.method, o.path)
			}
			for _, p := range detail {
				loc, _ := p.(map[string]any)["loc"].([]any)
				where := strings.Trim(fmt.Sprint(loc), "[]")
				if len(loc) != 2 || !places[where] {
					t.Errorf("%s %s: the 422 example's loc %v names no place this operation has; it has %v",
						o.method, o.path, loc, slices.Sorted(maps.Keys(places)))
				}
			}
		})
		checked++
	}
	if checked < 10 {
		t.Errorf("checked the 422 examples of %d operations; the document has more", checked)
	}
}

// placesOf returns where a bad value can be in a request to operation o,
// each written as a 422's loc is, "path recipe_id", "query skip" or
// "body label": the parameters in its path's braces, the query
// parameters it declares, and the members of its request body's schema.
func placesOf(t *testing.T, doc map[string]any, o documentedOperation) map[string]bool {
	t.Helper()
	places := map[string]bool{}
	params, _ := o.op["parameters"].([]any)
	for _, p := range params {
		param := resolve(t, doc, p)
		name, _ := param["name"].(string)
		switch param["in"] {
		case "path":
			if strings.Contains(o.path, "{"+name+"}") {
				places["path "+name] = true
			}
		case "query":
			places["query "+name] = true
		}
	}
	body, _ := o.op["requestBody"].(map[string]any)
	content, _ := body["content"].(map[string]any)
	for _, media := range content {
		schema := resolve(t, doc, media.(map[string]any)["schema"])
		for name := range schema["properties"].(map[string]any) {
			places["body "+name] = true
		}
	}
	return places
}

// registeredRoutes lists the patterns of app.routes, after checking each
// on a real ServeMux, which must send a request for it to that very
// pattern.
func registeredRoutes(t *testing.T) []string {
	t.Helper()
	mux := http.NewServeMux()
	var patterns []string
	for _, rt := range (&app{}).routes() { // routes only builds closures, so a zero app will do
		mux.Handle(rt.pattern, rt.handler)
		patterns = append(patterns, rt.pattern)
	}
	sample := strings.NewReplacer("{recipe_id}", "1", "{file}", "index.html", "{$}", "")
	for _, pattern := range patterns {
		method, path, _ := strings.Cut(pattern, " ")
		r := newRequest(method, sample.Replace(path), nil)
		if _, got := mux.Handler(r); got != pattern {
			t.Errorf("%s %s reaches the route %q, want %q", r.Method, r.URL, got, pattern)
		}
	}
	return patterns
}

func TestOpenAPIDocument(t *testing.T) {
	e := newTestEnv(t)
	resp := e.get("/api/v1/openapi.json")
	expectStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("GET /api/v1/openapi.json: Content-Type = %q, want application/json", ct)
	}
	doc := decodeBody[map[string]any](t, resp)
	ops := documentedOperations(t, doc)

	t.Run("it is an OpenAPI 3 document", func(t *testing.T) {
		if version, _ := doc["openapi"].(string); !strings.HasPrefix(version, "3") {
			t.Errorf("GET /api/v1/openapi.json: openapi = %q, want 3.x", version)
		}
	})

	t.Run("it has an OAuth2 password flow whose tokenUrl is the login route", func(t *testing.T) {
		var tokenURLs []any
		for _, scheme := range doc["components"].(map[string]any)["securitySchemes"].(map[string]any) {
			scheme := scheme.(map[string]any)
			if password, ok := resolve(t, doc, scheme["flows"])["password"].(map[string]any); scheme["type"] == "oauth2" && ok {
				tokenURLs = append(tokenURLs, password["tokenUrl"])
			}
		}
		if len(tokenURLs) != 1 || tokenURLs[0] != "/api/v1/auth/login" {
			t.Errorf("GET /api/v1/openapi.json: the OAuth2 password flows have the tokenUrls %v, want one, /api/v1/auth/login", tokenURLs)
		}
	})

	t.Run("the document and the registered routes are in step", func(t *testing.T) {
		// Served as they are, not operations of the API.
		undocumented := []string{"GET /api/v1/openapi.json", "GET /docs", "GET /docs/{file}", "GET /favicon.ico"}
		// The paths without their trailing slash answer as the documented
		// ones do; /docs lists each operation once.
		aliases := map[string]string{
			"GET /api/v1/recipes/search":     "GET /api/v1/recipes/search/",
			"GET /api/v1/recipes/my-recipes": "GET /api/v1/recipes/my-recipes/",
		}
		want := slices.Concat(undocumented, slices.Collect(maps.Keys(aliases)))
		for _, o := range ops {
			want = append(want, o.method+" "+o.path)
		}
		var registered []string
		for _, pattern := range registeredRoutes(t) {
			registered = append(registered, strings.TrimSuffix(pattern, "{$}"))
		}
		if slices.Sort(want); !slices.Equal(slices.Sorted(slices.Values(registered)), want) {
			t.Errorf("the registered routes are\n%q\nwant the documented operations, their aliases and the undocumented routes:\n%q",
				slices.Sorted(slices.Values(registered)), want)
		}
		for alias, documented := range aliases {
			if _, twice := doc["paths"].(map[string]any)[strings.TrimPrefix(alias, "GET ")]; twice {
				t.Errorf("openapi.json documents the alias %s beside %s", alias, documented)
			}
		}
	})

	// Each documented operation is sent with no Authorization header to
	// the real handler: those the document marks with a bearer token must
	// answer 401 Not authenticated, the others must not. So a route that
	// lost requireUser, or gained it, fails here, as registeredRoutes
	// checks only the patterns.
	if len(ops) < 10 {
		t.Fatalf("openapi.json documents only %d operations", len(ops))
	}
	for id, o := range ops {
		security, _ := o.op["security"].([]any)
		guarded := len(security) > 0
		t.Run(fmt.Sprintf("%s (%s %s) without a token is a 401: %v", id, o.method, o.path, guarded), func(t *testing.T) {
			target := strings.ReplaceAll(o.path, "{recipe_id}", "1")
			resp := e.send(o.method, target, strings.NewReader("{}"), "Content-Type", "application/json")
			if guarded {
				expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
			} else if resp.StatusCode == http.StatusUnauthorized {
				t.Errorf("%s %s without a token = 401, but the document says it needs none", o.method, o.path)
			}
		})
	}
}
