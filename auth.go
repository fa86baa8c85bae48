// auth.go owns who a caller is: signup, login and the one check of a
// password (passwordMatches), the bearer-token check of the private
// routes, the limits on signups and failed logins, the client address they
// count by, and the user rows. Its defences:
//   - bcrypt reads only 72 bytes of a password, so a longer one is refused
//     everywhere rather than truncated.
//   - An unknown email answers as a wrong password does, after one bcrypt
//     run as dear as the dearest stored hash, so that timing tells no
//     account apart; an unusable stored hash is checked the same way.
//   - Attempts are counted per client address, in two budgets: every
//     signup, and failed logins and password changes only, so that many
//     people behind one address can all sign up and then all log in.
//   - A signup never makes a superuser; emails and names hold no
//     invisible character (invisibleRune), so no two that look alike differ.
package main

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/mail"
	"net/netip"
	"slices"
	"strings"
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
	// Only these members are read: "is_superuser" is ignored.
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
// the white space a form or a paste easily adds around it.
func cleanEmail(email string) string { return strings.TrimSpace(email) }

// emailKey is the one rule for which emails are one account: lower case,
// in every script. It fills user.email_key, under a unique index, and is
// SQL's casefold(), with which migration 2 filled the column.
func emailKey(email string) string { return strings.ToLower(email) }

// checkEmail returns what is wrong with email as an address, or "".
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

// invisibleLetters are the known letters, marks and symbols that show as
// nothing, or as a blank.
var invisibleLetters = []rune{
	0x115F, 0x1160, 0x3164, 0xFFA0, // Hangul choseong, jungseong, compatibility and halfwidth fillers
	0x2800,         // braille pattern blank
	0x034F,         // combining grapheme joiner
	0x17B4, 0x17B5, // Khmer vowel inherent AQ and AA
}

// invisibleRune returns the first character of s, other than the space
// U+0020, that a reader cannot see, so that two strings that look the
// same could differ by it: a control (Cc) or format character (Cf: the
// zero-width ones, bidirectional controls, the soft hyphen, tags, …),
// any other space or separator (Zs, Zl, Zp), a variation selector, or one
// of invisibleLetters.
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
// it fits in maxTextChars and holds no invisibleRune.
func checkName(p *problems, name string, value *string) {
	if value == nil {
		return
	}
	checkMaxChars(p, name, *value)
	if r, ok := invisibleRune(*value); ok {
		p.add("body", name, invisibleMessage(r), "value_error.str.invisible")
	}
}

// checkMaxChars fits value to the reference's VARCHAR(256) columns.
func checkMaxChars(p *problems, name, value string) {
	if utf8.RuneCountInString(value) > maxTextChars {
		p.tooLong("body", name, maxTextChars)
	}
}

// checkPassword records a problem with body member name unless bcrypt
// reads password whole: compared by its first 72 bytes alone, a longer
// one could match. A new one needs at least minPasswordBytes.
func checkPassword(p *problems, name, password string, isNew bool) {
	if isNew && len(password) < minPasswordBytes {
		p.tooShort("body", name, minPasswordBytes)
	}
	p.check(len(password) <= maxPasswordBytes, "body", name,
		fmt.Sprintf("ensure this value has at most %d bytes: bcrypt reads no more", maxPasswordBytes), "value_error.any_str.max_length")
}

// passwordProblem is checkPassword for a new password an operator gives,
// worded for the operator, or "". readForm refuses a login that is not
// UTF-8, so such a password could never be used.
func passwordProblem(password string) string {
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

// handleLogin is OAuth2's password grant (RFC 6749 §4.3) as FastAPI's
// OAuth2PasswordRequestForm reads it. Any Authorization header is ignored:
// Swagger UI sends "Basic Og==".
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

	u, err := a.store.userByEmail(r.Context(), cleanEmail(email))
	if err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	ok, err := a.passwordMatches(r.Context(), u, password)
	if err != nil {
		return err
	}
	if !ok {
		return errIncorrectLogin
	}
	if err := a.startSession(w, r, u); err != nil {
		return err
	}
	a.rehashLater(u, password)
	return nil
}

// passwordMatches is the one check of a password, at login and password
// change; u is the zero user, whose empty hash is unusable, for an unknown
// email. Every outcome costs one bcrypt run, so the time tells no account
// apart. An unusable hash and a password over 72 bytes are run against the
// dummy hash and never match: an unusable hash's own run could fail at
// once, or hold a worker for years.
func (a *app) passwordMatches(ctx context.Context, u user, password string) (bool, error) {
	unusable := unusablePasswordHash(u.HashedPassword, a.passwords.cost)
	if unusable != "" || len(password) > maxPasswordBytes {
		if err := compareDummy(ctx, a.passwords, a.store, password); err != nil {
			return false, err
		}
		if unusable != "" && u.ID != 0 {
			a.logUnusableHash(u.ID, unusable)
		}
		return false, nil
	}
	ok, err := a.passwords.compare(ctx, u.HashedPassword, password)
	if errors.Is(err, errUnreadableHash) { // bcrypt refused a hash that looked usable
		a.logUnusableHash(u.ID, err.Error())
		return false, nil
	}
	return ok, err
}

