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

// migrateCommand applies any migrations the database lacks, and reports
// its schema version.
func migrateCommand(ctx context.Context, cfg config, _ io.Reader, stdout, stderr io.Writer) error {
	st, err := openStore(ctx, cfg.dbPath, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	defer st.close()
	version, err := st.schemaVersion(ctx)
	if err == nil {
		fmt.Fprintf(stdout, "%s is at schema version %d\n", cfg.dbPath, version)
	}
	return err
}

// createSuperuserCommand makes the user with -email a superuser, creating
// it if need be. The password is the first line of standard input, which
// must be UTF-8 (passwordProblem); if standard input is a terminal or
// empty, a password is generated and printed once. For an existing user, a password given also replaces the
// old one; either way every session of the user ends.
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
		// The password itself is not shown.
		return fmt.Errorf("the password on standard input %s; nothing was changed", msg)
	}

	st, err := openStore(ctx, cfg.dbPath, slog.New(slog.NewTextHandler(stderr, nil)))
	if err != nil {
		return err
	}
	defer st.close()
	passwords := newPasswordHasher(cfg.bcryptCost)
	defer passwords.close()
	u, err := st.userByEmail(ctx, email)
	exists := err == nil
	if err != nil && !errors.Is(err, errNotFound) {
		return err
	}
	// A user who exists keeps the password they have if none is given:
	// the generated one is thrown away, unhashed, and an empty hash keeps
	// theirs.
	hash := ""
	if !exists || !generated {
		if hash, err = passwords.hash(ctx, password); err != nil {
			return err
		}
	}
	var done string
	if !exists {
		if _, err := st.createUser(ctx, user{Email: email, IsSuperuser: true, HashedPassword: hash}); err != nil {
			return err
		}
		done = "Created the superuser " + email
		if generated {
			done += "; its password, shown only this once, is " + password
		}
	} else {
		// Every session ends, with a new password or without: a token
		// stolen before must not become a superuser's token.
		if err := st.promoteToSuperuser(ctx, u.ID, hash); err != nil {
			return err
		}
		done = u.Email + " is now a superuser and must log in again, with the new password"
		if generated {
			done = u.Email + " is now a superuser and must log in again; the password is unchanged"
		}
	}
	fmt.Fprintln(stdout, done)
	return nil
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
// mode 0600 (see backupDatabase).
func backupCommand(ctx context.Context, cfg config, _ io.Reader, stdout, _ io.Writer) error {
	if _, err := os.Stat(cfg.dbPath); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := backupDatabase(ctx, cfg.dbPath, cfg.backupPath); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backed up %s to %s\n", cfg.dbPath, cfg.backupPath)
	return nil
}

// version, if set, is what the version command names the binary. A build
// sets it with -ldflags "-X main.version=v1.2.3": deploy/Dockerfile does,
// because its build context has no .git from which the Go toolchain could
// read the revision.
var version string

// versionCommand prints the version and the revision the binary was built
// from: the version set at build time if any, else the module version, and
// the revision as the Go toolchain recorded it.
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
	if t := settings["vcs.time"]; t != "" {
		revision += " " + t
	}
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
	scheme := "http"
	client := &http.Client{
		Timeout:       5 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
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
	switch {
	case resp.StatusCode == http.StatusOK:
		return nil
	case resp.StatusCode >= 300 && resp.StatusCode < 400:
		return fmt.Errorf("healthcheck: /healthz answered %d, a redirect to %q, which is not followed",
			resp.StatusCode, resp.Header.Get("Location"))
	}
	return fmt.Errorf("healthcheck: /healthz answered %d", resp.StatusCode)
}

