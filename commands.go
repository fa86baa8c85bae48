// commands.go holds the binary's commands other than serve: the chores of
// an operator who runs the service on a server of their own. Each reads
// the same settings as serve (see loadConfig) and exits when done.
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"
)

// onStore opens the database as serve does, runs do on it, and prints
// what do says it did. On a LiteFS replica, which writes nothing, it
// refuses at once, rather than wait for the primary as serve does.
func onStore(ctx context.Context, cfg config, stdout, stderr io.Writer, do func(*store) (string, error)) error {
	if err := liteFSFilesOf(cfg.dbPath).writable(); err != nil {
		return fmt.Errorf("%w: run this on the primary", err)
	}
	st, err := openStore(ctx, cfg.dbPath, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	defer st.close()
	done, err := do(st)
	if err == nil {
		fmt.Fprintln(stdout, done)
	}
	return err
}

// migrateCommand applies any migrations the database lacks, and reports
// its schema version.
func migrateCommand(ctx context.Context, cfg config, _ io.Reader, stdout, stderr io.Writer) error {
	return onStore(ctx, cfg, stdout, stderr, func(st *store) (string, error) {
		var version int
		err := st.reader.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version)
		return fmt.Sprintf("%s is at schema version %d", cfg.dbPath, version), err
	})
}

// createSuperuserCommand makes the user with -email a superuser, creating
// it if need be. The password is the first line of standard input; if
// that is a terminal or empty, a password is generated and printed once.
func createSuperuserCommand(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error {
	email := cleanEmail(cfg.superuserEmail)
	if msg := checkEmail(email); msg != "" {
		return usageError{fmt.Errorf("-email %q: %s", email, msg)}
	}
	password, err := readPassword(stdin)
	if err != nil {
		return err
	}
	generated := password == ""
	if generated {
		password = generatePassword()
	}
	if msg := passwordProblem(password); msg != "" {
		return fmt.Errorf("the password on standard input %s; nothing was changed", msg) // never the password itself
	}
	return onStore(ctx, cfg, stdout, stderr, func(st *store) (string, error) {
		passwords := newPasswordHasher(cfg.bcryptCost)
		defer passwords.close()
		return makeSuperuser(ctx, st, passwords, email, password, generated)
	})
}

// makeSuperuser creates the superuser email, or promotes the user of that
// email, ending every session: a token stolen before must not become a
// superuser's. A user who exists keeps their password unless one is given
// (generated is false). It says what it did.
func makeSuperuser(ctx context.Context, st *store, passwords *passwordHasher, email, password string, generated bool) (string, error) {
	u, err := st.userByEmail(ctx, email)
	exists := err == nil
	if err != nil && !errors.Is(err, errNotFound) {
		return "", err
	}
	hash := "" // for promoteToSuperuser: keep the password
	if !exists || !generated {
		if hash, err = passwords.hash(ctx, password); err != nil {
			return "", err
		}
	}
	if exists {
		how := ", with the new password"
		if generated {
			how = "; the password is unchanged"
		}
		return u.Email + " is now a superuser and must log in again" + how, st.promoteToSuperuser(ctx, u.ID, hash)
	}
	_, err = st.createUser(ctx, user{Email: email, IsSuperuser: true, HashedPassword: hash})
	if generated {
		return "Created the superuser " + email + "; its password, shown only this once, is " + password, err
	}
	return "Created the superuser " + email, err
}

// readPassword reads the first line of stdin, or "" if stdin is a
// terminal (nobody piped a password in) or empty. passwordProblem then
// checks it, as it does FIRST_SUPERUSER_PW.
func readPassword(stdin io.Reader) (string, error) {
	if f, ok := stdin.(*os.File); ok {
		if info, err := f.Stat(); err == nil && info.Mode()&os.ModeCharDevice != 0 {
			return "", nil
		}
	}
	line, err := bufio.NewReader(io.LimitReader(stdin, 1024)).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read the password: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

// backupCommand writes a consistent copy of the database, taken while the
// service may be running and writing, with SQLite's VACUUM INTO. It never
// overwrites a file, and the copy goes only into a file it made itself,
// mode 0600 (see writeBackup).
func backupCommand(ctx context.Context, cfg config, _ io.Reader, stdout, _ io.Writer) error {
	out := cfg.backupPath
	if _, err := os.Stat(cfg.dbPath); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	// SQLite reads a name that starts with "file:" as a URI, with
	// parameters a plain copy would ignore: ask for the plain name.
	if strings.HasPrefix(out, "file:") {
		return fmt.Errorf("backup: -o %q would be read by SQLite as a URI, not as a file name; to write a file of that name, give ./%s", out, out)
	}
	// Said at once, before the copy is made in vain; os.Link makes sure.
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("backup: %s already exists; the backup never replaces a file", out)
	}
	if err := writeBackup(ctx, cfg.dbPath, out); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	fmt.Fprintf(stdout, "backed up %s to %s\n", cfg.dbPath, out)
	return nil
}

// version, if set, names the binary: deploy/Dockerfile sets it with
// -ldflags "-X main.version=v1.2.3", as its build context has no .git.
var version string

// versionCommand prints the version (set at build time, else the module's)
// and the revision the Go toolchain recorded.
func versionCommand(_ context.Context, _ config, _ io.Reader, stdout, _ io.Writer) error {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		fmt.Fprintf(stdout, "recipeapi %s (no build information)\n", cmp.Or(version, "(devel)"))
		return nil
	}
	settings := map[string]string{}
	for _, s := range info.Settings {
		settings[s.Key] = s.Value
	}
	revision := cmp.Or(settings["vcs.revision"], "unknown revision")
	if settings["vcs.modified"] == "true" {
		revision += " (modified)"
	}
	revision = strings.TrimSpace(revision + " " + settings["vcs.time"])
	fmt.Fprintf(stdout, "recipeapi %s, %s, %s\n", cmp.Or(version, info.Main.Version), revision, info.GoVersion)
	return nil
}