// logUnusableHash logs at each attempt, which the failed-login limit
// bounds, that userID cannot log in.
func (a *app) logUnusableHash(userID int64, reason string) {
	a.logger.Warn("stored password hash is unusable: this user cannot log in until given a new password, "+
		"for instance with createsuperuser", "user_id", userID, "reason", reason)
}

const dummyPassword = "no user has this password"

// compareDummy runs bcrypt once at dummyCost against the dummy hash; if
// the dummy has another cost, that run makes the new dummy instead, which
// costs the same, so no login pays for two.
func compareDummy(ctx context.Context, p *passwordHasher, st *store, password string) error {
	cost, err := dummyCost(ctx, st, p.cost)
	if err != nil {
		return err
	}
	if d := p.dummy.Load(); d != nil {
		if dummyCost, _ := hashCost(*d); dummyCost == cost {
			_, err := p.compare(ctx, *d, password)
			return err
		}
	}
	hash, err := p.hashAt(ctx, dummyPassword, cost)
	if err == nil {
		p.dummy.Store(&hash)
	}
	return err
}

const highestCostQuery = `SELECT coalesce((SELECT substr(hashed_password, 5, 2) FROM user
	WHERE substr(hashed_password, 5, 2) BETWEEN '04' AND ?1 AND hashed_password GLOB '$2[abxy]$[0-9][0-9]$*'
	ORDER BY substr(hashed_password, 5, 2) DESC LIMIT 1), ?2)`

// dummyCost is the one rule for what a login without a usable hash pays:
// the dearest usable stored cost, from the index user_password_cost at
// each such login, so no account answers slower; cost if none is stored.
func dummyCost(ctx context.Context, st *store, cost int) (int, error) {
	err := st.reader.QueryRowContext(ctx, highestCostQuery, fmt.Sprintf("%02d", maxUsableCost(cost)), cost).Scan(&cost)
	return cost, wrapErr(err, "read password costs")
}

// newPasswordHasherFor returns the pool for the users in st, its dummy
// hash made.
func newPasswordHasherFor(ctx context.Context, st *store, cost int) (*passwordHasher, error) {
	p := newPasswordHasher(cost)
	if err := compareDummy(ctx, p, st, ""); err != nil {
		p.close()
		return nil, fmt.Errorf("make the dummy hash: %w", err)
	}
	return p, nil
}

// maxStoredCost is the dearest stored hash a login runs, unless
// BCRYPT_COST is higher: cost 12 takes about 0.25 s of a CPU, 18 about
// 15 s, 31 about four years; a dearer one could only be put there by hand.
const maxStoredCost = 18

func maxUsableCost(cost int) int { return max(cost, maxStoredCost) }

// unusablePasswordHash says why nobody can log in with hash, or returns ""
// if it is a whole bcrypt hash (hashCost) at a cost from 4 to
// maxUsableCost(cost). The reason never shows the hash.
func unusablePasswordHash(hash string, cost int) string {
	stored, problem := hashCost(hash)
	switch {
	case problem != "":
		return problem
	case stored < bcrypt.MinCost:
		return fmt.Sprintf("bcrypt cost %d is under %d", stored, bcrypt.MinCost)
	case stored > maxUsableCost(cost):
		return fmt.Sprintf("bcrypt cost %d is over %d", stored, maxUsableCost(cost))
	}
	return ""
}

// rehashLater stores a cheaper hash of password anew at BCRYPT_COST, after
// the answer, unless a password change replaced it meanwhile. The password
// is the same, so sessions are left alone.
func (a *app) rehashLater(u user, password string) {
	cost, problem := hashCost(u.HashedPassword)
	if problem != "" || cost >= a.passwords.cost || a.store.liteFS.writable() != nil {
		return // nothing to do, or not here: a LiteFS replica writes nothing
	}
	started := a.passwords.later(func(ctx context.Context) {
		hash, err := a.passwords.hash(ctx, password)
		if err != nil {
			a.logger.Info("password not rehashed yet", "user_id", u.ID, "err", err)
			return
		}
		replaced, err := a.store.replacePasswordHash(ctx, u.ID, u.HashedPassword, hash)
		if err != nil {
			a.logger.Warn("password not rehashed", "user_id", u.ID, "err", err)
		} else if replaced {
			a.logger.Info("password rehashed", "user_id", u.ID, "from_cost", cost, "to_cost", a.passwords.cost)
		}
	})
	if !started {
		a.logger.Info("password not rehashed yet: the service is stopping", "user_id", u.ID)
	}
}

func (a *app) handleMe(w http.ResponseWriter, r *http.Request, caller user) error {
	return writeJSON(w, http.StatusOK, viewUser(caller))
}

// requireUser hands next the user of a valid bearer access token.
func (a *app) requireUser(next func(w http.ResponseWriter, r *http.Request, caller user) error) http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		w.Header().Add("Vary", "Authorization")
		w.Header().Set("Cache-Control", "no-store") // the user's alone (RFC 9111 §5.2.2.5)
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
		if errors.Is(err, errNotFound) || err == nil && claims.Generation != u.TokenGeneration {
			return errBadToken
		}
		if err != nil {
			return err
		}
		return next(w, r, u)
	})
}

// limitSignups answers 429 to a client address that has used up its
// signups; each counts, since each may tell whether an email is taken.
func (a *app) limitSignups(next http.Handler) http.Handler {
	return a.limitAttempts(a.signupLimiter, func(int) bool { return true }, next)
}

// limitFailedLogins answers 429 to a client address that has used up its
// attempts at login and password change. Only a 400, a wrong password,
// counts: any other answer gives the attempt back, so many people behind
// one address can all log in.
func (a *app) limitFailedLogins(next http.Handler) http.Handler {
	return a.limitAttempts(a.loginLimiter, func(status int) bool { return status == http.StatusBadRequest }, next)
}

// limitAttempts answers 429, before any hashing, to a client address that
// has used up l; spent says of an answer whether its attempt stays spent.
func (a *app) limitAttempts(l *rateLimiter, spent func(status int) bool, next http.Handler) http.Handler {
	if l == nil {
		return next
	}
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		settle, wait, err := l.reserve(r.Context(), a.clientAddress(r))
		if err != nil {
			return err
		}
		if settle == nil {
			return errTooManyAttempts.retryIn(wait)
		}
		rec := &statusRecorder{ResponseWriter: w}
		defer func() { settle(spent(rec.status)) }()
		next.ServeHTTP(rec, r)
		return nil
	})
}

// clientAddress is the client a request came from, as addressGroup counts
// it: the one another LiteFS node forwarded it for, or r.RemoteAddr, unless
// that is a trusted proxy; then the nearest address in X-Forwarded-For,
// read from the right, that is not one. Any client could write the
// header, so no other is believed.
func (a *app) clientAddress(r *http.Request) string {
	if client, ok := r.Context().Value(forwardedClientKey{}).(string); ok {
		return client // from another node, which read it so (acceptForwarded)
	}
	addrPort, err := netip.ParseAddrPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	client := addrPort.Addr().Unmap()
	if inPrefixes(a.trustedProxies, client) {
		hops := strings.Split(strings.Join(r.Header.Values("X-Forwarded-For"), ","), ",")
		for i := len(hops) - 1; i >= 0 && inPrefixes(a.trustedProxies, client); i-- {
			hop, ok := forwardedNode(hops[i])
			if !ok {
				break // garbage: keep the last address a trusted proxy gave
			}
			client = hop.Unmap()
		}
	}
	return addressGroup(client)
}

// forwardedNode reads one X-Forwarded-For entry in any form of RFC 7239's
// node (§6), or a bare IPv6 address, as the address it names; "unknown"
// and obfuscated names name none.
func forwardedNode(entry string) (netip.Addr, bool) {
	entry = strings.TrimSpace(entry)
	if addr, err := netip.ParseAddr(entry); err == nil {
		return addr, true
	}
	if addrPort, err := netip.ParseAddrPort(entry); err == nil {
		return addrPort.Addr(), true
	}
	if inner, ok := strings.CutPrefix(entry, "["); ok && strings.HasSuffix(inner, "]") {
		addr, err := netip.ParseAddr(strings.TrimSuffix(inner, "]"))
		return addr, err == nil && addr.Is6()
	}
	return netip.Addr{}, false
}

// addressGroup is how the limits count a client: an IPv6 one by its /64,
// which one client commonly holds.
func addressGroup(addr netip.Addr) string {
	if addr.Is4() {
		return addr.String()
	}
	prefix, _ := addr.Prefix(64)
	return prefix.String()
}

func inPrefixes(prefixes []netip.Prefix, addr netip.Addr) bool {
	return slices.ContainsFunc(prefixes, func(p netip.Prefix) bool { return p.Contains(addr) })
}

type user struct {
	ID              int64
	FirstName       *string
	Surname         *string
	Email           string
	IsSuperuser     bool
	HashedPassword  string
	TokenGeneration int64 // moved on by each logout and password change
}

// replacePasswordHash sets user id's hash to newHash if it is still
// oldHash, and reports whether it was; it ends no session.
func (s *store) replacePasswordHash(ctx context.Context, id int64, oldHash, newHash string) (bool, error) {
	var replaced int64
	err := s.write(ctx, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"UPDATE user SET hashed_password = ? WHERE id = ? AND hashed_password = ?", newHash, id, oldHash)
		if err == nil {
			replaced, err = res.RowsAffected()
		}
		return err
	})
	return replaced == 1 && err == nil, wrapErr(err, "replace password hash of user %d", id)
}

// promoteToSuperuser makes user id a superuser and ends its sessions, as
// endSessionsTx does, in one transaction: a token of the user before,
// perhaps a thief's, must not be a superuser's after.
func (s *store) promoteToSuperuser(ctx context.Context, id int64, newHashedPassword string) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE user SET is_superuser = 1 WHERE id = ?", id); err != nil {
			return err
		}
		_, err := endSessionsTx(ctx, tx, id, newHashedPassword)
		return err
	})
	if err != nil {
		// Not wrapErr: errNotFound too is a failure here, named as one.
		return fmt.Errorf("promote user %d: %w", id, err)
	}
	return nil
}

func (s *store) hasUsers(ctx context.Context) (bool, error) { return anyUser(ctx, s.reader) }

// anyUser reports whether q, a reader or a write transaction, finds a user.
func anyUser(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (bool, error) {
	var exists bool
	err := q.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM user)").Scan(&exists)
	return exists, wrapErr(err, "count users")
}

const userColumns = "id, first_name, surname, email, COALESCE(is_superuser, 0), hashed_password, token_generation"

func scanUser(row rowScanner) (user, error) {
	var u user
	err := row.Scan(&u.ID, &u.FirstName, &u.Surname, &u.Email, &u.IsSuperuser, &u.HashedPassword, &u.TokenGeneration)
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, errNotFound
	}
	return u, err
}

// createUser inserts u and returns it with its id, or errEmailTaken: the
// unique index decides, so two racing signups cannot both win.
func (s *store) createUser(ctx context.Context, u user) (user, error) {
	err := s.write(ctx, func(tx *sql.Tx) (err error) {
		u, err = insertUser(ctx, tx, u)
		return err
	})
	return u, wrapErr(err, "create user")
}

// insertUser is how every user comes to be: it inserts u in tx with a
// fresh identity. AUTOINCREMENT gives an id above every one ever given; a
// random first generation and the deletion of any session naming the id
// keep a token left by an earlier database or user from fitting the new one.
func insertUser(ctx context.Context, tx *sql.Tx, u user) (user, error) {
	u.TokenGeneration = randomGeneration()
	err := tx.QueryRowContext(ctx, `INSERT INTO user
		(first_name, surname, email, email_key, is_superuser, hashed_password, token_generation)
		VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		u.FirstName, u.Surname, u.Email, emailKey(u.Email), u.IsSuperuser, u.HashedPassword, u.TokenGeneration).Scan(&u.ID)
	switch {
	case isUniqueViolation(err):
		return user{}, errEmailTaken
	case isFull(err) && userIDsUsedUp(ctx, tx):
		return user{}, errUserIDsUsedUp
	case err == nil:
		_, err = tx.ExecContext(ctx, "DELETE FROM session WHERE user_id = ?", u.ID)
	}
	return u, err
}

// randomGeneration is a random whole number that a JSON number holds exactly.
func randomGeneration() int64 {
	return int64(binary.BigEndian.Uint64(randomBytes(8))>>12) + 1
}

// userIDsUsedUp reports whether AUTOINCREMENT can give no more ids: it
// gives one above both the highest it gave and the highest there.
func userIDsUsedUp(ctx context.Context, tx *sql.Tx) bool {
	var usedUp bool
	err := tx.QueryRowContext(ctx, `SELECT (SELECT coalesce(max(id), 0) FROM user) = ?1
		OR EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'user' AND seq = ?1)`, int64(math.MaxInt64)).Scan(&usedUp)
	return err == nil && usedUp
}

// userByEmail finds a user by emailKey; errNotFound if none.
func (s *store) userByEmail(ctx context.Context, email string) (user, error) {
	u, err := scanUser(s.userByEmailQuery.QueryRowContext(ctx, emailKey(email)))
	return u, wrapErr(err, "user by email")
}

// userByID reads the user at every request, never from a cache, so that a
// logout or a password change, by this process or another, ends every
// older token at once.
func (s *store) userByID(ctx context.Context, id int64) (user, error) {
	u, err := scanUser(s.userByIDQuery.QueryRowContext(ctx, id))
	return u, wrapErr(err, "user %d", id)
}
