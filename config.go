// config.go owns the settings: one table of every environment variable
// and flag, with its default and its help; loadConfig reads it, and -h
// prints it.
package main

import (
	"encoding/json"
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

// config is every setting of the service; see loadConfig for where each
// comes from.
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

// maxLimitSetting is the highest value of each of the attempt limits
// (LOGIN_ATTEMPTS_PER_MINUTE, SIGNUPS_PER_HOUR, RECIPE_CREATION_BURST).
const maxLimitSetting = 1000000

// loadConfig reads the flags of command in args, and the environment
// through getenv. Flags win over the environment, which wins over the
// defaults. An empty environment variable counts as unset. Every variable
// read here is listed in settings (help.go), which holds its default. With
// -h in args, it writes the command's flags to usage and returns
// flag.ErrHelp.
func loadConfig(command string, args []string, getenv func(string) string, usage io.Writer) (config, error) {
	env := func(name string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return settingDefault(name)
	}
	cfg := config{
		firstSuperuser:         cleanEmail(env("FIRST_SUPERUSER")),
		firstSuperuserPassword: env("FIRST_SUPERUSER_PW"),
	}

	flags := flag.NewFlagSet("recipeapi "+command, flag.ContinueOnError)
	// The usage goes out only when asked for with -h: a mistake gets the
	// one line that run returns.
	flags.SetOutput(io.Discard)
	takes := func(commands ...string) bool { return slices.Contains(commands, command) }
	if takes("serve", "healthcheck") {
		flags.StringVar(&cfg.addr, "addr", env("ADDR"), "listen `address` (env ADDR)")
	}
	if takes("serve", "migrate", "createsuperuser", "backup") {
		flags.StringVar(&cfg.dbPath, "db", env("DATABASE_PATH"), "SQLite database `file` (env DATABASE_PATH)")
	}
	if takes("serve", "healthcheck") {
		flags.StringVar(&cfg.tlsCertFile, "tls-cert", env("TLS_CERT_FILE"), "TLS certificate `file`, PEM; with -tls-key, serve HTTPS (env TLS_CERT_FILE)")
		flags.StringVar(&cfg.tlsKeyFile, "tls-key", env("TLS_KEY_FILE"), "TLS private key `file`, PEM (env TLS_KEY_FILE)")
	}
	maxConnections := env("MAX_CONNECTIONS")
	if takes("serve") {
		flags.StringVar(&maxConnections, "max-connections", maxConnections, "most connections open at once, a whole `number` (env MAX_CONNECTIONS)")
	}
	if takes("createsuperuser") {
		flags.StringVar(&cfg.superuserEmail, "email", "", "the superuser's `email`; the password is read from standard input, or generated")
	}
	if takes("backup") {
		flags.StringVar(&cfg.backupPath, "o", "", "the backup `file` to write; it must not exist")
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printCommandHelp(usage, command, flags)
			return config{}, err
		}
		return config{}, usageError{err}
	}
	switch {
	case flags.NArg() > 0:
		return config{}, usageError{fmt.Errorf("unexpected argument %q", flags.Arg(0))}
	case takes("createsuperuser") && cfg.superuserEmail == "":
		return config{}, usageError{errors.New("createsuperuser needs -email")}
	case takes("backup") && cfg.backupPath == "":
		return config{}, usageError{errors.New("backup needs -o FILE")}
	}

	var errs []error
	wholeNumber := func(name, text string, low, high int) int {
		n, err := strconv.Atoi(text)
		if err != nil || n < low || n > high {
			errs = append(errs, fmt.Errorf("%s=%q: want a whole number from %d to %d", name, text, low, high))
		}
		return n
	}
	number := func(name string, low, high int) int { return wholeNumber(name, env(name), low, high) }
	const maxLifetimeMinutes = 10 * 365 * 24 * 60 // ten years
	cfg.accessTokenLifetime = time.Duration(number("ACCESS_TOKEN_EXPIRE_MINUTES", 1, maxLifetimeMinutes)) * time.Minute
	cfg.refreshTokenLifetime = time.Duration(number("REFRESH_TOKEN_EXPIRE_MINUTES", 1, maxLifetimeMinutes)) * time.Minute
	cfg.bcryptCost = number("BCRYPT_COST", bcrypt.MinCost, bcrypt.MaxCost)
	cfg.loginAttemptsPerMinute = number("LOGIN_ATTEMPTS_PER_MINUTE", 0, maxLimitSetting)
	cfg.signupsPerHour = number("SIGNUPS_PER_HOUR", 0, maxLimitSetting)
	cfg.recipeCreationBurst = number("RECIPE_CREATION_BURST", 0, maxLimitSetting)
	if takes("serve") {
		cfg.maxConnections = wholeNumber("MAX_CONNECTIONS", maxConnections, 1, 1000000)
	}

	// The secret's length is all we can check, and we do not echo it.
	if secret := env("JWT_SECRET"); secret != "" {
		if len(secret) < minSecretBytes {
			errs = append(errs, fmt.Errorf("JWT_SECRET is %d bytes; it must be at least %d (RFC 7518 §3.2); for example: openssl rand -hex 32", len(secret), minSecretBytes))
		}
		cfg.tokenSecret = []byte(secret)
	}
	if pw := cfg.firstSuperuserPassword; pw != "" {
		if msg := passwordProblem(pw); msg != "" {
			errs = append(errs, fmt.Errorf("FIRST_SUPERUSER_PW %s", msg))
		}
	}
	if msg := checkEmail(cfg.firstSuperuser); msg != "" {
		errs = append(errs, fmt.Errorf("FIRST_SUPERUSER=%q: %s", cfg.firstSuperuser, msg))
	}
	origins, err := parseCORSOrigins(env("BACKEND_CORS_ORIGINS"))
	if err != nil {
		errs = append(errs, err)
	}
	cfg.corsOrigins = origins
	if cfg.trustedProxies, err = parsePrefixes(env("TRUSTED_PROXIES")); err != nil {
		errs = append(errs, err)
	}
	switch format := env("LOG_FORMAT"); format {
	case "text", "json":
		cfg.logJSON = format == "json"
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: want text or json", format))
	}
	if (cfg.tlsCertFile == "") != (cfg.tlsKeyFile == "") {
		errs = append(errs, errors.New("TLS needs both a certificate and a key (-tls-cert and -tls-key)"))
	}
	if len(errs) > 0 {
		// On one line: the process stops with one.
		return config{}, errors.New(strings.ReplaceAll(errors.Join(errs...).Error(), "\n", "; "))
	}
	return cfg, nil
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
				return nil, fmt.Errorf("TRUSTED_PROXIES: %q is neither an address nor a CIDR prefix", part)
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
			return nil, fmt.Errorf("BACKEND_CORS_ORIGINS: not a JSON list of strings: %v", err)
		}
	} else if text != "" {
		origins = strings.Split(text, ",")
	}
	var clean []string
	for _, o := range origins {
		// Browsers send the origin without a trailing slash; the
		// reference's examples are written with one.
		if o = strings.TrimSuffix(strings.TrimSpace(o), "/"); o != "" {
			if err := checkOrigin(o); err != nil {
				return nil, fmt.Errorf("BACKEND_CORS_ORIGINS: %q is not an origin: %v; want scheme://host[:port], such as http://localhost:3000", o, err)
			}
			clean = append(clean, o)
		}
	}
	return clean, nil
}

