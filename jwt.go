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
//  2. No byte is '\r' or '\n'. Go's strict base64 decoder refuses every
//     other byte outside A–Z a–z 0–9 - _, but skips those two, so without
//     this check one token would have many spellings.
//  3. Each part is unpadded base64url, decoded strictly (no stray bits):
//     the signature here, the header and payload when rules 4 and 6 read
//     them.
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
	"errors"
	"fmt"
	"hash"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
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

	accessTokenType = "access_token"
)

// errInvalidToken is wrapped by every verification failure.
var errInvalidToken = errors.New("invalid token")

// tokenHeaderB64 is the only header this service writes, encoded. Its
// bytes are the ones python-jose writes (sorted keys, no spaces), so
// tokens from the Python reference and ours look alike.
var tokenHeaderB64 = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// accessClaims is what a verified access token says: whose it is, and of
// which of that user's token generations.
type accessClaims struct {
	UserID     int64
	Generation int64
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
	return mac.Sum(nil)
}

// signAccessToken returns an access token for userID in the given token
// generation, issued at now and valid for lifetime. The payload has the
// reference's members in the reference's order, type, exp, iat, sub, and
// then "gen" unless it is 0: until a user first logs out or changes
// password, our tokens are exactly those the reference would make.
func signAccessToken(key *tokenKey, userID, generation int64, now time.Time, lifetime time.Duration) string {
	payload := fmt.Appendf(nil, `{"type":%q,"exp":%d,"iat":%d,"sub":"%d"`, accessTokenType, now.Add(lifetime).Unix(), now.Unix(), userID)
	if generation != 0 {
		payload = fmt.Appendf(payload, `,"gen":%d`, generation)
	}
	signingInput := tokenHeaderB64 + "." + base64.RawURLEncoding.EncodeToString(append(payload, '}'))
	return signingInput + "." + base64.RawURLEncoding.EncodeToString(key.sum([]byte(signingInput)))
}

// verifyAccessToken applies the rules in this file's doc comment, in order,
// and returns the token's claims only if all of them hold.
func verifyAccessToken(key *tokenKey, token string, now time.Time) (accessClaims, error) {
	invalid := func(format string, args ...any) (accessClaims, error) {
		return accessClaims{}, fmt.Errorf("%w: %s", errInvalidToken, fmt.Sprintf(format, args...))
	}
	// Rule 1: size, then exactly three parts.
	if len(token) > maxTokenBytes {
		return invalid("longer than %d bytes", maxTokenBytes)
	}
	headerB64, rest, ok1 := strings.Cut(token, ".")
	payloadB64, signatureB64, ok2 := strings.Cut(rest, ".")
	if !ok1 || !ok2 || strings.Contains(signatureB64, ".") {
		return invalid("not three parts")
	}

	// Rules 2 and 3: the strict decoder refuses every byte outside the
	// base64url alphabet except '\r' and '\n', which it skips.
	if strings.ContainsAny(token, "\r\n") {
		return invalid("a line break")
	}
	var signature [sha256.Size]byte
	if strictRawURL.DecodedLen(len(signatureB64)) != len(signature) {
		return invalid("signature: not %d bytes", len(signature))
	}
	if _, err := strictRawURL.Decode(signature[:], []byte(signatureB64)); err != nil {
		return invalid("signature: %v", err)
	}

	// Rule 4: the header pins the algorithm; it never selects one. The
	// header that this service and the reference write is good as it
	// stands; any other is decoded and checked member by member.
	if headerB64 != tokenHeaderB64 {
		if err := checkHeader(headerB64); err != nil {
			return invalid("header: %v", err)
		}
	}

	// Rule 5: the MAC, before anything in the payload is looked at.
	signingInput := token[:len(headerB64)+1+len(payloadB64)]
	if !hmac.Equal(signature[:], key.sum([]byte(signingInput))) {
		return invalid("bad signature")
	}

	// Rule 6: the claims.
	claims, err := checkClaims(payloadB64, now)
	if err != nil {
		return invalid("claims: %v", err)
	}
	return claims, nil
}

// decodeSegment decodes one part of a token: unpadded base64url with no
// stray bits, and not empty.
func decodeSegment(s string) ([]byte, error) {
	if s == "" {
		return nil, errors.New("empty")
	}
	return strictRawURL.DecodeString(s)
}

var strictRawURL = base64.RawURLEncoding.Strict()

// checkHeader applies rule 4 to a header other than the one we write.
func checkHeader(headerB64 string) error {
	header, err := decodeSegment(headerB64)
	if err != nil {
		return err
	}
	alg, typ := "", "JWT" // "typ" is optional
	err = forEachMember(header, func(name, value []byte) error {
		var err error
		switch string(name) {
		case "alg":
			alg, err = jsonString(value)
		case "typ":
			typ, err = jsonString(value)
		case "crit":
			err = errors.New(`"crit" is not supported`)
		}
		return err
	})
	switch {
	case err != nil:
		return err
	case alg != "HS256":
		return errors.New(`"alg" is not "HS256"`)
	case typ != "JWT":
		return errors.New(`"typ" is not "JWT"`)
	}
	return nil
}

// checkClaims applies rule 6 to the payload, whose MAC has been checked.
func checkClaims(payloadB64 string, now time.Time) (accessClaims, error) {
	payload, err := decodeSegment(payloadB64)
	if err != nil {
		return accessClaims{}, err
	}
	var tokenType, sub string
	var gen float64            // absent: 0
	var exp, iat, nbf *float64 // absent: nil
	err = forEachMember(payload, func(name, value []byte) error {
		var err error
		switch string(name) {
		case "type":
			tokenType, err = jsonString(value)
		case "sub":
			sub, err = jsonString(value)
		case "gen":
			gen, err = jsonNumber(value)
		case "exp":
			exp, err = jsonDate(value)
		case "iat":
			iat, err = jsonDate(value)
		case "nbf":
			nbf, err = jsonDate(value)
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
	latest := nowSeconds + clockLeeway.Seconds() // for "iat" and "nbf"
	userID, err := strconv.ParseInt(sub, 10, 64)
	switch {
	case tokenType != accessTokenType:
		return accessClaims{}, errors.New(`"type" is not "access_token"`)
	case exp == nil:
		return accessClaims{}, errors.New(`no "exp"`)
	case !(nowSeconds < *exp):
		return accessClaims{}, errors.New("expired")
	case iat != nil && *iat > latest, nbf != nil && *nbf > latest:
		return accessClaims{}, errors.New(`"iat" or "nbf" is in the future`)
	case gen < 0 || gen != math.Trunc(gen) || gen > 1<<53:
		return accessClaims{}, errors.New(`"gen" is not a whole number`)
	case err != nil || userID <= 0 || strconv.FormatInt(userID, 10) != sub:
		return accessClaims{}, errors.New(`"sub" is not a user id`)
	}
	return accessClaims{UserID: userID, Generation: int64(gen)}, nil
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

// jsonDate decodes a NumericDate (RFC 7519 §2), seconds since 1970, of
// at most 2^40 (about the year 36800): a cap far past any real token, so
// that no date is near the limits of a float64 or of a time.Time.
func jsonDate(value []byte) (*float64, error) {
	seconds, err := jsonNumber(value)
	if err == nil && (seconds < 0 || seconds >= 1<<40) {
		err = errors.New("a date out of range")
	}
	return &seconds, err
}
