// config.go owns the command line: the commands, and one table of every
// setting (its variable, its flag, the commands that read it, its default,
// how it is checked, its help). loadConfig and -h both read the tables.
package main

import (
	"cmp"
	"context"
	"encoding/json/v2"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// command is one thing the binary does; serve is the default.
type command struct {
	name, summary string
	run           func(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error
}

// commands are listed by -h in this order.
var commands = []command{
	{"serve", "serve the API until SIGINT or SIGTERM (the default command)", serve},
	{"migrate", "create or migrate the database, print its schema version, exit", migrateCommand},
	{"createsuperuser", "make -email a superuser; the password is read from standard input, or generated", createSuperuserCommand},
	{"backup", "write a consistent copy of the live database to -o FILE", backupCommand},
	{"version", "print the version and the revision the binary was built from", versionCommand},
	{"healthcheck", "exit 0 if the server on -addr answers /healthz (for container health checks)", healthcheckCommand},
}

// config is every setting of the service, as the settings table fills it.
type config struct {
	addr                   string
	dbPath                 string
	tlsCertFile            string // with tlsKeyFile: serve HTTPS
	tlsKeyFile             string
	trustedProxies         []netip.Prefix // whose X-Forwarded-For names the client
	logJSON                bool
	superuserEmail         string // the createsuperuser command's -email
	backupPath             string // the backup command's -o
	tokenSecret            []byte // nil: generate one and keep it in the database
	accessTokenLifetime    time.Duration
	refreshTokenLifetime   time.Duration
	bcryptCost             int
	firstSuperuser         string
	firstSuperuserPassword string // "": generate one and print it once
	corsOrigins            []string
	loginAttemptsPerMinute int // failed logins and password changes per client address; 0: no limit
	signupsPerHour         int // signups per client address; 0: no limit
	recipeCreationBurst    int // recipes one account may create at once, one more each second after; 0: no limit
	maxConnections         int // open at once; see connlimit.go
}

// setting is one environment variable or flag, or both.
type setting struct {
	env      string   // "" for a flag alone, which its commands require
	flag     string   // the flag that wins over the variable; "" if none
	commands []string // the commands that read it; nil: every command
	fallback string   // the default; "" if none
	shown    string   // the default as -h shows it, where fallback is ""
	secret   bool     // its value is never shown in an error
	about    string   // its help; a `word` in it names the flag's value
	parse    func(value string) error
}

const (
	maxLimitSetting    = 1000000            // the attempt limits' highest value
	maxLifetimeMinutes = 10 * 365 * 24 * 60 // ten years
)

// The commands that serve, and those that open the database.
var (
	servers = []string{"serve", "healthcheck"}
	openers = []string{"serve", "migrate", "createsuperuser", "backup"}
)

// settingsOf is every setting of the binary, in the order -h lists them,
// each parsed into its field of c.
func settingsOf(c *config) []setting {
	limit := func(what string) string {
		return fmt.Sprintf("%s; from 0 (no limit) to %d", what, maxLimitSetting)
	}
	return []setting{
		{env: "ADDR", flag: "-addr", commands: servers, fallback: "localhost:8001", about: "listen `address`", parse: text(&c.addr)},
		{env: "DATABASE_PATH", flag: "-db", commands: openers, fallback: "example.db",
			about: "SQLite database `file`; created, migrated and seeded on first start", parse: text(&c.dbPath)},
		{flag: "-email", commands: []string{"createsuperuser"},
			about: "the superuser's `email`; the password is read from standard input, or generated", parse: text(&c.superuserEmail)},
		{flag: "-o", commands: []string{"backup"}, about: "the backup `file` to write; it must not exist", parse: text(&c.backupPath)},
		{env: "JWT_SECRET", shown: "random, kept in the database", secret: true,
			about: fmt.Sprintf("token signing secret, at least %d bytes", minSecretBytes), parse: c.parseSecret},
		{env: "ACCESS_TOKEN_EXPIRE_MINUTES", fallback: "11520", about: "access token lifetime in minutes (8 days)", parse: minutes(&c.accessTokenLifetime)},
		{env: "REFRESH_TOKEN_EXPIRE_MINUTES", fallback: "43200", about: "refresh token lifetime in minutes (30 days)", parse: minutes(&c.refreshTokenLifetime)},
		{env: "BCRYPT_COST", fallback: "12", about: fmt.Sprintf("bcrypt cost of new password hashes, %d to %d", bcrypt.MinCost, bcrypt.MaxCost),
			parse: number(&c.bcryptCost, bcrypt.MinCost, bcrypt.MaxCost)},
		{env: "FIRST_SUPERUSER", fallback: "admin@recipeapi.com", about: "email of the superuser that the first start creates",
			parse: c.parseFirstSuperuser},
		{env: "FIRST_SUPERUSER_PW", shown: "random, printed once", secret: true,
			about: fmt.Sprintf("its password, %d to %d bytes; read only when the database has no users", minPasswordBytes, maxPasswordBytes),
			parse: c.parseFirstSuperuserPassword},
		{env: "BACKEND_CORS_ORIGINS", shown: "none", about: `origins that may call from a browser: "http://a.example,http://b.example" or a JSON list`,
			parse: func(v string) (err error) { c.corsOrigins, err = parseCORSOrigins(v); return err }},
		{env: "LOGIN_ATTEMPTS_PER_MINUTE", fallback: "10", about: limit("failed logins and password changes per client address per minute"),
			parse: number(&c.loginAttemptsPerMinute, 0, maxLimitSetting)},
		{env: "SIGNUPS_PER_HOUR", fallback: "100", about: limit("signups per client address: this many at once, then they come back over an hour (100: one every 36 s)"),
			parse: number(&c.signupsPerHour, 0, maxLimitSetting)},
		{env: "RECIPE_CREATION_BURST", fallback: "200", about: limit("recipes one account may create at once; then one more each second"),
			parse: number(&c.recipeCreationBurst, 0, maxLimitSetting)},
		{env: "MAX_CONNECTIONS", flag: "-max-connections", commands: []string{"serve"}, fallback: "4096",
			about: "caps accepted connections, a whole `number`", parse: number(&c.maxConnections, 1, 1000000)},
		{env: "TRUSTED_PROXIES", shown: "none", about: "proxies whose X-Forwarded-For names the client, e.g. 127.0.0.1,10.0.0.0/8",
			parse: func(v string) (err error) { c.trustedProxies, err = parsePrefixes(v); return err }},
		{env: "LOG_FORMAT", fallback: "text", about: "text, or json for JSON lines", parse: c.parseLogFormat},
		{env: "TLS_CERT_FILE", flag: "-tls-cert", commands: servers, shown: "none: plain HTTP",
			about: "TLS certificate `file`, PEM; with TLS_KEY_FILE, serve HTTPS and HTTP/2", parse: text(&c.tlsCertFile)},
		{env: "TLS_KEY_FILE", flag: "-tls-key", commands: servers, shown: "none", about: "TLS private key `file`, PEM", parse: text(&c.tlsKeyFile)},
	}
}

// loadConfig reads the settings of command: each from its flag in args,
// else its variable through getenv (empty counts as unset), else its
// default. With -h in args, it writes the command's help to usage and
// returns flag.ErrHelp. Every problem is reported at once, on one line.
func loadConfig(commandName string, args []string, getenv func(string) string, usage io.Writer) (config, error) {
	flags := flag.NewFlagSet("recipeapi "+commandName, flag.ContinueOnError)
	flags.SetOutput(io.Discard) // a mistake gets the one line that run returns
	var cfg config
	settings := settingsOf(&cfg)
	values := make([]string, len(settings))
	for i, s := range settings {
		if s.commands != nil && !slices.Contains(s.commands, commandName) {
			continue
		}
		if s.env != "" {
			values[i] = cmp.Or(getenv(s.env), s.fallback)
		}
		if s.flag != "" {
			about := s.about
			if s.env != "" {
				about += " (env " + s.env + ")"
			}
			flags.StringVar(&values[i], s.flag[1:], values[i], about)
		}
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(usage, commandName, flags)
			return config{}, err
		}
		return config{}, usageError{err}
	}
	if flags.NArg() > 0 {
		return config{}, usageError{fmt.Errorf("unexpected argument %q", flags.Arg(0))}
	}
	var errs []error
	for i, s := range settings {
		if s.commands != nil && !slices.Contains(s.commands, commandName) {
			continue
		}
		if s.env == "" && values[i] == "" { // a flag alone is required by its command
			return config{}, usageError{fmt.Errorf("%s needs %s", commandName, s.flag)}
		}
		err := s.parse(values[i])
		switch {
		case err != nil && s.secret:
			errs = append(errs, fmt.Errorf("%s %w", s.env, err)) // never the value
		case err != nil:
			errs = append(errs, fmt.Errorf("%s=%q: %w", s.env, values[i], err))
		}
	}
	if (cfg.tlsCertFile == "") != (cfg.tlsKeyFile == "") {
		errs = append(errs, errors.New("TLS needs both a certificate and a key (-tls-cert and -tls-key)"))
	}
	if len(errs) > 0 {
		return config{}, errors.New(strings.ReplaceAll(errors.Join(errs...).Error(), "\n", "; "))
	}
	return cfg, nil
}

// asError is msg as an error, or nil if msg is "".
func asError(msg string) error {
	if msg == "" {
		return nil
	}
	return errors.New(msg)
}

func (c *config) parseSecret(v string) error {
	if v == "" {
		return nil
	}
	if len(v) < minSecretBytes {
		return fmt.Errorf("is %d bytes; it must be at least %d (RFC 7518 §3.2); for example: openssl rand -hex 32", len(v), minSecretBytes)
	}
	c.tokenSecret = []byte(v)
	return nil
}

func (c *config) parseFirstSuperuser(v string) error {
	c.firstSuperuser = cleanEmail(v)
	return asError(checkEmail(c.firstSuperuser))
}

func (c *config) parseFirstSuperuserPassword(v string) error {
	if c.firstSuperuserPassword = v; v == "" {
		return nil
	}
	return asError(passwordProblem(v))
}

func (c *config) parseLogFormat(v string) error {
	if v != "text" && v != "json" {
		return errors.New("want text or json")
	}
	c.logJSON = v == "json"
	return nil
}

func text(into *string) func(string) error {
	return func(v string) error { *into = v; return nil }
}

func number(into *int, low, high int) func(string) error {
	return func(v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < low || n > high {
			return fmt.Errorf("want a whole number from %d to %d", low, high)
		}
		*into = n
		return nil
	}
}

func minutes(into *time.Duration) func(string) error {
	var n int
	parse := number(&n, 1, maxLifetimeMinutes)
	return func(v string) error {
		err := parse(v)
		*into = time.Duration(n) * time.Minute
		return err
	}
}

// parsePrefixes reads TRUSTED_PROXIES: comma-separated addresses or CIDR
// prefixes (10.0.0.0/8, ::1, …).
func parsePrefixes(text string) ([]netip.Prefix, error) {
	var prefixes []netip.Prefix
	for part := range strings.SplitSeq(text, ",") {
		if part = strings.TrimSpace(part); part == "" {
			continue
		}
		prefix, err := netip.ParsePrefix(part)
		if err != nil {
			addr, addrErr := netip.ParseAddr(part)
			if addrErr != nil {
				return nil, fmt.Errorf("%q is neither an address nor a CIDR prefix", part)
			}
			prefix = netip.PrefixFrom(addr, addr.BitLen())
		}
		// Client addresses are compared unmapped (::ffff:10.0.0.1 is
		// 10.0.0.1), so an IPv4-mapped prefix is written as IPv4.
		if prefix.Addr().Is4In6() && prefix.Bits() >= 96 {
			prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
		}
		prefixes = append(prefixes, prefix.Masked())
	}
	return prefixes, nil
}

// parseCORSOrigins reads BACKEND_CORS_ORIGINS: a comma-separated list, or a
// JSON list as the reference's settings accept.
func parseCORSOrigins(text string) ([]string, error) {
	text = strings.TrimSpace(text)
	var origins []string
	if strings.HasPrefix(text, "[") {
		if err := json.Unmarshal([]byte(text), &origins); err != nil {
			return nil, fmt.Errorf("not a JSON list of strings: %v", err)
		}
	} else if text != "" {
		origins = strings.Split(text, ",")
	}
	var clean []string
	for _, o := range origins {
		// Browsers send no trailing slash; the reference's examples have one.
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			if err := checkOrigin(o); err != nil {
				return nil, fmt.Errorf("%q is not an origin: %v; want scheme://host[:port], such as http://localhost:3000", o, err)
			}
			clean = append(clean, o)
		}
	}
	return clean, nil
}

