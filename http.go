// http.go is the HTTP plumbing that every handler shares: the errors a
// client may see, in one list; the one place where an error becomes a
// response (writeError); writeJSON; the readers of JSON bodies and forms,
// with the one collector of bad values (problems) that a 422 lists; and
// the middleware that every request passes through (see newServer for
// their order).
package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"encoding/json/jsontext"
	jsonv2 "encoding/json/v2"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

// apiError is an error that the client may see: a status and a detail,
// written as FastAPI writes them, {"detail": "..."}.
type apiError struct {
	status     int
	detail     string
	retryAfter time.Duration // if set, sent as Retry-After
	challenge  bool          // if set, sent with WWW-Authenticate: Bearer
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.detail) }

// retryIn is e with Retry-After set to wait.
func (e apiError) retryIn(wait time.Duration) *apiError {
	e.retryAfter = wait
	return &e
}

// Every answer other than a 422 (see problems) that a handler gives when
// it does not do what was asked. The details are the reference's where it
// has one.
var (
	errIncorrectLogin      = &apiError{status: http.StatusBadRequest, detail: "Incorrect username or password"}
	errIncorrectPassword   = &apiError{status: http.StatusBadRequest, detail: "Incorrect password"}
	errEmailInUse          = &apiError{status: http.StatusBadRequest, detail: "The user with this email already exists in the system"}
	errInvalidRefreshToken = &apiError{status: http.StatusBadRequest, detail: "Invalid refresh token"}
	errUnreadableBody      = &apiError{status: http.StatusBadRequest, detail: "Could not read the request body"}
	errNotAuthed           = &apiError{status: http.StatusUnauthorized, detail: "Not authenticated", challenge: true}
	errBadToken            = &apiError{status: http.StatusUnauthorized, detail: "Could not validate credentials", challenge: true}
	errSubmitAsOther       = &apiError{status: http.StatusForbidden, detail: "You can only submit recipes as yourself"}
	errUpdateNotOwner      = &apiError{status: http.StatusForbidden, detail: "You can only update your recipes"}
	errDeleteNotOwner      = &apiError{status: http.StatusForbidden, detail: "You can only delete your recipes"}
	errOriginNotAllowed    = &apiError{status: http.StatusForbidden, detail: "Cross-origin request refused: this origin is not in the server's BACKEND_CORS_ORIGINS"}
	errPageNotFound        = &apiError{status: http.StatusNotFound, detail: "Not Found"}
	errMethodNotAllowed    = &apiError{status: http.StatusMethodNotAllowed, detail: "Method Not Allowed"}
	errBodyTooLarge        = &apiError{status: http.StatusRequestEntityTooLarge, detail: "Request body too large"}
	errTooManyAttempts     = &apiError{status: http.StatusTooManyRequests, detail: "Too many attempts, try again later"}
	errTooManyRefreshes    = &apiError{status: http.StatusTooManyRequests, detail: "Too many refreshes, try again later"}
	errTooManyRecipes      = &apiError{status: http.StatusTooManyRequests, detail: "Too many recipes created, try again later"}
	errInternal            = &apiError{status: http.StatusInternalServerError, detail: "Internal Server Error"}
	errHashersBusy         = &apiError{status: http.StatusServiceUnavailable, detail: "Server busy, try again shortly", retryAfter: time.Second}
	errDatabaseBusy        = &apiError{status: http.StatusServiceUnavailable, detail: "Database busy, try again later", retryAfter: writerRetryAfter}
	errDatabaseDown        = &apiError{status: http.StatusServiceUnavailable, detail: "Database unavailable", retryAfter: 5 * time.Second}
	errSearchTooLong       = &apiError{status: http.StatusServiceUnavailable, detail: "Search took too long; try a longer or more specific keyword", retryAfter: searchRetryAfter}
	// A write the database cannot take until an operator acts: no
	// Retry-After, since waiting alone will not help.
	errDatabaseFull   = &apiError{status: http.StatusServiceUnavailable, detail: "Database full: nothing could be written"}
	errNoMoreAccounts = &apiError{status: http.StatusServiceUnavailable, detail: "No more accounts can be created: the user ids are used up"}
	// errClientGone is what the request log shows for a client that went
	// away before its answer, as nginx logs it (499). No client reads it.
	errClientGone = &apiError{status: 499, detail: "Client Closed Request"}
)

