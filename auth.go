// auth.go owns who a caller is: signup, login, the bearer-token check that
// guards the private routes, password hashing, and the limit on login and
// signup attempts.
//
// What it defends, and how:
//   - Passwords are hashed with bcrypt. bcrypt reads only the first 72
//     bytes, and x/crypto's compare silently truncates longer input, so we
//     refuse passwords over 72 bytes everywhere instead of truncating them.
//   - Login answers an unknown email exactly as it answers a wrong password,
//     and only after a bcrypt compare against a dummy hash of the same cost,
//     so the time taken does not tell whether an account exists.
//   - Hashing is CPU-bound and slow on purpose; it runs under a bound sized
//     to the CPUs, with a short queue. Past that the client gets 503 at once,
//     so a flood of logins cannot starve the other requests.
//   - Attempts are counted per client address (r.RemoteAddr; a forwarded
//     address only from a configured proxy) and slowed with 429 past the
//     limit.
//   - A signup can never make a superuser, whatever its body says.
//   - Emails and names may not hold invisible characters (invisibleRune),
//     so that no two accounts or names that look alike differ by one.
//   - A stored hash that bcrypt cannot use, or that costs more than a
//     login can afford, never stops the start; that user cannot log in.
package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"mime"
	"net/http"
	"net/mail"
	"net/netip"
	"net/url"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
)

const (
	minPasswordBytes = 8
	maxPasswordBytes = 72 // all that bcrypt reads
	maxTextChars     = 256
	maxEmailBytes    = 254 // RFC 5321's limit on a path, less the brackets
)

var (
	errIncorrectLogin = &apiError{status: http.StatusBadRequest, detail: "Incorrect username or password"}
	errEmailInUse     = &apiError{status: http.StatusBadRequest, detail: "The user with this email already exists in the system"}
	errNotAuthed      = &apiError{status: http.StatusUnauthorized, detail: "Not authenticated", challenge: true}
	errBadToken       = &apiError{status: http.StatusUnauthorized, detail: "Could not validate credentials", challenge: true}
	errHashersBusy    = &apiError{status: http.StatusServiceUnavailable, detail: "Server busy, try again shortly", retryAfter: time.Second}
)

// userView is a user as the API shows it: never the password hash.
type userView struct {
	FirstName   *string `json:"first_name"`
	Surname     *string `json:"surname"`
	Email       string  `json:"email"`
	IsSuperuser bool    `json:"is_superuser"`
	ID          int64   `json:"id"`
}

func viewUser(u user) userView {
	return userView{FirstName: u.FirstName, Surname: u.Surname, Email: u.Email, IsSuperuser: u.IsSuperuser, ID: u.ID}
}

func (a *app) handleSignup() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		body, err := decodeJSONObject(w, r)
		if err != nil {
			return err
		}
		// Only these members are read: "is_superuser" and anything else a
		// client sends are ignored.
		email := body.text("email", true)
		if email != nil {
			*email = strings.TrimSpace(*email)
			if msg := checkEmail(*email); msg != "" {
				body.fail("email", msg, "value_error.email")
			}
		}
		password := body.text("password", true)
		if password != nil {
			checkPasswordLength(&body, "password", *password)
		}
		firstName := body.text("first_name", false)
		checkMaxChars(&body, "first_name", firstName)
		checkVisible(&body, "first_name", firstName)
		surname := body.text("surname", false)
		checkMaxChars(&body, "surname", surname)
		checkVisible(&body, "surname", surname)
		if err := body.err(); err != nil {
			return err
		}

		hash, err := a.passwords.hash(r.Context(), *password)
		if err != nil {
			return err
		}
		u, err := a.store.createUser(r.Context(), user{
			FirstName: firstName, Surname: surname, Email: *email, HashedPassword: hash,
		})
		if errors.Is(err, errEmailTaken) {
			return errEmailInUse
		}
		if err != nil {
			return err
		}
		return writeJSON(w, http.StatusCreated, viewUser(u))
	})
}

// checkEmail returns what is wrong with email as an address to sign up
// with, or "" if nothing is.
func checkEmail(email string) string {
	const invalid = "value is not a valid email address"
	if email == "" || len(email) > maxEmailBytes {
		return invalid
	}
	if r, ok := invisibleRune(email); ok {
		return invisibleMessage(r)
	}
	// ParseAddress also accepts "Name <a@b.c>"; we want the bare address.
	addr, err := mail.ParseAddress(email)
	if err != nil || addr.Name != "" || addr.Address != email {
		return invalid
	}
	domain := email[strings.LastIndexByte(email, '@')+1:]
	if !strings.Contains(domain, ".") || strings.HasPrefix(domain, ".") || strings.HasSuffix(domain, ".") {
		return invalid
	}
	return ""
}