// checkOrigin accepts only an origin as a browser sends it (RFC 6454
// §6.2). Anything else never equals an Origin header, so CORS would be
// quietly off; "*" or "null" would let any page read answers sent with
// the user's credentials.
func checkOrigin(origin string) error {
	if origin == "*" || origin == "null" {
		return errors.New("a wildcard or null origin would let any page read the answers")
	}
	u, err := url.Parse(origin)
	if err != nil || u.Scheme != "http" && u.Scheme != "https" || origin != u.Scheme+"://"+u.Host {
		return errors.New("an origin is http:// or https:// and a host, with no user name, path, query or fragment")
	}
	if _, err := netip.ParseAddr(u.Hostname()); err != nil && !isOriginHostName(u.Hostname()) {
		return errors.New("the host must be a DNS name in lower case (punycode beyond ASCII), or an IP address")
	}
	if port := u.Port(); port != "" || strings.HasSuffix(u.Host, ":") {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return errors.New("the port must be a number from 1 to 65535")
		}
	}
	return nil
}

// isOriginHostName reports whether host is dot-separated labels of lower
// case ASCII letters, digits and '-'.
func isOriginHostName(host string) bool {
	for label := range strings.SplitSeq(host, ".") {
		if label == "" || strings.Trim(label, "abcdefghijklmnopqrstuvwxyz0123456789-") != "" {
			return false
		}
	}
	return true
}