func errRecipeNotFound(id int64) *apiError {
	return &apiError{status: http.StatusNotFound, detail: fmt.Sprintf("Recipe with ID %d not found", id)}
}

// problem is one bad value in a request, as FastAPI lists them in a 422.
type problem struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

// problems collects every bad value of a request, whether in its body
// (JSON or form), query or path, so that one 422 lists them all.
type problems []problem

// add records a problem with the value name in where: "body" (a JSON
// member or a form field), "query" or "path"; addWhole, with all of where.
func (p *problems) add(where, name, msg, typ string) {
	*p = append(*p, problem{Loc: []string{where, name}, Msg: msg, Type: typ})
}

func (p *problems) addWhole(where, msg, typ string) {
	*p = append(*p, problem{Loc: []string{where}, Msg: msg, Type: typ})
}

// check records a problem with the value name in where unless ok.
func (p *problems) check(ok bool, where, name, msg, typ string) {
	if !ok {
		p.add(where, name, msg, typ)
	}
}

// The problems that several checks share, worded as FastAPI words them
// (which counts a password's length in characters; we count bytes, as
// bcrypt does).

func (p *problems) require(present bool, where, name string) {
	p.check(present, where, name, "field required", "value_error.missing")
}

func (p *problems) notInteger(where, name string) {
	p.add(where, name, "value is not a valid integer", "type_error.integer")
}

func (p *problems) tooShort(where, name string, chars int) {
	p.add(where, name, fmt.Sprintf("ensure this value has at least %d characters", chars), "value_error.any_str.min_length")
}

func (p *problems) tooLong(where, name string, chars int) {
	p.add(where, name, tooLongText(chars), "value_error.any_str.max_length")
}

func tooLongText(chars int) string {
	return fmt.Sprintf("ensure this value has at most %d characters", chars)
}

// err is nil if no problem was recorded, else the problems themselves: a
// 422 that lists them all.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}

func (p problems) Error() string { return fmt.Sprintf("validation failed: %d problems", len(p)) }

