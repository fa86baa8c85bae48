// static.go serves what the binary carries as it is: the OpenAPI document,
// Swagger UI at /docs, and the favicon.
package main

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
)

//go:embed openapi.json
var openAPIDocument []byte

func handleOpenAPI(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write(openAPIDocument)
}

// Swagger UI's bundle and stylesheet are embedded gzip-compressed: 0.5 MB
// of the binary instead of 1.9 MB (see swagger-ui/README.md).
//
//go:embed swagger-ui/index.html swagger-ui/swagger-initializer.js swagger-ui/*.gz
var swaggerUI embed.FS

// docsPolicy lets Swagger UI load its own scripts and styles from us and
// talk to us, and nothing else: no other site is contacted.
const docsPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// handleDocs serves Swagger UI, kept in the binary, at /docs.
func handleDocs(w http.ResponseWriter, r *http.Request) error {
	file := cmp.Or(r.PathValue("file"), "index.html")
	contentType, ok := swaggerUITypes[file]
	if !ok {
		return errPageNotFound
	}
	var body []byte
	var err error
	if gz, ok := swaggerUICompressed[file]; ok {
		w.Header().Add("Vary", "Accept-Encoding")
		if acceptsGzip(r) {
			if body, err = gz.compressed(); err == nil {
				w.Header().Set("Content-Encoding", "gzip")
			}
		} else {
			body, err = gz.plain()
		}
	} else {
		body, err = swaggerUI.ReadFile("swagger-ui/" + file)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Header().Set("Content-Security-Policy", docsPolicy)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(body)
	return nil
}

var (
	swaggerUITypes = map[string]string{
		"index.html":             "text/html; charset=utf-8",
		"swagger-ui.css":         "text/css; charset=utf-8",
		"swagger-ui-bundle.js":   "text/javascript; charset=utf-8",
		"swagger-initializer.js": "text/javascript; charset=utf-8",
	}
	swaggerUICompressed = map[string]*gzipFile{
		"swagger-ui.css":       newGzipFile(swaggerUI, "swagger-ui/swagger-ui.css.gz"),
		"swagger-ui-bundle.js": newGzipFile(swaggerUI, "swagger-ui/swagger-ui-bundle.js.gz"),
	}
)

// gzipFile is an embedded gzip file, sent as it is to clients that accept
// gzip and unpacked for the others. Each form is made at the first request
// that needs it and kept: two per file, so memory stays bounded by the
// files the binary holds.
type gzipFile struct {
	compressed func() ([]byte, error)
	plain      func() ([]byte, error)
}

func newGzipFile(fsys embed.FS, name string) *gzipFile {
	// embed.FS.ReadFile copies the file each time: read it once.
	compressed := sync.OnceValues(func() ([]byte, error) { return fsys.ReadFile(name) })
	return &gzipFile{
		compressed: compressed,
		plain: sync.OnceValues(func() ([]byte, error) {
			gz, err := compressed()
			if err != nil {
				return nil, err
			}
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				return nil, fmt.Errorf("unpack %s: %w", name, err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil {
				return nil, fmt.Errorf("unpack %s: %w", name, err)
			}
			return plain, nil
		}),
	}
}

// acceptsGzip reports whether Accept-Encoding allows gzip: named with a
// weight above 0 or, if not named, * with one.
func acceptsGzip(r *http.Request) bool {
	weights := map[string]float64{}
	for _, value := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(value, ",") {
			coding, params, _ := strings.Cut(part, ";")
			weight := 1.0
			for param := range strings.SplitSeq(params, ";") {
				if q, ok := strings.CutPrefix(strings.ToLower(strings.TrimSpace(param)), "q="); ok {
					weight, _ = strconv.ParseFloat(q, 64) // unreadable: 0
				}
			}
			weights[strings.ToLower(strings.TrimSpace(coding))] = weight
		}
	}
	if weight, named := weights["gzip"]; named {
		return weight > 0 // false for NaN too
	}
	return weights["*"] > 0
}

//go:embed favicon.svg
var favicon []byte

// handleFavicon serves the site's icon, which browsers ask for on every
// page. It is an SVG, which browsers take at /favicon.ico too; cached for
// a week.
func handleFavicon(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Cache-Control", "public, max-age=604800")
	w.Write(favicon)
}