// backupDatabase writes a consistent copy of the database at path to out
// with VACUUM INTO, which reads one snapshot while others go on writing.
// It opens its own read-only connection: a backup changes nothing.
//
// VACUUM INTO opens its file by name, resolving any symbolic link, and
// writes a journal beside it, so a name in a directory that others can
// write to could lead it elsewhere between our check and its open: to a
// link, planted meanwhile, to a file of theirs, which would receive the
// password hashes and perhaps the token secret. So SQLite writes only in
// a directory of our own (mode 0700, made beside out so that the copy can
// be linked from there), into a file that we created there (O_EXCL, mode
// 0600); the finished copy is synced and linked to out with os.Link,
// which never replaces a name: a file or link at out, there before or
// raced in, is refused.
func backupDatabase(ctx context.Context, path, out string) error {
	// SQLite reads a name that starts with "file:" as a URI, with
	// parameters that a plain copy would ignore: rather than guess what
	// was meant, ask for the plain name. "./file:x.db" names that file.
	if strings.HasPrefix(out, "file:") {
		return fmt.Errorf("backup: -o %q would be read by SQLite as a URI, not as a file name; to write a file of that name, give ./%s", out, out)
	}
	// Say at once that out is taken, before the copy is made in vain;
	// os.Link below is what makes sure.
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("backup: %s already exists; the backup never replaces a file", out)
	}
	// An absolute name, so that SQLite never reads the temporary name as
	// a URI either (filepath.Dir("./file:d/x.db") is "file:d").
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(abs), ".backup-")
	if err != nil {
		return fmt.Errorf("backup: make a private directory beside %s: %w", out, err)
	}
	defer os.RemoveAll(dir)
	temp := filepath.Join(dir, "backup.db")
	// Empty, as VACUUM INTO allows.
	f, err := os.OpenFile(temp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	made, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if backupRaceHook != nil {
		backupRaceHook(out)
	}

	db, _ := sql.Open("sqlite", sqliteName(path)+"?mode=ro&_pragma=busy_timeout(10000)") // cannot fail, as in openStore
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", temp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := checkFileWeMade(temp, made); err != nil {
		return err
	}
	// The copy reaches the disk before its name appears.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Link(temp, out); err != nil {
		return fmt.Errorf("backup: %w; the backup never replaces a file", err)
	}
	if err := checkFileWeMade(out, made); err != nil {
		return err
	}
	// And the name reaches the disk too. Not every file system syncs a
	// directory; the copy is whole either way.
	if d, err := os.Open(filepath.Dir(abs)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// backupRaceHook, if set, runs where a name could be swapped under a
// backup: after its file is made, before SQLite writes into it. Tests set
// it to swap one.
var backupRaceHook func(out string)

// checkFileWeMade returns an error unless name is, without following a
// link, the regular file made (our backup's), of mode 0600 and not empty.
func checkFileWeMade(name string, made os.FileInfo) error {
	info, err := os.Lstat(name)
	switch {
	case err != nil:
		return fmt.Errorf("backup: %w", err)
	case !os.SameFile(info, made) || !info.Mode().IsRegular():
		return fmt.Errorf("backup: %s is no longer the file the backup made; someone replaced it", name)
	case info.Mode().Perm() != 0o600:
		return fmt.Errorf("backup: %s has mode %o, not 0600", name, info.Mode().Perm())
	case info.Size() == 0:
		return fmt.Errorf("backup: SQLite wrote nothing into %s", name)
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
	if err != nil {
		return err
	}
	switch {
	case !created:
	case cfg.logJSON && generated:
		slog.New(slog.NewJSONHandler(stdout, nil)).Info("Created the first superuser; its password is shown only this once",
			"email", cfg.firstSuperuser, "password", password)
	case cfg.logJSON:
		slog.New(slog.NewJSONHandler(stdout, nil)).Info("Created the first superuser with the password from FIRST_SUPERUSER_PW",
			"email", cfg.firstSuperuser)
	case generated:
		fmt.Fprintf(stdout, "Created the first superuser %s; its password, shown only this once, is %s\n", cfg.firstSuperuser, password)
	default:
		fmt.Fprintf(stdout, "Created the first superuser %s with the password from FIRST_SUPERUSER_PW\n", cfg.firstSuperuser)
	}
	return nil
}