// api adapts a handler that returns an error into an http.Handler, so
// that each handler reads as decode, check, act, encode, and every error
// reaches the client through writeError.
func (a *app) api(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// writeError is the one place where errors become HTTP responses. An
// apiError or problems are shown as they are; anything else is logged,
// and the client learns no more than its status.
func (a *app) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var (
		apiErr  *apiError
		invalid problems
		tooBig  *http.MaxBytesError
	)
	switch {
	case errors.As(err, &invalid):
		writeJSON(w, http.StatusUnprocessableEntity, map[string]problems{"detail": invalid})
		return
	case errors.As(err, &tooBig):
		// Close the connection rather than read the rest of the body
		// to keep it alive.
		w.Header().Set("Connection", "close")
		apiErr = errBodyTooLarge
	case errors.As(err, &apiErr):
	case errors.Is(err, errWriterBusy):
		// Another process holds the write lock (a sqlite3 shell, a
		// backup tool), or writes queue past the deadline: nothing was
		// written, and the client may try again.
		a.logger.Warn("database writer busy", "request_id", requestID(r), "err", err)
		apiErr = errDatabaseBusy
	case errors.Is(err, errSearchCutOff):
		// A search that ran past its time limit, or found every search
		// slot taken: refused, so that searches cannot hold the readers.
		a.logger.Warn("search cut off", "request_id", requestID(r), "err", err)
		apiErr = errSearchTooLong
	case errors.Is(err, errStorageFull):
		a.logger.Error("database full", "request_id", requestID(r), "err", err)
		apiErr = errDatabaseFull
	case errors.Is(err, errUserIDsUsedUp):
		a.logger.Error("no more users can be created", "request_id", requestID(r), "err", err)
		apiErr = errNoMoreAccounts
	case r.Context().Err() != nil:
		// The client went away while its request waited to hash or to
		// write: nothing is wrong here, and nobody will read the answer.
		a.logger.Info("client went away", "request_id", requestID(r), "err", err)
		apiErr = errClientGone
	default:
		a.logger.Error("internal error", "request_id", requestID(r), "err", err)
		apiErr = errInternal
	}
	if apiErr.retryAfter > 0 {
		seconds := int((apiErr.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
	}
	if apiErr.challenge {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeJSON(w, apiErr.status, map[string]string{"detail": apiErr.detail})
}

// writeJSON writes v as the JSON body of a response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // as FastAPI writes it; nosniff keeps it from being read as HTML
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(bytes.TrimSuffix(body.Bytes(), []byte("\n")))
	return nil
}

// maxBodyBytes caps every request body; more is a 413. The largest body
// any route here reads is a recipe: three fields of at most 256
// characters, a few KB at most. See limitBodies.
const maxBodyBytes = 64 << 10

// jsonFields holds the members of a JSON body by exact name, and the
// problems found in them, so that a 422 lists them all.
type jsonFields struct {
	members map[string]member
	problems
}

// member is a member's value as sent. v2 decodes a repeated name into the
// entry the first one made, which is how a repeat is caught.
type member []byte

var errRepeatedMember = errors.New("member repeats")

func (m *member) UnmarshalJSON(value []byte) error {
	if *m != nil {
		return errRepeatedMember
	}
	*m = bytes.Clone(value)
	return nil
}

// maxObjectMembers is far more than any body here has.
const maxObjectMembers = 64

// decodeJSONObject reads a body that must be one JSON object and returns its
// members; the caller ignores unknown ones, as FastAPI does. encoding/json/v2
// refuses, rather than alters, invalid UTF-8, a lone surrogate escape and
// anything after the object. A top-level name that repeats, compared after
// unescaping ("\u0065mail" is "email"), is refused at ["body", name]; names
// may repeat inside the nested values that every handler ignores.
func decodeJSONObject(r *http.Request) (jsonFields, error) {
	body, err := io.ReadAll(r.Body) // at most maxBodyBytes: limitBodies caps it
	if err != nil {
		return jsonFields{}, fmt.Errorf("%w: %w", errUnreadableBody, err) // or a 413, which writeError tests first
	}
	var fields jsonFields
	err = jsonv2.Unmarshal(body, &fields.members, jsontext.AllowDuplicateNames(true))
	var syntax *jsontext.SyntacticError
	var semantic *jsonv2.SemanticError
	switch {
	case !utf8.Valid(body): // first, whatever else is wrong, as the 422 says
		fields.addWhole("body", "the body is not valid UTF-8", "value_error.jsondecode.utf8")
	case errors.Is(err, errRepeatedMember) && errors.As(err, &semantic):
		fields.add("body", semantic.JSONPointer.LastToken(), "this member appears more than once in the body", "value_error.jsondecode.duplicate_member")
	case errors.As(err, &syntax) && isSurrogateEscape(body[syntax.ByteOffset:]):
		fields.addWhole("body", `the body holds a \u escape of a lone UTF-16 surrogate, which is no character`, "value_error.jsondecode.surrogate")
	case err != nil || fields.members == nil: // a JSON null leaves it nil
		fields.addWhole("body", "the body must be a JSON object", "value_error.jsondecode")
	case len(fields.members) > maxObjectMembers:
		fields.addWhole("body", fmt.Sprintf("the body has more than %d members", maxObjectMembers), "value_error.jsondecode.members")
	default:
		return fields, nil
	}
	return jsonFields{}, fields.err()
}

// isSurrogateEscape reports whether text starts with a \u escape of a UTF-16
// surrogate: where v2 finds a bad string, that means a lone one.
func isSurrogateEscape(text []byte) bool {
	if len(text) < 6 || text[0] != '\\' || text[1] != 'u' {
		return false
	}
	n, err := strconv.ParseUint(string(text[2:6]), 16, 16)
	return err == nil && utf16.IsSurrogate(rune(n))
}

// text returns the member name as a string. A missing or null member is
// a problem if required; otherwise it returns nil.
func (f *jsonFields) text(name string, required bool) *string {
	raw, ok := f.members[name]
	if !ok || string(raw) == "null" {
		f.require(!required, "body", name) // an optional member may be missing
		return nil
	}
	unquoted, err := jsontext.AppendUnquote(nil, raw)
	if err != nil { // not a string
		f.add("body", name, "str type expected", "type_error.str")
		return nil
	}
	s := string(unquoted)
	return &s
}

// integer returns the optional member name as an integer, or nil.
func (f *jsonFields) integer(name string) *int64 {
	raw, ok := f.members[name]
	if !ok || string(raw) == "null" {
		return nil
	}
	n, err := strconv.ParseInt(string(raw), 10, 64) // refuses 1.0 and 1e3, as v1 did
	if err != nil {
		f.notInteger("body", name)
		return nil
	}
	return &n
}

// readForm parses a urlencoded or multipart form body into r.PostForm.
// The body is at most maxBodyBytes: limitBodies caps it.
//
// A form whose names or decoded values are not valid UTF-8 (%FF decodes
// to a lone byte) is refused, each bad field named in name order: such a
// password could never be typed again, and Go would compare the bytes
// where another program might first replace them with U+FFFD.
func readForm(r *http.Request) error {
	var err error
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType == "multipart/form-data" {
		err = r.ParseMultipartForm(maxBodyBytes)
	} else {
		err = r.ParseForm()
	}
	var tooBig *http.MaxBytesError
	var bad problems
	switch {
	case errors.As(err, &tooBig):
		return err
	case err != nil:
		bad.addWhole("body", "the body is not a valid form", "value_error.form")
		return bad.err()
	}
	for _, name := range slices.Sorted(maps.Keys(r.PostForm)) {
		if !utf8.ValidString(name) {
			bad.addWhole("body", "the value is not valid UTF-8", "value_error.str.utf8")
		} else if slices.ContainsFunc(r.PostForm[name], func(v string) bool { return !utf8.ValidString(v) }) {
			bad.add("body", name, "the value is not valid UTF-8", "value_error.str.utf8")
		}
	}
	return bad.err()
}

// recoverPanics turns a panic in a handler into a logged 500.
func (a *app) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { // the server's way to drop a response
					panic(v)
				}
				a.logger.Error("panic", "request_id", requestID(r), "method", r.Method, "path", loggedPath(r),
					"panic", v, "stack", string(debug.Stack()))
				w.Header().Set("Connection", "close")
				a.writeError(w, r, errInternal)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status a handler wrote, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	s.status = cmp.Or(s.status, status)
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	s.status = cmp.Or(s.status, http.StatusOK)
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type requestIDKey struct{}

// requestID is the id logRequests gave r, also sent as X-Request-ID.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// logRequests gives each request an id, returned as X-Request-ID, and logs
// one line per request with it. It logs the path, never the query or
// headers, so that no password or token can reach the log.
func (a *app) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := randomToken(9)
		w.Header().Set("X-Request-ID", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		a.logger.Info("request", "request_id", id, "method", r.Method, "path", loggedPath(r),
			"status", rec.status, "duration_ms", milliseconds(time.Since(start)), "client", a.clientAddress(r))
	})
}

