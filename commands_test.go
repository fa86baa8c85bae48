// commands_test.go tests commands.go: the command line's commands
// (migrate, createsuperuser, backup, healthcheck, version) and the seeding
// of a fresh database.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestTheSeededSuperuserStartsWithAFreshIdentity(t *testing.T) {
	old := newTestEnv(t)
	cfg := old.cfg
	oldAdmin := old.loginTokens("admin@recipeapi.com", adminPassword)
	old.store.close()

	t.Run("a new database with the same secret: the old admin's token is not the new superuser", func(t *testing.T) {
		// A new file, the same JWT_SECRET.
		e := newTestEnv(t, func(c *config) { c.firstSuperuser = "boss@example.com" })
		boss, err := e.store.userByEmail(t.Context(), "boss@example.com")
		if err != nil || boss.ID != 1 {
			t.Fatalf("seeded superuser = %+v, %v; want id 1, as the old admin had", boss, err)
		}
		if boss.TokenGeneration == 0 {
			t.Errorf("seeded superuser's token generation = 0, want a random one")
		}
		expectAccessTokenRefused(t, e, oldAdmin.AccessToken)
		expectDetail(t, e.send("DELETE", "/api/v1/recipes/1", nil, bearer(oldAdmin.AccessToken)...),
			http.StatusUnauthorized, "Could not validate credentials")
	})

	t.Run("every user deleted by hand and the id counter reset: the old refresh token is not the new superuser's", func(t *testing.T) {
		raw := openRawDB(t, cfg.dbPath)
		execAll(t, raw, "PRAGMA foreign_keys = OFF", "DELETE FROM user", "UPDATE sqlite_sequence SET seq = 0 WHERE name = 'user'")
		raw.Close()
		e := newTestEnv(t, onDatabase(cfg.dbPath), func(c *config) { c.firstSuperuser = "heir@example.com" })
		heir, err := e.store.userByEmail(t.Context(), "heir@example.com")
		if err != nil || heir.ID != 1 {
			t.Fatalf("seeded superuser = %+v, %v; want id 1 again", heir, err)
		}
		expectAccessTokenRefused(t, e, oldAdmin.AccessToken)
		expectRefreshTokenRefused(t, e, oldAdmin.RefreshToken)
	})
}

