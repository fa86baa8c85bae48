// jwt.go signs and verifies the service's access tokens: JSON Web Tokens
// (RFC 7519) in JWS compact form (RFC 7515), MACed with HMAC-SHA256 (HS256,
// RFC 7518 §3.2). A token is accepted only if every check passes, in order:
//
//  1. At most maxTokenBytes, before any other work (errTokenTooLong).
//  2. Three parts, cut with strings.Cut (strings.Split's cost grows with the
//     dots: CVE-2025-30204); no '\r' or '\n', which the strict base64
//     decoder skips, so that a token has one spelling; each part unpadded
//     base64url with no stray bits; a 32-byte signature (errTokenMalformed).
//  3. The header is one JSON object as encoding/json/v2 reads it (valid
//     UTF-8, no lone surrogate, names exact and unrepeated, nothing after
//     it); "alg" is "HS256"; "typ", if present, "JWT"; no "crit", as we know
//     no extension (errTokenHeader). The algorithm never comes from the
//     token: no "none", no algorithm confusion.
//  4. The HMAC of the first two parts as sent equals the signature, compared
//     in constant time before the payload is decoded, so that nobody without
//     the secret reaches its parser (errTokenSignature).
//  5. The payload is one JSON object by the same rules: "type" is
//     "access_token"; "sub" a user id in canonical decimal; "exp", "iat" and
//     "nbf" numbers in [0, 2^40); "gen" a whole number in [0, 2^53]. A
//     number absent or null reads as 0 (errTokenClaims).
//  6. "exp" is later than now (errTokenExpired); "iat" and "nbf" are no
//     later than now plus clockLeeway (errTokenNotYetValid).
//
// Whether "sub" still exists and "gen" is its token generation is the
// caller's to check. No "aud" or "iss": one issuer, one audience. Every error
// wraps errInvalidToken; callers treat them all alike (CVE-2024-51744).
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
	// clockLeeway forgives clocks a little ahead of ours; "exp" gets none.
	clockLeeway = 60 * time.Second
	// maxDate (the year 36800) keeps dates far from float64's limits.
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

// accessClaims is whose a verified token is, and of which generation.
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

// verifyAccessToken returns the token's claims if it passes every rule of
// this file's doc comment.
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

// decodeJSON reads one base64url part of a token into v by v2's rules; it
// wraps a JSON error in refusal, the rule of the part.
func decodeJSON(part string, v any, refusal error) error {
	data, err := strictRawURL.DecodeString(part)
	if err != nil {
		return errTokenMalformed
	}
	if err := json.Unmarshal(data, v); err != nil {
		return fmt.Errorf("%w: %w", refusal, err)
	}
	return nil
}

// checkHeader applies rule 3 to a header other than the one we write.
func checkHeader(headerB64 string) error {
	header := struct {
		Alg  string         `json:"alg"`
		Typ  string         `json:"typ"`
		Crit jsontext.Value `json:"crit"`
	}{Typ: "JWT"} // a JSON null empties it, and is refused
	if err := decodeJSON(headerB64, &header, errTokenHeader); err != nil {
		return err
	}
	if header.Alg != "HS256" || header.Typ != "JWT" || header.Crit != nil {
		return fmt.Errorf(`%w: want "alg" "HS256", "typ" "JWT" or none, and no "crit"`, errTokenHeader)
	}
	return nil
}

// checkClaims applies rules 5 and 6 to a payload whose MAC is good.
func checkClaims(payloadB64 string, now time.Time) (accessClaims, error) {
	var claims struct {
		Type string  `json:"type"`
		Sub  int64   `json:"sub,string"` // canonical decimal: no sign, no leading 0
		Exp  float64 `json:"exp"`        // absent: 0, long expired
		Iat  float64 `json:"iat"`
		Nbf  float64 `json:"nbf"`
		Gen  float64 `json:"gen"`
	}
	if err := decodeJSON(payloadB64, &claims, errTokenClaims); err != nil {
		return accessClaims{}, err
	}
	nowSeconds := float64(now.UnixNano()) / 1e9
	switch latest := nowSeconds + clockLeeway.Seconds(); {
	case claims.Type != accessTokenType:
		return accessClaims{}, fmt.Errorf(`%w: "type" is not %q`, errTokenClaims, accessTokenType)
	case !isDate(claims.Exp) || !isDate(claims.Iat) || !isDate(claims.Nbf):
		return accessClaims{}, fmt.Errorf(`%w: "exp", "iat" or "nbf" is not a date`, errTokenClaims)
	case claims.Gen < 0 || claims.Gen > maxGeneration || claims.Gen != math.Trunc(claims.Gen):
		return accessClaims{}, fmt.Errorf(`%w: "gen" is not a whole number`, errTokenClaims)
	case claims.Sub < 1:
		return accessClaims{}, fmt.Errorf(`%w: "sub" is not a user id`, errTokenClaims)
	case !(nowSeconds < claims.Exp):
		return accessClaims{}, errTokenExpired
	case claims.Iat > latest, claims.Nbf > latest:
		return accessClaims{}, errTokenNotYetValid
	}
	return accessClaims{UserID: claims.Sub, Generation: int64(claims.Gen)}, nil
}

// isDate reports whether seconds is a NumericDate (RFC 7519 §2) we accept.
func isDate(seconds float64) bool { return 0 <= seconds && seconds < maxDate }
