// operator_test.go tests that what an operator gives the service is taken
// only as meant: BACKEND_CORS_ORIGINS holds origins and nothing else, a
// backup goes to the very file named and only into a file it made (never
// through a name swapped meanwhile), a stored password hash that bcrypt
// cannot use neither stops nor hangs the start, and a client cannot fill
// the log with a long path.
package main

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
)

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

func TestBackupRefusesANameSQLiteWouldReadAsAURI(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": db}
	if _, err := runCommand(t, env, "", "migrate"); err != nil {
		t.Fatal(err)
	}
	t.Chdir(dir)
	entries := func() []string {
		names, _ := filepath.Glob(filepath.Join(dir, "*"))
		var kept []string
		for _, n := range names {
			// The database's own -wal and -shm come and go with readers.
			if n = filepath.Base(n); !strings.HasPrefix(n, "app.db-") {
				kept = append(kept, n)
			}
		}
		return kept
	}
	before := entries()

	t.Run("backup -o file:x.db is refused with one line, and writes nothing", func(t *testing.T) {
		out, err := runCommand(t, env, "", "backup", "-o", "file:x.db")
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "./file:x.db") {
			t.Fatalf("backup -o file:x.db = %q, %v; want one line that suggests ./file:x.db", out, err)
		}
		if after := entries(); !slices.Equal(after, before) {
			t.Errorf("files after the refused backup = %q, want %q", after, before)
		}
	})
	t.Run("backup -o ./file:x.db writes exactly that file, mode 0600", func(t *testing.T) {
		if out, err := runCommand(t, env, "", "backup", "-o", "./file:x.db"); err != nil {
			t.Fatalf("backup -o ./file:x.db = %q, %v", out, err)
		}
		info, err := os.Stat(filepath.Join(dir, "file:x.db"))
		if err != nil || info.Mode().Perm() != 0o600 || info.Size() == 0 {
			t.Fatalf("file:x.db = %v, %v; want a non-empty file of mode 0600", info, err)
		}
		if after := entries(); !slices.Equal(after, append(slices.Clone(before), "file:x.db")) {
			t.Errorf("files after the backup = %q, want %q and file:x.db", after, before)
		}
		expectIntegrityOK(t, filepath.Join(dir, "file:x.db"))
	})
	t.Run("a name with ? and # is that file too", func(t *testing.T) {
		if out, err := runCommand(t, env, "", "backup", "-o", "copy?mode=ro#x.db"); err != nil {
			t.Fatalf("backup = %q, %v", out, err)
		}
		if info, err := os.Stat(filepath.Join(dir, "copy?mode=ro#x.db")); err != nil || info.Mode().Perm() != 0o600 || info.Size() == 0 {
			t.Errorf("copy?mode=ro#x.db = %v, %v; want a non-empty file of mode 0600", info, err)
		}
	})
}