// checkOrigin accepts only an origin as a browser sends it in its Origin
// header (RFC 6454 §6.2): http or https, "://", a host, and an optional
// port from 1 to 65535, in lower case, and nothing else. Anything else
// could never equal an Origin header, so CORS would be quietly off; and
// "*" or "null" would let any site, or any sandboxed page, read the
// answers to requests sent with the user's credentials.
func checkOrigin(origin string) error {
	if origin == "*" || origin == "null" {
		return errors.New("a wildcard or null origin would let any page read the answers")
	}
	u, err := url.Parse(origin)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return errors.New("the scheme must be http or https")
	}
	host, port := u.Hostname(), u.Port()
	if _, err := netip.ParseAddr(host); err != nil && !isOriginHostName(host) {
		return errors.New("the host must be a DNS name in lower case, or an IP address")
	}
	hostPort := host
	if strings.Contains(host, ":") {
		hostPort = "[" + host + "]"
	}
	if port != "" {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return errors.New("the port must be a number from 1 to 65535")
		}
		hostPort += ":" + port
	}
	// Whatever else the URL holds makes it differ from the origin that
	// its parts make.
	if origin != u.Scheme+"://"+hostPort {
		return errors.New("an origin is scheme://host[:port] alone, in lower case, with no user name, path, query or fragment")
	}
	return nil
}

// isOriginHostName reports whether host is dot-separated labels of ASCII
// letters, digits and '-': browsers send a name beyond ASCII as punycode.
func isOriginHostName(host string) bool {
	for label := range strings.SplitSeq(host, ".") {
		if label == "" {
			return false
		}
		for _, c := range []byte(label) {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

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
