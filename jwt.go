// jwt.go signs and verifies the service's access tokens: JSON Web Tokens
// (RFC 7519) in JWS compact form (RFC 7515), MACed with HMAC-SHA256 (HS256,
// RFC 7518 §3.2). It is written by hand on crypto/hmac so that every rule is
// in view. Nothing here touches the database or HTTP.
//
// A token is accepted only if every check passes, in this order:
//
//  1. It is at most maxTokenBytes long, checked before any other work, and
//     has exactly three parts split with strings.Cut (never strings.Split,
//     whose cost grows with the number of dots: CVE-2025-30204).
//  2. Every byte is one of A–Z a–z 0–9 - _ or one of the two dots. Go's
//     base64 decoder silently skips '\r' and '\n' even in strict mode, so
//     without this check one token would have many spellings.
//  3. Each part is unpadded base64url, decoded strictly (no stray bits).
//  4. The header is a JSON object in valid UTF-8, with no escaped lone
//     surrogate, and with exactly-named, non-repeated members;
//     "alg" is exactly "HS256"; "typ", if present, is "JWT"; a "crit"
//     member is refused, because we implement no extension it could name.
//     The algorithm is never chosen from the token: HS256 is the only one
//     this code knows, so there is no "none" and no algorithm confusion.
//  5. The signature is HMAC-SHA256 over the first two parts exactly as
//     sent, compared in constant time (hmac.Equal), before the payload is
//     decoded at all: an attacker without the secret never reaches the
//     payload parser.
//  6. The payload is a JSON object with exactly-named, non-repeated members
//     (encoding/json would fold case and keep the last duplicate, so
//     {"exp":1,"EXP":9e9} could mean different things to us and to another
//     library); "type" is "access_token"; "exp" is a number later than now;
//     "iat" and "nbf", if present, are numbers no later than now plus
//     clockLeeway; "sub" is a user id written in canonical decimal; "gen",
//     if present, is a whole number (absent means 0).
//
// Whether "sub" names a user who still exists, and whether "gen" is that
// user's current token generation (see endSessions in store.go), is for
// the caller to check.
// There is no "aud" or "iss": one issuer and one audience, this service.
// Every failure is reported as an error wrapping errInvalidToken; callers
// must treat them all alike (never accept a token because of which error it
// got: CVE-2024-51744).
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
	"unicode/utf8"
)

const (
	// maxTokenBytes bounds the work an unauthenticated client can ask for.
	maxTokenBytes = 8 << 10

	// minSecretBytes is the HS256 key size RFC 7518 §3.2 asks for: at least
	// as long as the hash output.
	minSecretBytes = 32

	// clockLeeway forgives clocks that run a little ahead of ours for "iat"
	// and "nbf". "exp" gets none: a token is dead at its expiry.
	clockLeeway = 60 * time.Second

	// maxObjectMembers is far more than any header or payload we accept has.
	maxObjectMembers = 64

	accessTokenType = "access_token"
)

// errInvalidToken is wrapped by every verification failure.
var errInvalidToken = errors.New("invalid token")

// tokenHeader is the only header this service writes. Its bytes are the ones
// python-jose writes (sorted keys, no spaces), so tokens from the Python
// reference and ours look alike.
var tokenHeaderB64 = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// accessClaims is what a verified access token says.
type accessClaims struct {
	UserID     int64
	Generation int64     // the user's token generation when it was issued
	IssuedAt   time.Time // zero if the token has no "iat"
	ExpiresAt  time.Time
}

// tokenKey is an HS256 key. It keeps a pool of HMACs keyed by it, since
// keying a new HMAC for every token costs more than the MAC itself.
type tokenKey struct {
	macs sync.Pool // of hash.Hash, each an HMAC-SHA256 keyed by the secret
}

func newTokenKey(secret []byte) *tokenKey {
	secret = bytes.Clone(secret)
	return &tokenKey{macs: sync.Pool{New: func() any { return hmac.New(sha256.New, secret) }}}
}

// sum is the JWS signature of signingInput: HMAC-SHA256 under the key.
func (k *tokenKey) sum(signingInput []byte) []byte {
	mac := k.macs.Get().(hash.Hash)
	defer k.macs.Put(mac)
	mac.Reset()
	mac.Write(signingInput)
	var sum [sha256.Size]byte
	return mac.Sum(sum[:0])
}

// signAccessToken returns an access token for userID in the given token
// generation, issued at now and valid for lifetime. The payload has the
// reference's members in the reference's order, type, exp, iat, sub, and
// then "gen" unless it is 0: until a user first logs out or changes
// password, our tokens are exactly those the reference would make.
func signAccessToken(key *tokenKey, userID, generation int64, now time.Time, lifetime time.Duration) string {
	payload := make([]byte, 0, 96)
	payload = append(payload, `{"type":"access_token","exp":`...)
	payload = strconv.AppendInt(payload, now.Add(lifetime).Unix(), 10)
	payload = append(payload, `,"iat":`...)
	payload = strconv.AppendInt(payload, now.Unix(), 10)
	payload = append(payload, `,"sub":"`...)
	payload = strconv.AppendInt(payload, userID, 10)
	payload = append(payload, '"')
	if generation != 0 {
		payload = append(payload, `,"gen":`...)
		payload = strconv.AppendInt(payload, generation, 10)
	}
	payload = append(payload, '}')

	token := make([]byte, 0, 256)
	token = append(token, tokenHeaderB64...)
	token = append(token, '.')
	token = base64.RawURLEncoding.AppendEncode(token, payload)
	signature := key.sum(token)
	token = append(token, '.')
	token = base64.RawURLEncoding.AppendEncode(token, signature)
	return string(token)
}

// verifyAccessToken applies the rules in this file's doc comment, in order,
// and returns the token's claims only if all of them hold.
func verifyAccessToken(key *tokenKey, token string, now time.Time) (accessClaims, error) {
	// Rule 1: size, then exactly three parts.
	if len(token) > maxTokenBytes {
		return accessClaims{}, fmt.Errorf("%w: longer than %d bytes", errInvalidToken, maxTokenBytes)
	}
	headerB64, rest, ok1 := strings.Cut(token, ".")
	payloadB64, signatureB64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(signatureB64, ".") {
		return accessClaims{}, fmt.Errorf("%w: not three parts", errInvalidToken)
	}

	// Rules 2 and 3: alphabet, then strict base64url of each part.
	if !isBase64URLToken(token) {
		return accessClaims{}, fmt.Errorf("%w: character outside base64url", errInvalidToken)
	}
	var signature [sha256.Size]byte
	if strictRawURL.DecodedLen(len(signatureB64)) != len(signature) {
		return accessClaims{}, fmt.Errorf("%w: signature: not %d bytes", errInvalidToken, len(signature))
	}
	if _, err := strictRawURL.Decode(signature[:], []byte(signatureB64)); err != nil {
		return accessClaims{}, fmt.Errorf("%w: signature: %v", errInvalidToken, err)
	}

	// Rule 4: the header pins the algorithm; it never selects one. The
	// header that this service and the reference write is good as it
	// stands; any other is decoded and checked member by member.
	if headerB64 != tokenHeaderB64 {
		header, err := decodeSegment(headerB64)
		if err != nil {
			return accessClaims{}, fmt.Errorf("%w: header: %v", errInvalidToken, err)
		}
		if err := checkHeader(header); err != nil {
			return accessClaims{}, fmt.Errorf("%w: header: %v", errInvalidToken, err)
		}
	}

	// Rule 5: the MAC, before anything in the payload is looked at.
	signingInput := token[:len(headerB64)+1+len(payloadB64)]
	if !hmac.Equal(signature[:], key.sum([]byte(signingInput))) {
		return accessClaims{}, fmt.Errorf("%w: bad signature", errInvalidToken)
	}

	// Rule 6: the claims.
	payload, err := decodeSegment(payloadB64)
	if err != nil {
		return accessClaims{}, fmt.Errorf("%w: payload: %v", errInvalidToken, err)
	}
	claims, err := checkClaims(payload, now)
	if err != nil {
		return accessClaims{}, fmt.Errorf("%w: claims: %v", errInvalidToken, err)
	}
	return claims, nil
}

// isBase64URLToken reports whether s holds only the base64url alphabet and dots.
func isBase64URLToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'A' <= c && c <= 'Z', 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

var strictRawURL = base64.RawURLEncoding.Strict()

func decodeSegment(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	return strictRawURL.DecodeString(s)
}