// invisibleLetters are characters that Unicode counts as letters, marks or
// symbols but that show as nothing, or as a blank: the Hangul fillers,
// the braille blank, the combining grapheme joiner and the Khmer
// inherent vowels. They are the known ones; see invisibleRune.
var invisibleLetters = []rune{
	0x115F, 0x1160, 0x3164, 0xFFA0, // Hangul choseong, jungseong, compatibility and halfwidth fillers
	0x2800,         // braille pattern blank
	0x034F,         // combining grapheme joiner
	0x17B4, 0x17B5, // Khmer vowel inherent AQ and AA
}

// invisibleRune returns the first character of s, other than the ordinary
// space U+0020, that a reader cannot see, so that two strings that look
// the same could differ by it: a control character (Unicode category Cc:
// NUL, tab, newline, DEL, U+0080–U+009F), a format character (Cf: the
// zero-width space, joiners and marks U+200B–U+200F, the bidirectional
// embeddings and overrides U+202A–U+202E and isolates U+2066–U+2069, the
// word joiner and invisible operators U+2060–U+2064, the byte order mark
// U+FEFF, the soft hyphen U+00AD, tag characters, …), any space other
// than U+0020 (Zs: the no-break space U+00A0, U+2000–U+200A, U+3000, …),
// the line and paragraph separators U+2028 and U+2029 (Zl, Zp), a
// variation selector (U+FE00–U+FE0F, U+E0100–U+E01EF, U+180B–U+180F),
// or one of invisibleLetters.
func invisibleRune(s string) (rune, bool) {
	for _, r := range s {
		if r == ' ' {
			continue
		}
		if unicode.In(r, unicode.Cc, unicode.Cf, unicode.Zs, unicode.Zl, unicode.Zp, unicode.Variation_Selector) ||
			slices.Contains(invisibleLetters, r) {
			return r, true
		}
	}
	return 0, false
}

func invisibleMessage(r rune) string {
	return fmt.Sprintf("value holds an invisible, control or format character (U+%04X); "+
		"only visible characters and the ordinary space are allowed", r)
}

// checkVisible records a problem if a name holds a character that
// invisibleRune finds, so that no two names that look the same differ by
// one. Ordinary spaces are fine: "Ada Lovelace" is one name.
func checkVisible(f *jsonFields, name string, value *string) {
	if value == nil {
		return
	}
	if r, ok := invisibleRune(*value); ok {
		f.fail(name, invisibleMessage(r), "value_error.str.invisible")
	}
}

// checkMaxChars records a problem if value is longer than the reference's
// VARCHAR(256) columns allow.
func checkMaxChars(f *jsonFields, name string, value *string) {
	f.check(value == nil || utf8.RuneCountInString(*value) <= maxTextChars, name,
		fmt.Sprintf("ensure this value has at most %d characters", maxTextChars), "value_error.any_str.max_length")
}

func checkPasswordLength(f *jsonFields, name, password string) {
	f.check(len(password) >= minPasswordBytes, name,
		fmt.Sprintf("ensure this value has at least %d characters", minPasswordBytes), "value_error.any_str.min_length")
	checkPasswordFits(f, name, password)
}

// checkPasswordFits refuses a password that bcrypt would read only part
// of: compared by its first 72 bytes alone, a longer one could match.
func checkPasswordFits(f *jsonFields, name, password string) {
	f.check(len(password) <= maxPasswordBytes, name,
		fmt.Sprintf("ensure this value has at most %d bytes: bcrypt reads no more", maxPasswordBytes), "value_error.any_str.max_length")
}