// milliseconds is d as the log shows a duration: a number of
// milliseconds, with fractions, under a name ending in _ms. slog writes
// a time.Duration as "1.5ms" in text but as 1500000, in nanoseconds, in
// JSON, under a name that says neither.
func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// maxLoggedPathBytes bounds a request path in the log: a client may send
// a path of many kilobytes, and would otherwise have it written whole, on
// every request, into a log that an operator reads and pays to keep.
const maxLoggedPathBytes = 512

// loggedPath is r's path as the log shows it: cut after
// maxLoggedPathBytes, at a character boundary, and marked as cut.
func loggedPath(r *http.Request) string {
	path := r.URL.Path
	if len(path) <= maxLoggedPathBytes {
		return path
	}
	// Back to the start of the character that would be split, if any;
	// a path of stray bytes is simply cut.
	cut := maxLoggedPathBytes
	for cut > maxLoggedPathBytes-(utf8.UTFMax-1) && !utf8.RuneStart(path[cut]) {
		cut--
	}
	return path[:cut] + "…(truncated)"
}

// limitBodies caps every request body at maxBodyBytes, whatever the route
// and whether or not it reads a body. A body announced as bigger
// (Content-Length) is refused before a byte of it is read; one that grows
// past the cap as it is read fails that read, which the handler's error
// turns into the same 413. Reading stops at the cap, so no more than
// maxBodyBytes of a body is ever held.
func (a *app) limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			a.writeError(w, r, &http.MaxBytesError{Limit: maxBodyBytes})
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// apiPolicy is the Content-Security-Policy of every response that sets
// none of its own: JSON loads nothing, and no page of ours may be framed.
const apiPolicy = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// securityHeaders sets the headers that keep a browser from sniffing,
// framing or leaking a response; a handler may set a policy of its own
// (the home page, /docs).
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", apiPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// cors lets the configured origins call the API from a browser, with
// credentials, as the reference's CORSMiddleware does. Other origins get
// no CORS headers at all, so the browser keeps the response from them.
//
// A preflight from another origin, configured origins or none, gets a 403
// that names BACKEND_CORS_ORIGINS, and the log says which origin it was
// (refusedOrigins): left to the mux, it would be a 405 that looks like a
// wrong method, and a developer whose browser app cannot call the API
// would not learn which setting is missing. Other requests from another
// origin are served as if they had no Origin.
func (a *app) cors(next http.Handler) http.Handler {
	refused := &refusedOrigins{}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(a.corsOrigins) > 0 {
			w.Header().Add("Vary", "Origin")
		}
		origin := r.Header.Get("Origin")
		preflight := r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != ""
		if !a.corsOrigins[origin] {
			if preflight {
				refused.log(a.logger, a.now(), origin)
				a.writeError(w, r, errOriginNotAllowed)
				return
			}
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if preflight {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
			if asked := r.Header.Get("Access-Control-Request-Headers"); asked != "" {
				h.Set("Access-Control-Allow-Headers", asked)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

const (
	// maxLoggedRefusedOrigins bounds refusedOrigins: the first ones are
	// each named once, since a developer's browser sends the same origin
	// again and again; past them, any page on the internet can send a
	// preflight with an origin of its own, so refusals are logged at most
	// once every refusedOriginLogInterval.
	maxLoggedRefusedOrigins  = 32
	refusedOriginLogInterval = time.Minute
	// maxLoggedOriginBytes bounds an origin in the log, as
	// maxLoggedPathBytes bounds a path: the header is the client's.
	maxLoggedOriginBytes = 256
)

// refusedOrigins remembers which origins' refused preflights have been
// logged, so that the log names each once and cannot be flooded through
// them: at most maxLoggedRefusedOrigins origins of at most
// maxLoggedOriginBytes each are kept.
type refusedOrigins struct {
	mu         sync.Mutex
	logged     map[string]bool
	lastLogged time.Time // of a line past maxLoggedRefusedOrigins
}

func (o *refusedOrigins) log(logger *slog.Logger, now time.Time, origin string) {
	if len(origin) > maxLoggedOriginBytes {
		origin = strings.ToValidUTF8(origin[:maxLoggedOriginBytes], "") + "…(truncated)"
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch {
	case o.logged[origin]:
		return
	case len(o.logged) < maxLoggedRefusedOrigins:
		if o.logged == nil {
			o.logged = map[string]bool{}
		}
		o.logged[origin] = true
	case now.Sub(o.lastLogged) < refusedOriginLogInterval:
		return
	default:
		o.lastLogged = now
	}
	logger.Warn("CORS preflight refused: the origin is not in BACKEND_CORS_ORIGINS; "+
		"to let a browser app on it call the API, add the origin there (comma-separated)", "origin", origin)
}

// jsonMuxErrors makes the mux's own 404 and 405 answers JSON like every
// other error, keeping the 405's Allow header.
func (a *app) jsonMuxErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			// No route: h is the mux's plain-text 404 or 405, or a
			// redirect to the path's clean form. Run it against a scratch
			// recorder to learn which, and the 405's Allow.
			scratch := &headerRecorder{header: http.Header{}}
			h.ServeHTTP(scratch, r)
			switch scratch.status {
			case http.StatusMethodNotAllowed:
				w.Header().Set("Allow", scratch.header.Get("Allow"))
				a.writeError(w, r, errMethodNotAllowed)
				return
			case http.StatusNotFound:
				a.writeError(w, r, errPageNotFound)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// headerRecorder is a ResponseWriter that keeps the status and headers and
// throws the body away.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }
