// json_test.go checks that the three places that read JSON from anyone (a
// token's header, its claims, a request body) refuse the same five things
// rather than make something of them: a repeated member, invalid UTF-8, a
// lone surrogate escape, data after the object, and a name that differs
// from the one we read only in case.
package main

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func TestEveryJSONReaderRefusesTheSameThings(t *testing.T) {
	e := newTestEnv(t)
	// Each case spoils a good header, good claims (exp filled in by
	// Sprintf) and a good signup body in the same way.
	cases := []struct {
		name, header, claims, body string
		wantLoc, wantMsg, wantType string // of the body's 422
	}{
		{
			"a repeated member",
			`{"alg":"HS256","typ":"JWT","alg":"HS256"}`,
			`{"type":"access_token","exp":%d,"sub":"7","sub":"8"}`,
			`{"email":"u@example.com","password":"password123","email":"v@example.com"}`,
			"body.email", "this member appears more than once in the body", "value_error.jsondecode.duplicate_member",
		},
		{
			"invalid UTF-8",
			"{\"alg\":\"HS256\",\"typ\":\"JWT\",\"kid\":\"\xff\"}",
			"{\"type\":\"access_token\",\"exp\":%d,\"sub\":\"7\",\"x\":\"\xff\"}",
			"{\"email\":\"u@example.com\",\"password\":\"password123\",\"x\":\"\xff\"}",
			"body", "the body is not valid UTF-8", "value_error.jsondecode.utf8",
		},
		{
			"a lone surrogate",
			`{"alg":"HS256","typ":"JWT","kid":"\ud800"}`,
			`{"type":"access_token","exp":%d,"sub":"7","x":"\udc00"}`,
			`{"email":"u@example.com","password":"password123","first_name":"\ud800"}`,
			"body", `the body holds a \u escape of a lone UTF-16 surrogate, which is no character`, "value_error.jsondecode.surrogate",
		},
		{
			"trailing data",
			`{"alg":"HS256","typ":"JWT"}{}`,
			`{"type":"access_token","exp":%d,"sub":"7"}[]`,
			`{"email":"u@example.com","password":"password123"} {}`,
			"body", "the body must be a JSON object", "value_error.jsondecode",
		},
		{
			"the one name it needs in another case",
			`{"ALG":"HS256","typ":"JWT"}`,
			`{"type":"access_token","exp":%d,"SUB":"7"}`,
			`{"EMAIL":"u@example.com","password":"password123"}`,
			"body.email", "field required", "value_error.missing",
		},
	}
	now := testNow.Unix()
	verify := func(header, claims string) error {
		_, err := verifyAccessToken(newTokenKey(testSecret), makeToken(testSecret, header, claims), testNow)
		return err
	}
	t.Run("the good header and claims that the cases spoil are accepted", func(t *testing.T) {
		if err := verify(`{"alg":"HS256","typ":"JWT"}`, fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, now+60)); err != nil {
			t.Errorf("verify = %v, want the token accepted", err)
		}
	})
	for _, tc := range cases {
		t.Run("a token header with "+tc.name+" is refused as a bad header", func(t *testing.T) {
			if err := verify(tc.header, fmt.Sprintf(`{"type":"access_token","exp":%d,"sub":"7"}`, now+60)); !errors.Is(err, errTokenHeader) {
				t.Errorf("verify(header %q) = %v, want %v", tc.header, err, errTokenHeader)
			}
		})
		t.Run("token claims with "+tc.name+" are refused as bad claims", func(t *testing.T) {
			claims := fmt.Sprintf(tc.claims, now+60)
			if err := verify(`{"alg":"HS256","typ":"JWT"}`, claims); !errors.Is(err, errTokenClaims) {
				t.Errorf("verify(claims %q) = %v, want %v", claims, err, errTokenClaims)
			}
		})
		t.Run("a request body with "+tc.name+" is a 422 that says so, and nobody signs up", func(t *testing.T) {
			problems := problemsOf(t, e.postJSON("/api/v1/auth/signup", tc.body))
			if len(problems) != 1 || strings.Join(problems[0].Loc, ".") != tc.wantLoc || problems[0].Msg != tc.wantMsg || problems[0].Type != tc.wantType {
				t.Errorf("signup %q = %+v, want one problem at %s: %q (%s)", tc.body, problems, tc.wantLoc, tc.wantMsg, tc.wantType)
			}
			if _, err := e.store.userByEmail(t.Context(), "u@example.com"); err == nil {
				t.Fatalf("signup %q created the user", tc.body)
			}
		})
	}
	t.Run("a good signup body like the ones the cases spoil is accepted", func(t *testing.T) {
		expectStatus(t, e.postJSON("/api/v1/auth/signup", `{"email":"u@example.com","password":"password123"}`), 201)
	})
}
