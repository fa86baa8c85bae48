// jwt.go signs and verifies the service's access tokens: JSON Web Tokens
// (RFC 7519) in JWS compact form (RFC 7515), MACed with HMAC-SHA256 (HS256,
// RFC 7518 §3.2). Nothing here touches the database or HTTP.
//
// A token is accepted only if every check passes, in this order:
//
//  1. It is at most maxTokenBytes long, checked before any other work
//     (errTokenTooLong).
//  2. It has exactly three parts, split with strings.Cut (strings.Split's
//     cost grows with the number of dots: CVE-2025-30204); no byte is '\r'
//     or '\n', which Go's strict base64 decoder skips while it refuses every
//     other byte outside A–Z a–z 0–9 - _, so that one token has one
//     spelling; each part is unpadded base64url with no stray bits, and the
//     signature is 32 bytes (errTokenMalformed).
//  3. The header is one JSON object as encoding/json/v2 reads it by default
//     (valid UTF-8, no lone surrogate, names matched exactly and never
//     repeated, nothing after it); "alg" is exactly "HS256"; "typ", if
//     present, is "JWT"; there is no "crit", since we implement no extension
//     it could name (errTokenHeader). The algorithm is never chosen from the
//     token, so there is no "none" and no algorithm confusion.
//  4. The signature is the HMAC-SHA256 of the first two parts as sent,
//     compared in constant time, before the payload is decoded: without the
//     secret, nobody reaches the payload parser (errTokenSignature).
//  5. The payload is one JSON object by the same rules; "type" is
//     "access_token"; "sub" is a user id in canonical decimal; "exp", and
//     "iat" and "nbf" if present, are numbers of seconds in [0, 2^40); "gen",
//     if present, is a whole number in [0, 2^53] (errTokenClaims).
//  6. "exp" is later than now (errTokenExpired); "iat" and "nbf" are no later
//     than now plus clockLeeway (errTokenNotYetValid).
//
// Whether "sub" names a user who still exists, and whether "gen" (absent: 0)
// is that user's token generation (endSessions), is the caller's to check.
// There is no "aud" or "iss": one issuer and one audience, this service.
// Every error wraps errInvalidToken, and callers must treat them all alike
// (never accept a token because of which error it got: CVE-2024-51744).
package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json/jsontext"
	json "encoding/json/v2"
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
	// minSecretBytes is the HS256 key size of RFC 7518 §3.2: the hash's.
	minSecretBytes = 32
	// clockLeeway forgives clocks a little ahead of ours for "iat" and
	// "nbf". "exp" gets none: a token is dead at its expiry.
	clockLeeway = 60 * time.Second
	// maxDate, about the year 36800, keeps every date far from the limits
	// of a float64 and of a time.Time.
	maxDate         = 1 << 40
	maxGeneration   = 1 << 53
	accessTokenType = "access_token"
)

// The rule that refused a token, each wrapping errInvalidToken.
var (
	errInvalidToken     = errors.New("invalid token")
	errTokenTooLong     = fmt.Errorf("%w: longer than %d bytes", errInvalidToken, maxTokenBytes)
	errTokenMalformed   = fmt.Errorf("%w: not three unpadded base64url parts", errInvalidToken)
	errTokenHeader      = fmt.Errorf("%w: header", errInvalidToken)
	errTokenSignature   = fmt.Errorf("%w: bad signature", errInvalidToken)
	errTokenClaims      = fmt.Errorf("%w: claims", errInvalidToken)
	errTokenExpired     = fmt.Errorf("%w: expired", errInvalidToken)
	errTokenNotYetValid = fmt.Errorf("%w: issued or valid only in the future", errInvalidToken)
)

var strictRawURL = base64.RawURLEncoding.Strict()

// tokenHeaderB64 is the only header we write, with python-jose's bytes
// (sorted keys, no spaces), so that our tokens and the reference's match.
var tokenHeaderB64 = base64.RawURLEncoding.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))

// accessClaims is what a verified access token says: whose it is, and of
// which of that user's token generations.
type accessClaims struct {
	UserID     int64
	Generation int64
}

// tokenKey keeps HMAC-SHA256 states keyed by the secret for reuse: keying
// one costs more than the MAC of a token (BenchmarkTokenMAC).
type tokenKey struct{ macs sync.Pool }

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
// generation, issued at now and valid for lifetime. The claims are the
// reference's in its order, then "gen" unless it is 0: until a user first
// logs out or changes password, our tokens are exactly the reference's.
func signAccessToken(key *tokenKey, userID, generation int64, now time.Time, lifetime time.Duration) string {
	var buf [160]byte
	claims := append(buf[:0], `{"type":"`+accessTokenType+`","exp":`...)
	claims = strconv.AppendInt(claims, now.Add(lifetime).Unix(), 10)
	claims = strconv.AppendInt(append(claims, `,"iat":`...), now.Unix(), 10)
	claims = strconv.AppendInt(append(claims, `,"sub":"`...), userID, 10)
	claims = append(claims, '"')
	if generation != 0 {
		claims = strconv.AppendInt(append(claims, `,"gen":`...), generation, 10)
	}
	claims = append(claims, '}')
	enc := base64.RawURLEncoding
	token := make([]byte, 0, len(tokenHeaderB64)+1+enc.EncodedLen(len(claims))+1+enc.EncodedLen(sha256.Size))
	token = enc.AppendEncode(append(append(token, tokenHeaderB64...), '.'), claims)
	return string(enc.AppendEncode(append(token, '.'), key.sum(token)))
}

// verifyAccessToken applies the rules of this file's doc comment, in order,
// and returns the token's claims only if all of them hold.
func verifyAccessToken(key *tokenKey, token string, now time.Time) (accessClaims, error) {
	if len(token) > maxTokenBytes {
		return accessClaims{}, errTokenTooLong
	}
	headerB64, rest, ok1 := strings.Cut(token, ".")
	payloadB64, signatureB64, ok2 := strings.Cut(rest, ".")
	lineBreak := strings.IndexByte(token, '\r') >= 0 || strings.IndexByte(token, '\n') >= 0
	var signature [sha256.Size]byte
	if !ok1 || !ok2 || lineBreak || strictRawURL.DecodedLen(len(signatureB64)) != len(signature) {
		return accessClaims{}, errTokenMalformed
	}
	if _, err := strictRawURL.Decode(signature[:], []byte(signatureB64)); err != nil {
		return accessClaims{}, errTokenMalformed // a fourth part, or stray bits
	}
	// The header we write is good as it stands; any other is read.
	if headerB64 != tokenHeaderB64 {
		if err := checkHeader(headerB64); err != nil {
			return accessClaims{}, err
		}
	}
	signingInput := token[:len(headerB64)+1+len(payloadB64)]
	if !hmac.Equal(signature[:], key.sum([]byte(signingInput))) {
		return accessClaims{}, errTokenSignature
	}
	return checkClaims(payloadB64, now)
}

// decodeJSON reads one base64url part of a token into v by v2's rules.
func decodeJSON(part string, v any) error {
	data, err := strictRawURL.DecodeString(part)
	if err != nil {
		return errTokenMalformed
	}
	return json.Unmarshal(data, v)
}

// checkHeader applies rule 3 to a header other than the one we write.
func checkHeader(headerB64 string) error {
	header := struct {
		Alg  string         `json:"alg"`
		Typ  string         `json:"typ"`
		Crit jsontext.Value `json:"crit"`
	}{Typ: "JWT"} // a JSON null empties it, and is refused
	switch err := decodeJSON(headerB64, &header); {
	case errors.Is(err, errTokenMalformed):
		return err
	case err != nil:
		return fmt.Errorf("%w: %w", errTokenHeader, err)
	case header.Alg != "HS256", header.Typ != "JWT", header.Crit != nil:
		return fmt.Errorf(`%w: want "alg" "HS256", "typ" "JWT" or none, and no "crit"`, errTokenHeader)
	}
	return nil
}

// checkClaims applies rules 5 and 6 to a payload whose MAC is good.
func checkClaims(payloadB64 string, now time.Time) (accessClaims, error) {
	// v2 refuses a string where a number goes, and reads a JSON null as 0,
	// as if the member were absent.
	var claims struct {
		Type string  `json:"type"`
		Sub  string  `json:"sub"`
		Exp  float64 `json:"exp"` // absent: 0, long expired
		Iat  float64 `json:"iat"`
		Nbf  float64 `json:"nbf"`
		Gen  float64 `json:"gen"`
	}
	if err := decodeJSON(payloadB64, &claims); errors.Is(err, errTokenMalformed) {
		return accessClaims{}, err
	} else if err != nil {
		return accessClaims{}, fmt.Errorf("%w: %w", errTokenClaims, err)
	}
	userID, err := strconv.ParseInt(claims.Sub, 10, 64)
	nowSeconds := float64(now.UnixNano()) / 1e9
	switch latest := nowSeconds + clockLeeway.Seconds(); {
	case claims.Type != accessTokenType:
		return accessClaims{}, fmt.Errorf(`%w: "type" is not %q`, errTokenClaims, accessTokenType)
	case !isDate(claims.Exp) || !isDate(claims.Iat) || !isDate(claims.Nbf):
		return accessClaims{}, fmt.Errorf(`%w: "exp", "iat" or "nbf" is not a date`, errTokenClaims)
	case claims.Gen < 0 || claims.Gen > maxGeneration || claims.Gen != math.Trunc(claims.Gen):
		return accessClaims{}, fmt.Errorf(`%w: "gen" is not a whole number`, errTokenClaims)
	case err != nil || claims.Sub[0] < '1' || claims.Sub[0] > '9': // canonical: no sign, no leading 0
		return accessClaims{}, fmt.Errorf(`%w: "sub" is not a user id`, errTokenClaims)
	case !(nowSeconds < claims.Exp):
		return accessClaims{}, errTokenExpired
	case claims.Iat > latest, claims.Nbf > latest:
		return accessClaims{}, errTokenNotYetValid
	}
	return accessClaims{UserID: userID, Generation: int64(claims.Gen)}, nil
}

// isDate reports whether seconds is a NumericDate (RFC 7519 §2) we accept.
func isDate(seconds float64) bool { return 0 <= seconds && seconds < maxDate }
