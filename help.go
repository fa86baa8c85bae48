// help.go owns what the binary says about itself: `recipeapi -h`,
// `recipeapi help` and `recipeapi help COMMAND`. The commands and the
// environment settings are listed here, once, and the overview prints these
// lists; a test checks that every variable loadConfig reads is among them,
// with the default loadConfig really uses.
package main

import (
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"golang.org/x/crypto/bcrypt"
)

// commandSummaries are the binary's commands, in the order the overview
// lists them, one line each. Every command in commands is here.
var commandSummaries = []struct{ name, summary string }{
	{"serve", "serve the API until SIGINT or SIGTERM (the default command)"},
	{"migrate", "create or migrate the database, print its schema version, exit"},
	{"createsuperuser", "make -email a superuser; the password is read from standard input, or generated"},
	{"backup", "write a consistent copy of the live database to -o FILE"},
	{"version", "print the version and the revision the binary was built from"},
	{"healthcheck", "exit 0 if the server on -addr answers /healthz (for container health checks)"},
}

// setting is one environment variable the binary reads.
type setting struct {
	env      string
	flag     string // the flag that wins over it, if any
	fallback string // the default, which loadConfig applies; "" if none
	shown    string // the default as the help shows it, when fallback is ""
	about    string
}

// settings are every environment variable of the binary, in the order the
// help lists them.
var settings = []setting{
	{env: "ADDR", flag: "-addr", fallback: "localhost:8001", about: "listen address"},
	{env: "DATABASE_PATH", flag: "-db", fallback: "example.db", about: "SQLite database file; created, migrated and seeded on first start"},
	{env: "JWT_SECRET", shown: "random, kept in the database", about: fmt.Sprintf("token signing secret, at least %d bytes", minSecretBytes)},
	{env: "ACCESS_TOKEN_EXPIRE_MINUTES", fallback: "11520", about: "access token lifetime in minutes (8 days)"},
	{env: "REFRESH_TOKEN_EXPIRE_MINUTES", fallback: "43200", about: "refresh token lifetime in minutes (30 days)"},
	{env: "BCRYPT_COST", fallback: "12", about: fmt.Sprintf("bcrypt cost of new password hashes, %d to %d", bcrypt.MinCost, bcrypt.MaxCost)},
	{env: "FIRST_SUPERUSER", fallback: "admin@recipeapi.com", about: "email of the superuser that the first start creates"},
	{env: "FIRST_SUPERUSER_PW", shown: "random, printed once", about: fmt.Sprintf("its password, %d to %d bytes; read only when the database has no users", minPasswordBytes, maxPasswordBytes)},
	{env: "BACKEND_CORS_ORIGINS", shown: "none", about: `origins that may call from a browser: "http://a.example,http://b.example" or a JSON list`},
	{env: "LOGIN_ATTEMPTS_PER_MINUTE", fallback: "10", about: fmt.Sprintf("failed logins and password changes per client address per minute, 0 to %d; 0: no limit", maxLimitSetting)},
	{env: "SIGNUPS_PER_HOUR", fallback: "100", about: fmt.Sprintf("signups per client address: this many at once, then they come back over an hour (100: one every 36 s); 0 to %d; 0: no limit", maxLimitSetting)},
	{env: "RECIPE_CREATION_BURST", fallback: "200", about: fmt.Sprintf("recipes one account may create at once; then one more each second; 0 to %d; 0: no limit", maxLimitSetting)},
	{env: "MAX_CONNECTIONS", flag: "-max-connections", fallback: "4096", about: "caps accepted connections"},
	{env: "TRUSTED_PROXIES", shown: "none", about: "proxies whose X-Forwarded-For names the client, e.g. 127.0.0.1,10.0.0.0/8"},
	{env: "LOG_FORMAT", fallback: "text", about: "text, or json for JSON lines"},
	{env: "TLS_CERT_FILE", flag: "-tls-cert", shown: "none: plain HTTP", about: "TLS certificate file, PEM; with TLS_KEY_FILE, serve HTTPS and HTTP/2"},
	{env: "TLS_KEY_FILE", flag: "-tls-key", shown: "none", about: "TLS private key file, PEM"},
}

// commandNames lists the commands for an error message: "serve, migrate,
// … and healthcheck".
func commandNames() string {
	names := make([]string, len(commandSummaries))
	for i, c := range commandSummaries {
		names[i] = c.name
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

// settingDefault is the default of the environment variable name, "" if it
// has none. loadConfig takes every default from here, so that the help
// cannot show another.
func settingDefault(name string) string {
	for _, s := range settings {
		if s.env == name {
			return s.fallback
		}
	}
	panic("recipeapi reads " + name + ", which settings does not list") // a bug: every test of loadConfig finds it
}

// isHelpFlag reports whether arg asks for help, as flag's own -h does.
func isHelpFlag(arg string) bool {
	return arg == "-h" || arg == "-help" || arg == "--help"
}

// printOverview writes what `recipeapi -h` and `recipeapi help` print: the
// commands, then the settings with their defaults.
func printOverview(w io.Writer) {
	fmt.Fprint(w, `recipeapi serves the recipe API and looks after its SQLite database.

Usage:
  recipeapi [COMMAND] [FLAGS]
  recipeapi help COMMAND      (or recipeapi COMMAND -h) lists the command's flags

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commandSummaries {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()

	fmt.Fprint(w, "\nSettings, from the environment (an empty variable counts as unset; a flag wins over its variable):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\t%s\t%s\n", "VARIABLE", "DEFAULT", "MEANING")
	for _, s := range settings {
		value := s.fallback
		if value == "" {
			value = "(" + s.shown + ")"
		}
		about := s.about
		if s.flag != "" {
			about += "; flag " + s.flag
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.env, value, about)
	}
	tw.Flush()
}

// printCommandHelp writes what `recipeapi help COMMAND` and `recipeapi
// COMMAND -h` print: the command's line of the overview, then its flags.
func printCommandHelp(w io.Writer, command string, flags *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: recipeapi %s [FLAGS]\n\n", command)
	for _, c := range commandSummaries {
		if c.name == command {
			fmt.Fprintf(w, "%s: %s.\n", command, c.summary)
		}
	}
	flags.SetOutput(w)
	hasFlags := false
	flags.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		fmt.Fprint(w, "\nFlags:\n")
		flags.PrintDefaults()
	} else {
		fmt.Fprint(w, "\nIt takes no flags.\n")
	}
	fmt.Fprint(w, "\nThe settings that come from the environment are listed by recipeapi -h.\n")
}
