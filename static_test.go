// static_test.go tests static.go: the documentation pages, Swagger UI and
// the favicon.
package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestDocs(t *testing.T) {
	e := newTestEnv(t)
	resp := e.get("/docs")
	expectStatus(t, resp, http.StatusOK)
	page := readBody(t, resp)
	csp := resp.Header.Get("Content-Security-Policy")

	t.Run("it is HTML that loads Swagger UI from this site", func(t *testing.T) {
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /docs: Content-Type = %q, want text/html", ct)
		}
		srcs := attributeURLs(page)["src"]
		for _, want := range []string{"/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"} {
			if !slices.Contains(srcs, want) {
				t.Errorf("GET /docs loads scripts %q, want %s among them", srcs, want)
			}
		}
		for name, values := range attributeURLs(page) {
			for _, v := range values {
				if !strings.HasPrefix(v, "/docs/") {
					t.Errorf("GET /docs has %s=%q, want only this site's /docs/ files", name, v)
				}
			}
		}
	})

	for _, tc := range []struct {
		path      string
		wantTypes []string // the Content-Type starts with one of these
	}{
		{"/docs/swagger-ui-bundle.js", []string{"text/javascript", "application/javascript"}},
		{"/docs/swagger-initializer.js", []string{"text/javascript", "application/javascript"}},
		{"/docs/swagger-ui.css", []string{"text/css"}},
	} {
		t.Run(tc.path+" is served with its content type", func(t *testing.T) {
			resp := e.get(tc.path)
			expectStatus(t, resp, http.StatusOK)
			ct := resp.Header.Get("Content-Type")
			if !slices.ContainsFunc(tc.wantTypes, func(want string) bool { return strings.HasPrefix(ct, want) }) {
				t.Errorf("GET %s: Content-Type = %q, want one of %q", tc.path, ct, tc.wantTypes)
			}
			if body := readBody(t, resp); len(body) == 0 {
				t.Errorf("GET %s has an empty body", tc.path)
			}
		})
	}

	t.Run("the initializer reads this site's document and calls no other site", func(t *testing.T) {
		resp := e.get("/docs/swagger-initializer.js")
		expectStatus(t, resp, http.StatusOK)
		js := readBody(t, resp)
		if !strings.Contains(js, `"/api/v1/openapi.json"`) {
			t.Errorf("GET /docs/swagger-initializer.js does not load /api/v1/openapi.json")
		}
		if strings.Contains(js, "://") {
			t.Errorf("GET /docs/swagger-initializer.js names another site")
		}
	})

	t.Run("an unknown file is a JSON 404", func(t *testing.T) {
		expectDetail(t, e.get("/docs/nope.js"), http.StatusNotFound, "Not Found")
		expectDetail(t, e.get("/docs/README.md"), http.StatusNotFound, "Not Found")
	})

	t.Run("its policy runs only this site's scripts and allows no other site", func(t *testing.T) {
		expectNoOtherSiteInPolicy(t, "/docs", csp)
		if !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET /docs: Content-Security-Policy = %q, want script-src 'self'", csp)
		}
	})
}