func TestCreatesuperuserEndsEverySessionOfTheAccount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": path}
	for _, tc := range []struct{ name, stdin, password string }{
		{"promoted without a new password", "", "password123"},
		{"promoted with a new password", "a-new-password\n", "a-new-password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, onDatabase(path))
			email := strings.ReplaceAll(tc.name, " ", "-") + "@example.com"
			u := e.signup(email, "password123")
			stolen := e.loginTokens(email, "password123")
			e.store.close()

			out, err := runCommand(t, env, tc.stdin, "createsuperuser", "-email", email)
			if err != nil || !strings.Contains(out, "must log in again") {
				t.Fatalf("createsuperuser = %q, %v; want it to say the user must log in again", out, err)
			}

			e = newTestEnv(t, onDatabase(path))
			defer e.store.close()
			expectAccessTokenRefused(t, e, stolen.AccessToken)
			expectRefreshTokenRefused(t, e, stolen.RefreshToken)
			fresh := e.loginTokens(email, tc.password)
			resp := e.get("/api/v1/auth/me", bearer(fresh.AccessToken)...)
			if got := decodeBody[userView](t, resp); got.ID != u.ID || !got.IsSuperuser {
				t.Errorf("GET /api/v1/auth/me after a new login = %+v, want superuser %d", got, u.ID)
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

func TestCommandLine(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword}

	t.Run("migrate creates and migrates the database and reports its version", func(t *testing.T) {
		out, err := runCommand(t, env, "", "migrate", "-db", db)
		want := fmt.Sprintf("is at schema version %d", knownMigrations(t))
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("migrate = %q, %v; want %q", out, err, want)
		}
	})
	t.Run("createsuperuser with a password on standard input makes a superuser who can log in", func(t *testing.T) {
		out, err := runCommand(t, env, "a-strong-password\n", "createsuperuser", "-db", db, "-email", "Boss@Example.com")
		if err != nil || !strings.Contains(out, "Boss@Example.com") || strings.Contains(out, "a-strong-password") {
			t.Fatalf("createsuperuser = %q, %v", out, err)
		}
		e := newTestEnv(t, onDatabase(db))
		token := e.login("boss@example.com", "a-strong-password")
		resp := e.get("/api/v1/auth/me", bearer(token)...)
		if u := decodeBody[userView](t, resp); !u.IsSuperuser {
			t.Errorf("me = %+v, want a superuser", u)
		}
		e.store.close()
	})
	t.Run("createsuperuser without a password generates one and prints it once", func(t *testing.T) {
		out, err := runCommand(t, env, "", "createsuperuser", "-db", db, "-email", "second@example.com")
		words := strings.Fields(out)
		if err != nil || len(words) == 0 || !strings.Contains(out, "second@example.com") {
			t.Fatalf("createsuperuser = %q, %v", out, err)
		}
		e := newTestEnv(t, onDatabase(db))
		e.login("second@example.com", words[len(words)-1])
		e.store.close()
	})
	t.Run("createsuperuser promotes an existing user", func(t *testing.T) {
		e := newTestEnv(t, onDatabase(db))
		e.signup("cook@example.com", "password123")
		e.store.close()
		if out, err := runCommand(t, env, "", "createsuperuser", "-db", db, "-email", "COOK@example.com"); err != nil || !strings.Contains(out, "now a superuser") {
			t.Fatalf("createsuperuser = %q, %v", out, err)
		}
		e = newTestEnv(t, onDatabase(db))
		resp := e.get("/api/v1/auth/me", bearer(e.login("cook@example.com", "password123"))...)
		if u := decodeBody[userView](t, resp); !u.IsSuperuser {
			t.Errorf("me = %+v, want a superuser with the old password", u)
		}
		e.store.close()
	})
	t.Run("version prints the module and the Go version", func(t *testing.T) {
		out, err := runCommand(t, env, "", "version")
		if err != nil || !strings.HasPrefix(out, "recipeapi ") || !strings.Contains(out, "go1.") {
			t.Errorf("version = %q, %v", out, err)
		}
	})
	t.Run("version prints the version set at build time, if any", func(t *testing.T) {
		defer func(saved string) { version = saved }(version)
		version = "v9.9.9"
		if out, err := runCommand(t, env, "", "version"); err != nil || !strings.HasPrefix(out, "recipeapi v9.9.9, ") {
			t.Errorf("version = %q, %v; want it to name v9.9.9", out, err)
		}
	})
	t.Run("-h on each command, or help before it, prints its flags and succeeds", func(t *testing.T) {
		for command, flag := range map[string]string{"serve": "-addr", "migrate": "-db", "createsuperuser": "-email", "backup": "-o", "healthcheck": "-addr", "version": "no flags"} {
			for _, args := range [][]string{{command, "-h"}, {command, "--help"}, {"help", command}} {
				out, err := runCommand(t, nil, "", args...)
				if err != nil || !strings.Contains(out, flag) || !strings.Contains(out, "recipeapi "+command) {
					t.Errorf("%q = %v, printed %q; want its usage with %s", args, err, out, flag)
				}
			}
		}
	})
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"an unknown command is a usage error", []string{"frobnicate"}},
		{"an unknown flag is a usage error", []string{"migrate", "-nope"}},
		{"a flag of another command is a usage error", []string{"version", "-db", "x.db"}},
		{"createsuperuser without -email is a usage error", []string{"createsuperuser", "-db", db}},
		{"backup without -o is a usage error", []string{"backup", "-db", db}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := runCommand(t, env, "", tc.args...)
			var usage usageError
			if !errors.As(err, &usage) || strings.Contains(err.Error(), "\n") {
				t.Errorf("%q = %v, want one line and a usage error (exit status 2)", tc.args, err)
			}
		})
	}
}