// handleLogin is OAuth2's password grant (RFC 6749 §4.3), as FastAPI's
// OAuth2PasswordRequestForm reads it: a urlencoded or multipart form with
// username (the email) and password. Any Authorization header is ignored:
// Swagger UI sends "Basic Og==" (an empty client id and secret).
func (a *app) handleLogin() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		if err := readForm(w, r); err != nil {
			return err
		}
		var fields jsonFields
		email, password := r.PostFormValue("username"), r.PostFormValue("password")
		fields.check(email != "", "username", "field required", "value_error.missing")
		fields.check(password != "", "password", "field required", "value_error.missing")
		checkPasswordFits(&fields, "password", password)
		grantType := r.PostFormValue("grant_type")
		fields.check(grantType == "" || grantType == "password", "grant_type",
			`string does not match regex "password"`, "value_error.str.regex")
		if err := fields.err(); err != nil {
			return err
		}

		u, err := a.authenticate(r.Context(), email, password)
		if err != nil {
			return err
		}
		return a.startSession(w, r, u)
	})
}

// readForm parses a urlencoded or multipart form body of at most
// maxBodyBytes into r.PostForm.
func readForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	var err error
	if mediaType, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mediaType == "multipart/form-data" {
		err = r.ParseMultipartForm(maxBodyBytes)
	} else {
		err = r.ParseForm()
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		return err
	}
	if err != nil {
		return &validationError{problems: []problem{{
			Loc: []string{"body"}, Msg: "the body is not a valid form", Type: "value_error.form",
		}}}
	}
	return checkFormUTF8(r.PostForm)
}

// checkFormUTF8 refuses a form whose names or decoded values are not valid
// UTF-8 (%FF decodes to a lone byte): such a password could never be typed
// again, and Go would compare the bytes where another program might first
// replace them with U+FFFD. Each bad field is named, in name order.
func checkFormUTF8(form url.Values) error {
	var problems []problem
	for _, name := range slices.Sorted(maps.Keys(form)) {
		loc := []string{"body", name}
		if !utf8.ValidString(name) {
			loc = []string{"body"}
		}
		for _, value := range form[name] {
			if !utf8.ValidString(name) || !utf8.ValidString(value) {
				problems = append(problems, problem{Loc: loc, Msg: "the value is not valid UTF-8", Type: "value_error.str.utf8"})
				break
			}
		}
	}
	if len(problems) > 0 {
		return &validationError{problems: problems}
	}
	return nil
}

// authenticate returns the user whose email and password these are, or
// errIncorrectLogin. Both outcomes cost one bcrypt compare at the
// configured cost, so their timing does not reveal which emails exist.
func (a *app) authenticate(ctx context.Context, email, password string) (user, error) {
	u, err := a.store.userByEmail(ctx, strings.TrimSpace(email))
	if errors.Is(err, errNotFound) {
		// The same work as for a known user, so that the time taken does
		// not tell which emails have accounts.
		if _, err := a.passwords.compare(ctx, a.passwords.dummyHash, password); err != nil {
			return user{}, err
		}
		return user{}, errIncorrectLogin
	}
	if err != nil {
		return user{}, err
	}
	if reason := unusablePasswordHash(u.HashedPassword, a.passwords.cost); reason != "" {
		// Nobody can log in with this hash: compare against the dummy
		// instead, for the time a wrong password takes, never at the
		// hash's own cost (cost 31 would hold a hashing slot for days).
		if _, err := a.passwords.compare(ctx, a.passwords.dummyHash, password); err != nil {
			return user{}, err
		}
		a.logUnusableHash(u.ID, reason)
		return user{}, errIncorrectLogin
	}
	ok, err := a.passwords.compare(ctx, u.HashedPassword, password)
	if errors.Is(err, errHashersBusy) {
		return user{}, err
	}
	if err != nil {
		// A stored hash that bcrypt cannot read: nobody can log in with
		// it. Tell the operator, and the client only what an unknown
		// email would tell it.
		a.logUnusableHash(u.ID, err.Error())
		return user{}, errIncorrectLogin
	}
	if !ok {
		return user{}, errIncorrectLogin
	}
	return u, nil
}

// maxStoredCost is the dearest stored hash a login compares against,
// unless BCRYPT_COST is set higher. Each step doubles the work: cost 12
// takes about 0.25 s of a CPU, cost 18 about 15 s, cost 31 about four
// years, so a dearer hash, which could only have been put there by hand,
// would hold a hashing slot far past any client's patience.
const maxStoredCost = 18

// unusablePasswordHash says why nobody can log in with hash, or returns ""
// if it is a bcrypt hash of a cost from 4 to the greater of cost (the
// configured one) and maxStoredCost.
func unusablePasswordHash(hash string, cost int) string {
	stored, err := bcrypt.Cost([]byte(hash))
	switch {
	case err != nil:
		return err.Error() // bcrypt's own errors never show the hash
	case stored > max(cost, maxStoredCost):
		return fmt.Sprintf("bcrypt cost %d is over %d", stored, max(cost, maxStoredCost))
	}
	return ""
}