// healthcheckCommand asks a running service on -addr whether it is well:
// exit status 0 if /healthz answers 200. It serves container health
// checks, where there is no curl. A redirect is not followed but counts as
// unhealthy: our /healthz never redirects, so whatever does is not the
// service, and following it would send the check to any host it names.
func healthcheckCommand(ctx context.Context, cfg config, _ io.Reader, _, _ io.Writer) error {
	host, port, err := net.SplitHostPort(cfg.addr)
	if err != nil {
		return usageError{fmt.Errorf("-addr %q: %w", cfg.addr, err)}
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1" // listening everywhere: ask on loopback
	}
	client := &http.Client{Timeout: 5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	scheme := "http"
	if cfg.tlsCertFile != "" {
		// Our own certificate may not name the loopback address; this
		// asks only whether the service answers.
		scheme = "https"
		client.Transport = &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	}
	req, err := http.NewRequestWithContext(ctx, "GET", scheme+"://"+net.JoinHostPort(host, port)+"/healthz", nil)
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("healthcheck: %w", err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	if resp.StatusCode/100 == 3 {
		return fmt.Errorf("healthcheck: /healthz answered %d, a redirect to %q, which is not followed", resp.StatusCode, resp.Header.Get("Location"))
	}
	return fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)
}

// writeBackup has SQLite write the copy only into a file of our own in a
// directory of our own (VACUUM INTO opens its file by name and follows
// links: in a directory others may write to, a link planted there would
// send the password hashes to their file), then syncs it and links it to
// out with os.Link, which never replaces a name, raced in or not.
func writeBackup(ctx context.Context, path, out string) error {
	// Absolute, so that SQLite never reads the temporary name as a URI
	// either (filepath.Dir("./file:d/x.db") is "file:d").
	abs, err := filepath.Abs(out)
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp(filepath.Dir(abs), ".backup-")
	if err != nil {
		return fmt.Errorf("make a private directory beside %s: %w", out, err)
	}
	defer os.RemoveAll(dir)
	temp := filepath.Join(dir, "backup.db")
	f, err := os.OpenFile(temp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600) // empty, as VACUUM INTO allows
	if err != nil {
		return err
	}
	defer f.Close()
	made, err := f.Stat()
	if err != nil {
		return err
	}
	// On a read-only connection of its own: a backup changes nothing.
	db, _ := sql.Open("sqlite", sqliteName(path)+"?mode=ro&_pragma=busy_timeout(10000)") // cannot fail, as in openStore
	_, err = db.ExecContext(ctx, "VACUUM INTO ?", temp)
	db.Close()
	if err != nil {
		return err
	}
	if err := checkFileWeMade(temp, made); err != nil {
		return err
	}
	if err := f.Sync(); err != nil { // the copy reaches the disk before its name
		return err
	}
	if err := os.Link(temp, out); err != nil {
		return fmt.Errorf("%w; the backup never replaces a file", err)
	}
	if err := checkFileWeMade(out, made); err != nil {
		return err
	}
	// Not every file system syncs a directory; the copy is whole either way.
	if d, err := os.Open(filepath.Dir(abs)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// checkFileWeMade returns an error unless name is, without following a
// link, the regular file made (our backup's), of mode 0600 and not empty.
func checkFileWeMade(name string, made os.FileInfo) error {
	info, err := os.Lstat(name)
	switch {
	case err != nil:
		return err
	case !os.SameFile(info, made) || !info.Mode().IsRegular():
		return fmt.Errorf("%s is no longer the file the backup made; someone replaced it", name)
	case info.Mode().Perm() != 0o600:
		return fmt.Errorf("%s has mode %o, not 0600", name, info.Mode().Perm())
	case info.Size() == 0:
		return fmt.Errorf("SQLite wrote nothing into %s", name)
	}
	return nil
}

// seed gives an empty database its first superuser and the reference's
// three recipes. It does nothing, and reports false, if any user exists.
func (s *store) seed(ctx context.Context, email, hashedPassword string) (bool, error) {
	seeded := false
	err := s.writeThenForget(ctx, s.forgetRecipes, func(tx *sql.Tx) error {
		if exists, err := anyUser(ctx, tx); exists || err != nil {
			return err
		}
		admin, err := insertUser(ctx, tx, user{Email: email, IsSuperuser: true, HashedPassword: hashedPassword})
		if err != nil {
			return fmt.Errorf("create superuser: %w", err)
		}
		for _, r := range seedRecipes {
			// A recipe whose id is taken (recipes but no users) is left alone.
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO recipe (id, label, source, url, submitter_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
				r.ID, r.Label, r.Source, r.URL, admin.ID); err != nil {
				return fmt.Errorf("recipe %d: %w", r.ID, err)
			}
		}
		seeded = true
		return nil
	})
	return seeded && err == nil, wrapErr(err, "seed")
}

// seedRecipes are the reference's three example recipes.
var seedRecipes = []recipe{
	{ID: 1, Label: "Chicken Vesuvio", Source: "Serious Eats",
		URL: "http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html"},
	{ID: 2, Label: "Chicken Paprikash", Source: "No Recipes",
		URL: "http://norecipes.com/recipe/chicken-paprikash/"},
	{ID: 3, Label: "Cauliflower and Tofu Curry Recipe", Source: "Serious Eats",
		URL: "http://www.seriouseats.com/recipes/2011/02/cauliflower-and-tofu-curry-recipe.html"},
}

// seedFirstSuperuser creates the first superuser and the example recipes
// in a database with no users. A generated password is printed once, as
// the last word of a line that names the email, for the operator to copy;
// a password given in FIRST_SUPERUSER_PW is never printed. With
// LOG_FORMAT=json the line is a JSON object, as the log's lines are, with
// the email and the password as members of their own, so that whatever
// collects the output reads it as it reads them.
func seedFirstSuperuser(ctx context.Context, st *store, passwords *passwordHasher, cfg config, stdout io.Writer, logger *slog.Logger) error {
	if has, err := st.hasUsers(ctx); err != nil || has {
		if has && cfg.firstSuperuserPassword != "" {
			// Said once at each start, so that an operator who set the
			// password and cannot log in with it learns why.
			logger.Warn("FIRST_SUPERUSER_PW is ignored: the database already has users; " +
				"to set a superuser's password, use: recipeapi createsuperuser -email EMAIL")
		}
		return err
	}
	password := cfg.firstSuperuserPassword
	generated := password == ""
	if generated {
		password = generatePassword()
	}
	hash, err := passwords.hash(ctx, password)
	if err != nil {
		return fmt.Errorf("seed: %w", err)
	}
	created, err := st.seed(ctx, cfg.firstSuperuser, hash)
	if err != nil || !created {
		return err
	}
	how, shown := " with the password from FIRST_SUPERUSER_PW", slog.Attr{} // a zero Attr is left out
	if generated {
		how, shown = "; its password is shown only this once", slog.String("password", password)
	}
	switch {
	case cfg.logJSON:
		slog.New(slog.NewJSONHandler(stdout, nil)).Info("Created the first superuser"+how, "email", cfg.firstSuperuser, shown)
	case generated:
		fmt.Fprintf(stdout, "Created the first superuser %s; its password, shown only this once, is %s\n", cfg.firstSuperuser, password)
	default:
		fmt.Fprintf(stdout, "Created the first superuser %s%s\n", cfg.firstSuperuser, how)
	}
	return nil
}
