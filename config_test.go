// config_test.go tests config.go: settings from the environment and
// flags, their checks, and the help the binary prints.
package main

import (
	"bytes"
	"fmt"
	"io"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestLoadConfig(t *testing.T) {
	env := func(vars map[string]string) func(string) string {
		return func(name string) string { return vars[name] }
	}
	t.Run("defaults are the contract's", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(nil), io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.addr != "localhost:8001" || cfg.dbPath != "example.db" || cfg.bcryptCost != 12 ||
			cfg.accessTokenLifetime != 11520*time.Minute || cfg.refreshTokenLifetime != 43200*time.Minute ||
			cfg.loginAttemptsPerMinute != 10 || cfg.signupsPerHour != 100 || cfg.recipeCreationBurst != 200 || cfg.maxConnections != 4096 ||
			cfg.firstSuperuser != "admin@recipeapi.com" || cfg.tokenSecret != nil || cfg.corsOrigins != nil {
			t.Errorf("defaults = %+v", cfg)
		}
	})
	t.Run("flags win over the environment", func(t *testing.T) {
		cfg, err := loadConfig("serve", []string{"-addr", "127.0.0.1:9", "-db", "flag.db"},
			env(map[string]string{"ADDR": "env:1", "DATABASE_PATH": "env.db"}), io.Discard)
		if err != nil || cfg.addr != "127.0.0.1:9" || cfg.dbPath != "flag.db" {
			t.Errorf("got %q %q %v, want the flags' values", cfg.addr, cfg.dbPath, err)
		}
	})
	t.Run("the environment wins over the defaults", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(map[string]string{
			"ADDR": "127.0.0.1:7", "DATABASE_PATH": "env.db", "BCRYPT_COST": "5",
			"ACCESS_TOKEN_EXPIRE_MINUTES": "30", "REFRESH_TOKEN_EXPIRE_MINUTES": "90", "LOGIN_ATTEMPTS_PER_MINUTE": "0", "SIGNUPS_PER_HOUR": "0",
			"RECIPE_CREATION_BURST": "5000", "JWT_SECRET": strings.Repeat("k", 32), "BACKEND_CORS_ORIGINS": `["http://a.example/", "http://b.example"]`,
		}), io.Discard)
		if err != nil || cfg.addr != "127.0.0.1:7" || cfg.dbPath != "env.db" || cfg.bcryptCost != 5 ||
			cfg.accessTokenLifetime != 30*time.Minute || cfg.refreshTokenLifetime != 90*time.Minute ||
			cfg.loginAttemptsPerMinute != 0 || cfg.signupsPerHour != 0 || cfg.recipeCreationBurst != 5000 ||
			string(cfg.tokenSecret) != strings.Repeat("k", 32) ||
			strings.Join(cfg.corsOrigins, " ") != "http://a.example http://b.example" {
			t.Errorf("got %+v, %v", cfg, err)
		}
	})
	t.Run("trusted proxies are addresses or prefixes, IPv4-mapped ones as IPv4", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(map[string]string{"TRUSTED_PROXIES": "10.0.0.0/8, ::1, 192.0.2.7, ::ffff:198.51.100.0/120"}), io.Discard)
		if got := fmt.Sprint(cfg.trustedProxies); err != nil || got != "[10.0.0.0/8 ::1/128 192.0.2.7/32 198.51.100.0/24]" {
			t.Errorf("TRUSTED_PROXIES = %s, %v", got, err)
		}
		if _, err := loadConfig("serve", nil, env(map[string]string{"TRUSTED_PROXIES": "proxy.example"}), io.Discard); err == nil {
			t.Error("a host name was accepted as a trusted proxy")
		}
	})
	t.Run("the connection cap comes from -max-connections over MAX_CONNECTIONS", func(t *testing.T) {
		cfg, err := loadConfig("serve", nil, env(map[string]string{"MAX_CONNECTIONS": "10"}), io.Discard)
		if err != nil || cfg.maxConnections != 10 {
			t.Errorf("MAX_CONNECTIONS=10: cap %d, %v; want 10", cfg.maxConnections, err)
		}
		cfg, err = loadConfig("serve", []string{"-max-connections", "7"}, env(map[string]string{"MAX_CONNECTIONS": "10"}), io.Discard)
		if err != nil || cfg.maxConnections != 7 {
			t.Errorf("-max-connections 7 over MAX_CONNECTIONS=10: cap %d, %v; want 7", cfg.maxConnections, err)
		}
	})
	t.Run("CORS origins may be a comma-separated list", func(t *testing.T) {
		cfg, _ := loadConfig("serve", nil, env(map[string]string{"BACKEND_CORS_ORIGINS": "http://a.example, http://b.example"}), io.Discard)
		if strings.Join(cfg.corsOrigins, " ") != "http://a.example http://b.example" {
			t.Errorf("origins = %q", cfg.corsOrigins)
		}
	})
	for _, tc := range []struct {
		name, variable, value, wantInError string
	}{
		{"a secret under 32 bytes is refused", "JWT_SECRET", "short-secret", "at least 32"},
		{"an unparsable lifetime is refused", "ACCESS_TOKEN_EXPIRE_MINUTES", "soon", "ACCESS_TOKEN_EXPIRE_MINUTES"},
		{"a zero lifetime is refused", "ACCESS_TOKEN_EXPIRE_MINUTES", "0", "ACCESS_TOKEN_EXPIRE_MINUTES"},
		{"an unparsable refresh lifetime is refused", "REFRESH_TOKEN_EXPIRE_MINUTES", "1d", "REFRESH_TOKEN_EXPIRE_MINUTES"},
		{"a bcrypt cost under 4 is refused", "BCRYPT_COST", "3", "BCRYPT_COST"},
		{"a bcrypt cost over 31 is refused", "BCRYPT_COST", "32", "BCRYPT_COST"},
		{"a negative login limit is refused", "LOGIN_ATTEMPTS_PER_MINUTE", "-1", "LOGIN_ATTEMPTS_PER_MINUTE"},
		{"a negative signup limit is refused", "SIGNUPS_PER_HOUR", "-1", "SIGNUPS_PER_HOUR"},
		{"an unparsable signup limit is refused", "SIGNUPS_PER_HOUR", "lots", "SIGNUPS_PER_HOUR"},
		{"a signup limit over a million is refused", "SIGNUPS_PER_HOUR", "1000001", "from 0 to 1000000"},
		{"a negative recipe creation burst is refused", "RECIPE_CREATION_BURST", "-1", "RECIPE_CREATION_BURST"},
		{"an unparsable recipe creation burst is refused", "RECIPE_CREATION_BURST", "2e2", "RECIPE_CREATION_BURST"},
		{"a recipe creation burst over a million is refused", "RECIPE_CREATION_BURST", "1000001", "from 0 to 1000000"},
		{"a short first superuser password is refused", "FIRST_SUPERUSER_PW", "short", "FIRST_SUPERUSER_PW"},
		{"an invalid first superuser email is refused", "FIRST_SUPERUSER", "admin", "FIRST_SUPERUSER"},
		{"a broken JSON origin list is refused", "BACKEND_CORS_ORIGINS", `["http://a`, "BACKEND_CORS_ORIGINS"},
		{"a connection cap of zero is refused", "MAX_CONNECTIONS", "0", "MAX_CONNECTIONS"},
		{"a negative connection cap is refused", "MAX_CONNECTIONS", "-1", "MAX_CONNECTIONS"},
		{"an unparsable connection cap is refused", "MAX_CONNECTIONS", "many", "MAX_CONNECTIONS"},
		{"a wildcard origin is refused, naming it", "BACKEND_CORS_ORIGINS", "*", `"*"`},
		{"a null origin is refused, naming it", "BACKEND_CORS_ORIGINS", "http://a.example,null", `"null"`},
		{"an origin without a scheme is refused, naming it", "BACKEND_CORS_ORIGINS", "localhost:3000", `"localhost:3000"`},
		{"an origin with a path is refused, naming it", "BACKEND_CORS_ORIGINS", `["http://a.example/app"]`, `"http://a.example/app"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadConfig("serve", nil, env(map[string]string{tc.variable: tc.value}), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tc.wantInError) {
				t.Fatalf("%s=%q: error %v, want one naming %q", tc.variable, tc.value, err, tc.wantInError)
			}
			if tc.variable == "JWT_SECRET" && strings.Contains(err.Error(), tc.value) {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
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
		{"a connection cap of zero", []string{"-max-connections", "0"}, nil, "MAX_CONNECTIONS"},
		{"a connection cap that is not a number", nil, map[string]string{"MAX_CONNECTIONS": "lots"}, "MAX_CONNECTIONS"},
		{"a short secret and a bad connection cap at once", nil, map[string]string{"JWT_SECRET": "too-short", "MAX_CONNECTIONS": "0"}, "MAX_CONNECTIONS"},
		{"a CORS origin that is no origin", nil, map[string]string{"BACKEND_CORS_ORIGINS": "http://ok.example, notaurl"}, `"notaurl"`},
		// Latin-1, which no login form can send: nobody could log in with it.
		{"a first superuser password that is not UTF-8", nil, map[string]string{"FIRST_SUPERUSER_PW": "caf\xe9-password"}, "FIRST_SUPERUSER_PW is not UTF-8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"-db", filepath.Join(t.TempDir(), "x.db"), "-addr", "127.0.0.1:0"}, tc.args...)
			var stderr bytes.Buffer
			err := run(t.Context(), args, func(k string) string { return tc.env[k] }, strings.NewReader(""), io.Discard, &stderr)
			if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("run = %v, want one line naming %q", err, tc.want)
			}
			if stderr.Len() != 0 {
				t.Errorf("run also wrote %q; the one line it returns should be all", stderr.String())
			}
		})
	}
}

func TestBackendCORSOriginsAcceptOnlyOrigins(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        []string
	}{
		{"http and https origins, with and without a port", "http://localhost:3000, https://app.example.com,http://127.0.0.1:8080",
			[]string{"http://localhost:3000", "https://app.example.com", "http://127.0.0.1:8080"}},
		{"one trailing slash is dropped, as the reference writes them", `["http://localhost:3000/", "https://a.example/"]`,
			[]string{"http://localhost:3000", "https://a.example"}},
		{"an IPv6 origin", "http://[::1]:3000", []string{"http://[::1]:3000"}},
		{"the highest port", "http://a.example:65535", []string{"http://a.example:65535"}},
		{"nothing", "", nil},
	} {
		t.Run(tc.name+" are accepted", func(t *testing.T) {
			got, err := parseCORSOrigins(tc.value)
			if err != nil || !slices.Equal(got, tc.want) {
				t.Errorf("parseCORSOrigins(%q) = %q, %v; want %q", tc.value, got, err, tc.want)
			}
		})
	}
	for _, tc := range []struct{ name, entry string }{
		{"a wildcard", "*"},
		{"null", "null"},
		{"a host without a scheme", "localhost:3000"},
		{"a word", "notaurl"},
		{"another scheme", "ftp://a.example"},
		{"a file URL", "file:///etc"},
		{"a scheme with no host", "http://"},
		{"a port with no host", "http://:3000"},
		{"a path", "http://a.example/app"},
		{"two trailing slashes", "http://a.example//"},
		{"a query", "http://a.example?x=1"},
		{"an empty query", "http://a.example?"},
		{"a fragment", "http://a.example#top"},
		{"a user name", "http://user@a.example"},
		{"a wildcard host", "https://*.example.com"},
		{"port 0", "http://a.example:0"},
		{"a port over 65535", "http://a.example:65536"},
		{"an empty port", "http://a.example:"},
		{"a port with a leading zero", "http://a.example:03000"},
		{"upper case, which no browser sends", "https://App.Example.com"},
		{"a space inside", "http://a .example"},
		{"a host beyond ASCII, which browsers send as punycode", "http://bücher.example"},
		{"an empty label", "http://a..example"},
	} {
		t.Run(tc.name+" stops the start with one line naming it", func(t *testing.T) {
			_, err := loadConfig("serve", nil, func(name string) string {
				return map[string]string{"BACKEND_CORS_ORIGINS": "http://ok.example, " + tc.entry}[name]
			}, io.Discard)
			if err == nil {
				t.Fatalf("loadConfig accepted the origin %q", tc.entry)
			}
			want := strings.TrimSuffix(tc.entry, "/")
			if msg := err.Error(); !strings.Contains(msg, `"`+want+`"`) || strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "BACKEND_CORS_ORIGINS") {
				t.Errorf("error = %q, want one line naming BACKEND_CORS_ORIGINS and %q", msg, want)
			}
		})
	}
}

func TestTheBinaryExplainsItself(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}} {
		t.Run(strings.Join(args, " ")+" lists every command and every setting with its default", func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(t.Context(), args, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
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
				if s.env == "" {
					continue // a command's own flag, which its -h lists
				}
				want := s.fallback
				if want == "" {
					want = s.shown
				}
				if !slices.ContainsFunc(lines, func(l string) bool {
					return strings.HasPrefix(l, "  "+s.env+" ") && strings.Contains(l, want)
				}) {
					t.Errorf("recipeapi %s has no line for %s with its default %q", args, s.env, want)
				}
			}
		})
	}

	t.Run("every variable loadConfig reads is in the help's settings", func(t *testing.T) {
		listed := map[string]bool{}
		for _, s := range settingsOf(new(config)) {
			listed[s.env] = true
		}
		for _, c := range commands {
			command := c.name
			args := map[string][]string{"createsuperuser": {"-email", "a@example.com"}, "backup": {"-o", "copy.db"}}[command]
			read := map[string]bool{}
			if _, err := loadConfig(command, args, func(name string) string { read[name] = true; return "" }, io.Discard); err != nil {
				t.Fatalf("loadConfig(%s) = %v", command, err)
			}
			for name := range read {
				if !listed[name] {
					t.Errorf("loadConfig(%s) reads %s, which the help does not list", command, name)
				}
			}
		}
	})

	t.Run("the defaults the help shows are the ones loadConfig applies", func(t *testing.T) {
		unset, err := loadConfig("serve", nil, func(string) string { return "" }, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		for _, s := range settingsOf(new(config)) {
			if s.fallback == "" {
				continue
			}
			set, err := loadConfig("serve", nil, func(name string) string {
				if name == s.env {
					return s.fallback
				}
				return ""
			}, io.Discard)
			if err != nil || !reflect.DeepEqual(set, unset) {
				t.Errorf("%s=%s gives %+v, %v; want the same settings as leaving it unset, %+v", s.env, s.fallback, set, err, unset)
			}
		}
	})
}
