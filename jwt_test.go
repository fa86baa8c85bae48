// jwt_test.go tests jwt.go: signing and verifying HS256 access tokens.
package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"hash"
	"strings"
	"testing"
	"time"
)

const base64URLAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

// claimsAt is a good payload for user 7, issued at testNow.
func claimsAt(exp, iat int64) string {
	return fmt.Sprintf(`{"type":"access_token","exp":%d,"iat":%d,"sub":"7"}`, exp, iat)
}

func TestSignatureMatchesPublishedVectors(t *testing.T) {
	// The RFC 7515 Appendix A.1 HS256 example.
	key, _ := base64.RawURLEncoding.DecodeString("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
	token := "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
		".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
		".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
	signingInput := token[:strings.LastIndexByte(token, '.')]
	if got := base64.RawURLEncoding.EncodeToString(newTokenKey(key).sum([]byte(signingInput))); !strings.HasSuffix(token, "."+got) {
		t.Errorf("RFC 7515 A.1: signature = %s, want the RFC's dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", got)
	}
	// The example passes every check up to the claims (its header has
	// CR LF whitespace, and it has no "type"), so verification gets as
	// far as the claims before it refuses.
	if _, err := verifyAccessToken(newTokenKey(key), token, time.Unix(1300819000, 0)); !errors.Is(err, errTokenClaims) {
		t.Errorf("RFC 7515 A.1: verify = %v, want %v", err, errTokenClaims)
	}
	// python-jose's documented example.
	const want = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhIjoiYiJ9.jiMyrsmD8AoHWeQgmxZ5yq8z0lXS67_QGs52AzC8Ru8"
	if got := makeToken([]byte("secret"), goodHeader, `{"a":"b"}`); got != want {
		t.Errorf("python-jose example: token = %s, want %s", got, want)
	}
}

func TestTokensInteroperateWithTheReference(t *testing.T) {
	// Made by the Python reference's code path (python-jose: sorted header,
	// compact JSON, claims in the order type, exp, iat, sub) with this secret.
	key := newTokenKey([]byte("reference-secret-of-at-least-32-bytes!!"))
	const referenceToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" +
		".eyJ0eXBlIjoiYWNjZXNzX3Rva2VuIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsInN1YiI6IjEifQ" +
		".sTc6_xNzIVHQTpTz2ViPssSg_VZRdq2Mmf-zWAHFr3E"
	if claims, err := verifyAccessToken(key, referenceToken, testNow); err != nil || claims != (accessClaims{UserID: 1}) {
		t.Errorf("verify(the reference's token) = %+v, %v; want user 1, generation 0", claims, err)
	}
	// Ours is byte for byte what the reference would sign.
	if got := signAccessToken(key, 1, 0, testNow, time.Unix(4102444800, 0).Sub(testNow)); got != referenceToken {
		t.Errorf("sign(user 1, generation 0) = %s\nwant the reference's %s", got, referenceToken)
	}
}

// TestVerifyAcceptsOnlyGoodTokens gives each token the answer it must get:
// accepted with its user and generation, or refused by one named rule, so
// that a token refused for the wrong reason fails too.
func TestVerifyAcceptsOnlyGoodTokens(t *testing.T) {
	now := testNow.Unix()
	good := makeToken(testSecret, goodHeader, claimsAt(now+60, now))
	enc := base64.RawURLEncoding.EncodeToString
	goodHeaderB64, goodPayloadB64 := enc([]byte(goodHeader)), enc([]byte(claimsAt(now+60, now)))
	goodSig := good[strings.LastIndexByte(good, '.')+1:]

	// withHeader and withClaims sign a token with one part changed; expiring
	// signs one for user 7 expiring a minute from now with more claims.
	withHeader := func(header string) string { return makeToken(testSecret, header, claimsAt(now+60, now)) }
	withClaims := func(payload string) string { return makeToken(testSecret, goodHeader, payload) }
	expiring := func(more string) string {
		return withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"%s}`, now+60, more))
	}

	// A claim that pads a good token to exactly n bytes. Each byte of
	// padding adds one or two characters of base64, so some lengths
	// cannot be reached: the test then fails rather than check another.
	paddedTo := func(n int) string {
		t.Helper()
		for pad := n*3/4 - 150; ; pad++ {
			token := expiring(fmt.Sprintf(`,"pad":"%s"`, strings.Repeat("x", pad)))
			if len(token) == n {
				return token
			}
			if len(token) > n {
				t.Fatalf("no padding makes a token of exactly %d bytes: %d bytes is the nearest over", n, len(token))
			}
		}
	}

	for _, tc := range []struct {
		name, token string
		want        error // the rule that refuses it; nil: accepted as user 7
		generation  int64 // of an accepted token
	}{
		{"a token this service signs is accepted", signAccessToken(newTokenKey(testSecret), 7, 0, testNow, time.Minute), nil, 0},
		{"a token this service signs in generation 3 is accepted as such", signAccessToken(newTokenKey(testSecret), 7, 3, testNow, time.Minute), nil, 3},
		{"a token without typ is accepted", withHeader(`{"alg":"HS256"}`), nil, 0},
		{"a token without iat is accepted", expiring(""), nil, 0},
		{"an iat exactly 60 seconds ahead is within the leeway", withClaims(claimsAt(now+600, now+60)), nil, 0},
		{"an nbf exactly 60 seconds ahead is within the leeway", expiring(fmt.Sprintf(`,"nbf":%d`, now+60)), nil, 0},
		{"unknown header members such as kid are ignored", withHeader(`{"alg":"HS256","typ":"JWT","kid":"1"}`), nil, 0},
		{"unknown claims are ignored", expiring(`,"x":{"y":[1,"}"]}`), nil, 0},
		{"a fractional exp is a number", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d.5,"sub":"7"}`, now)), nil, 0},
		{"an exp a second before the year 36800 is a date", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, int64(maxDate-1))), nil, 0},
		{"a gen of 2^53 is the largest accepted", expiring(`,"gen":9007199254740992`), nil, maxGeneration},
		{"a token of exactly 8 KiB is accepted", paddedTo(maxTokenBytes), nil, 0},
		// Rules 1 and 2: size and shape.
		{"a token over 8 KiB is refused before any work", paddedTo(maxTokenBytes + 1), errTokenTooLong, 0},
		{"100 000 dots are refused for their length", strings.Repeat(".", 100000), errTokenTooLong, 0},
		{"two parts are refused", goodHeaderB64 + "." + goodPayloadB64, errTokenMalformed, 0},
		{"four parts are refused", good + "." + goodSig, errTokenMalformed, 0},
		{"an empty token is refused", "", errTokenMalformed, 0},
		{"an empty signature is refused", goodHeaderB64 + "." + goodPayloadB64 + ".", errTokenMalformed, 0},
		// Rule 2: alphabet and strict base64url.
		{"padding is refused", good + "=", errTokenMalformed, 0},
		{"a newline inside the signature is refused", good[:len(good)-5] + "\n" + good[len(good)-5:], errTokenMalformed, 0},
		{"a carriage return inside the payload is refused", goodHeaderB64 + "." + goodPayloadB64[:4] + "\r" + goodPayloadB64[4:] + "." + goodSig, errTokenMalformed, 0},
		{"a newline at the very start is refused", "\n" + good, errTokenMalformed, 0},
		{"a carriage return at the very start is refused", "\r" + good, errTokenMalformed, 0},
		{"a space is refused", good + " ", errTokenMalformed, 0},
		{"standard base64's + is refused", good[:len(good)-3] + "+" + good[len(good)-2:], errTokenMalformed, 0},
		{"standard base64's / is refused", good[:len(good)-3] + "/" + good[len(good)-2:], errTokenMalformed, 0},
		{"stray bits after the last byte are refused", good[:len(good)-1] + string(flipLowBits(good[len(good)-1])), errTokenMalformed, 0},
		{"a header that is not base64url is refused", "!!!!." + goodPayloadB64 + "." + goodSig, errTokenMalformed, 0},
		// Rule 3: the header.
		{"alg none with no signature is refused for the missing signature", enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + goodPayloadB64 + ".", errTokenMalformed, 0},
		{"alg none with a signature is refused", withHeader(`{"alg":"none","typ":"JWT"}`), errTokenHeader, 0},
		{"alg HS384 is refused", withHeader(`{"alg":"HS384","typ":"JWT"}`), errTokenHeader, 0},
		{"alg hs256 in lower case is refused", withHeader(`{"alg":"hs256","typ":"JWT"}`), errTokenHeader, 0},
		{"alg as a list is refused", withHeader(`{"alg":["HS256"],"typ":"JWT"}`), errTokenHeader, 0},
		{"a header without alg is refused", withHeader(`{"typ":"JWT"}`), errTokenHeader, 0},
		{"a typ other than JWT is refused", withHeader(`{"alg":"HS256","typ":"at+jwt"}`), errTokenHeader, 0},
		{"a typ of null is refused", withHeader(`{"alg":"HS256","typ":null}`), errTokenHeader, 0},
		{"a crit member is refused", withHeader(`{"alg":"HS256","typ":"JWT","crit":["exp"]}`), errTokenHeader, 0},
		{"a repeated alg is refused", withHeader(`{"alg":"HS256","alg":"none"}`), errTokenHeader, 0},
		{"a repeated alg spelled with an escape is refused", withHeader(`{"alg":"HS256","\u0061lg":"HS256"}`), errTokenHeader, 0},
		{"a header that is a list is refused", withHeader(`["HS256"]`), errTokenHeader, 0},
		{"a header that is not JSON is refused", withHeader(`{"alg":"HS256"`), errTokenHeader, 0},
		{"a header with trailing data is refused", withHeader(goodHeader + `{}`), errTokenHeader, 0},
		// Rule 4: the signature, checked before the payload is read, so
		// that a payload that is not even JSON is refused for its signature.
		{"a signature by another secret is refused", makeToken([]byte("another-secret-another-secret-another"), goodHeader, claimsAt(now+60, now)), errTokenSignature, 0},
		{"a changed payload under the old signature is refused", goodHeaderB64 + "." + enc([]byte(claimsAt(now+6000, now))) + "." + goodSig, errTokenSignature, 0},
		{"a payload that is not JSON under a bad signature is refused for the signature", goodHeaderB64 + "." + enc([]byte("not json")) + "." + enc(make([]byte, 32)), errTokenSignature, 0},
		{"a truncated signature is refused", good[:len(good)-2], errTokenMalformed, 0},
		// Rules 5 and 6: the claims.
		{"a token expiring this very second is refused", withClaims(claimsAt(now, now-60)), errTokenExpired, 0},
		{"a token without exp is refused as long expired", withClaims(`{"type":"access_token","sub":"7"}`), errTokenExpired, 0},
		{"an exp written as a string is refused", withClaims(`{"type":"access_token","exp":"9999999999","sub":"7"}`), errTokenClaims, 0},
		{"an exp in upper case does not count as exp", withClaims(`{"type":"access_token","EXP":9999999999,"sub":"7"}`), errTokenExpired, 0},
		{"a repeated exp is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"exp":9999999999,"sub":"7"}`, now-1)), errTokenClaims, 0},
		{"an exp of the year 36800 is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, int64(maxDate))), errTokenClaims, 0},
		{"an exp beyond the year 36800 is refused", withClaims(`{"type":"access_token","exp":1e300,"sub":"7"}`), errTokenClaims, 0},
		{"an iat before 1970 is refused", expiring(`,"iat":-1e300`), errTokenClaims, 0},
		{"an nbf before 1970 is refused", expiring(`,"nbf":-1`), errTokenClaims, 0},
		{"an iat 61 seconds ahead is refused", withClaims(claimsAt(now+600, now+61)), errTokenNotYetValid, 0},
		{"an nbf 61 seconds ahead is refused", expiring(fmt.Sprintf(`,"nbf":%d`, now+61)), errTokenNotYetValid, 0},
		{"a negative gen is refused", expiring(`,"gen":-1`), errTokenClaims, 0},
		{"a gen past 2^53 is refused", expiring(`,"gen":9007199254740994`), errTokenClaims, 0},
		{"a fractional gen is refused", expiring(`,"gen":1.5`), errTokenClaims, 0},
		{"a token without type is refused", withClaims(fmt.Sprintf(`{"exp":%d,"sub":"7"}`, now+60)), errTokenClaims, 0},
		{"a refresh-type token is refused", withClaims(fmt.Sprintf(`{"type":"refresh_token","exp":%d,"sub":"7"}`, now+60)), errTokenClaims, 0},
		{"a token without sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d}`, now+60)), errTokenClaims, 0},
		{"a numeric sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":7}`, now+60)), errTokenClaims, 0},
		{"a sub with a leading zero is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"07"}`, now+60)), errTokenClaims, 0},
		{"a sub with a plus sign is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"+7"}`, now+60)), errTokenClaims, 0},
		{"a sub of zero is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"0"}`, now+60)), errTokenClaims, 0},
		{"a negative sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"-7"}`, now+60)), errTokenClaims, 0},
		{"an email as sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"a@b.c"}`, now+60)), errTokenClaims, 0},
		{"invalid UTF-8 in the claims is refused", expiring(",\"x\":\"\xff\""), errTokenClaims, 0},
		{"claims that are a list are refused", withClaims(`[1]`), errTokenClaims, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := verifyAccessToken(newTokenKey(testSecret), tc.token, testNow)
			switch {
			case tc.want == nil && len(tc.token) > maxTokenBytes:
				t.Fatalf("the test token is %d bytes, over the %d that every accepted token must fit in", len(tc.token), maxTokenBytes)
			case tc.want == nil && (err != nil || claims != accessClaims{UserID: 7, Generation: tc.generation}):
				t.Errorf("verify(%.60q) = %+v, %v; want user 7, generation %d", tc.token, claims, err, tc.generation)
			case tc.want != nil && (!errors.Is(err, tc.want) || !errors.Is(err, errInvalidToken) || claims != accessClaims{}):
				t.Errorf("verify(%.60q) = %+v, %v; want no claims and %v", tc.token, claims, err, tc.want)
			}
		})
	}
	t.Run("a token of user 1, the lowest id there is, is accepted", func(t *testing.T) {
		token := signAccessToken(newTokenKey(testSecret), 1, 0, testNow, time.Minute)
		if claims, err := verifyAccessToken(newTokenKey(testSecret), token, testNow); err != nil || claims.UserID != 1 {
			t.Errorf("verify = %+v, %v; want user 1", claims, err)
		}
	})
}

func FuzzVerifyAccessToken(f *testing.F) {
	now := testNow.Unix()
	for _, seed := range []string{
		signAccessToken(newTokenKey(testSecret), 7, 0, testNow, time.Hour),
		makeToken(testSecret, goodHeader, claimsAt(now+60, now)),
		makeToken(testSecret, `{"alg":"none"}`, claimsAt(now+60, now)),
		makeToken(testSecret, goodHeader, `{"type":"access_token","exp":1e99,"sub":"1","exp":1}`),
		"a.b.c", "..", "", strings.Repeat(".", 100),
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, token string) {
		claims, err := verifyAccessToken(newTokenKey(testSecret), token, testNow)
		if err != nil {
			// A refusal is one of the rules, and gives away no claims.
			if !errors.Is(err, errInvalidToken) || claims != (accessClaims{}) {
				t.Fatalf("verify(%q) = %+v, %v; want no claims and an invalid-token error", token, claims, err)
			}
			return
		}
		// Whatever the fuzzer builds, an accepted token must have passed
		// every rule; recheck the ones that can be rechecked from outside.
		if len(token) > maxTokenBytes || strings.Count(token, ".") != 2 || strings.ContainsFunc(token, func(r rune) bool { return !strings.ContainsRune(base64URLAlphabet+".", r) }) {
			t.Fatalf("accepted a malformed token %q", token)
		}
		if exp, _ := payloadOf(t, token)["exp"].(float64); claims.UserID <= 0 || !(exp > float64(testNow.Unix())) {
			t.Fatalf("accepted %q with claims %+v", token, claims)
		}
		signingInput := token[:strings.LastIndexByte(token, '.')]
		sig, _ := base64.RawURLEncoding.DecodeString(token[len(signingInput)+1:])
		if !hmac.Equal(sig, newTokenKey(testSecret).sum([]byte(signingInput))) {
			t.Fatalf("accepted %q with a bad signature", token)
		}
	})
}

// Example_signAccessToken shows an access token and what is inside it.
func Example_signAccessToken() {
	key := newTokenKey([]byte("an-example-secret-of-32-bytes-or-more"))
	issued := time.Unix(1700000000, 0)
	token := signAccessToken(key, 42, 0, issued, 8*24*time.Hour)

	parts := strings.Split(token, ".")
	header, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	fmt.Println(string(header))
	fmt.Println(string(payload))

	claims, err := verifyAccessToken(key, token, issued.Add(time.Hour))
	fmt.Println(claims.UserID, err)

	_, err = verifyAccessToken(key, token, issued.Add(9*24*time.Hour))
	fmt.Println(err)
	// Output:
	// {"alg":"HS256","typ":"JWT"}
	// {"type":"access_token","exp":1700691200,"iat":1700000000,"sub":"42"}
	// 42 <nil>
	// invalid token: expired
}

func BenchmarkSignAccessToken(b *testing.B) {
	key := newTokenKey(testSecret)
	b.ReportAllocs()
	for b.Loop() {
		signAccessToken(key, 7, 0, testNow, time.Hour)
	}
}

func BenchmarkVerifyAccessToken(b *testing.B) {
	key := newTokenKey(testSecret)
	token := signAccessToken(key, 7, 0, testNow, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := verifyAccessToken(key, token, testNow); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTokenMAC measures the ways to get an HMAC-SHA256 keyed by the
// secret for each token: tokenKey's pool, which keeps keyed ones for reuse,
// against keying a fresh one and cloning one keyed at the start.
func BenchmarkTokenMAC(b *testing.B) {
	token := signAccessToken(newTokenKey(testSecret), 7, 0, testNow, time.Hour)
	signingInput := []byte(token[:strings.LastIndexByte(token, '.')])
	b.Run("pooled", func(b *testing.B) {
		key := newTokenKey(testSecret)
		b.ReportAllocs()
		for b.Loop() {
			key.sum(signingInput)
		}
	})
	b.Run("fresh hmac.New", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			mac := hmac.New(sha256.New, testSecret)
			mac.Write(signingInput)
			mac.Sum(nil)
		}
	})
	b.Run("cloned", func(b *testing.B) {
		keyed := hmac.New(sha256.New, testSecret).(hash.Cloner)
		b.ReportAllocs()
		for b.Loop() {
			mac, _ := keyed.Clone()
			mac.Write(signingInput)
			mac.Sum(nil)
		}
	})
}