// maxLoggedUnusableHashes bounds unusableHashLog: the log names the first
// ones, and then says that it names no more.
const maxLoggedUnusableHashes = 1000

// unusableHashLog remembers which users' unusable password hashes have
// been logged, so that each is logged once however often someone tries to
// log in as that user, and the log cannot be flooded through it.
type unusableHashLog struct {
	mu     sync.Mutex
	logged map[int64]bool
}

func (a *app) logUnusableHash(userID int64, reason string) {
	l := &a.unusableHashes
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged == nil {
		l.logged = map[int64]bool{}
	}
	switch {
	case l.logged[userID] || len(l.logged) > maxLoggedUnusableHashes:
		return
	case len(l.logged) == maxLoggedUnusableHashes:
		l.logged[-1] = true // counts as one more, so that this is said once
		a.logger.Warn("more users have unusable password hashes; they are no longer logged")
		return
	}
	l.logged[userID] = true
	a.logger.Warn("stored password hash is unusable: this user cannot log in until given a new password, "+
		"for instance with createsuperuser", "user_id", userID, "reason", reason)
}

func (a *app) handleMe() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		return writeJSON(w, http.StatusOK, viewUser(currentUser(r)))
	})
}

type userContextKey struct{}

// currentUser is the user requireUser let through.
func currentUser(r *http.Request) user {
	return r.Context().Value(userContextKey{}).(user)
}

// requireUser lets a request through only with a valid bearer access
// token for a user who still exists, and hands that user to next.
func (a *app) requireUser(next http.Handler) http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Add("Vary", "Authorization")
		// What answers an authenticated request is that user's alone: no
		// shared or browser cache may keep it (RFC 9111 §5.2.2.5).
		w.Header().Set("Cache-Control", "no-store")
		// The scheme is case-insensitive (RFC 7235 §2.1), as FastAPI reads it.
		scheme, token, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		if !strings.EqualFold(scheme, "Bearer") {
			return errNotAuthed
		}
		claims, err := verifyAccessToken(a.tokenKey, token, a.now())
		if err != nil {
			return errBadToken // every reason alike; the reason is not logged either
		}
		u, err := a.store.userByID(r.Context(), claims.UserID)
		if errors.Is(err, errNotFound) {
			return errBadToken
		}
		if err != nil {
			return err
		}
		// A logout or password change since the token was issued has
		// moved the user's generation on (sessions.go).
		if claims.Generation != u.TokenGeneration {
			return errBadToken
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userContextKey{}, u)))
		return nil
	})
}

// passwordHasher runs bcrypt under a concurrency bound.
type passwordHasher struct {
	cost      int
	running   chan struct{} // hashes that may run now: one CPU is kept free
	admitted  chan struct{} // running plus a short queue; full means 503
	dummyHash string        // compared against when the email is unknown

	hashes, compares atomic.Int64 // counts, so tests can see each path's cost
}

// newPasswordHasherFor returns the hasher for the users in st, hashing new
// passwords at cost. Its dummy hash costs as much as the dearest of cost
// and the stored hashes (a database the reference made may hold cost-12
// hashes while BCRYPT_COST is lower), so that an unknown email never
// answers faster than a known one.
func newPasswordHasherFor(ctx context.Context, st *store, cost int) (*passwordHasher, error) {
	stored, err := st.highestPasswordCost(ctx, max(cost, maxStoredCost))
	if err != nil {
		return nil, err
	}
	return newPasswordHasher(cost, max(cost, stored)), nil
}

func newPasswordHasher(cost, dummyCost int) *passwordHasher {
	// Hashes run on all CPUs but one, so that a flood of logins leaves a
	// CPU to every other request; as many more may wait, and past those the
	// answer is an immediate 503 rather than a queue that grows the wait.
	cpus := runtime.NumCPU()
	p := &passwordHasher{
		cost:     cost,
		running:  make(chan struct{}, max(1, cpus-1)),
		admitted: make(chan struct{}, 2*max(1, cpus-1)),
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("no user has this password"), dummyCost)
	if err != nil {
		panic(err) // only an invalid cost, which loadConfig refuses
	}
	p.dummyHash = string(dummy)
	return p
}

