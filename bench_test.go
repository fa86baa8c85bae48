// bench_test.go measures the hot routes, each beside a "floor": a bare
// net/http handler that writes the same bytes (and, for /auth/me, verifies
// the same token first), so that what the service adds can be read off as
// a ratio. Each route is measured through httptest (the handler alone) and
// through a real loopback server with b.RunParallel (the whole HTTP path).
//
//	go test -run '^$' -bench . -benchmem
package main

import (
	"database/sql"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// benchRoute is one route to measure: the request, and the floor handler
// that answers it with the same bytes and nothing else.
type benchRoute struct {
	name, target string
	header       []string
	floor        http.Handler
}

// benchEnv is a service with quiet logs and the routes to measure.
func benchEnv(b *testing.B) (*testEnv, []benchRoute) {
	b.Helper()
	e := newTestEnv(b)
	token := e.login("admin@recipeapi.com", adminPassword)

	capture := func(target string, header ...string) []byte {
		resp := e.get(target, header...)
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET %s = %d %s", target, resp.StatusCode, body)
		}
		return body
	}
	writeBytes := func(contentType string, body []byte) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", contentType)
			w.Write(body)
		})
	}
	me := capture("/api/v1/auth/me", bearer(token)...)
	key := newTokenKey(e.cfg.tokenSecret)
	meFloor := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if _, err := verifyAccessToken(key, tok, time.Now()); err != nil {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(me)
	})
	return e, []benchRoute{
		{"recipe", "/api/v1/recipes/1", nil, writeBytes("application/json", capture("/api/v1/recipes/1"))},
		{"search", "/api/v1/recipes/search/?keyword=chicken", nil, writeBytes("application/json", capture("/api/v1/recipes/search/?keyword=chicken"))},
		{"me", "/api/v1/auth/me", bearer(token), meFloor},
		{"home", "/", nil, writeBytes("text/html; charset=utf-8", capture("/"))},
	}
}

// benchEachSide runs bench as sub-benchmarks "route/ours" and
// "route/floor", for every route, with the handler of that side.
func benchEachSide(b *testing.B, bench func(b *testing.B, route benchRoute, handler http.Handler)) {
	e, routes := benchEnv(b)
	for _, route := range routes {
		b.Run(route.name+"/ours", func(b *testing.B) { bench(b, route, e.handler) })
		b.Run(route.name+"/floor", func(b *testing.B) { bench(b, route, route.floor) })
	}
}

// BenchmarkHandler runs each route through the handler alone.
func BenchmarkHandler(b *testing.B) {
	benchEachSide(b, func(b *testing.B, route benchRoute, handler http.Handler) {
		r := newRequest("GET", route.target, nil, route.header...)
		b.ReportAllocs()
		for b.Loop() {
			rec := httptest.NewRecorder()
			handler.ServeHTTP(rec, r)
			if rec.Code != http.StatusOK {
				b.Fatalf("GET %s = %d", route.target, rec.Code)
			}
		}
	})
}

// BenchmarkLoopback runs each route through a real server on 127.0.0.1,
// with keep-alive clients in parallel.
func BenchmarkLoopback(b *testing.B) {
	benchEachSide(b, func(b *testing.B, route benchRoute, handler http.Handler) {
		server := httptest.NewServer(handler)
		defer server.Close()
		transport := &http.Transport{MaxIdleConnsPerHost: 64}
		defer transport.CloseIdleConnections()
		client := &http.Client{Transport: transport}
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest("GET", server.URL+route.target, nil)
				for i := 0; i+1 < len(route.header); i += 2 {
					req.Header.Set(route.header[i], route.header[i+1])
				}
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					b.Fatalf("GET %s = %d", route.target, resp.StatusCode)
				}
			}
		})
	})
}

// BenchmarkLogin is a whole login with the right password at bcrypt cost
// 12, the default, beside one bcrypt comparison at that cost: the login
// should cost that comparison and little more (no second hash).
func BenchmarkLogin(b *testing.B) {
	e := newTestEnv(b, func(c *config) { c.bcryptCost = 12 })
	form := url.Values{"username": {"admin@recipeapi.com"}, "password": {adminPassword}}.Encode()
	b.Run("login", func(b *testing.B) {
		for b.Loop() {
			resp := e.send("POST", "/api/v1/auth/login", strings.NewReader(form), "Content-Type", "application/x-www-form-urlencoded")
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("login = %d", resp.StatusCode)
			}
		}
	})
	b.Run("bcrypt-compare", func(b *testing.B) {
		u, _ := e.store.userByEmail(b.Context(), "admin@recipeapi.com")
		for b.Loop() {
			bcrypt.CompareHashAndPassword([]byte(u.HashedPassword), []byte(adminPassword))
		}
	})
}