func findCommand(name string) (command, bool) {
	i := slices.IndexFunc(commands, func(c command) bool { return c.name == name })
	if i < 0 {
		return command{}, false
	}
	return commands[i], true
}

// commandNames lists the commands for an error message: "serve, migrate,
// … and healthcheck".
func commandNames() string {
	var names []string
	for _, c := range commands {
		names = append(names, c.name)
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func isHelpFlag(arg string) bool { return arg == "-h" || arg == "-help" || arg == "--help" }

// printOverview writes what `recipeapi -h` and `recipeapi help` print.
func printOverview(w io.Writer) {
	fmt.Fprint(w, `recipeapi serves the recipe API and looks after its SQLite database.

Usage:
  recipeapi [COMMAND] [FLAGS]
  recipeapi help COMMAND      (or recipeapi COMMAND -h) lists the command's flags

Commands:
`)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	for _, c := range commands {
		fmt.Fprintf(tw, "  %s\t%s\n", c.name, c.summary)
	}
	tw.Flush()
	fmt.Fprint(w, "\nSettings, from the environment (an empty variable counts as unset; a flag wins over its variable):\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  %s\t%s\t%s\n", "VARIABLE", "DEFAULT", "MEANING")
	for _, s := range settingsOf(new(config)) {
		if s.env == "" {
			continue // a command's own flag: its -h lists it
		}
		value := cmp.Or(s.fallback, "("+s.shown+")")
		about := strings.ReplaceAll(s.about, "`", "")
		if s.flag != "" {
			about += "; flag " + s.flag
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\n", s.env, value, about)
	}
	tw.Flush()
}

// printCommandHelp writes what `recipeapi COMMAND -h` prints.
func printCommandHelp(w io.Writer, commandName string, flags *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: recipeapi %s [FLAGS]\n\n", commandName)
	if c, ok := findCommand(commandName); ok {
		fmt.Fprintf(w, "%s: %s.\n", c.name, c.summary)
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