func TestABackupIsWrittenOnlyIntoAFileItMade(t *testing.T) {
	dir := t.TempDir()
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": filepath.Join(dir, "app.db")}
	if _, err := runCommand(t, env, "", "migrate"); err != nil {
		t.Fatal(err)
	}
	// The swaps that another user who may write in the backup's directory
	// could make after backupDatabase found the name free: writeBackup,
	// which makes and links the copy, must still refuse the name.
	for _, tc := range []struct {
		name  string
		swap  func(out, theirs string) error
		check func(t *testing.T, out, theirs string)
	}{
		{"a link to another's file, swapped in, leaves that file empty", func(out, theirs string) error {
			os.Remove(out)
			return os.Symlink(theirs, out)
		}, func(t *testing.T, out, theirs string) {
			if target, err := os.Readlink(out); err != nil || target != theirs {
				t.Errorf("%s = link to %q, %v; want the link left as it was made", out, target, err)
			}
		}},
		{"another's file, put at the name, is left as it was", func(out, theirs string) error {
			os.Remove(out)
			return os.WriteFile(out, []byte("theirs"), 0o644)
		}, func(t *testing.T, out, _ string) {
			if data, err := os.ReadFile(out); err != nil || string(data) != "theirs" {
				t.Errorf("%s = %q, %v; want their file left as it was", out, data, err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := filepath.Join(dir, "backup.db")
			theirs := filepath.Join(t.TempDir(), "theirs.db")
			if err := os.WriteFile(theirs, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := tc.swap(out, theirs); err != nil {
				t.Fatalf("swap: %v", err)
			}
			err := writeBackup(t.Context(), env["DATABASE_PATH"], out)
			if err == nil || strings.Contains(err.Error(), "\n") {
				t.Errorf("backup -o %s with a swapped name = %v, want one line refusing it", out, err)
			}
			if data, err := os.ReadFile(theirs); err != nil || len(data) != 0 {
				t.Errorf("their file holds %d bytes, %v; want it still empty, not holding the backup", len(data), err)
			}
			tc.check(t, out, theirs)
			if left, _ := filepath.Glob(filepath.Join(dir, ".backup-*")); len(left) > 0 {
				t.Errorf("the backup left %q behind", left)
			}
			os.Remove(out)
		})
	}
}

func TestAStoredHashOfAnUnusableCostNeverStopsTheStart(t *testing.T) {
	seeded := newTestEnv(t)
	path := seeded.cfg.dbPath
	seeded.signup("fine@example.com", "password123")
	seeded.store.close()
	raw := openRawDB(t, path)
	good := passlibHash(t, "password123")
	for _, row := range []struct{ email, hash string }{
		{"cost99@example.com", "$2b$99$" + good[7:]},
		{"cost03@example.com", "$2b$03$" + good[7:]},
		{"cost31@example.com", "$2b$31$" + good[7:]},
		{"cost19@example.com", "$2b$19$" + good[7:]},
		{"garbage@example.com", "not a hash"},
	} {
		if _, err := raw.Exec("INSERT INTO user (email, email_key, is_superuser, hashed_password) VALUES (?, ?, 0, ?)",
			row.email, row.email, row.hash); err != nil {
			t.Fatal(err)
		}
	}

	started := make(chan *testEnv, 1)
	go func() { started <- newTestEnv(t, onDatabase(path)) }()
	var e *testEnv
	select {
	case e = <-started:
	case <-time.After(30 * time.Second):
		t.Fatal("the start did not finish within 30 s")
	}
	t.Run("the dummy hash ignores the unusable costs", func(t *testing.T) {
		cost, err := dummyCost(t.Context(), e.store, bcrypt.DefaultCost)
		if err != nil || cost != testBcryptCost {
			t.Errorf("dummyCost = %d, %v; want %d, the only usable cost", cost, err, testBcryptCost)
		}
	})
	for _, email := range []string{"cost99@example.com", "cost03@example.com", "cost31@example.com", "cost19@example.com", "garbage@example.com"} {
		t.Run(email+" cannot log in, as with a wrong password", func(t *testing.T) {
			for range 3 {
				done := make(chan *http.Response, 1)
				go func() {
					done <- e.postForm("/api/v1/auth/login", map[string][]string{"username": {email}, "password": {"password123"}})
				}()
				select {
				case resp := <-done:
					expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
				case <-time.After(30 * time.Second):
					t.Fatal("the login did not answer within 30 s")
				}
			}
		})
	}
	t.Run("the log says so at each attempt, without the hash", func(t *testing.T) {
		logs := e.logs.String()
		if n := strings.Count(logs, "stored password hash is unusable"); n != 15 {
			t.Errorf("log has %d lines about unusable hashes, want 15 (one per attempt):\n%s", n, logs)
		}
		if strings.Contains(logs, good[7:]) || strings.Contains(logs, "not a hash") {
			t.Errorf("the log shows a stored hash:\n%s", logs)
		}
	})
	t.Run("the other accounts log in", func(t *testing.T) {
		e.login("fine@example.com", "password123")
		e.login("admin@recipeapi.com", adminPassword)
	})
}

func TestLoggedPathsAreTruncated(t *testing.T) {
	e := newTestEnv(t)
	long := "/" + strings.Repeat("é", 32<<10) // 65 KB
	e.get(long)
	var line string
	for l := range strings.SplitSeq(e.logs.String(), "\n") {
		if strings.Contains(l, "msg=request") {
			line = l
		}
	}
	if len(line) >= 1024 || !strings.Contains(line, "…(truncated)") {
		t.Errorf("the log line for a %d-byte path is %d bytes: %.200q…; want under 1 KB, marked as cut", len(long), len(line), line)
	}
	if !strings.Contains(line, strings.Repeat("é", 200)) || strings.Contains(line, "\\x") {
		t.Errorf("the cut path lost its start or broke a character: %.300q", line)
	}
	t.Run("a short path is logged whole", func(t *testing.T) {
		e.get("/no/such/page")
		if !strings.Contains(e.logs.String(), "path=/no/such/page ") {
			t.Errorf("log = %q, want the whole path", e.logs.String())
		}
	})
}

func TestLoggedPathIsCutAtACharacterBoundaryAndNeverEmptied(t *testing.T) {
	for _, tc := range []struct{ name, path, wantPrefix string }{
		{"ASCII is cut at 512 bytes", strings.Repeat("a", 600), strings.Repeat("a", 512)},
		{"a three-byte character across the cut is left out whole", strings.Repeat("a", 511) + strings.Repeat("€", 100), strings.Repeat("a", 511)},
		{"stray bytes are cut no more than 3 bytes short, never emptied", strings.Repeat("\xbd", 600), strings.Repeat("\xbd", 509)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := loggedPath(&http.Request{URL: &url.URL{Path: tc.path}})
			if got != tc.wantPrefix+"…(truncated)" {
				t.Errorf("loggedPath = %.40q… (%d bytes), want %.40q…(truncated)", got, len(got), tc.wantPrefix)
			}
		})
	}
}

func TestLoggedPathsAreTruncatedInPanicsToo(t *testing.T) {
	var logs bytes.Buffer
	a := &app{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	h := a.recoverPanics(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic("boom") }))
	h.ServeHTTP(httptest.NewRecorder(), newRequest("GET", "/"+strings.Repeat("x", 64<<10), nil))
	path, _, _ := strings.Cut(logs.String()[strings.Index(logs.String(), "path="):], " ")
	if len(path) > 600 || !strings.Contains(path, "…(truncated)") {
		t.Errorf("logged path of %d bytes, want at most 512 and marked as cut: %.100q", len(path), path)
	}
}
