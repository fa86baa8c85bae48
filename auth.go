// auth.go owns who a caller is: signup, login, the one check of a
// password (passwordMatches), the bearer-token check that guards the
// private routes, and the limits on signups and on failed logins and
// password changes. The hashing itself is in hashing.go.
//
// What it defends, and how:
//   - Passwords are hashed with bcrypt. bcrypt reads only the first 72
//     bytes, and x/crypto's compare silently truncates longer input, so we
//     refuse passwords over 72 bytes everywhere instead of truncating them.
//   - Every password check, at login and at password change, goes through
//     passwordMatches. Login answers an unknown email exactly as it
//     answers a wrong password, and only after a bcrypt run against a
//     dummy hash as dear as the dearest stored hash, so the time taken
//     does not tell whether an account exists. The dummy follows the
//     stored hashes as they change. A stored hash that is unusable (a
//     cost outside 4 to maxUsableCost, not a bcrypt hash, a broken salt:
//     unusablePasswordHash) is checked as an unknown email is, on every
//     path, so that it never holds a hashing worker, never answers faster
//     than the others, and is logged once.
//   - A successful login whose stored hash is cheaper than BCRYPT_COST
//     stores a new one at BCRYPT_COST, after the answer (rehashLater).
//   - Hashing runs on a pool at the lowest OS priority with a queue bounded
//     by the wait it would cause (passwordHasher, hashing.go).
//   - Attempts are counted per client address (r.RemoteAddr; a forwarded
//     address only from a configured proxy) and slowed with 429 past the
//     limit, in two budgets: signups (SIGNUPS_PER_HOUR), where every
//     attempt counts, and logins and password changes
//     (LOGIN_ATTEMPTS_PER_MINUTE), where only the failures count. So many
//     people behind one address can all sign up, and then all log in.
//   - A signup can never make a superuser, whatever its body says.
//   - Emails and names may not hold invisible characters (invisibleRune),
//     so that no two accounts or names that look alike differ by one.
//   - A stored hash that bcrypt cannot use, or that costs more than a
//     login can afford, never stops the start; that user cannot log in,
//     nor change the password, until an operator sets a new one.
package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
	"sync"
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

func (a *app) handleSignup(w http.ResponseWriter, r *http.Request) error {
	body, err := decodeJSONObject(r)
	if err != nil {
		return err
	}
	// Only these members are read: "is_superuser" and anything else a
	// client sends are ignored.
	email := body.text("email", true)
	if email != nil {
		*email = cleanEmail(*email)
		if msg := checkEmail(*email); msg != "" {
			body.add("body", "email", msg, "value_error.email")
		}
	}
	password := body.text("password", true)
	if password != nil {
		checkPassword(&body.problems, "password", *password, true)
	}
	firstName := body.text("first_name", false)
	checkName(&body.problems, "first_name", firstName)
	surname := body.text("surname", false)
	checkName(&body.problems, "surname", surname)
	if err := body.err(); err != nil {
		return err
	}

	hash, err := a.passwords.hash(r.Context(), *password)
	if err != nil {
		return err
	}
	u, err := a.store.createUser(r.Context(), user{FirstName: firstName, Surname: surname, Email: *email, HashedPassword: hash})
	if errors.Is(err, errEmailTaken) {
		return errEmailInUse
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, viewUser(u))
}

// cleanEmail is an email as it is checked, stored and looked up: without
// the white space around it, which a form or a paste easily adds.
func cleanEmail(email string) string { return strings.TrimSpace(email) }

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

// checkName records a problem with the optional body member name unless
// it fits the reference's VARCHAR(256) columns and holds no character
// that invisibleRune finds, so that no two names that look the same
// differ by one. Ordinary spaces are fine: "Ada Lovelace" is one name.
func checkName(p *problems, name string, value *string) {
	if value == nil {
		return
	}
	checkMaxChars(p, name, *value)
	if r, ok := invisibleRune(*value); ok {
		p.add("body", name, invisibleMessage(r), "value_error.str.invisible")
	}
}

// checkMaxChars records a problem with body member name if value is
// longer than the reference's VARCHAR(256) columns allow.
func checkMaxChars(p *problems, name, value string) {
	if utf8.RuneCountInString(value) > maxTextChars {
		p.tooLong("body", name, maxTextChars)
	}
}

// checkPassword records a problem with body member name unless password
// is one that bcrypt reads whole, at most maxPasswordBytes: compared by
// its first 72 bytes alone, a longer one could match. A new password must
// also have at least minPasswordBytes. The operator's commands apply the
// same rule (passwordProblem).
func checkPassword(p *problems, name, password string, isNew bool) {
	if isNew && len(password) < minPasswordBytes {
		p.tooShort("body", name, minPasswordBytes)
	}
	p.check(len(password) <= maxPasswordBytes, "body", name,
		fmt.Sprintf("ensure this value has at most %d bytes: bcrypt reads no more", maxPasswordBytes), "value_error.any_str.max_length")
}

