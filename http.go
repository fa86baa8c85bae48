// http.go is the plumbing every handler shares: the errors a client may
// see, the one place an error becomes a response (writeError), the readers
// of JSON bodies and forms with the 422 they build, and the middleware.
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

// apiError is an error the client may see, written as FastAPI does.
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

// The answers, other than a 422, of a handler that cannot do as asked.
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
	errNoPrimary           = &apiError{status: http.StatusServiceUnavailable, detail: "This server cannot write, and cannot reach the one that can; try again shortly", retryAfter: replicaRetryAfter}
	errSearchTooLong       = &apiError{status: http.StatusServiceUnavailable, detail: "Search took too long; try a longer or more specific keyword", retryAfter: searchRetryAfter}
	// Until an operator acts, waiting will not help: no Retry-After.
	errDatabaseFull   = &apiError{status: http.StatusServiceUnavailable, detail: "Database full: nothing could be written"}
	errNoMoreAccounts = &apiError{status: http.StatusServiceUnavailable, detail: "No more accounts can be created: the user ids are used up"}
	// errClientGone is only logged, as nginx does: nobody reads it.
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

// problems collects every bad value of a request, for one 422 to list.
type problems []problem

// add records a problem with name in where ("body", "query" or "path").
// A name may be "", as a JSON member's may.
func (p *problems) add(where, name, msg, typ string) {
	*p = append(*p, problem{Loc: []string{where, name}, Msg: msg, Type: typ})
}

// addWhole records a problem with the whole of where.
func (p *problems) addWhole(where, msg, typ string) {
	*p = append(*p, problem{Loc: []string{where}, Msg: msg, Type: typ})
}

// check records a problem with the value name in where unless ok.
func (p *problems) check(ok bool, where, name, msg, typ string) {
	if !ok {
		p.add(where, name, msg, typ)
	}
}

// The problems several checks share, worded as FastAPI words them (it
// counts a password's length in characters; we count bytes, as bcrypt does).

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

// err is nil if no problem was recorded, else a 422 that lists them all.
func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return p
}

func (p problems) Error() string { return fmt.Sprintf("validation failed: %d problems", len(p)) }

// api adapts a handler that returns an error, so that every error reaches
// the client through writeError.
func (a *app) api(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			a.writeError(w, r, err)
		}
	})
}

// writeError is the one place errors become responses: an apiError or
// problems as they are; anything else is logged, and shown as its status.
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
		w.Header().Set("Connection", "close") // rather than read the rest to keep it alive
		apiErr = errBodyTooLarge
	case errors.As(err, &apiErr):
	case errors.Is(err, errWriterBusy): // another program holds the write lock, or writes queued too long
		a.logger.Warn("database writer busy", "request_id", requestID(r), "err", err)
		apiErr = errDatabaseBusy
	case errors.Is(err, errReadOnlyReplica), errors.Is(err, errPrimaryUnreachable):
		// The error names the primary, or says that none is known.
		a.logger.Warn("a write found no primary to land on", "request_id", requestID(r), "err", err)
		apiErr = errNoPrimary
	case errors.Is(err, errSearchCutOff): // past its time limit, or no search slot free
		a.logger.Warn("search cut off", "request_id", requestID(r), "err", err)
		apiErr = errSearchTooLong
	case errors.Is(err, errStorageFull):
		a.logger.Error("database full", "request_id", requestID(r), "err", err)
		apiErr = errDatabaseFull
	case errors.Is(err, errUserIDsUsedUp):
		a.logger.Error("no more users can be created", "request_id", requestID(r), "err", err)
		apiErr = errNoMoreAccounts
	case r.Context().Err() != nil:
		// The client left while its request waited to hash or to write.
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

// maxBodyBytes caps every body; the largest we read, a recipe, is a few KB.
const maxBodyBytes = 64 << 10

// jsonFields holds a JSON body's members by exact name, and their problems.
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

// decodeJSONObject reads a body that must be one JSON object; callers
// ignore unknown members, as FastAPI does. encoding/json/v2 refuses rather
// than alters invalid UTF-8, lone surrogates and trailing data. A repeated
// top-level name ("\u0065mail" is "email") is refused at ["body", name].
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

