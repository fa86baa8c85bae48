// jsonobject.go reads a JSON object strictly, for the two places that take
// JSON from anyone: the header and payload of an access token (jwt.go) and
// a request body (decodeJSONObject, http.go). encoding/json alone would
// replace bad UTF-8 and lone surrogates with U+FFFD, fold the case of
// member names and keep the last of two members of one name, so that many
// different texts would mean the same thing to us and different things to
// another program. forEachMember refuses all of those instead.
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxObjectMembers is far more than any header, payload or body we accept
// has.
const maxObjectMembers = 64

// The ways forEachMember refuses a JSON object. The request body decoder
// (decodeJSONObject, http.go) tells the client which one it was.
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
	// escapes; RFC 8725 §3.7 asks for UTF-8 only.
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