// bulkLabel is the label of the i-th of many recipes: a few common words
// and the number i written out, so that searching for a number finds one
// recipe and a common word finds many.
func bulkLabel(i int) string {
	words := []string{"chicken", "soup", "curry", "tofu", "bread", "stew", "salad", "pie", "noodles", "rice"}
	return fmt.Sprintf("%s %s with %s, no. %06d", words[i%len(words)], words[i/len(words)%len(words)], words[i/100%len(words)], i)
}

// addRecipes inserts n recipes (see bulkLabel) into db in one transaction
// with one prepared statement, the quick way to a big table.
func addRecipes(tb testing.TB, db *sql.DB, n int) { addLabelledRecipes(tb, db, n, bulkLabel) }

// addLabelledRecipes is addRecipes with the i-th label label(i).
func addLabelledRecipes(tb testing.TB, db *sql.DB, n int, label func(i int) string) {
	tb.Helper()
	tx, err := db.Begin()
	if err != nil {
		tb.Fatal(err)
	}
	defer tx.Rollback()
	insert, err := tx.Prepare("INSERT INTO recipe (label, source, url, submitter_id) VALUES (?, 'Bench', 'https://example.com/r', 1)")
	if err != nil {
		tb.Fatal(err)
	}
	for i := range n {
		if _, err := insert.Exec(label(i)); err != nil {
			tb.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkSearchAt100kRecipes searches 100,000 recipes for keywords the
// cache has not seen: "rare" finds one recipe, "common" the first ten of
// 10,000. Its cost should not depend on the size of the table.
func BenchmarkSearchAt100kRecipes(b *testing.B) {
	e, _ := benchEnv(b)
	addRecipes(b, e.store.writer, 100_000)
	for _, bench := range []struct {
		name    string
		keyword func(i int) string
	}{
		{"rare", func(i int) string { return fmt.Sprintf("%06d", i*7919%100_000) }},
		{"common", func(int) string { return "curry" }},
		// Every trigram of it is in most labels, the whole in none: the
		// index must read each trigram's list to the end.
		{"common-parts-no-match", func(int) string { return "with rice with" }},
	} {
		b.Run(bench.name, func(b *testing.B) {
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				e.store.forgetRecipes() // never from the cache
				target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(bench.keyword(i))
				i++
				rec := httptest.NewRecorder()
				e.handler.ServeHTTP(rec, newRequest("GET", target, nil))
				if rec.Code != http.StatusOK {
					b.Fatalf("GET %s = %d %.100s", target, rec.Code, rec.Body)
				}
			}
		})
	}
}

// BenchmarkHostileSearch searches 20,000 labels built to be the trigram
// index's worst case (see hostileLabel), written straight into the file,
// each time with the caches forgotten. Unbounded, one search took seconds;
// cut off, it should answer 503 in about searchTimeLimit, which shows that
// the driver really interrupts the statement. It reports the median and
// the longest search (ms-p50, ms-max).
//
//	go test -run '^$' -bench HostileSearch -benchtime 20x
func BenchmarkHostileSearch(b *testing.B) {
	for _, bench := range []struct{ name, label, keyword string }{
		{"run-break-aab", hostileLabel, hostileKeyword},
		// The same pieces the other way round: a little dearer.
		{"aab-then-run", "aab" + strings.Repeat("a", 253), hostileKeyword},
		// Longer than the API allows, as another program may write it:
		// the check walks four times the positions.
		{"1000-char-labels", strings.Repeat("a", 1000) + "xaab", hostileKeyword},
	} {
		b.Run(bench.name, func(b *testing.B) {
			e, _ := benchEnv(b)
			addRecipesAsAnotherProgram(b, e, 20_000, func(int) string { return bench.label })
			target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(bench.keyword)
			var took []time.Duration
			statuses := map[int]int{}
			for b.Loop() {
				e.store.forgetRecipes() // never from a cache, nor refused from memory
				began := time.Now()
				rec := httptest.NewRecorder()
				e.handler.ServeHTTP(rec, newRequest("GET", target, nil))
				took = append(took, time.Since(began))
				statuses[rec.Code]++
			}
			slices.Sort(took)
			b.ReportMetric(float64(took[len(took)/2])/float64(time.Millisecond), "ms-p50")
			b.ReportMetric(float64(took[len(took)-1])/float64(time.Millisecond), "ms-max")
			b.Logf("statuses %v", statuses)
		})
	}
}