func TestBackupWhileWritesGoOn(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "live.db")
	// One account writes as fast as it can: no limit on its creations.
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": db, "RECIPE_CREATION_BURST": "0"}
	base, _ := serveInBackground(t, env)
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)

	create := func(label string) bool {
		req, _ := http.NewRequest("POST", base+"/api/v1/recipes/", strings.NewReader(
			fmt.Sprintf(`{"label":%q,"source":"s","url":"https://example.com/x"}`, label)))
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusCreated
	}
	var before []string
	for i := range 50 {
		label := fmt.Sprintf("before the backup %d", i)
		if !create(label) {
			t.Fatalf("could not create %q", label)
		}
		before = append(before, label)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 { // writers that go on during the backup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
					create(fmt.Sprintf("during the backup %d-%d", w, i))
				}
			}
		})
	}
	backup := filepath.Join(dir, "backup.db")
	out, err := runCommand(t, env, "", "backup", "-o", backup)
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup = %q, %v", out, err)
	}

	t.Run("the backup passes an integrity check and holds every row written before it began", func(t *testing.T) {
		expectIntegrityOK(t, backup)
		e := newTestEnv(t, onDatabase(backup))
		defer e.store.close()
		for _, label := range before {
			resp := e.get("/api/v1/recipes/search/?max_results=100&keyword=" + url.QueryEscape(label))
			if body, _ := io.ReadAll(resp.Body); !strings.Contains(string(body), label) {
				t.Errorf("the backup lacks %q", label)
			}
		}
	})
	t.Run("the backup is private to its owner", func(t *testing.T) {
		if info, err := os.Stat(backup); err != nil || info.Mode().Perm() != 0o600 {
			t.Errorf("backup mode = %v, %v; want 0600", info.Mode().Perm(), err)
		}
	})
	t.Run("backup refuses to overwrite a file", func(t *testing.T) {
		if _, err := runCommand(t, env, "", "backup", "-o", backup); err == nil {
			t.Error("a second backup to the same file succeeded")
		}
		expectIntegrityOK(t, backup)
	})
}

func TestCreateSuperuserRefusesAPasswordThatIsNotUTF8(t *testing.T) {
	dir := t.TempDir()
	db := filepath.Join(dir, "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword}
	refused := func(t *testing.T, email string) {
		t.Helper()
		// Latin-1, as a terminal set to it would send "café-password".
		out, err := runCommand(t, env, "caf\xe9-password\n", "createsuperuser", "-db", db, "-email", email)
		if err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), "UTF-8") {
			t.Fatalf("createsuperuser with a Latin-1 password = %q, %v; want one line saying it is not UTF-8", out, err)
		}
		if strings.Contains(err.Error(), "caf") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	t.Run("for a new database, which is not even created", func(t *testing.T) {
		refused(t, "boss@example.com")
		if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s = %v; want no database made", db, err)
		}
	})
	t.Run("for an existing user, who is left as they were", func(t *testing.T) {
		e := newTestEnv(t, onDatabase(db))
		e.signup("cook@example.com", "password123")
		e.store.close()
		before := dump(t, openRawDB(t, db), "SELECT * FROM user ORDER BY id")
		refused(t, "cook@example.com")
		if after := dump(t, openRawDB(t, db), "SELECT * FROM user ORDER BY id"); after != before {
			t.Errorf("users after the refusal:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}

func TestHealthcheckDoesNotFollowRedirects(t *testing.T) {
	var followed atomic.Bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		followed.Store(true)
		fmt.Fprint(w, `{"status":"ok"}`)
	}))
	defer elsewhere.Close()
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(fmt.Sprintf("a %d to a healthy server elsewhere is unhealthy", status), func(t *testing.T) {
			followed.Store(false)
			redirecting := httptest.NewServer(http.RedirectHandler(elsewhere.URL+"/healthz", status))
			defer redirecting.Close()
			_, err := runCommand(t, nil, "", "healthcheck", "-addr", strings.TrimPrefix(redirecting.URL, "http://"))
			if err == nil || !strings.Contains(err.Error(), fmt.Sprint(status)) || strings.Contains(err.Error(), "\n") {
				t.Errorf("healthcheck = %v, want one line naming %d", err, status)
			}
			if followed.Load() {
				t.Errorf("healthcheck followed the redirect to %s", elsewhere.URL)
			}
		})
	}
}