// passwordProblem is checkPassword for a new password that an operator
// gives (FIRST_SUPERUSER_PW, createsuperuser), worded for the operator:
// what is wrong with it, or "" if nothing is.
func passwordProblem(password string) string {
	// A login form's password is UTF-8 (readForm refuses any other), so
	// nobody could ever log in with one that is not.
	if !utf8.ValidString(password) {
		return "is not UTF-8 text, which no login can send"
	}
	var p problems
	checkPassword(&p, "password", password, true)
	if len(p) > 0 {
		return fmt.Sprintf("must be %d to %d bytes", minPasswordBytes, maxPasswordBytes)
	}
	return ""
}

// handleLogin is OAuth2's password grant (RFC 6749 §4.3), as FastAPI's
// OAuth2PasswordRequestForm reads it: a urlencoded or multipart form with
// username (the email) and password. Any Authorization header is ignored:
// Swagger UI sends "Basic Og==" (an empty client id and secret).
func (a *app) handleLogin(w http.ResponseWriter, r *http.Request) error {
	if err := readForm(r); err != nil {
		return err
	}
	var form problems
	email, password := r.PostFormValue("username"), r.PostFormValue("password")
	grantType := r.PostFormValue("grant_type")
	form.require(email != "", "body", "username")
	form.require(password != "", "body", "password")
	checkPassword(&form, "password", password, false)
	form.check(grantType == "" || grantType == "password", "body", "grant_type",
		`string does not match regex "password"`, "value_error.str.regex")
	if err := form.err(); err != nil {
		return err
	}

	u, err := a.authenticate(r.Context(), email, password)
	if err != nil {
		return err
	}
	if err := a.startSession(w, r, u); err != nil {
		return err
	}
	a.rehashLater(u, password)
	return nil
}

// authenticate returns the user whose email and password these are, or
// errIncorrectLogin. Both outcomes cost one bcrypt run (passwordMatches),
// so their timing does not reveal which emails exist.
func (a *app) authenticate(ctx context.Context, email, password string) (user, error) {
	u, err := a.store.userByEmail(ctx, cleanEmail(email))
	var found *user
	switch {
	case err == nil:
		found = &u
	case !errors.Is(err, errNotFound):
		return user{}, err
	}
	ok, err := a.passwordMatches(ctx, found, password)
	if err != nil {
		return user{}, err
	}
	if !ok {
		return user{}, errIncorrectLogin
	}
	return u, nil
}

// passwordMatches reports whether password is that of u, against whose
// stored hash it is checked; u is nil for an unknown email. It is the one
// check of a password: login, password change and any later path go
// through it, so that all follow the same rules, and each costs one bcrypt
// run on the hashing pool whatever the outcome:
//   - A usable stored hash (unusablePasswordHash) is compared at its own
//     cost.
//   - An unknown email, and a stored hash that nobody can log in with (a
//     cost the service will not run, no bcrypt hash at all, a broken
//     salt), are compared against the dummy hash instead, at the cost of
//     the dearest usable stored hash (dummyCostFor), and never match: the
//     same answer in the same time, so that neither tells an account
//     apart, and never the unusable hash's own work (cost 31 would hold a
//     worker for years; a broken salt would fail at once). An unusable
//     hash is logged, once per user.
//   - Should bcrypt still refuse a hash that looked usable, the answer and
//     the log are the same.
func (a *app) passwordMatches(ctx context.Context, u *user, password string) (bool, error) {
	unusable := ""
	if u != nil {
		unusable = unusablePasswordHash(u.HashedPassword, a.passwords.cost)
	}
	if u == nil || unusable != "" {
		if err := a.passwords.compareUnknown(ctx, dummyCostFor(a.store, a.passwords.cost), password); err != nil {
			return false, err
		}
		if unusable != "" {
			a.logUnusableHash(u.ID, unusable)
		}
		return false, nil
	}
	ok, err := a.passwords.compare(ctx, u.HashedPassword, password)
	if errors.Is(err, errUnreadableHash) {
		a.logUnusableHash(u.ID, err.Error())
		return false, nil
	}
	return ok, err
}

// rehashLater replaces u's stored hash with one at BCRYPT_COST if it is
// cheaper, as passlib's needs_update and Django do, now that a login has
// shown password to be right. It runs once the answer is written, on the
// hashing pool like any hash, so the client waits for nothing more. The
// hash is replaced only if it is still the one the login checked: a
// password change meanwhile wins. The password is the same, so sessions
// and the token generation are left alone. If the pool is too busy, the
// hash stays as it was until a later login.
func (a *app) rehashLater(u user, password string) {
	cost, err := bcrypt.Cost([]byte(u.HashedPassword))
	if err != nil || cost >= a.passwords.cost {
		return
	}
	a.passwords.later(func(ctx context.Context) {
		hash, err := a.passwords.hash(ctx, password)
		if err != nil {
			a.logger.Info("password not rehashed yet", "user_id", u.ID, "err", err)
			return
		}
		replaced, err := a.store.replacePasswordHash(ctx, u.ID, u.HashedPassword, hash)
		if err != nil {
			a.logger.Warn("password not rehashed", "user_id", u.ID, "err", err)
			return
		}
		if replaced {
			a.logger.Info("password rehashed", "user_id", u.ID, "from_cost", cost, "to_cost", a.passwords.cost)
		}
	})
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
	full   bool // maxLoggedUnusableHashes are logged, and that was said
}

