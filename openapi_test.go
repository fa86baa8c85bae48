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
// example's email and password, add a recipe (it gets id 4 in a fresh
// database), read, search and list it, change and delete it (the update
// and delete examples name id 4), then refresh, change the password and
// log out. Every documented operation must be in it.
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
// their example (or default), the body from its media type's example.
func exampleRequest(t *testing.T, doc map[string]any, id string, o documentedOperation) *http.Request {
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
	example := first.(map[string]any)
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
	t.Run("every documented operation is in the flow", func(t *testing.T) {
		e := newTestEnv(t)
		for id := range documentedOperations(t, loadOpenAPI(t, e)) {
			if !slices.Contains(exampleFlow, id) {
				t.Errorf("operation %s is not in exampleFlow; add it where a reader would try it", id)
			}
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
				t.Errorf("exampleFlow names %s, which openapi.json does not document", id)
				continue
			}
			r := exampleRequest(t, doc, id, o)
			if id == "refresh_token" {
				r = withRefreshToken(t, doc, o, tokens.RefreshToken)
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
				if got := decodeBody[recipe](t, resp); got.ID != 4 {
					t.Errorf("the create example made recipe %d; the update and delete examples name 4", got.ID)
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
			o := ops[id]
			r := exampleRequest(t, doc, id, o)
			r.Header.Set("Authorization", "Bearer "+token)
			expectStatus(t, e.serve(r), successStatus(t, id, o.op))
		}
	})

	t.Run("no example carries a submitter_id", func(t *testing.T) {
		e := newTestEnv(t)
		doc := loadOpenAPI(t, e)
		o := documentedOperations(t, doc)["create_recipe"]
		for contentType, media := range o.op["requestBody"].(map[string]any)["content"].(map[string]any) {
			if _, ok := media.(map[string]any)["example"].(map[string]any)["submitter_id"]; ok {
				t.Errorf("the create example (%s) has a submitter_id; any value but the reader's own id is a 403", contentType)
			}
		}
	})

	t.Run("every request property with a pattern has an example", func(t *testing.T) {
		// Swagger UI makes up a value from a pattern (a URL such as
		// hTtp://cuthW@vR`!) when a property has no example.
		e := newTestEnv(t)
		doc := loadOpenAPI(t, e)
		schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
		for name, schema := range schemas {
			props, _ := schema.(map[string]any)["properties"].(map[string]any)
			for prop, p := range props {
				p := p.(map[string]any)
				if _, hasPattern := p["pattern"]; hasPattern {
					if _, ok := p["example"]; !ok {
						t.Errorf("%s.%s has a pattern but no example", name, prop)
					}
				}
			}
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

// withRefreshToken is the refresh example's request with the refresh token
// a reader would paste in place of the placeholder.
func withRefreshToken(t *testing.T, doc map[string]any, o documentedOperation, refreshToken string) *http.Request {
	t.Helper()
	media := o.op["requestBody"].(map[string]any)["content"].(map[string]any)["application/x-www-form-urlencoded"].(map[string]any)
	example := media["example"].(map[string]any)
	if example["refresh_token"] != refreshExamplePlaceholder {
		t.Errorf("the refresh example's refresh_token = %v, want the placeholder %q", example["refresh_token"], refreshExamplePlaceholder)
	}
	form := url.Values{}
	for name, value := range example {
		form.Set(name, fmt.Sprint(value))
	}
	form.Set("refresh_token", refreshToken)
	return newRequest(o.method, o.path, strings.NewReader(form.Encode()), "Content-Type", "application/x-www-form-urlencoded")
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
	var doc struct {
		OpenAPI    string                                `json:"openapi"`
		Paths      map[string]map[string]json.RawMessage `json:"paths"`
		Components struct {
			SecuritySchemes map[string]struct {
				Type  string `json:"type"`
				Flows struct {
					Password *struct {
						TokenURL string `json:"tokenUrl"`
					} `json:"password"`
				} `json:"flows"`
			} `json:"securitySchemes"`
		} `json:"components"`
	}
	body := readBody(t, resp)
	if err := json.Unmarshal([]byte(body), &doc); err != nil {
		t.Fatalf("GET /api/v1/openapi.json is not JSON: %v", err)
	}

	t.Run("it is an OpenAPI 3 document", func(t *testing.T) {
		if !strings.HasPrefix(doc.OpenAPI, "3") {
			t.Errorf("GET /api/v1/openapi.json: openapi = %q, want 3.x", doc.OpenAPI)
		}
	})

	t.Run("it has an OAuth2 password flow whose tokenUrl is the login route", func(t *testing.T) {
		found := false
		for name, s := range doc.Components.SecuritySchemes {
			if s.Type == "oauth2" && s.Flows.Password != nil {
				found = true
				if s.Flows.Password.TokenURL != "/api/v1/auth/login" {
					t.Errorf("security scheme %s: tokenUrl = %q, want /api/v1/auth/login", name, s.Flows.Password.TokenURL)
				}
			}
		}
		if !found {
			t.Errorf("GET /api/v1/openapi.json has no OAuth2 password flow")
		}
	})

	t.Run("the document and the registered routes are in step", func(t *testing.T) {
		patterns := registeredRoutes(t)
		if len(patterns) == 0 {
			t.Fatal("routes registered nothing")
		}
		undocumented := map[string]bool{
			"GET /api/v1/openapi.json": true,
			"GET /docs":                true,
			"GET /docs/{file}":         true,
			"GET /favicon.ico":         true,
		}
		// The paths without their trailing slash answer as the documented
		// ones do; /docs lists each operation once.
		aliases := map[string]string{
			"GET /api/v1/recipes/search":     "/api/v1/recipes/search/",
			"GET /api/v1/recipes/my-recipes": "/api/v1/recipes/my-recipes/",
		}
		methods := map[string]bool{"get": true, "put": true, "post": true, "delete": true,
			"options": true, "head": true, "patch": true, "trace": true}

		registered := map[string]bool{}
		for _, pattern := range patterns {
			method, path, ok := strings.Cut(pattern, " ")
			if !ok {
				t.Errorf("route %q has no method", pattern)
				continue
			}
			path = strings.TrimSuffix(path, "{$}")
			route := method + " " + path
			registered[route] = true
			if undocumented[route] {
				continue
			}
			if documented, ok := aliases[route]; ok {
				if _, twice := doc.Paths[path]; twice {
					t.Errorf("openapi.json documents the alias %s beside %s", path, documented)
				}
				path = documented
			}
			if _, ok := doc.Paths[path][strings.ToLower(method)]; !ok {
				t.Errorf("route %s is not documented in openapi.json", route)
			}
		}
		for route := range undocumented {
			if !registered[route] {
				t.Errorf("allow-listed undocumented route %s is not registered; drop it from the list", route)
			}
		}
		for route := range aliases {
			if !registered[route] {
				t.Errorf("alias %s is not registered; drop it from the list", route)
			}
		}
		var documented []string
		for path, item := range doc.Paths {
			for method := range item {
				if methods[method] {
					documented = append(documented, strings.ToUpper(method)+" "+path)
				}
			}
		}
		sort.Strings(documented)
		for _, route := range documented {
			if !registered[route] {
				t.Errorf("openapi.json documents %s, which is not a registered route", route)
			}
		}
	})
}

// TestEveryRouteTheDocumentGuardsNeedsAToken sends each documented
// operation with no Authorization header to the real handler: those the
// document marks with a bearer token must answer 401 Not authenticated,
// the others must not. So a route that lost requireUser, or gained it,
// fails here, as registeredRoutes checks only the patterns.
func TestEveryRouteTheDocumentGuardsNeedsAToken(t *testing.T) {
	e := newTestEnv(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Security []map[string][]string `json:"security"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(openAPIDocument, &doc); err != nil {
		t.Fatal(err)
	}
	checked := 0
	for path, operations := range doc.Paths {
		for method, op := range operations {
			guarded := len(op.Security) > 0
			target := strings.ReplaceAll(path, "{recipe_id}", "1")
			name := strings.ToUpper(method) + " " + path + " without a token is a 401"
			if !guarded {
				name = strings.ToUpper(method) + " " + path + " without a token is not a 401"
			}
			t.Run(name, func(t *testing.T) {
				resp := e.send(strings.ToUpper(method), target, strings.NewReader("{}"), "Content-Type", "application/json")
				if guarded {
					expectDetail(t, resp, http.StatusUnauthorized, "Not authenticated")
				} else if resp.StatusCode == http.StatusUnauthorized {
					t.Errorf("%s %s without a token = 401, but the document says it needs none", method, path)
				}
			})
			checked++
		}
	}
	if checked < 10 {
		t.Fatalf("checked only %d operations of openapi.json", checked)
	}
}