// serveOnce starts the serve command, waits until it is healthy, stops it,
// and returns what it printed and logged.
func serveOnce(t *testing.T, env map[string]string) (stdout, stderr string) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	ctx, cancel := context.WithCancel(t.Context())
	var out, logs syncBuffer
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"serve", "-addr", addr}, func(k string) string { return env[k] }, strings.NewReader(""), &out, &logs)
	}()
	waitForHealthy(t, "http://"+addr)
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
	return out.String(), logs.String()
}

func TestFirstSuperuserPasswordIsConfirmedOrSaidToBeIgnored(t *testing.T) {
	const password = "given-password-123"
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER": "chef@example.com", "FIRST_SUPERUSER_PW": password,
		"DATABASE_PATH": filepath.Join(t.TempDir(), "first.db")}

	t.Run("a first start says it created the superuser with the given password, without printing it", func(t *testing.T) {
		stdout, stderr := serveOnce(t, env)
		if !strings.Contains(stdout, "Created the first superuser chef@example.com") || !strings.Contains(stdout, "FIRST_SUPERUSER_PW") {
			t.Errorf("first start printed %q; want a line naming chef@example.com and FIRST_SUPERUSER_PW", stdout)
		}
		if strings.Contains(stdout+stderr, password) {
			t.Errorf("the given password was printed or logged")
		}
		if strings.Contains(stderr, "ignored") {
			t.Errorf("first start logged that the password is ignored:\n%s", stderr)
		}
	})
	t.Run("a later start logs once that the password is ignored and names createsuperuser", func(t *testing.T) {
		stdout, stderr := serveOnce(t, env)
		var said []string
		for line := range strings.Lines(stderr) {
			if strings.Contains(line, "FIRST_SUPERUSER_PW") {
				said = append(said, line)
			}
		}
		if len(said) != 1 || !strings.Contains(said[0], "ignored") || !strings.Contains(said[0], "createsuperuser") {
			t.Errorf("a later start logged %q; want one line saying FIRST_SUPERUSER_PW is ignored and naming createsuperuser", said)
		}
		if stdout != "" || strings.Contains(stderr, password) {
			t.Errorf("a later start printed %q, or logged the password", stdout)
		}
	})
	t.Run("a later start without the password says nothing of it", func(t *testing.T) {
		quiet := maps.Clone(env)
		delete(quiet, "FIRST_SUPERUSER_PW")
		if _, stderr := serveOnce(t, quiet); strings.Contains(stderr, "FIRST_SUPERUSER_PW") {
			t.Errorf("a start without FIRST_SUPERUSER_PW logged about it:\n%s", stderr)
		}
	})
}

// TestVersionIsStampedByTheLinker builds the binary with -X main.version,
// as deploy/Dockerfile does: -X on a name that does not exist (or is a
// constant) is silently ignored, so only a real build shows that it works.
//
// It builds with the compiler settings this test binary was built with,
// not the Dockerfile's -trimpath and CGO_ENABLED=0: those change how every
// package compiles, SQLite's too, so a cold go test would compile them all
// a second time. With the same settings every package comes from the build
// cache that go test just filled, and only the link is new. What is
// checked, -X, is a link flag, and the link flags are the Dockerfile's.
func TestVersionIsStampedByTheLinker(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary, which -short asks to leave out")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		// go test puts its own GOROOT/bin first on PATH, so this skips only
		// a test binary run by hand where no Go toolchain is, never go test.
		t.Skip("no go tool on PATH: this is not a go test run")
	}
	bin := filepath.Join(t.TempDir(), "recipeapi")
	args := []string{"build", "-ldflags", "-s -w -X main.version=v9.9.9", "-o", bin}
	if builtWith("-race") {
		args = append(args, "-race") // else every package compiles again, without it
	}
	build := exec.CommandContext(t.Context(), goTool, append(args, ".")...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.CommandContext(t.Context(), bin, "version").Output()
	if err != nil || !strings.HasPrefix(string(out), "recipeapi v9.9.9, ") {
		t.Errorf("recipeapi version = %q, %v; want it to name v9.9.9", out, err)
	}
}