// do runs fn once a hashing slot is free, or fails at once with
// errHashersBusy if too many are already waiting.
func (p *passwordHasher) do(ctx context.Context, fn func()) error {
	select {
	case p.admitted <- struct{}{}:
	default:
		return errHashersBusy
	}
	defer func() { <-p.admitted }()
	select {
	case p.running <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.running }()
	fn()
	return nil
}

func (p *passwordHasher) hash(ctx context.Context, password string) (string, error) {
	var hash []byte
	var err error
	if doErr := p.do(ctx, func() {
		p.hashes.Add(1)
		hash, err = bcrypt.GenerateFromPassword([]byte(password), p.cost)
	}); doErr != nil {
		return "", doErr
	}
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	return string(hash), nil
}

// compare reports whether password matches hash. A hash of any cost and
// any of the $2a$, $2b$ and $2y$ prefixes (passlib writes $2b$) is read.
func (p *passwordHasher) compare(ctx context.Context, hash, password string) (bool, error) {
	var err error
	if doErr := p.do(ctx, func() {
		p.compares.Add(1)
		err = bcrypt.CompareHashAndPassword([]byte(hash), []byte(password))
	}); doErr != nil {
		return false, doErr
	}
	if errors.Is(err, bcrypt.ErrMismatchedHashAndPassword) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("compare password: %w", err)
	}
	return true, nil
}

// limitLogins answers 429 to a client address that has used up its
// attempts; see rateLimiter.
func (a *app) limitLogins(next http.Handler) http.Handler {
	if a.loginLimiter == nil {
		return next
	}
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		if wait := a.loginLimiter.take(a.clientAddress(r)); wait > 0 {
			return &apiError{status: http.StatusTooManyRequests, detail: "Too many attempts, try again later", retryAfter: wait}
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

// clientAddress is the client a request came from, as the limiter and the
// log see it: an IPv4 address, or the /64 network of an IPv6 one, since
// one IPv6 client commonly holds a whole /64.
//
// It is r.RemoteAddr, unless that is one of the TRUSTED_PROXIES: then
// X-Forwarded-For is read from its right-hand end, where the proxies
// appended, and the nearest address that is not a trusted proxy is the
// client. Without trusted proxies the header is ignored, since any
// client could write one to pass for a new client with every request.
func (a *app) clientAddress(r *http.Request) string {
	addrPort, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	client := addrPort.Addr().Unmap()
	if a.trusts(client) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0 && a.trusts(client); i-- {
			hop, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
			if err != nil {
				break // garbage: keep the last address a trusted proxy gave
			}
			client = hop.Unmap()
		}
	}
	if client.Is4() {
		return client.String()
	}
	prefix, _ := client.Prefix(64)
	return prefix.String()
}

func (a *app) trusts(addr netip.Addr) bool {
	for _, p := range a.trustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// rateLimiter is a token bucket per client: each holds up to limit
// attempts and regains limit attempts per period, so a client may burst
// to limit and then go on at the steady rate. It is safe for concurrent use.
type rateLimiter struct {
	limit     float64
	period    time.Duration
	now       func() time.Time
	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	tokens float64
	at     time.Time
}

// newRateLimiter returns nil, no limit, if limit is 0.
func newRateLimiter(limit int, period time.Duration, now func() time.Time) *rateLimiter {
	if limit <= 0 {
		return nil
	}
	return &rateLimiter{limit: float64(limit), period: period, now: now, buckets: map[string]*bucket{}, lastSweep: now()}
}

// take spends one attempt of client's, and returns 0 if it had one, or
// else how long until it will.
func (l *rateLimiter) take(client string) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	perSecond := l.limit / l.period.Seconds()
	refill := func(b *bucket) {
		b.tokens = min(l.limit, b.tokens+now.Sub(b.at).Seconds()*perSecond)
		b.at = now
	}

	// Forget clients whose buckets have refilled, so the map stays as
	// small as the set of recently active clients.
	if now.Sub(l.lastSweep) > l.period {
		for key, b := range l.buckets {
			if refill(b); b.tokens >= l.limit {
				delete(l.buckets, key)
			}
		}
		l.lastSweep = now
	}

	b, ok := l.buckets[client]
	if !ok {
		b = &bucket{tokens: l.limit, at: now}
		l.buckets[client] = b
	}
	refill(b)
	if b.tokens >= 1 {
		b.tokens--
		return 0
	}
	return time.Duration((1 - b.tokens) / perSecond * float64(time.Second))
}