func checkHeader(header []byte) error {
	var alg, typ string
	var haveAlg, haveTyp bool
	err := forEachMember(header, func(name, value []byte) error {
		var err error
		switch string(name) {
		case "alg":
			alg, err = jsonString(value)
			haveAlg = true
		case "typ":
			typ, err = jsonString(value)
			haveTyp = true
		case "crit":
			err = errors.New(`"crit" is not supported`)
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case !haveAlg || alg != "HS256":
		return errors.New(`"alg" is not "HS256"`)
	case haveTyp && typ != "JWT":
		return errors.New(`"typ" is not "JWT"`)
	}
	return nil
}

func checkClaims(payload []byte, now time.Time) (accessClaims, error) {
	var (
		claims           accessClaims
		tokenType, sub   string
		exp, iat, nbf    float64
		gen              float64
		haveExp, haveIat bool
		haveNbf          bool
	)
	err := forEachMember(payload, func(name, value []byte) error {
		var err error
		switch string(name) {
		case "type":
			tokenType, err = jsonString(value)
		case "sub":
			sub, err = jsonString(value)
		case "exp":
			exp, err = jsonNumber(value)
			haveExp = true
		case "iat":
			iat, err = jsonNumber(value)
			haveIat = true
		case "nbf":
			nbf, err = jsonNumber(value)
			haveNbf = true
		case "gen":
			gen, err = jsonNumber(value)
		}
		if err != nil {
			return fmt.Errorf("%q: %v", name, err)
		}
		return nil
	})
	if err != nil {
		return accessClaims{}, err
	}

	nowSeconds := float64(now.UnixNano()) / 1e9
	leeway := clockLeeway.Seconds()
	switch {
	case !isNumericDate(exp) || (haveIat && !isNumericDate(iat)) || (haveNbf && !isNumericDate(nbf)):
		return accessClaims{}, errors.New("a date is out of range")
	case tokenType != accessTokenType:
		return accessClaims{}, errors.New(`"type" is not "access_token"`)
	case !haveExp:
		return accessClaims{}, errors.New(`no "exp"`)
	case !(nowSeconds < exp):
		return accessClaims{}, errors.New("expired")
	case haveIat && iat > nowSeconds+leeway:
		return accessClaims{}, errors.New(`"iat" is in the future`)
	case haveNbf && nbf > nowSeconds+leeway:
		return accessClaims{}, errors.New(`"nbf" is in the future`)
	case gen < 0 || gen != math.Trunc(gen) || gen > 1<<53:
		return accessClaims{}, errors.New(`"gen" is not a whole number`)
	}

	claims.UserID, err = strconv.ParseInt(sub, 10, 64)
	if err != nil || claims.UserID <= 0 || strconv.FormatInt(claims.UserID, 10) != sub {
		return accessClaims{}, errors.New(`"sub" is not a user id`)
	}
	claims.Generation = int64(gen)
	claims.ExpiresAt = secondsToTime(exp)
	if haveIat {
		claims.IssuedAt = secondsToTime(iat)
	}
	return claims, nil
}

// isNumericDate reports whether seconds is a date from 1970 to about the
// year 36800: beyond that, float64 seconds would not convert to time.Time.
func isNumericDate(seconds float64) bool {
	return seconds >= 0 && seconds < 1<<40
}

func secondsToTime(seconds float64) time.Time {
	whole, frac := math.Modf(seconds)
	return time.Unix(int64(whole), int64(frac*1e9))
}

// The ways forEachMember refuses a JSON object. The request body decoder
// (decodeJSONObject, main.go) tells the client which one it was.
var (
	errNotUTF8        = errors.New("not valid UTF-8")
	errLoneSurrogate  = errors.New(`holds a \u escape of a lone UTF-16 surrogate`)
	errNotJSONObject  = errors.New("not a JSON object")
	errTooManyMembers = fmt.Errorf("more than %d members", maxObjectMembers)
)

// repeatedMemberError is an object in which the member name appears twice.
type repeatedMemberError struct{ name string }

func (e *repeatedMemberError) Error() string { return fmt.Sprintf("member %q repeats", e.name) }

// forEachMember calls fn with the name and raw value of each member of the
// JSON object in data. It refuses anything that is not a single valid UTF-8
// JSON object, any escaped lone surrogate ("\ud800") anywhere in it, and
// any object in which a name appears twice (after escapes are decoded, so
// "\u0065xp" is "exp"). Names are compared exactly, byte for byte.
func forEachMember(data []byte, fn func(name, value []byte) error) error {
	// json.Valid does not check UTF-8 inside strings, nor surrogate
	// escapes; RFC 8725 §3.7 asks for UTF-8 only, and encoding/json would
	// silently replace either with U+FFFD, so that many different texts
	// would decode to the same value.
	switch {
	case !utf8.Valid(data):
		return errNotUTF8
	case !json.Valid(data):
		return errNotJSONObject
	case hasLoneSurrogate(data):
		return errLoneSurrogate
	}
	rest := bytes.TrimSpace(data)
	if len(rest) == 0 || rest[0] != '{' {
		return errNotJSONObject
	}
	rest = bytes.TrimSpace(rest[1:])
	seen := make([][]byte, 0, 8)
	for len(rest) > 0 && rest[0] != '}' {
		// The repeat check below is quadratic; the cap keeps it small on
		// the header, which is parsed before the MAC is known to be good,
		// and on request bodies, which anyone may send.
		if len(seen) == maxObjectMembers {
			return errTooManyMembers
		}
		// json.Valid has vouched for the syntax, so each member is:
		// string, optional space, colon, optional space, value.
		rawName, after := cutJSONValue(rest)
		name, err := jsonStringBytes(rawName)
		if err != nil {
			return err
		}
		for _, s := range seen {
			if bytes.Equal(s, name) {
				return &repeatedMemberError{name: string(name)}
			}
		}
		seen = append(seen, name)
		after = bytes.TrimSpace(after)[1:] // the colon
		value, after := cutJSONValue(bytes.TrimSpace(after))
		if err := fn(name, value); err != nil {
			return err
		}
		rest = bytes.TrimSpace(after)
		if len(rest) > 0 && rest[0] == ',' {
			rest = bytes.TrimSpace(rest[1:])
		}
	}
	return nil
}

// hasLoneSurrogate reports whether the valid JSON text data holds a \u
// escape of a UTF-16 surrogate (U+D800 to U+DFFF) that is not a high one
// directly followed by an escaped low one, the only way JSON can spell a
// character beyond U+FFFF as escapes. In valid JSON a backslash occurs
// only inside a string and always starts an escape, and \u always has
// four hex digits after it.
func hasLoneSurrogate(data []byte) bool {
	for i := 0; i < len(data); i++ {
		if data[i] != '\\' {
			continue
		}
		i++ // the escaped character: skipped, so that "\\u" is no escape
		if data[i] != 'u' {
			continue
		}
		r := hexRune(data[i+1 : i+5])
		i += 4
		if !utf16.IsSurrogate(r) {
			continue
		}
		if i+6 < len(data) && data[i+1] == '\\' && data[i+2] == 'u' &&
			utf16.DecodeRune(r, hexRune(data[i+3:i+7])) != utf8.RuneError {
			i += 6 // a high surrogate and its low one: a good pair
			continue
		}
		return true
	}
	return false
}

// hexRune reads four hex digits, which json.Valid has checked.
func hexRune(digits []byte) rune {
	n, _ := strconv.ParseUint(string(digits), 16, 16)
	return rune(n)
}

// cutJSONValue splits valid JSON text into its first value and the rest.
func cutJSONValue(data []byte) (value, rest []byte) {
	depth, inString := 0, false
	for i := 0; i < len(data); i++ {
		c := data[i]
		switch {
		case inString && c == '\\':
			i++ // skip the escaped byte
		case inString && c == '"':
			inString = false
			if depth == 0 {
				return data[:i+1], data[i+1:]
			}
		case inString:
		case c == '"':
			inString = true
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 { // the end of the enclosing object
				return data[:i], data[i:]
			}
			depth--
			if depth == 0 {
				return data[:i+1], data[i+1:]
			}
		case depth == 0 && (c == ',' || c == ' ' || c == '\t' || c == '\n' || c == '\r'):
			return data[:i], data[i:]
		}
	}
	return data, nil
}

// jsonStringBytes decodes a JSON string value without copying it unless it
// has escapes; anything else is an error.
func jsonStringBytes(value []byte) ([]byte, error) {
	if len(value) < 2 || value[0] != '"' {
		return nil, errors.New("not a string")
	}
	if bytes.IndexByte(value, '\\') < 0 {
		return value[1 : len(value)-1], nil
	}
	var s string
	err := json.Unmarshal(value, &s)
	return []byte(s), err
}

// jsonString decodes a JSON string value; anything else is an error.
func jsonString(value []byte) (string, error) {
	s, err := jsonStringBytes(value)
	return string(s), err
}

// jsonNumber decodes a JSON number; a string of digits is not a number.
func jsonNumber(value []byte) (float64, error) {
	if len(value) == 0 || !(value[0] == '-' || ('0' <= value[0] && value[0] <= '9')) {
		return 0, errors.New("not a number")
	}
	f, err := strconv.ParseFloat(string(value), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, errors.New("not a finite number")
	}
	return f, nil
}
