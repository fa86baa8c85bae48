// config_test.go tests config.go: settings from the environment and
// flags, their checks, and the help the binary prints.
package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"io"
	"net/netip"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// configDiff names each field in which got differs from want, with both
// values in Go syntax (which tells a nil slice from an empty one).
func configDiff(got, want config) []string {
	var diffs []string
	g, w := reflect.ValueOf(got), reflect.ValueOf(want)
	for i := range g.NumField() {
		if gs, ws := fmt.Sprintf("%#v", g.Field(i)), fmt.Sprintf("%#v", w.Field(i)); gs != ws {
			diffs = append(diffs, fmt.Sprintf("%s = %s, want %s", g.Type().Field(i).Name, gs, ws))
		}
	}
	return diffs
}

func TestLoadConfig(t *testing.T) {
	// The contract's defaults for serve; each case below changes some.
	defaults := config{addr: "localhost:8001", dbPath: "example.db", accessTokenLifetime: 11520 * time.Minute,
		refreshTokenLifetime: 43200 * time.Minute, bcryptCost: 12, firstSuperuser: "admin@recipeapi.com",
		loginAttemptsPerMinute: 10, signupsPerHour: 100, recipeCreationBurst: 200, maxConnections: 4096}
	for _, tc := range []struct {
		name   string
		args   []string
		env    map[string]string
		change func(*config) // of defaults, to what loadConfig must return
	}{
		{"with nothing set, the settings are the contract's defaults", nil, nil, func(*config) {}},
		{"flags win over the environment", []string{"-addr", "127.0.0.1:9", "-db", "flag.db", "-max-connections", "7"},
			map[string]string{"ADDR": "env:1", "DATABASE_PATH": "env.db", "MAX_CONNECTIONS": "10"},
			func(c *config) { c.addr, c.dbPath, c.maxConnections = "127.0.0.1:9", "flag.db", 7 }},
		{"the environment wins over the defaults", nil, map[string]string{
			"ADDR": "127.0.0.1:7", "DATABASE_PATH": "env.db", "BCRYPT_COST": "5", "ACCESS_TOKEN_EXPIRE_MINUTES": "30",
			"REFRESH_TOKEN_EXPIRE_MINUTES": "90", "LOGIN_ATTEMPTS_PER_MINUTE": "0", "SIGNUPS_PER_HOUR": "0", "RECIPE_CREATION_BURST": "5000",
			"MAX_CONNECTIONS": "10", "JWT_SECRET": strings.Repeat("k", 32), "BACKEND_CORS_ORIGINS": `["http://a.example/", "http://b.example"]`,
			"FIRST_SUPERUSER": " root@example.com ", "FIRST_SUPERUSER_PW": "root-password", "LOG_FORMAT": "json",
		}, func(c *config) {
			c.addr, c.dbPath, c.bcryptCost, c.accessTokenLifetime, c.refreshTokenLifetime = "127.0.0.1:7", "env.db", 5, 30*time.Minute, 90*time.Minute
			c.loginAttemptsPerMinute, c.signupsPerHour, c.recipeCreationBurst, c.maxConnections = 0, 0, 5000, 10
			c.tokenSecret, c.corsOrigins = []byte(strings.Repeat("k", 32)), []string{"http://a.example", "http://b.example"}
			c.firstSuperuser, c.firstSuperuserPassword, c.logJSON = "root@example.com", "root-password", true
		}},
		{"trusted proxies are addresses or prefixes, IPv4-mapped ones as IPv4", nil,
			map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, ::1, 192.0.2.7, ::ffff:198.51.100.0/120"}, func(c *config) {
				c.trustedProxies = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128"),
					netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("198.51.100.0/24")}
			}},
		{"CORS origins may be http and https, with and without a port, in a comma-separated list", nil,
			map[string]string{"BACKEND_CORS_ORIGINS": "http://localhost:3000, https://app.example.com,http://127.0.0.1:8080"},
			func(c *config) {
				c.corsOrigins = []string{"http://localhost:3000", "https://app.example.com", "http://127.0.0.1:8080"}
			}},
		{"a CORS origin may be an IPv6 address, with the highest port", nil, map[string]string{"BACKEND_CORS_ORIGINS": "http://[::1]:65535"},
			func(c *config) { c.corsOrigins = []string{"http://[::1]:65535"} }},
		{"TLS takes a certificate and a key", []string{"-tls-cert", "cert.pem"}, map[string]string{"TLS_KEY_FILE": "key.pem"},
			func(c *config) { c.tlsCertFile, c.tlsKeyFile = "cert.pem", "key.pem" }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			want := defaults
			tc.change(&want)
			got, err := loadConfig("serve", tc.args, envOf(tc.env), io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			for _, diff := range configDiff(got, want) {
				t.Error(diff)
			}
		})
	}

	// Each bad value is refused with one line that begins with its
	// variable and names what is wrong, but never the value of a secret.
	type refusal struct {
		variable, wantInError string
		values                []string
	}
	refusals := []refusal{
		{"JWT_SECRET", "at least 32", []string{"short-secret"}},
		{"ACCESS_TOKEN_EXPIRE_MINUTES", "from 1 to", []string{"soon", "0"}},
		{"REFRESH_TOKEN_EXPIRE_MINUTES", "from 1 to", []string{"1d"}},
		{"BCRYPT_COST", "from 4 to 31", []string{"3", "32"}},
		{"LOGIN_ATTEMPTS_PER_MINUTE", "from 0 to 1000000", []string{"-1"}},
		{"SIGNUPS_PER_HOUR", "from 0 to 1000000", []string{"-1", "lots", "1000001"}},
		{"RECIPE_CREATION_BURST", "from 0 to 1000000", []string{"-1", "2e2", "1000001"}},
		{"MAX_CONNECTIONS", "from 1 to", []string{"0", "-1", "many"}},
		{"FIRST_SUPERUSER_PW", "must be 8 to", []string{"pw123"}},
		{"FIRST_SUPERUSER", `"admin"`, []string{"admin"}},
		{"BACKEND_CORS_ORIGINS", "not a JSON list", []string{`["http://a`}},
		{"TRUSTED_PROXIES", `"proxy.example"`, []string{"proxy.example"}},
		{"LOG_FORMAT", "want text or json", []string{"xml"}},
	}
	// Each entry that is no origin is refused, naming it, even after a good one.
	for _, entry := range []string{"*", "null", "localhost:3000", "notaurl", "ftp://a.example", "file:///etc", "http://", "http://:3000",
		"http://a.example/app", "http://a.example//", "http://a.example?x=1", "http://a.example?", "http://a.example#top",
		"http://user@a.example", "https://*.example.com", "http://a.example:0", "http://a.example:65536", "http://a.example:",
		"http://a.example:03000", "https://App.Example.com", "http://a .example", "http://bücher.example", "http://a..example"} {
		refusals = append(refusals, refusal{"BACKEND_CORS_ORIGINS", fmt.Sprintf("%q", strings.TrimSuffix(entry, "/")), []string{"http://ok.example, " + entry}})
	}
	for _, tc := range refusals {
		for _, value := range tc.values {
			t.Run(fmt.Sprintf("%s=%s is refused", tc.variable, value), func(t *testing.T) {
				_, err := loadConfig("serve", nil, envOf(map[string]string{tc.variable: value}), io.Discard)
				if err == nil {
					t.Fatalf("%s=%q was accepted", tc.variable, value)
				}
				if msg := err.Error(); !strings.HasPrefix(msg, tc.variable) || !strings.Contains(msg, tc.wantInError) || strings.Contains(msg, "\n") {
					t.Errorf("%s=%q: error %q, want one line that begins %s and names %q", tc.variable, value, msg, tc.variable, tc.wantInError)
				}
				if (tc.variable == "JWT_SECRET" || tc.variable == "FIRST_SUPERUSER_PW") && strings.Contains(err.Error(), value) {
					t.Errorf("the error shows the secret: %v", err)
				}
			})
		}
	}
}
func TestRunRefusesBadSettingsWithOneLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		env  map[string]string
		want string
	}{
		{"a short secret", nil, map[string]string{"JWT_SECRET": "too-short"}, "JWT_SECRET"},
		{"an unwritable database", []string{"-db", "/proc/no/such/dir/app.db"}, nil, "database"},
		{"an unknown flag", []string{"-nope"}, nil, "nope"},
		{"an argument after the flags", []string{"extra"}, nil, `unexpected argument "extra"`},
		{"a connection cap of zero", []string{"-max-connections", "0"}, nil, "MAX_CONNECTIONS"},
		{"a connection cap that is not a number", nil, map[string]string{"MAX_CONNECTIONS": "lots"}, "MAX_CONNECTIONS"},
		{"a short secret and a bad connection cap at once", nil, map[string]string{"JWT_SECRET": "too-short", "MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"},
		{"a CORS origin that is no origin", nil, map[string]string{"BACKEND_CORS_ORIGINS": "http://ok.example, notaurl"}, `"notaurl"`},
		// Latin-1, which no login form can send: nobody could log in with it.
		{"a first superuser password that is not UTF-8", nil, map[string]string{"FIRST_SUPERUSER_PW": "caf\xe9-password"}, "FIRST_SUPERUSER_PW is not UTF-8"},
		{"a TLS key without a certificate", nil, map[string]string{"TLS_KEY_FILE": "key.pem"}, "TLS needs both a certificate and a key"},
		{"a TLS certificate that cannot be read", []string{"-tls-cert", "/no/such/cert.pem", "-tls-key", "/no/such/key.pem"}, nil, "TLS: open /no/such/cert.pem"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-db", filepath.Join(t.TempDir(), "x.db"), "-addr", "127.0.0.1:0"}, tc.args...)
			var stderr bytes.Buffer
			// Bounded: a setting no longer refused would serve until the end.
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			err := run(ctx, args, envOf(tc.env), strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run = %v, want one line naming %q", err, tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("run also wrote %q; the one line it returns should be all", stderr.String())
			}
		})
	}
}

