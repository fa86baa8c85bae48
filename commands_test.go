// commands_test.go tests commands.go: the command line's commands
// (migrate, createsuperuser, backup, healthcheck, version) and the seeding
// of a fresh database.
package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// commandEnv is the environment of a command on the database file db:
// cheap hashes, and the seeded superuser's password.
func commandEnv(db string) map[string]string {
	return map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": db}
}

// expectError fails unless err is an error of one line that says want,
// or, if want is "", no error.
func expectError(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s = %v, want no error", what, err)
	case want != "" && (err == nil || strings.Contains(err.Error(), "\n") || !strings.Contains(err.Error(), want)):
		t.Errorf("%s = %v, want an error of one line that says %q", what, err, want)
	}
}

func TestTheSeededSuperuserStartsWithAFreshIdentity(t *testing.T) {
	old := newTestEnv(t)
	cfg := old.cfg
	oldAdmin := old.loginTokens("admin@recipeapi.com", adminPassword)
	old.store.close()

	t.Run("a new database with the same secret: the old admin's token is not the new superuser", func(t *testing.T) {
		// A new file, the same JWT_SECRET.
		e := newTestEnv(t, func(c *config) { c.firstSuperuser = "boss@example.com" })
		boss, err := e.store.userByEmail(t.Context(), "boss@example.com")
		if err != nil || boss.ID != 1 || boss.TokenGeneration == 0 {
			t.Fatalf("seeded superuser = %+v, %v; want id 1, as the old admin had, and a random token generation", boss, err)
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

func TestCreatesuperuser(t *testing.T) {
	for _, tc := range []struct {
		name, stdin string
		existing    bool   // whether the user exists, with the password "password123"
		password    string // to log in with after; "" for the one printed last
		wantOut     string
	}{
		{"creates a user with the password on standard input", "a-strong-password\n", false, "a-strong-password",
			"Created the superuser COOK@example.com"},
		{"creates a user with a password it generates and prints once", "", false, "", "its password, shown only this once, is"},
		{"promotes a user, who keeps their password and must log in again", "", true, "password123",
			"now a superuser and must log in again; the password is unchanged"},
		{"promotes a user with a new password, who must log in again", "a-new-password\n", true, "a-new-password",
			"now a superuser and must log in again, with the new password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// The service stays up while the command, another process on
			// its database file, changes the user under it.
			db := filepath.Join(t.TempDir(), "app.db")
			e := newTestEnv(t, onDatabase(db))
			var u userView
			var stolen tokenResponse
			if tc.existing {
				u = e.signup("cook@example.com", "password123")
				stolen = e.loginTokens("cook@example.com", "password123")
				expectAccessTokenWorks(t, e, stolen.AccessToken, u.ID) // which a cache of users would now hold
			}
			// The email as the operator typed it, in another case.
			out, err := runCommand(t, commandEnv(db), tc.stdin, "createsuperuser", "-email", "COOK@example.com")
			if err != nil || !strings.Contains(out, tc.wantOut) || tc.stdin != "" && strings.Contains(out, strings.TrimSpace(tc.stdin)) {
				t.Fatalf("createsuperuser = %q, %v; want it to say %q, and never a password it was given", out, err, tc.wantOut)
			}
			password := tc.password
			if words := strings.Fields(out); password == "" {
				password = words[len(words)-1]
			}
			if tc.existing {
				// The running service caches no user: the command's change
				// ends the tokens it issued before, at once.
				expectAccessTokenRefused(t, e, stolen.AccessToken)
				expectRefreshTokenRefused(t, e, stolen.RefreshToken)
			}
			resp := e.get("/api/v1/auth/me", bearer(e.login("cook@example.com", password))...)
			expectStatus(t, resp, http.StatusOK)
			if got := decodeBody[userView](t, resp); !got.IsSuperuser || tc.existing && got.ID != u.ID {
				t.Errorf("GET /api/v1/auth/me after a new login = %+v, want a superuser (id %d if the user existed)", got, u.ID)
			}
		})
	}
}

func TestCreatesuperuserRefusesAPasswordThatIsNotUTF8(t *testing.T) {
	refused := func(t *testing.T, db string) {
		t.Helper()
		// Latin-1, as a terminal set to it would send "café-password".
		_, err := runCommand(t, commandEnv(db), "caf\xe9-password\n", "createsuperuser", "-email", "cook@example.com")
		expectError(t, "createsuperuser with a Latin-1 password", err, "not UTF-8")
		if err != nil && strings.Contains(err.Error(), "caf") {
			t.Errorf("the error shows the password: %v", err)
		}
	}
	t.Run("for a new database, which is not even created", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "app.db")
		refused(t, db)
		if _, err := os.Stat(db); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("stat %s = %v; want no database made", db, err)
		}
	})
	t.Run("for an existing user, who is left as they were", func(t *testing.T) {
		db := filepath.Join(t.TempDir(), "app.db")
		e := newTestEnv(t, onDatabase(db))
		e.signup("cook@example.com", "password123")
		e.store.close()
		before := dump(t, openRawDB(t, db), "SELECT * FROM user ORDER BY id")
		refused(t, db)
		if after := dump(t, openRawDB(t, db), "SELECT * FROM user ORDER BY id"); after != before {
			t.Errorf("users after the refusal:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}

func TestCommandLine(t *testing.T) {
	db := filepath.Join(t.TempDir(), "app.db")
	env := commandEnv(db)

	t.Run("migrate creates and migrates the database and reports its version", func(t *testing.T) {
		out, err := runCommand(t, env, "", "migrate")
		want := fmt.Sprintf("is at schema version %d", knownMigrations(t))
		if err != nil || !strings.Contains(out, want) {
			t.Errorf("migrate = %q, %v; want %q", out, err, want)
		}
	})
	t.Run("version prints the module and the Go version", func(t *testing.T) {
		out, err := runCommand(t, env, "", "version")
		if err != nil || !strings.HasPrefix(out, "recipeapi ") || !strings.Contains(out, "go1.") {
			t.Errorf("version = %q, %v; want a line starting \"recipeapi \" that names the Go version (go1.…), and no error", out, err)
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
		{"createsuperuser without -email is a usage error", []string{"createsuperuser"}},
		{"createsuperuser with an -email that is not one is a usage error", []string{"createsuperuser", "-email", "not-an-email"}},
		{"backup without -o is a usage error", []string{"backup"}},
		{"healthcheck with an -addr of no port is a usage error", []string{"healthcheck", "-addr", "localhost"}},
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

func TestBackup(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // for the names that must be relative, as an operator gives them
	env := commandEnv(filepath.Join(dir, "app.db"))
	if _, err := runCommand(t, env, "", "migrate"); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string]string{"taken.db": "theirs", "notes.txt": "not a database"} {
		if err := os.WriteFile(name, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// files is every name in dir with its size, but the database's own
	// -wal and -shm, which come and go with readers.
	files := func() []string {
		entries, _ := os.ReadDir(dir)
		var kept []string
		for _, entry := range entries {
			if info, err := entry.Info(); err == nil && !strings.HasPrefix(entry.Name(), "app.db-") {
				kept = append(kept, fmt.Sprintf("%s (%d bytes)", entry.Name(), info.Size()))
			}
		}
		return kept
	}
	for _, tc := range []struct {
		name string
		args []string
		want string // in the error
	}{
		{"a name SQLite would read as a URI is refused, with the name to give instead", []string{"-o", "file:x.db"}, "give ./file:x.db"},
		{"a file that exists is never replaced", []string{"-o", "taken.db"}, "taken.db already exists"},
		{"a database that does not exist is not made", []string{"-db", "missing.db", "-o", "x.db"}, "missing.db: no such file"},
		{"a file that is not a database is not copied", []string{"-db", "notes.txt", "-o", "x.db"}, "not a database"},
		{"a directory that does not exist is named", []string{"-o", "nowhere/x.db"}, "beside nowhere/x.db"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := files()
			_, err := runCommand(t, env, "", append([]string{"backup"}, tc.args...)...)
			expectError(t, fmt.Sprintf("backup %q", tc.args), err, tc.want)
			if after := files(); !slices.Equal(after, before) {
				t.Errorf("files after the refused backup %q = %q, want %q", tc.args, after, before)
			}
		})
	}
	for _, name := range []string{"./file:x.db", "copy?mode=ro#x.db"} {
		t.Run("backup -o "+name+" writes exactly that file, mode 0600", func(t *testing.T) {
			before := files()
			if out, err := runCommand(t, env, "", "backup", "-o", name); err != nil {
				t.Fatalf("backup -o %s = %q, %v", name, out, err)
			}
			info, err := os.Lstat(name)
			if err != nil || !info.Mode().IsRegular() || info.Mode().Perm() != 0o600 || info.Size() == 0 {
				t.Fatalf("%s = %v, %v; want a non-empty file of mode 0600", name, info, err)
			}
			want := append(before, fmt.Sprintf("%s (%d bytes)", filepath.Base(name), info.Size()))
			if after := files(); !slices.Equal(after, slices.Sorted(slices.Values(want))) {
				t.Errorf("files after backup -o %s = %q, want %q", name, after, want)
			}
			expectIntegrityOK(t, name)
		})
	}
}

func TestABackupIsWrittenOnlyIntoAFileItMade(t *testing.T) {
	db := filepath.Join(t.TempDir(), "app.db")
	if _, err := runCommand(t, commandEnv(db), "", "migrate"); err != nil {
		t.Fatal(err)
	}
	// The swaps that another user who may write in the backup's directory
	// could make after backupCommand found the name free: writeBackup,
	// which makes and links the copy, must still refuse the name, and
	// leave it as they made it.
	for _, tc := range []struct {
		name string
		swap func(out, theirs string) error
	}{
		{"a link to another's file, swapped in, leaves that file empty", func(out, theirs string) error { return os.Symlink(theirs, out) }},
		{"another's file, put at the name, is left as it was", func(out, _ string) error { return os.WriteFile(out, []byte("theirs"), 0o644) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			out, theirs := filepath.Join(dir, "backup.db"), filepath.Join(t.TempDir(), "theirs.db")
			if err := errors.Join(os.WriteFile(theirs, nil, 0o644), tc.swap(out, theirs)); err != nil {
				t.Fatal(err)
			}
			// What out is: its mode, where it links to, what it holds.
			describe := func() string {
				info, err := os.Lstat(out)
				target, _ := os.Readlink(out)
				data, _ := os.ReadFile(out)
				return fmt.Sprintf("%v %v -> %q holding %q", info.Mode(), err, target, data)
			}
			before := describe()
			expectError(t, "writeBackup to a swapped name", writeBackup(t.Context(), db, out), "the backup never replaces a file")
			if after := describe(); after != before {
				t.Errorf("%s after the backup = %s, want %s, as they made it", out, after, before)
			}
			if left, _ := filepath.Glob(filepath.Join(dir, ".backup-*")); len(left) > 0 {
				t.Errorf("the backup left %q behind", left)
			}
		})
	}
}

func TestCheckFileWeMadeRefusesAnyOtherFile(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(made, elsewhere string) error // what happens to the file made
		want   string                             // in the error; "" for none
	}{
		{"the file made, as it was made, passes", func(string, string) error { return nil }, ""},
		{"a name with no file left is refused", func(made, _ string) error { return os.Remove(made) }, "no such file"},
		{"another file renamed into its place is refused", func(made, elsewhere string) error {
			return errors.Join(os.WriteFile(elsewhere, []byte("a copy"), 0o600), os.Rename(elsewhere, made))
		}, "someone replaced it"},
		{"a link in its place, even to the file made, is refused", func(made, elsewhere string) error {
			return errors.Join(os.Rename(made, elsewhere), os.Symlink(elsewhere, made))
		}, "someone replaced it"},
		{"the file made readable to others is refused", func(made, _ string) error { return os.Chmod(made, 0o644) }, "has mode 644, not 0600"},
		{"the file made left empty is refused", func(made, _ string) error { return os.Truncate(made, 0) }, "SQLite wrote nothing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "backup.db")
			if err := os.WriteFile(path, []byte("a copy"), 0o600); err != nil {
				t.Fatal(err)
			}
			made, err := os.Stat(path)
			if err == nil {
				err = tc.change(path, filepath.Join(dir, "elsewhere.db"))
			}
			if err != nil {
				t.Fatal(err)
			}
			expectError(t, "checkFileWeMade", checkFileWeMade(path, made), tc.want)
		})
	}
}

func TestBackupWhileWritesGoOn(t *testing.T) {
	// The service writes to its database file while backup, another
	// connection as in another process, copies it.
	e := newTestEnv(t) // no limit on creations: one account writes as fast as it can
	token := e.login("admin@recipeapi.com", adminPassword)
	create := func(label string) bool {
		resp := e.postJSON("/api/v1/recipes/", recipeBody(label, "s", "https://example.com/x"), bearer(token)...)
		return resp.StatusCode == http.StatusCreated
	}
	for i := range 50 {
		if label := fmt.Sprintf("before the backup %d", i); !create(label) {
			t.Fatalf("could not create %q", label)
		}
	}
	stop := make(chan struct{})
	var written atomic.Int64
	var wg sync.WaitGroup
	for w := range 4 { // writers that go on during the backup
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
					if create(fmt.Sprintf("during the backup %d-%d", w, i)) {
						written.Add(1)
					}
				}
			}
		})
	}
	waitFor(t, "the writers to write", func() bool { return written.Load() > 0 })
	backup := filepath.Join(t.TempDir(), "backup.db")
	out, err := runCommand(t, commandEnv(e.cfg.dbPath), "", "backup", "-o", backup)
	afterBackup := written.Load()
	waitFor(t, "the writers to write after the backup", func() bool { return written.Load() > afterBackup })
	close(stop)
	wg.Wait()
	if err != nil {
		t.Fatalf("backup = %q, %v", out, err)
	}
	// The backup passes an integrity check and holds every row written before it began.
	expectIntegrityOK(t, backup)
	if n := queryInt(t, openRawDB(t, backup), "SELECT count(DISTINCT label) FROM recipe WHERE label LIKE 'before the backup %'"); n != 50 {
		t.Errorf("the backup holds %d of the 50 recipes created before it began", n)
	}
}

func TestHealthcheck(t *testing.T) {
	serve := func(h http.HandlerFunc) string {
		s := httptest.NewServer(h)
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	healthy := serve(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/healthz" {
			http.NotFound(w, r)
		}
	})
	var followed atomic.Bool
	elsewhere := serve(func(http.ResponseWriter, *http.Request) { followed.Store(true) }) // healthy, but not the service asked
	_, port, _ := net.SplitHostPort(healthy)
	type healthcheckCase struct{ name, addr, want string }
	cases := []healthcheckCase{
		{"a service that answers 200 is healthy", healthy, ""},
		{"a service that listens everywhere is asked on loopback", ":" + port, ""},
		{"a service on 0.0.0.0 is asked on loopback", "0.0.0.0:" + port, ""},
		{"a service on :: is asked on loopback", "[::]:" + port, ""},
		{"a 503 is unhealthy", serve(func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(503) }), "/healthz answered 503"},
		{"no service at all is unhealthy", freeLoopbackAddress(t), "healthcheck: "},
	}
	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		cases = append(cases, healthcheckCase{fmt.Sprintf("a %d to a healthy server elsewhere is unhealthy", status),
			serve(http.RedirectHandler("http://"+elsewhere+"/healthz", status).ServeHTTP), fmt.Sprintf("answered %d, a redirect", status)})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			followed.Store(false)
			_, err := runCommand(t, nil, "", "healthcheck", "-addr", tc.addr)
			expectError(t, "healthcheck -addr "+tc.addr, err, tc.want)
			if followed.Load() {
				t.Errorf("healthcheck -addr %s followed the redirect to %s", tc.addr, elsewhere)
			}
		})
	}
}

