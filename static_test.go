// static_test.go tests static.go: the documentation pages, Swagger UI and
// the favicon.
package main

import (
	"compress/gzip"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func TestDocs(t *testing.T) {
	e := newTestEnv(t)
	t.Run("/docs is HTML that loads Swagger UI from this site, and its policy allows no other site", func(t *testing.T) {
		resp := e.get("/docs")
		expectStatus(t, resp, http.StatusOK)
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/html") {
			t.Errorf("GET /docs: Content-Type = %q, want text/html", ct)
		}
		attrs := attributeURLs(readBody(t, resp))
		for _, want := range []string{"/docs/swagger-ui-bundle.js", "/docs/swagger-initializer.js"} {
			if !slices.Contains(attrs["src"], want) {
				t.Errorf("GET /docs loads scripts %q, want %s among them", attrs["src"], want)
			}
		}
		for name, values := range attrs {
			for _, v := range values {
				if !strings.HasPrefix(v, "/docs/") {
					t.Errorf("GET /docs has %s=%q, want only this site's /docs/ files", name, v)
				}
			}
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if expectNoOtherSiteInPolicy(t, "/docs", csp); !strings.Contains(csp, "script-src 'self'") {
			t.Errorf("GET /docs: Content-Security-Policy = %q, want script-src 'self'", csp)
		}
	})
	t.Run("an unknown file is a JSON 404", func(t *testing.T) {
		expectDetail(t, e.get("/docs/nope.js"), http.StatusNotFound, "Not Found")
		expectDetail(t, e.get("/docs/README.md"), http.StatusNotFound, "Not Found")
	})

	accepts := map[string]bool{ // an Accept-Encoding, and whether it accepts gzip
		"": false, "gzip": true, "gzip, deflate, br, zstd": true, "br;q=1.0, GZIP;q=0.5": true, "*": true, "*;q=0.1, identity": true,
		"gzip;q=0": false, "identity": false, "br, deflate": false, "gzip;q=0, *;q=0": false, "gzip;q=0, *": false,
		"deflate, *;q=0.1, gzip;q=0": false, "gzip;level=1;q=0": false, "gzip;q=nan": false,
	}
	for _, tc := range []struct {
		path, wantType, wantInside string
		compressed                 bool // kept gzip-compressed, so sent so to clients that accept it
		noOtherSite                bool // names no "://"
	}{
		{"/docs/swagger-ui-bundle.js", "text/javascript", "SwaggerUIBundle", true, false},
		{"/docs/swagger-ui.css", "text/css", ".swagger-ui", true, false},
		// The initializer reads this site's document and calls no other site.
		{"/docs/swagger-initializer.js", "text/javascript", `"/api/v1/openapi.json"`, false, true},
	} {
		plain := readBody(t, e.get(tc.path))
		for accept, acceptsGzip := range accepts {
			gzipped := acceptsGzip && tc.compressed
			t.Run(fmt.Sprintf("%s with Accept-Encoding %q is the file, gzip-compressed: %v", tc.path, accept, gzipped), func(t *testing.T) {
				header := []string{"Accept-Encoding", accept}
				if accept == "" { // none sent
					header = nil
				}
				resp := e.get(tc.path, header...)
				expectStatus(t, resp, http.StatusOK)
				body := readBody(t, resp)
				if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, tc.wantType) {
					t.Errorf("GET %s: Content-Type = %q, want %s", tc.path, ct, tc.wantType)
				}
				if n, _ := strconv.Atoi(resp.Header.Get("Content-Length")); n != len(body) {
					t.Errorf("GET %s: Content-Length = %d, want %d", tc.path, n, len(body))
				}
				if vary := strings.Contains(resp.Header.Get("Vary"), "Accept-Encoding"); vary != tc.compressed {
					t.Errorf("GET %s: Vary = %q; want Accept-Encoding in it: %v", tc.path, resp.Header.Get("Vary"), tc.compressed)
				}
				if got, want := resp.Header.Get("Content-Encoding"), map[bool]string{true: "gzip"}[gzipped]; got != want {
					t.Fatalf("GET %s: Content-Encoding = %q, want %q", tc.path, got, want)
				}
				unpacked := body
				if gzipped {
					zr, err := gzip.NewReader(strings.NewReader(body))
					if err != nil {
						t.Fatalf("GET %s: not gzip: %v", tc.path, err)
					}
					if b, err := io.ReadAll(zr); err != nil || len(body) >= len(b)/2 {
						t.Errorf("GET %s: %d bytes unpack to %d (%v); want it well compressed", tc.path, len(body), len(b), err)
					} else {
						unpacked = string(b)
					}
				}
				if unpacked != plain || !strings.Contains(plain, tc.wantInside) {
					t.Errorf("GET %s is not the file (%d bytes, want %d with %q in it)", tc.path, len(unpacked), len(plain), tc.wantInside)
				}
				if tc.noOtherSite && strings.Contains(plain, "://") {
					t.Errorf("GET %s names another site", tc.path)
				}
			})
		}
	}
}

func TestAGzipFileThatCannotBeReadOrUnpackedIsAnError(t *testing.T) {
	for _, name := range []string{"swagger-ui/missing.gz", "swagger-ui/index.html"} {
		if _, err := newGzipFile(swaggerUI, name).plain(); err == nil {
			t.Errorf("newGzipFile(%s).plain() = nil error, want one", name)
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
	if page := readBody(t, e.get("/")); !strings.Contains(page, `<link rel="icon" href="/favicon.ico" type="image/svg+xml">`) {
		t.Errorf("GET / does not link /favicon.ico as its icon")
	}
}