// text returns the member name, if a string; missing or null is a
// problem only if required.
func (f *jsonFields) text(name string, required bool) *string {
	raw, ok := f.members[name]
	if !ok || string(raw) == "null" {
		f.require(!required, "body", name) // an optional member may be missing
		return nil
	}
	var s string
	if err := jsonv2.Unmarshal(raw, &s); err != nil {
		f.add("body", name, "str type expected", "type_error.str")
		return nil
	}
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

// readForm parses a urlencoded or multipart form into r.PostForm, and
// refuses, in name order, each field whose name or value is not UTF-8
// (%FF decodes to a lone byte): such a password could never be typed
// again, and another program might read U+FFFD in place of the bytes.
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

// logRequests logs one line per request under an id, sent as X-Request-ID,
// with the path but never the query or headers, where secrets may be.
func (a *app) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := cmp.Or(forwardedRequestID(r), randomToken(9))
		w.Header().Set("X-Request-ID", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		a.logger.Info("request", "request_id", id, "method", r.Method, "path", loggedPath(r),
			"status", rec.status, "duration_ms", milliseconds(time.Since(start)), "client", a.clientAddress(r))
	})
}

// milliseconds is a duration as the log shows it: slog would write a
// time.Duration as "1.5ms" in text but in nanoseconds in JSON.
func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// maxLoggedPathBytes keeps a client's long path from filling the log.
const maxLoggedPathBytes = 512

// loggedPath is r's path, cut at a character boundary if too long.
func loggedPath(r *http.Request) string {
	path := r.URL.Path
	if len(path) <= maxLoggedPathBytes {
		return path
	}
	// Back to the start of a split character; stray bytes are just cut.
	cut := maxLoggedPathBytes
	for cut > maxLoggedPathBytes-(utf8.UTFMax-1) && !utf8.RuneStart(path[cut]) {
		cut--
	}
	return path[:cut] + "…(truncated)"
}

// limitBodies caps every body at maxBodyBytes: one announced as bigger is
// refused before it is read, and one that grows past it fails the read,
// which the handler's error turns into the same 413.
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

// apiPolicy is the CSP of a response that sets none: JSON loads nothing.
const apiPolicy = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// securityHeaders keeps a browser from sniffing, framing or leaking a
// response; the home page and /docs set policies of their own.
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

// cors lets the configured origins call the API from a browser with
// credentials, as the reference's CORSMiddleware does; other origins get no
// CORS headers. A preflight from one gets a 403 that names
// BACKEND_CORS_ORIGINS, and is logged (refusedOrigins), where the mux's 405
// would look like a wrong method and not say which setting is missing.
func (a *app) cors(next http.Handler) http.Handler {
	refused := &refusedOrigins{logged: map[string]bool{}}
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
	// The first maxLoggedRefusedOrigins origins are each logged once (a
	// developer's browser repeats one); past them, any web page can make up
	// more, so refusals are logged once per refusedOriginLogInterval.
	maxLoggedRefusedOrigins  = 32
	refusedOriginLogInterval = time.Minute
	// maxLoggedOriginBytes bounds the client's Origin header in the log.
	maxLoggedOriginBytes = 256
)

// refusedOrigins remembers which refused origins were logged.
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
		o.logged[origin] = true
	case now.Sub(o.lastLogged) < refusedOriginLogInterval:
		return
	default:
		o.lastLogged = now
	}
	logger.Warn("CORS preflight refused: the origin is not in BACKEND_CORS_ORIGINS; "+
		"to let a browser app on it call the API, add the origin there (comma-separated)", "origin", origin)
}

// jsonMuxErrors makes the mux's own 404 and 405 JSON, keeping the Allow.
func (a *app) jsonMuxErrors(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			// No route: h is the mux's plain-text 404 or 405, or a redirect
			// to the clean path. A scratch recorder tells which.
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

// headerRecorder keeps the status and headers, and drops the body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }
