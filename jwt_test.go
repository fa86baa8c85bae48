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
	t.Run("the RFC 7515 Appendix A.1 HS256 example", func(t *testing.T) {
		key, _ := base64.RawURLEncoding.DecodeString("AyM1SysPpbyDfgZld3umj1qzKObwVMkoqQ-EstJQLr_T-1qS0gZH75aKtMN3Yj0iPS4hcgUuTwjAzZr1Z9CAow")
		token := "eyJ0eXAiOiJKV1QiLA0KICJhbGciOiJIUzI1NiJ9" +
			".eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ" +
			".dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
		signingInput := token[:strings.LastIndexByte(token, '.')]
		if got := base64.RawURLEncoding.EncodeToString(newTokenKey(key).sum([]byte(signingInput))); !strings.HasSuffix(token, "."+got) {
			t.Errorf("signature = %s, want the RFC's dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk", got)
		}
		// The example passes every check up to the claims (its header has
		// CR LF whitespace, and it has no "type"), so verification gets as
		// far as the claims before it refuses.
		_, err := verifyAccessToken(newTokenKey(key), token, time.Unix(1300819000, 0))
		if !errors.Is(err, errTokenClaims) {
			t.Errorf("verify(RFC example) = %v, want a refusal of its claims only", err)
		}
	})
	t.Run("python-jose's documented example", func(t *testing.T) {
		const want = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJhIjoiYiJ9.jiMyrsmD8AoHWeQgmxZ5yq8z0lXS67_QGs52AzC8Ru8"
		if got := makeToken([]byte("secret"), goodHeader, `{"a":"b"}`); got != want {
			t.Errorf("token = %s, want %s", got, want)
		}
	})
}

func TestTokensInteroperateWithTheReference(t *testing.T) {
	// Made by the Python reference's code path (python-jose: sorted header,
	// compact JSON, claims in the order type, exp, iat, sub) with this secret.
	const referenceSecret = "reference-secret-of-at-least-32-bytes!!"
	const referenceToken = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" +
		".eyJ0eXBlIjoiYWNjZXNzX3Rva2VuIiwiZXhwIjo0MTAyNDQ0ODAwLCJpYXQiOjE3MDAwMDAwMDAsInN1YiI6IjEifQ" +
		".sTc6_xNzIVHQTpTz2ViPssSg_VZRdq2Mmf-zWAHFr3E"

	t.Run("a token the reference signed is accepted", func(t *testing.T) {
		claims, err := verifyAccessToken(newTokenKey([]byte(referenceSecret)), referenceToken, testNow)
		if err != nil || claims.UserID != 1 {
			t.Fatalf("verify(reference token) = %+v, %v; want user 1", claims, err)
		}
	})
	t.Run("ours is byte for byte what the reference would sign", func(t *testing.T) {
		got := signAccessToken(newTokenKey([]byte(referenceSecret)), 1, 0, testNow, time.Unix(4102444800, 0).Sub(testNow))
		if got != referenceToken {
			t.Errorf("sign = %s\nwant %s", got, referenceToken)
		}
	})
}

func TestVerifyAcceptsOnlyGoodTokens(t *testing.T) {
	now := testNow.Unix()
	good := makeToken(testSecret, goodHeader, claimsAt(now+60, now))
	enc := base64.RawURLEncoding.EncodeToString
	goodHeaderB64, goodPayloadB64 := enc([]byte(goodHeader)), enc([]byte(claimsAt(now+60, now)))
	goodSig := good[strings.LastIndexByte(good, '.')+1:]

	// withHeader and withClaims sign a token with one part changed.
	withHeader := func(header string) string { return makeToken(testSecret, header, claimsAt(now+60, now)) }
	withClaims := func(payload string) string { return makeToken(testSecret, goodHeader, payload) }

	// A claim that pads a good token to exactly n bytes. Each byte of
	// padding adds one or two characters of base64, so some lengths
	// cannot be reached: the test then fails rather than check another.
	paddedTo := func(n int) string {
		t.Helper()
		for pad := n*3/4 - 150; ; pad++ {
			token := withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7","pad":"%s"}`, now+60, strings.Repeat("x", pad)))
			if len(token) == n {
				return token
			}
			if len(token) > n {
				t.Fatalf("no padding makes a token of exactly %d bytes: %d bytes is the nearest over", n, len(token))
			}
		}
	}

	accepted := []struct {
		name, token string
	}{
		{"a token this service signs is accepted", signAccessToken(newTokenKey(testSecret), 7, 0, testNow, time.Minute)},
		{"a token without typ is accepted", withHeader(`{"alg":"HS256"}`)},
		{"a token without iat is accepted", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, now+60))},
		{"an iat 59 seconds ahead is within the leeway", withClaims(claimsAt(now+600, now+59))},
		{"unknown header members such as kid are ignored", withHeader(`{"alg":"HS256","typ":"JWT","kid":"1"}`)},
		{"unknown claims are ignored", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7","x":{"y":[1,"}"]}}`, now+60))},
		{"a fractional exp is a number", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d.5,"sub":"7"}`, now))},
		{"a token of exactly 8 KiB is accepted", paddedTo(maxTokenBytes)},
	}
	for _, tc := range accepted {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.token) > maxTokenBytes {
				t.Fatalf("the test token is %d bytes, over the %d that every accepted token must fit in", len(tc.token), maxTokenBytes)
			}
			claims, err := verifyAccessToken(newTokenKey(testSecret), tc.token, testNow)
			if err != nil || claims.UserID != 7 {
				t.Errorf("verify = %+v, %v; want user 7", claims, err)
			}
		})
	}

	rejected := []struct {
		name, token string
		want        error // the rule that refuses it
	}{
		// Rules 1 and 2: size and shape.
		{"a token over 8 KiB is refused before any work", paddedTo(maxTokenBytes + 1), errTokenTooLong},
		{"100 000 dots are refused for their length", strings.Repeat(".", 100000), errTokenTooLong},
		{"two parts are refused", goodHeaderB64 + "." + goodPayloadB64, errTokenMalformed},
		{"four parts are refused", good + "." + goodSig, errTokenMalformed},
		{"an empty token is refused", "", errTokenMalformed},
		{"an empty signature is refused", goodHeaderB64 + "." + goodPayloadB64 + ".", errTokenMalformed},
		// Rule 2: alphabet and strict base64url.
		{"padding is refused", good + "=", errTokenMalformed},
		{"a newline inside the signature is refused", good[:len(good)-5] + "\n" + good[len(good)-5:], errTokenMalformed},
		{"a carriage return inside the payload is refused", goodHeaderB64 + "." + goodPayloadB64[:4] + "\r" + goodPayloadB64[4:] + "." + goodSig, errTokenMalformed},
		{"a space is refused", good + " ", errTokenMalformed},
		{"standard base64's + is refused", good[:len(good)-3] + "+" + good[len(good)-2:], errTokenMalformed},
		{"standard base64's / is refused", good[:len(good)-3] + "/" + good[len(good)-2:], errTokenMalformed},
		{"stray bits after the last byte are refused", good[:len(good)-1] + string(flipLowBits(good[len(good)-1])), errTokenMalformed},
		// Rule 3: the header.
		{"alg none with no signature is refused for the missing signature", enc([]byte(`{"alg":"none","typ":"JWT"}`)) + "." + goodPayloadB64 + ".", errTokenMalformed},
		{"alg none with a signature is refused", withHeader(`{"alg":"none","typ":"JWT"}`), errTokenHeader},
		{"alg HS384 is refused", withHeader(`{"alg":"HS384","typ":"JWT"}`), errTokenHeader},
		{"alg hs256 in lower case is refused", withHeader(`{"alg":"hs256","typ":"JWT"}`), errTokenHeader},
		{"alg as a list is refused", withHeader(`{"alg":["HS256"],"typ":"JWT"}`), errTokenHeader},
		{"a header without alg is refused", withHeader(`{"typ":"JWT"}`), errTokenHeader},
		{"a typ other than JWT is refused", withHeader(`{"alg":"HS256","typ":"at+jwt"}`), errTokenHeader},
		{"a crit member is refused", withHeader(`{"alg":"HS256","typ":"JWT","crit":["exp"]}`), errTokenHeader},
		{"a repeated alg is refused", withHeader(`{"alg":"HS256","alg":"none"}`), errTokenHeader},
		{"a repeated alg spelled with an escape is refused", withHeader(`{"alg":"HS256","\u0061lg":"HS256"}`), errTokenHeader},
		{"a header that is a list is refused", withHeader(`["HS256"]`), errTokenHeader},
		{"a header that is not JSON is refused", withHeader(`{"alg":"HS256"`), errTokenHeader},
		{"a header with trailing data is refused", withHeader(goodHeader + `{}`), errTokenHeader},
		// Rule 4: the signature.
		{"a signature by another secret is refused", makeToken([]byte("another-secret-another-secret-another"), goodHeader, claimsAt(now+60, now)), errTokenSignature},
		{"a changed payload under the old signature is refused", goodHeaderB64 + "." + enc([]byte(claimsAt(now+6000, now))) + "." + goodSig, errTokenSignature},
		{"a truncated signature is refused", good[:len(good)-2], errTokenMalformed},
		// Rules 5 and 6: the claims.
		{"an expired token is refused", withClaims(claimsAt(now-1, now-60)), errTokenExpired},
		{"a token expiring this very second is refused", withClaims(claimsAt(now, now-60)), errTokenExpired},
		{"a token without exp is refused as long expired", withClaims(`{"type":"access_token","sub":"7"}`), errTokenExpired},
		{"an exp written as a string is refused", withClaims(`{"type":"access_token","exp":"9999999999","sub":"7"}`), errTokenClaims},
		{"an exp in upper case does not count as exp", withClaims(`{"type":"access_token","EXP":9999999999,"sub":"7"}`), errTokenExpired},
		{"a repeated exp is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"exp":9999999999,"sub":"7"}`, now-1)), errTokenClaims},
		{"an exp beyond the year 36800 is refused", withClaims(`{"type":"access_token","exp":1e300,"sub":"7"}`), errTokenClaims},
		{"an iat before 1970 is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"iat":-1e300,"sub":"7"}`, now+60)), errTokenClaims},
		{"an iat 61 seconds ahead is refused", withClaims(claimsAt(now+600, now+61)), errTokenNotYetValid},
		{"an nbf 61 seconds ahead is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"nbf":%d,"sub":"7"}`, now+600, now+61)), errTokenNotYetValid},
		{"a token without type is refused", withClaims(fmt.Sprintf(`{"exp":%d,"sub":"7"}`, now+60)), errTokenClaims},
		{"a refresh-type token is refused", withClaims(fmt.Sprintf(`{"type":"refresh_token","exp":%d,"sub":"7"}`, now+60)), errTokenClaims},
		{"a token without sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d}`, now+60)), errTokenClaims},
		{"a numeric sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":7}`, now+60)), errTokenClaims},
		{"a sub with a leading zero is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"07"}`, now+60)), errTokenClaims},
		{"a sub with a plus sign is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"+7"}`, now+60)), errTokenClaims},
		{"a sub of zero is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"0"}`, now+60)), errTokenClaims},
		{"a negative sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"-7"}`, now+60)), errTokenClaims},
		{"an email as sub is refused", withClaims(fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"a@b.c"}`, now+60)), errTokenClaims},
		{"invalid UTF-8 in the claims is refused", withClaims(fmt.Sprintf("{\"type\":\"access_token\",\"exp\":%d,\"sub\":\"7\",\"x\":\"\xff\"}", now+60)), errTokenClaims},
		{"claims that are a list are refused", withClaims(`[1]`), errTokenClaims},
	}
	for _, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			claims, err := verifyAccessToken(newTokenKey(testSecret), tc.token, testNow)
			if !errors.Is(err, tc.want) || !errors.Is(err, errInvalidToken) {
				t.Errorf("verify(%.60q) = %+v, %v; want %v", tc.token, claims, err, tc.want)
			}
		})
	}
}

// flipLowBits returns the base64url letter that differs from c only in
// its two lowest bits, which the last letter of a 32-byte signature does
// not use.
func flipLowBits(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	return alphabet[strings.IndexByte(alphabet, c)^1]
}

func TestVerifyChecksTheSignatureBeforeReadingThePayload(t *testing.T) {
	// A payload that is not even JSON, under a bad signature, must be
	// refused for its signature: the payload parser is never reached.
	token := base64.RawURLEncoding.EncodeToString([]byte(goodHeader)) + "." +
		base64.RawURLEncoding.EncodeToString([]byte("not json")) + "." +
		base64.RawURLEncoding.EncodeToString(make([]byte, 32))
	_, err := verifyAccessToken(newTokenKey(testSecret), token, testNow)
	if !errors.Is(err, errTokenSignature) {
		t.Errorf("verify = %v, want a signature error", err)
	}
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