// builtWith reports whether the running binary was built with the boolean
// build flag name (such as "-race") set.
func builtWith(name string) bool {
	info, ok := debug.ReadBuildInfo()
	return ok && slices.ContainsFunc(info.Settings, func(s debug.BuildSetting) bool {
		return s.Key == name && s.Value == "true"
	})
}

// contractRecipes are the contract's three seeded recipes, by the seeded
// superuser (id 1), as "id|label|source|url|submitter_id".
var contractRecipes = []string{
	"1|Chicken Vesuvio|Serious Eats|http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html|1",
	"2|Chicken Paprikash|No Recipes|http://norecipes.com/recipe/chicken-paprikash/|1",
	"3|Cauliflower and Tofu Curry Recipe|Serious Eats|http://www.seriouseats.com/recipes/2011/02/cauliflower-and-tofu-curry-recipe.html|1",
}

func TestAFreshDatabaseIsSeededOnce(t *testing.T) {
	e := newTestEnv(t)
	raw := openRawDB(t, e.cfg.dbPath)
	recipeRows := func(t *testing.T) []string {
		t.Helper()
		rows, err := raw.Query("SELECT id || '|' || label || '|' || source || '|' || url || '|' || submitter_id FROM recipe ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		return got
	}

	t.Run("the first superuser is the only user", func(t *testing.T) {
		got := dump(t, raw, "SELECT id, email, is_superuser, first_name, surname FROM user")
		want := fmt.Sprintf("%q\n", []any{int64(1), "admin@recipeapi.com", int64(1), nil, nil})
		if got != want {
			t.Errorf("users = %s, want %s", got, want)
		}
		e.login("admin@recipeapi.com", adminPassword)
	})

	t.Run("exactly the contract's three recipes, by the superuser", func(t *testing.T) {
		if got := recipeRows(t); !slices.Equal(got, contractRecipes) {
			t.Errorf("recipes =\n%q\nwant\n%q", got, contractRecipes)
		}
	})

	t.Run("the schema is at the last migration", func(t *testing.T) {
		if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
			t.Errorf("PRAGMA user_version = %d, want %d", got, want)
		}
		if got := dump(t, raw, "SELECT version_num FROM alembic_version"); got != fmt.Sprintf("%q\n", []any{"ec46ad7fc181"}) {
			t.Errorf("alembic_version = %s, want ec46ad7fc181", got)
		}
	})

	t.Run("starting again seeds nothing and changes no password", func(t *testing.T) {
		before := dumpAll(t, raw)
		e.store.close()
		cfg := e.cfg
		cfg.firstSuperuserPassword = "a-different-password"
		again := startTestEnv(t, cfg, time.Now)
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after a restart:\n%s\nwant, as before:\n%s", after, before)
		}
		again.login("admin@recipeapi.com", adminPassword)
		resp := again.tryLogin("admin@recipeapi.com", "a-different-password")
		expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")

		created, err := again.store.seed(t.Context(), "other@recipeapi.com", passlibHash(t, "other-password"))
		if err != nil || created {
			t.Errorf("seed on a database with users = %v, %v; want false, nil", created, err)
		}
		var printed strings.Builder
		cfg.firstSuperuserPassword = "" // a generated password would be printed
		if err := seedFirstSuperuser(t.Context(), again.store, again.passwords, cfg, &printed, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("seedFirstSuperuser on a seeded database = %v", err)
		}
		if printed.Len() != 0 {
			t.Errorf("seedFirstSuperuser on a seeded database printed %q, want nothing", printed.String())
		}
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after seeding again:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}