func TestTheBinaryExplainsItself(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}} {
		t.Run(strings.Join(args, " ")+" lists every command and every setting with its default", func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, envOf(nil), strings.NewReader(""), &stdout, &stderr)
			if err != nil || stderr.Len() != 0 {
				t.Fatalf("recipeapi %s = %v, stderr %q; want success and the help on stdout", args, err, stderr.String())
			}
			lines := strings.Split(stdout.String(), "\n")
			for _, c := range commands {
				if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "  "+c.name+" ") }) {
					t.Errorf("recipeapi %s does not list the command %s on a line of its own", args, c.name)
				}
			}
			for _, s := range settingsOf(new(config)) {
				want := cmp.Or(s.fallback, s.shown)
				if s.env != "" && !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "  "+s.env+" ") && strings.Contains(l, want) }) {
					t.Errorf("recipeapi %s has no line for %s with its default %q", args, s.env, want)
				}
			}
		})
	}

	t.Run("every variable loadConfig reads is in the help's settings", func(t *testing.T) {
		listed := func(name string) bool {
			return slices.ContainsFunc(settingsOf(new(config)), func(s setting) bool { return s.env == name })
		}
		for _, c := range commands {
			args := map[string][]string{"createsuperuser": {"-email", "a@example.com"}, "backup": {"-o", "copy.db"}}[c.name]
			read := map[string]bool{}
			if _, err := loadConfig(c.name, args, func(name string) string { read[name] = true; return "" }, io.Discard); err != nil {
				t.Fatalf("loadConfig(%s) = %v", c.name, err)
			}
			for name := range read {
				if !listed(name) {
					t.Errorf("loadConfig(%s) reads %s, which the help does not list", c.name, name)
				}
			}
			if c.name == "serve" && !read["JWT_SECRET"] {
				t.Errorf("loadConfig(serve) did not read JWT_SECRET through the getenv it was given")
			}
		}
	})

	t.Run("the defaults the help shows are the ones loadConfig applies", func(t *testing.T) {
		unset, err := loadConfig("serve", nil, envOf(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range settingsOf(new(config)) {
			if s.fallback == "" {
				continue // shown as a word, such as "(none)": there is no value to set
			}
			set, err := loadConfig("serve", nil, envOf(map[string]string{s.env: s.fallback}), io.Discard)
			if diffs := configDiff(set, unset); err != nil || len(diffs) > 0 {
				t.Errorf("%s=%s gives %v, %v; want the same settings as leaving it unset", s.env, s.fallback, diffs, err)
			}
		}
	})
}