func TestSwaggerUIIsServedCompressedToClientsThatAcceptIt(t *testing.T) {
	e := newTestEnv(t)
	for _, tc := range []struct {
		path, wantInside string
	}{
		{"/docs/swagger-ui-bundle.js", "SwaggerUIBundle"},
		{"/docs/swagger-ui.css", ".swagger-ui"},
	} {
		plain := readBody(t, e.get(tc.path))
		t.Run(tc.path+" without Accept-Encoding is plain", func(t *testing.T) {
			resp := e.get(tc.path)
			expectStatus(t, resp, http.StatusOK)
			if got := resp.Header.Get("Content-Encoding"); got != "" {
				t.Errorf("GET %s: Content-Encoding = %q, want none", tc.path, got)
			}
			if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
				t.Errorf("GET %s: Vary = %q, want Accept-Encoding", tc.path, resp.Header.Get("Vary"))
			}
			if !strings.Contains(plain, tc.wantInside) {
				t.Errorf("GET %s is not the plain file (no %q in it)", tc.path, tc.wantInside)
			}
			if n, _ := strconv.Atoi(resp.Header.Get("Content-Length")); n != len(plain) {
				t.Errorf("GET %s: Content-Length = %d, want %d", tc.path, n, len(plain))
			}
		})
		for _, accept := range []string{"gzip", "gzip, deflate, br, zstd", "br;q=1.0, GZIP;q=0.5", "*", "*;q=0.1, identity"} {
			t.Run(tc.path+" with Accept-Encoding "+accept+" is the same file, gzip-compressed", func(t *testing.T) {
				resp := e.get(tc.path, "Accept-Encoding", accept)
				expectStatus(t, resp, http.StatusOK)
				if got := resp.Header.Get("Content-Encoding"); got != "gzip" {
					t.Fatalf("GET %s (Accept-Encoding %s): Content-Encoding = %q, want gzip", tc.path, accept, got)
				}
				if !strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding") {
					t.Errorf("GET %s: Vary = %q, want Accept-Encoding", tc.path, resp.Header.Get("Vary"))
				}
				compressed := readBody(t, resp)
				zr, err := gzip.NewReader(strings.NewReader(compressed))
				if err != nil {
					t.Fatalf("GET %s: not gzip: %v", tc.path, err)
				}
				unpacked, err := io.ReadAll(zr)
				if err != nil || !bytes.Equal(unpacked, []byte(plain)) {
					t.Errorf("GET %s: the gzip body unpacks to %d bytes (%v), want the %d of the plain file", tc.path, len(unpacked), err, len(plain))
				}
				if len(compressed) >= len(plain)/2 {
					t.Errorf("GET %s: %d bytes compressed of %d; want it well compressed", tc.path, len(compressed), len(plain))
				}
			})
		}
		for _, accept := range []string{"gzip;q=0", "identity", "br, deflate", "gzip;q=0, *;q=0", "gzip;q=0, *", "deflate, *;q=0.1, gzip;q=0", "gzip;level=1;q=0", "gzip;q=nan"} {
			t.Run(tc.path+" with Accept-Encoding "+accept+" is plain", func(t *testing.T) {
				resp := e.get(tc.path, "Accept-Encoding", accept)
				expectStatus(t, resp, http.StatusOK)
				if got := resp.Header.Get("Content-Encoding"); got != "" {
					t.Errorf("GET %s (Accept-Encoding %s): Content-Encoding = %q, want none", tc.path, accept, got)
				}
				if body := readBody(t, resp); body != plain {
					t.Errorf("GET %s (Accept-Encoding %s) is not the plain file", tc.path, accept)
				}
			})
		}
	}
}

func TestFavicon(t *testing.T) {
	e := newTestEnv(t)
	resp := e.get("/favicon.ico")
	expectStatus(t, resp, http.StatusOK)
	if ct := resp.Header.Get("Content-Type"); ct != "image/svg+xml" {
		t.Errorf("GET /favicon.ico: Content-Type = %q, want image/svg+xml", ct)
	}
	cache := resp.Header.Get("Cache-Control")
	_, age, _ := strings.Cut(cache, "max-age=")
	if seconds, err := strconv.Atoi(age); err != nil || seconds < 86400 {
		t.Errorf("GET /favicon.ico: Cache-Control = %q, want it cached for a day or more", cache)
	}
	body := readBody(t, resp)
	if !strings.HasPrefix(body, "<svg") || len(body) > 2048 {
		t.Errorf("GET /favicon.ico = %d bytes starting %.20q, want a small SVG", len(body), body)
	}
	for _, tag := range []string{"<script", "href", "<style", "<image"} {
		if strings.Contains(body, tag) {
			t.Errorf("GET /favicon.ico contains %q; want a self-contained drawing", tag)
		}
	}
	t.Run("the home page names it", func(t *testing.T) {
		page := readBody(t, e.get("/"))
		if !strings.Contains(page, `<link rel="icon" href="/favicon.ico" type="image/svg+xml">`) {
			t.Errorf("GET / does not link /favicon.ico as its icon")
		}
	})
}
