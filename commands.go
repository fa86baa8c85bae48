// commands.go holds the binary's commands other than serve: the chores of
// an operator who runs the service on a server of their own. Each reads
// the same settings as serve (see loadConfig) and exits when done.
package main

import (
	"bufio"
	"cmp"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
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