func (a *app) logUnusableHash(userID int64, reason string) {
	l := &a.unusableHashes
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.logged == nil {
		l.logged = map[int64]bool{}
	}
	switch {
	case l.logged[userID] || l.full:
		return
	case len(l.logged) == maxLoggedUnusableHashes:
		l.full = true
		a.logger.Warn("more users have unusable password hashes; they are no longer logged")
		return
	}
	l.logged[userID] = true
	a.logger.Warn("stored password hash is unusable: this user cannot log in until given a new password, "+
		"for instance with createsuperuser", "user_id", userID, "reason", reason)
}

func (a *app) handleMe(w http.ResponseWriter, r *http.Request, caller user) error {
	return writeJSON(w, http.StatusOK, viewUser(caller))
}

// requireUser lets a request through to next only with a valid bearer
// access token for a user who still exists, and hands next that user.
func (a *app) requireUser(next func(w http.ResponseWriter, r *http.Request, caller user) error) http.Handler {
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
		return next(w, r, u)
	})
}

// limitSignups answers 429 to a client address that has used up its
// signups (SIGNUPS_PER_HOUR); every attempt counts, since each may tell
// whether an email has an account. The budget is the signups' own, apart
// from the failed logins', so that a class that has just signed up from
// one address can log in. See rateLimiter.
func (a *app) limitSignups(next http.Handler) http.Handler {
	if a.signupLimiter == nil {
		return next
	}
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		if wait := a.signupLimiter.take(a.clientAddress(r)); wait > 0 {
			return errTooManyAttempts.retryIn(wait)
		}
		next.ServeHTTP(w, r)
		return nil
	})
}

// limitFailedLogins answers 429 to a client address that has used up its
// attempts, before any hashing; only failed attempts count. It guards
// login and password change, whose 400 is a wrong password or unknown
// email (or, for a password change, a body that could not be read): that
// is the failure. Any other answer gives the attempt back, so that many
// people behind one address (a classroom, an office NAT) can all log in.
// See rateLimiter.reserve.
func (a *app) limitFailedLogins(next http.Handler) http.Handler {
	if a.loginLimiter == nil {
		return next
	}
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		settle, wait, err := a.loginLimiter.reserve(r.Context(), a.clientAddress(r))
		if err != nil {
			return err
		}
		if settle == nil {
			return errTooManyAttempts.retryIn(wait)
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() { settle(rec.status == http.StatusBadRequest) }() // a failure stays spent
		next.ServeHTTP(rec, r)
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
// An entry is read as forwardedNode reads it.
func (a *app) clientAddress(r *http.Request) string {
	addrPort, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	client := addrPort.Addr().Unmap()
	if a.trusts(client) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0 && a.trusts(client); i-- {
			hop, ok := forwardedNode(hops[i])
			if !ok {
				break // garbage: keep the last address a trusted proxy gave
			}
			client = hop.Unmap()
		}
	}
	return addressGroup(client)
}

// forwardedNode reads one X-Forwarded-For entry as the address of the
// client it names. Proxies write an entry in any of the forms of RFC
// 7239's node (§6): 192.0.2.1, 192.0.2.1:80, [2001:db8::1],
// [2001:db8::1]:80, and the plain 2001:db8::1 that X-Forwarded-For has
// always allowed; the port is not part of the client. Anything else,
// "unknown" and obfuscated names included, names no address.
func forwardedNode(entry string) (netip.Addr, bool) {
	entry = strings.TrimSpace(entry)
	if addr, err := netip.ParseAddr(entry); err == nil {
		return addr, true
	}
	// With a port; ParseAddrPort wants brackets around IPv6 and only there.
	if addrPort, err := netip.ParseAddrPort(entry); err == nil {
		return addrPort.Addr(), true
	}
	if inner, ok := strings.CutPrefix(entry, "["); ok {
		if inner, ok := strings.CutSuffix(inner, "]"); ok {
			addr, err := netip.ParseAddr(inner)
			return addr, err == nil && addr.Is6()
		}
	}
	return netip.Addr{}, false
}

// addressGroup is how the limits count a client address: an IPv4 address
// alone, an IPv6 address by its /64 network.
func addressGroup(addr netip.Addr) string {
	if addr.Is4() {
		return addr.String()
	}
	prefix, _ := addr.Prefix(64)
	return prefix.String()
}

func (a *app) trusts(addr netip.Addr) bool { return inPrefixes(a.trustedProxies, addr) }

// inPrefixes reports whether addr is in any of prefixes.
func inPrefixes(prefixes []netip.Prefix, addr netip.Addr) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(addr) })
}