// serveOnce starts the service in a child process with env, waits until
// it is healthy, stops it as systemd does (SIGTERM), and returns what it
// printed and logged.
func serveOnce(t *testing.T, env ...string) (stdout, stderr string) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	var out, logs syncBuffer
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"RECIPEAPI_RUN_AS_SERVICE=1", "ADDR=" + addr}, env...)...)
	cmd.Stdout, cmd.Stderr = &out, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() }) // if the test failed before the stop
	waitForHealthy(t, "http://"+addr)
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("serve: %v\n%s", err, logs.String())
	}
	return out.String(), logs.String()
}

// TestFirstSuperuserPasswordIsConfirmedOrSaidToBeIgnored is one story: a
// first start, then later ones on the same database.
func TestFirstSuperuserPasswordIsConfirmedOrSaidToBeIgnored(t *testing.T) {
	const password = "given-password-123"
	env := []string{"BCRYPT_COST=4", "FIRST_SUPERUSER=chef@example.com", "DATABASE_PATH=" + filepath.Join(t.TempDir(), "first.db")}
	withPassword := append(slices.Clone(env), "FIRST_SUPERUSER_PW="+password)

	// A first start says it created the superuser with the given
	// password, without printing it.
	stdout, stderr := serveOnce(t, withPassword...)
	if !strings.Contains(stdout, "Created the first superuser chef@example.com") || !strings.Contains(stdout, "FIRST_SUPERUSER_PW") {
		t.Errorf("first start printed %q; want a line naming chef@example.com and FIRST_SUPERUSER_PW", stdout)
	}
	if strings.Contains(stdout+stderr, password) || strings.Contains(stderr, "ignored") {
		t.Errorf("first start printed %q and logged:\n%s\nwant neither the password nor that it is ignored", stdout, stderr)
	}

	// A later start logs once that the password is ignored and names createsuperuser.
	stdout, stderr = serveOnce(t, withPassword...)
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

	// A later start without the password says nothing of it.
	if _, stderr := serveOnce(t, env...); strings.Contains(stderr, "FIRST_SUPERUSER_PW") {
		t.Errorf("a start without FIRST_SUPERUSER_PW logged about it:\n%s", stderr)
	}
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

func TestAFreshDatabaseIsSeededOnce(t *testing.T) {
	e := newTestEnv(t)
	raw := openRawDB(t, e.cfg.dbPath)
	t.Run("the first superuser is the only user", func(t *testing.T) {
		got := dump(t, raw, "SELECT id, email, is_superuser, first_name, surname FROM user")
		if want := fmt.Sprintf("%q\n", []any{int64(1), "admin@recipeapi.com", int64(1), nil, nil}); got != want {
			t.Errorf("users = %s, want %s", got, want)
		}
		e.login("admin@recipeapi.com", adminPassword)
	})
	t.Run("exactly the contract's three recipes, by the superuser", func(t *testing.T) {
		// As "id|label|source|url|submitter_id", the seeded superuser being id 1.
		want := ""
		for _, r := range []string{
			"1|Chicken Vesuvio|Serious Eats|http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html|1",
			"2|Chicken Paprikash|No Recipes|http://norecipes.com/recipe/chicken-paprikash/|1",
			"3|Cauliflower and Tofu Curry Recipe|Serious Eats|http://www.seriouseats.com/recipes/2011/02/cauliflower-and-tofu-curry-recipe.html|1",
		} {
			want += fmt.Sprintf("%q\n", []any{r})
		}
		if got := dump(t, raw, "SELECT id || '|' || label || '|' || source || '|' || url || '|' || submitter_id FROM recipe ORDER BY id"); got != want {
			t.Errorf("recipes =\n%s\nwant\n%s", got, want)
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
		expectDetail(t, again.tryLogin("admin@recipeapi.com", "a-different-password"), http.StatusBadRequest, "Incorrect username or password")

		created, err := again.store.seed(t.Context(), "other@recipeapi.com", passlibHash(t, "other-password"))
		if err != nil || created {
			t.Errorf("seed on a database with users = %v, %v; want false, nil", created, err)
		}
		var printed strings.Builder
		cfg.firstSuperuserPassword = "" // a generated password would be printed
		err = seedFirstSuperuser(t.Context(), again.store, again.passwords, cfg, &printed, slog.New(slog.DiscardHandler))
		if err != nil || printed.Len() != 0 {
			t.Errorf("seedFirstSuperuser on a seeded database = %v, and printed %q; want nil, and nothing", err, printed.String())
		}
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after seeding again:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}
