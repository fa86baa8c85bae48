// main.go starts the service and holds its HTTP plumbing: configuration
// (flags over environment over defaults), the server's lifetime, the one
// list of routes, the middleware, and the few helpers through which every
// handler reads a request body and writes a response or an error.
//
// The handlers themselves live by concern: auth.go (signup, login, tokens),
// recipes.go (recipes and the home page); store.go holds the database.
package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unicode/utf8"
)

func main() {
	err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "recipeapi:", err)
		var usage usageError
		if errors.As(err, &usage) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// usageError is a mistake in the command line: exit status 2, as for flags.
type usageError struct{ error }

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
	loginAttemptsPerMinute int
	maxConnections         int // open at once; see connlimit.go
}

// loadConfig reads the flags of command in args, and the environment
// through getenv. Flags win over the environment, which wins over the
// defaults. An empty environment variable counts as unset. Every variable
// read here is listed, with its default, in settings (help.go). With -h in
// args, it writes the command's flags to usage and returns flag.ErrHelp.
func loadConfig(command string, args []string, getenv func(string) string, usage io.Writer) (config, error) {
	env := func(name, fallback string) string {
		if v := getenv(name); v != "" {
			return v
		}
		return fallback
	}
	cfg := config{
		firstSuperuser:         strings.TrimSpace(env("FIRST_SUPERUSER", "admin@recipeapi.com")),
		firstSuperuserPassword: getenv("FIRST_SUPERUSER_PW"),
	}

	flags := flag.NewFlagSet("recipeapi "+command, flag.ContinueOnError)
	// The usage goes out only when asked for with -h: a mistake gets the
	// one line that run returns.
	flags.SetOutput(io.Discard)
	takes := func(commands ...string) bool { return slices.Contains(commands, command) }
	if takes("serve", "healthcheck") {
		flags.StringVar(&cfg.addr, "addr", env("ADDR", "localhost:8001"), "listen `address` (env ADDR)")
	}
	if takes("serve", "migrate", "createsuperuser", "backup") {
		flags.StringVar(&cfg.dbPath, "db", env("DATABASE_PATH", "example.db"), "SQLite database `file` (env DATABASE_PATH)")
	}
	if takes("serve", "healthcheck") {
		flags.StringVar(&cfg.tlsCertFile, "tls-cert", getenv("TLS_CERT_FILE"), "TLS certificate `file`, PEM; with -tls-key, serve HTTPS (env TLS_CERT_FILE)")
		flags.StringVar(&cfg.tlsKeyFile, "tls-key", getenv("TLS_KEY_FILE"), "TLS private key `file`, PEM (env TLS_KEY_FILE)")
	}
	maxConnections := env("MAX_CONNECTIONS", "4096")
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
	number := func(name, fallback string, low, high int) int {
		return wholeNumber(name, env(name, fallback), low, high)
	}
	cfg.accessTokenLifetime = time.Duration(number("ACCESS_TOKEN_EXPIRE_MINUTES", "11520", 1, 5256000)) * time.Minute
	cfg.refreshTokenLifetime = time.Duration(number("REFRESH_TOKEN_EXPIRE_MINUTES", "43200", 1, 5256000)) * time.Minute
	cfg.bcryptCost = number("BCRYPT_COST", "12", 4, 31)
	cfg.loginAttemptsPerMinute = number("LOGIN_ATTEMPTS_PER_MINUTE", "10", 0, 1000000)
	if takes("serve") {
		cfg.maxConnections = wholeNumber("MAX_CONNECTIONS", maxConnections, 1, 1000000)
	}

	// The secret's length is all we can check, and we do not echo it.
	if secret := getenv("JWT_SECRET"); secret != "" {
		if len(secret) < minSecretBytes {
			errs = append(errs, fmt.Errorf("JWT_SECRET is %d bytes; it must be at least %d (RFC 7518 §3.2); for example: openssl rand -hex 32", len(secret), minSecretBytes))
		}
		cfg.tokenSecret = []byte(secret)
	}
	if pw := cfg.firstSuperuserPassword; pw != "" && (len(pw) < minPasswordBytes || len(pw) > maxPasswordBytes) {
		errs = append(errs, fmt.Errorf("FIRST_SUPERUSER_PW must be %d to %d bytes", minPasswordBytes, maxPasswordBytes))
	}
	if msg := checkEmail(cfg.firstSuperuser); msg != "" {
		errs = append(errs, fmt.Errorf("FIRST_SUPERUSER=%q: %s", cfg.firstSuperuser, msg))
	}
	origins, err := parseCORSOrigins(getenv("BACKEND_CORS_ORIGINS"))
	if err != nil {
		errs = append(errs, err)
	}
	cfg.corsOrigins = origins
	if cfg.trustedProxies, err = parsePrefixes(getenv("TRUSTED_PROXIES")); err != nil {
		errs = append(errs, err)
	}
	switch format := env("LOG_FORMAT", "text"); format {
	case "text", "json":
		cfg.logJSON = format == "json"
	default:
		errs = append(errs, fmt.Errorf("LOG_FORMAT=%q: want text or json", format))
	}
	if (cfg.tlsCertFile == "") != (cfg.tlsKeyFile == "") {
		errs = append(errs, errors.New("TLS needs both a certificate and a key (-tls-cert and -tls-key)"))
	}
	if len(errs) > 0 {
		return config{}, joinOnOneLine(errs)
	}
	return cfg, nil
}

// joinOnOneLine joins errs with "; ": the process stops with one line.
func joinOnOneLine(errs []error) error {
	msgs := make([]string, len(errs))
	for i, err := range errs {
		msgs[i] = err.Error()
	}
	return errors.New(strings.Join(msgs, "; "))
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
	u, err := url.Parse(origin)
	switch {
	case origin == "*" || origin == "null":
		return errors.New("a wildcard or null origin would let any page read the answers")
	case err != nil:
		return errors.New("not a URL")
	case u.Scheme != "http" && u.Scheme != "https":
		return errors.New("the scheme must be http or https")
	case u.Opaque != "" || u.Host == "":
		return errors.New("no host")
	case u.User != nil:
		return errors.New("an origin has no user name or password")
	case u.Path != "" || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(origin, "#"):
		return errors.New("an origin has no path, query or fragment")
	case origin != strings.ToLower(origin):
		return errors.New("write it in lower case, as browsers send it")
	}
	host, port := u.Hostname(), u.Port()
	if _, err := netip.ParseAddr(host); err != nil && !isOriginHostName(host) {
		return errors.New("the host must be a DNS name or an IP address")
	}
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	if port != "" {
		n, err := strconv.Atoi(port)
		if err != nil || n < 1 || n > 65535 || strconv.Itoa(n) != port {
			return errors.New("the port must be a number from 1 to 65535")
		}
		host += ":" + port
	}
	if u.Host != host {
		return errors.New("the port must be a number from 1 to 65535")
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

// commands are what the one binary does; serve is the default.
var commands = map[string]func(ctx context.Context, cfg config, stdin io.Reader, stdout, stderr io.Writer) error{
	"serve":           serve,
	"migrate":         migrateCommand,
	"createsuperuser": createSuperuserCommand,
	"backup":          backupCommand,
	"version":         versionCommand,
	"healthcheck":     healthcheckCommand,
}

// run is the whole program: main only calls it, and tests call it with
// their own arguments, environment and streams. args are a command (serve
// if none) and its flags.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	command := "serve"
	switch {
	case len(args) > 0 && isHelpFlag(args[0]), len(args) == 1 && args[0] == "help":
		printOverview(stdout)
		return nil
	case len(args) > 1 && args[0] == "help":
		// help COMMAND is COMMAND -h.
		args = []string{args[1], "-h"}
	}
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		command, args = args[0], args[1:]
	}
	do, ok := commands[command]
	if !ok {
		return usageError{fmt.Errorf("unknown command %q; the commands are serve, migrate, createsuperuser, backup, version and healthcheck (recipeapi -h says more)", command)}
	}
	cfg, err := loadConfig(command, args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return do(ctx, cfg, stdin, stdout, stderr)
}

// readHeaderTimeout bounds how long a client may take to send its request
// headers (slowloris). A variable so that a test can shorten it.
var readHeaderTimeout = 10 * time.Second

// serve runs the HTTP service until ctx is done (SIGINT or SIGTERM), then
// lets the requests in flight finish and closes the database.
func serve(ctx context.Context, cfg config, _ io.Reader, stdout, stderr io.Writer) error {
	var logHandler slog.Handler = slog.NewTextHandler(stderr, nil)
	if cfg.logJSON {
		logHandler = slog.NewJSONHandler(stderr, nil)
	}
	logger := slog.New(logHandler)

	var tlsConfig *tls.Config
	if cfg.tlsCertFile != "" {
		cert, err := tls.LoadX509KeyPair(cfg.tlsCertFile, cfg.tlsKeyFile)
		if err != nil {
			return fmt.Errorf("TLS: %w", err)
		}
		tlsConfig = modernTLS(cert)
	}

	// Listen first: if the address is taken, stop before seeding, so that
	// a generated password is never printed for a server that never ran.
	tcpListener, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	listener := limitConnections(tcpListener, cfg.maxConnections, func(addr netip.Addr) bool {
		return inPrefixes(cfg.trustedProxies, addr)
	})
	defer listener.Close()

	st, err := openStore(ctx, cfg.dbPath, logger)
	if err != nil {
		return err
	}
	defer st.close()
	if cfg.tokenSecret == nil {
		if cfg.tokenSecret, err = st.tokenSecret(ctx); err != nil {
			return err
		}
	}
	reserveProcsForHashing()
	passwords, err := newPasswordHasherFor(ctx, st, cfg.bcryptCost)
	if err != nil {
		return err
	}
	defer passwords.close() // before st.close: a rehash may still be writing
	if passwords.priorityErr != nil {
		logger.Warn("password hashing runs at normal priority", "err", passwords.priorityErr)
	}
	if err := seedFirstSuperuser(ctx, st, passwords, cfg, stdout, logger); err != nil {
		return err
	}

	// Timeouts so that slow or idle clients cannot hold connections open.
	server := &http.Server{
		Handler:           newServer(cfg, st, passwords, logger, time.Now),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// Over TLS, HTTP/2 multiplexes requests on one connection: bound
		// the streams and the data buffered for them, as MAX_CONNECTIONS
		// and maxBodyBytes bound them over HTTP/1.1.
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          32,
			MaxReceiveBufferPerStream:     maxBodyBytes,
			MaxReceiveBufferPerConnection: 4 * maxBodyBytes,
		},
		ErrorLog: slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	logger.Info("serving", "url", scheme+"://"+listener.Addr().String(), "db", cfg.dbPath)

	served := make(chan error, 1)
	go func() {
		if tlsConfig != nil {
			served <- server.ServeTLS(listener, "", "") // HTTP/2 is set up here
			return
		}
		served <- server.Serve(listener)
	}()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// modernTLS is TLS 1.2 and 1.3 only, with forward-secret AEAD ciphers
// (TLS 1.3's are always those). ServeTLS offers HTTP/2 on it.
func modernTLS(cert tls.Certificate) *tls.Config {
	return &tls.Config{
		Certificates: []tls.Certificate{cert},
		MinVersion:   tls.VersionTLS12,
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

// seedFirstSuperuser creates the first superuser and the example recipes
// in a database with no users. A generated password is printed once, as
// the last word of a line that names the email, for the operator to copy;
// a password given in FIRST_SUPERUSER_PW is never printed.
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
		password = randomToken(18) // 24 characters
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
	case created && generated:
		fmt.Fprintf(stdout, "Created the first superuser %s; its password, shown only this once, is %s\n", cfg.firstSuperuser, password)
	case created:
		fmt.Fprintf(stdout, "Created the first superuser %s with the password from FIRST_SUPERUSER_PW\n", cfg.firstSuperuser)
	}
	return nil
}

// randomToken returns n random bytes as unpadded base64url.
func randomToken(n int) string {
	return base64.RawURLEncoding.EncodeToString(randomBytes(n))
}

// app holds what the handlers share.
type app struct {
	lastHomePage         renderedPage // GET /'s last page (recipes.go)
	store                *store
	passwords            *passwordHasher
	loginLimiter         *rateLimiter
	refreshLimiter       *refreshLimiter
	logger               *slog.Logger
	now                  func() time.Time
	tokenKey             *tokenKey
	accessTokenLifetime  time.Duration
	refreshTokenLifetime time.Duration
	trustedProxies       []netip.Prefix
	corsOrigins          map[string]bool
	unusableHashes       unusableHashLog // users whose unusable hash was logged
}

// newServer builds the service's whole HTTP handler. now is the clock the
// tokens are issued and checked against.
func newServer(cfg config, st *store, passwords *passwordHasher, logger *slog.Logger, now func() time.Time) http.Handler {
	a := &app{
		store:                st,
		passwords:            passwords,
		loginLimiter:         newRateLimiter(cfg.loginAttemptsPerMinute, time.Minute, now),
		refreshLimiter:       newRefreshLimiter(now),
		logger:               logger,
		now:                  now,
		tokenKey:             newTokenKey(cfg.tokenSecret),
		accessTokenLifetime:  cfg.accessTokenLifetime,
		refreshTokenLifetime: cfg.refreshTokenLifetime,
		trustedProxies:       cfg.trustedProxies,
		corsOrigins:          map[string]bool{},
	}
	for _, o := range cfg.corsOrigins {
		a.corsOrigins[o] = true
	}
	mux := http.NewServeMux()
	a.routes(mux)

	// Outermost first: a panic anywhere is caught and logged with the
	// request; every response carries the security headers and, for the
	// configured origins, the CORS headers (a 413 too, so that a browser
	// client can read it); every request body is capped.
	return a.recoverPanics(a.logRequests(securityHeaders(a.cors(limitBodies(jsonNotFound(mux))))))
}

// routeRegistrar is what routes needs of a mux, so that a test can list
// the routes.
type routeRegistrar interface {
	Handle(pattern string, handler http.Handler)
}

// routes is the service's whole API surface.
func (a *app) routes(mux routeRegistrar) {
	mux.Handle("POST /api/v1/auth/signup", a.limitLogins(a.handleSignup()))
	mux.Handle("POST /api/v1/auth/login", a.limitFailedLogins(a.handleLogin()))
	mux.Handle("GET /api/v1/auth/me", a.requireUser(a.handleMe()))
	mux.Handle("POST /api/v1/auth/refresh", a.handleRefresh())
	mux.Handle("POST /api/v1/auth/logout", a.requireUser(a.handleLogout()))
	mux.Handle("POST /api/v1/auth/password", a.limitFailedLogins(a.requireUser(a.handleChangePassword())))

	mux.Handle("GET /api/v1/recipes/{recipe_id}", a.handleRecipe())
	mux.Handle("GET /api/v1/recipes/search/{$}", a.handleSearch())
	mux.Handle("GET /api/v1/recipes/search", a.handleSearch())
	mux.Handle("POST /api/v1/recipes/{$}", a.requireUser(a.handleCreateRecipe()))
	mux.Handle("GET /api/v1/recipes/my-recipes/{$}", a.requireUser(a.handleMyRecipes()))
	mux.Handle("GET /api/v1/recipes/my-recipes", a.requireUser(a.handleMyRecipes()))
	mux.Handle("PUT /api/v1/recipes/{recipe_id}", a.requireUser(a.handleUpdateRecipe()))
	mux.Handle("DELETE /api/v1/recipes/{recipe_id}", a.requireUser(a.handleDeleteRecipe()))

	mux.Handle("GET /{$}", a.handleHome())
	mux.Handle("GET /healthz", a.handleHealth())
	mux.Handle("GET /api/v1/openapi.json", handleOpenAPI())
	mux.Handle("GET /docs", handleDocs())
	mux.Handle("GET /docs/{file}", handleDocs())
	mux.Handle("GET /favicon.ico", handleFavicon())
}

func (a *app) handleHealth() http.Handler {
	return a.api(func(w http.ResponseWriter, r *http.Request) error {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		if err := a.store.ping(ctx); err != nil {
			a.logger.Error("health check", "err", err)
			return &apiError{status: http.StatusServiceUnavailable, detail: "Database unavailable", retryAfter: 5 * time.Second}
		}
		return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
}

//go:embed openapi.json
var openAPIDocument []byte

func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(openAPIDocument)
	})
}

// Swagger UI's bundle and stylesheet are embedded gzip-compressed: 0.5 MB
// of the binary instead of 1.9 MB (see swagger-ui/README.md).
//
//go:embed swagger-ui/index.html swagger-ui/swagger-initializer.js swagger-ui/*.gz
var swaggerUI embed.FS

// docsPolicy lets Swagger UI load its own scripts and styles from us and
// talk to us, and nothing else: no other site is contacted.
const docsPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
	"connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"

// handleDocs serves Swagger UI, kept in the binary, at /docs.
func handleDocs() http.Handler {
	types := map[string]string{
		"index.html":             "text/html; charset=utf-8",
		"swagger-ui.css":         "text/css; charset=utf-8",
		"swagger-ui-bundle.js":   "text/javascript; charset=utf-8",
		"swagger-initializer.js": "text/javascript; charset=utf-8",
	}
	compressed := map[string]*gzipFile{
		"swagger-ui.css":       newGzipFile(swaggerUI, "swagger-ui/swagger-ui.css.gz"),
		"swagger-ui-bundle.js": newGzipFile(swaggerUI, "swagger-ui/swagger-ui-bundle.js.gz"),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		file := r.PathValue("file")
		if file == "" {
			file = "index.html"
		}
		contentType, ok := types[file]
		if !ok {
			writeError(w, r, &apiError{status: http.StatusNotFound, detail: "Not Found"}, nil)
			return
		}
		var body []byte
		var err error
		if gz, ok := compressed[file]; ok {
			w.Header().Add("Vary", "Accept-Encoding")
			if acceptsGzip(r.Header.Values("Accept-Encoding")) {
				w.Header().Set("Content-Encoding", "gzip")
				body, err = gz.compressed()
			} else {
				body, err = gz.plain()
			}
		} else {
			body, err = swaggerUI.ReadFile("swagger-ui/" + file)
		}
		if err != nil {
			w.Header().Del("Content-Encoding")
			writeError(w, r, err, nil)
			return
		}
		w.Header().Set("Content-Type", contentType)
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.Header().Set("Content-Security-Policy", docsPolicy)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Write(body)
	})
}

// gzipFile is an embedded gzip file, sent as it is to clients that accept
// gzip and unpacked for the others. The unpacked copy is made at the first
// request that needs it and kept: one per file, so memory stays bounded by
// the files the binary holds.
type gzipFile struct {
	compressed func() ([]byte, error)
	plain      func() ([]byte, error)
}

func newGzipFile(fsys embed.FS, name string) *gzipFile {
	compressed := func() ([]byte, error) { return fsys.ReadFile(name) }
	return &gzipFile{
		compressed: compressed,
		plain: sync.OnceValues(func() ([]byte, error) {
			gz, err := compressed()
			if err != nil {
				return nil, err
			}
			zr, err := gzip.NewReader(bytes.NewReader(gz))
			if err != nil {
				return nil, fmt.Errorf("unpack %s: %w", name, err)
			}
			plain, err := io.ReadAll(zr)
			if err != nil {
				return nil, fmt.Errorf("unpack %s: %w", name, err)
			}
			return plain, nil
		}),
	}
}

// acceptsGzip reports whether Accept-Encoding values allow gzip (RFC 9110
// §12.5.3): gzip listed with a weight above 0, or, if gzip is not listed,
// * with a weight above 0. An unreadable weight counts as 0.
func acceptsGzip(values []string) bool {
	named, anyCoding := -1.0, -1.0 // the weights given; -1: not named
	for _, value := range values {
		for part := range strings.SplitSeq(value, ",") {
			coding, params, _ := strings.Cut(part, ";")
			weight := 1.0
			for param := range strings.SplitSeq(params, ";") {
				name, q, _ := strings.Cut(strings.TrimSpace(param), "=")
				if strings.EqualFold(strings.TrimSpace(name), "q") {
					var err error
					if weight, err = strconv.ParseFloat(strings.TrimSpace(q), 64); err != nil || math.IsNaN(weight) {
						weight = 0
					}
				}
			}
			switch strings.ToLower(strings.TrimSpace(coding)) {
			case "gzip", "x-gzip":
				named = max(named, weight)
			case "*":
				anyCoding = max(anyCoding, weight)
			}
		}
	}
	// gzip named outright wins over * (RFC 9110 §12.5.3).
	if named >= 0 {
		return named > 0
	}
	return anyCoding > 0
}

//go:embed favicon.svg
var favicon []byte

// handleFavicon serves the site's icon, which browsers ask for on every
// page. It is an SVG, which browsers take at /favicon.ico too; cached for
// a week.
func handleFavicon() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "image/svg+xml")
		w.Header().Set("Cache-Control", "public, max-age=604800")
		w.Write(favicon)
	})
}

// --- Responses and errors -------------------------------------------------

// apiError is an error that the client may see: a status and a detail,
// written as FastAPI writes them, {"detail": "..."}.
type apiError struct {
	status     int
	detail     string
	retryAfter time.Duration // if set, sent as Retry-After
	challenge  bool          // if set, sent with WWW-Authenticate: Bearer
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s", e.status, e.detail) }

// problem is one bad value in a request, as FastAPI lists them in a 422.
type problem struct {
	Loc  []string `json:"loc"`
	Msg  string   `json:"msg"`
	Type string   `json:"type"`
}

// validationError is a 422: every bad value in the request.
type validationError struct {
	problems []problem
}

func (e *validationError) Error() string {
	return fmt.Sprintf("validation failed: %d problems", len(e.problems))
}

// api adapts a handler that returns an error into an http.Handler, so
// that each handler reads as decode, check, act, encode, and every error
// reaches the client through writeError.
func (a *app) api(h func(w http.ResponseWriter, r *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			writeError(w, r, err, a.logger)
		}
	})
}

// writeError is the one place where errors become HTTP responses. An
// apiError or validationError is shown as it is; anything else is a bug
// or a database failure: it is logged and the client sees only a 500.
// statusClientClosedRequest is the status the request log shows for a
// client that went away before its answer, as nginx logs it (499). No
// client ever reads it.
const statusClientClosedRequest = 499

func writeError(w http.ResponseWriter, r *http.Request, err error, logger *slog.Logger) {
	var (
		apiErr  *apiError
		invalid *validationError
		tooBig  *http.MaxBytesError
	)
	switch {
	case errors.As(err, &invalid):
		writeJSON(w, http.StatusUnprocessableEntity, map[string][]problem{"detail": invalid.problems})
		return
	case errors.As(err, &tooBig):
		// Close the connection rather than read the rest of the body
		// to keep it alive.
		w.Header().Set("Connection", "close")
		apiErr = &apiError{status: http.StatusRequestEntityTooLarge, detail: "Request body too large"}
	case errors.As(err, &apiErr):
	case errors.Is(err, errWriterBusy):
		// Another process holds the write lock (a sqlite3 shell, a
		// backup tool), or writes queue past the deadline: nothing was
		// written, and the client may try again.
		if logger != nil {
			logger.Warn("database writer busy", "request_id", requestID(r), "err", err)
		}
		apiErr = &apiError{status: http.StatusServiceUnavailable, detail: "Database busy, try again later", retryAfter: writerRetryAfter}
	case r.Context().Err() != nil:
		// The client went away (it closed the connection while its
		// request waited to hash or to write): nothing is wrong here, and
		// nobody will read the answer. Logged as what it is, not as an
		// internal error.
		if logger != nil {
			logger.Info("client went away", "request_id", requestID(r), "err", err)
		}
		apiErr = &apiError{status: statusClientClosedRequest, detail: "Client Closed Request"}
	default:
		if logger != nil {
			logger.Error("internal error", "request_id", requestID(r), "err", err)
		}
		apiErr = &apiError{status: http.StatusInternalServerError, detail: "Internal Server Error"}
	}
	if apiErr.retryAfter > 0 {
		seconds := int((apiErr.retryAfter + time.Second - 1) / time.Second)
		w.Header().Set("Retry-After", strconv.Itoa(seconds))
	}
	if apiErr.challenge {
		w.Header().Set("WWW-Authenticate", "Bearer")
	}
	writeJSON(w, apiErr.status, map[string]string{"detail": apiErr.detail})
}

// writeJSON writes v as the JSON body of a response with the given status.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	var body bytes.Buffer
	enc := json.NewEncoder(&body)
	enc.SetEscapeHTML(false) // as FastAPI writes it; nosniff keeps it from being read as HTML
	if err := enc.Encode(v); err != nil {
		return fmt.Errorf("encode response: %w", err)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(bytes.TrimSuffix(body.Bytes(), []byte("\n")))
	return nil
}

// --- Request bodies -------------------------------------------------------

// maxBodyBytes caps every request body; more is a 413. The largest body
// any route here reads is a recipe: three fields of at most 256
// characters, a few KB at most. See limitBodies.
const maxBodyBytes = 64 << 10

// decodeJSONObject reads a request body that must be one JSON object, and
// returns its members by exact name. Names match exactly (encoding/json
// would match "EMAIL" to an "email" field) and unknown members are left
// for the caller to ignore, as FastAPI ignores them.
//
// Nothing is silently rewritten: a body that is not valid UTF-8, or holds
// an escaped lone surrogate ("\ud800"), is refused at ["body"] instead of
// being decoded with U+FFFD in place of the bad bytes; a member name that
// repeats, once escapes are decoded, is refused at ["body", name] instead
// of the last one winning, as encoding/json would have it (a proxy that
// read the first would see another request than ours). The rules are
// forEachMember's (jwt.go), which the token parser applies too.
func decodeJSONObject(r *http.Request) (jsonFields, error) {
	body, err := io.ReadAll(r.Body) // at most maxBodyBytes: limitBodies caps it
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return jsonFields{}, err
		}
		return jsonFields{}, &apiError{status: http.StatusBadRequest, detail: "Could not read the request body"}
	}
	members := map[string]json.RawMessage{}
	err = forEachMember(body, func(name, value []byte) error {
		members[string(name)] = value
		return nil
	})
	if err != nil {
		return jsonFields{}, &validationError{problems: []problem{bodyProblem(err)}}
	}
	return jsonFields{members: members}, nil
}

// bodyProblem says what forEachMember found wrong with a JSON body.
func bodyProblem(err error) problem {
	var repeated *repeatedMemberError
	switch {
	case errors.As(err, &repeated):
		return problem{Loc: []string{"body", repeated.name},
			Msg: "this member appears more than once in the body", Type: "value_error.jsondecode.duplicate_member"}
	case errors.Is(err, errNotUTF8):
		return problem{Loc: []string{"body"}, Msg: "the body is not valid UTF-8", Type: "value_error.jsondecode.utf8"}
	case errors.Is(err, errLoneSurrogate):
		return problem{Loc: []string{"body"},
			Msg: `the body holds a \u escape of a lone UTF-16 surrogate, which is no character`, Type: "value_error.jsondecode.surrogate"}
	case errors.Is(err, errTooManyMembers):
		return problem{Loc: []string{"body"},
			Msg: fmt.Sprintf("the body has more than %d members", maxObjectMembers), Type: "value_error.jsondecode.members"}
	}
	return problem{Loc: []string{"body"}, Msg: "the body must be a JSON object", Type: "value_error.jsondecode"}
}

// jsonFields reads the members of a JSON body one by one, collecting a
// problem for each bad one, so that a 422 lists them all.
type jsonFields struct {
	members  map[string]json.RawMessage
	problems []problem
}

func (f *jsonFields) fail(name, msg, typ string) {
	f.problems = append(f.problems, problem{Loc: []string{"body", name}, Msg: msg, Type: typ})
}

// text returns the member name as a string. A missing or null member is
// a problem if required; otherwise it returns nil.
func (f *jsonFields) text(name string, required bool) *string {
	raw, ok := f.members[name]
	if !ok || string(raw) == "null" {
		if required {
			f.fail(name, "field required", "value_error.missing")
		}
		return nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		f.fail(name, "str type expected", "type_error.str")
		return nil
	}
	return &s
}

// integer returns the optional member name as an integer, or nil.
func (f *jsonFields) integer(name string) *int64 {
	raw, ok := f.members[name]
	if !ok || string(raw) == "null" {
		return nil
	}
	var n int64
	if err := json.Unmarshal(raw, &n); err != nil {
		f.fail(name, "value is not a valid integer", "type_error.integer")
		return nil
	}
	return &n
}

// check records a problem with member name unless ok.
func (f *jsonFields) check(ok bool, name, msg, typ string) {
	if !ok {
		f.fail(name, msg, typ)
	}
}

// err is nil if every member read so far was good, else a 422.
func (f *jsonFields) err() error {
	if len(f.problems) == 0 {
		return nil
	}
	return &validationError{problems: f.problems}
}

// --- Middleware -----------------------------------------------------------

// recoverPanics turns a panic in a handler into a logged 500.
func (a *app) recoverPanics(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler { // the server's way to drop a response
					panic(v)
				}
				a.logger.Error("panic", "request_id", requestID(r), "method", r.Method, "path", loggedPath(r),
					"panic", v, "stack", string(debug.Stack()))
				w.Header().Set("Connection", "close")
				writeError(w, r, errors.New("panic"), nil)
			}
		}()
		next.ServeHTTP(w, r)
	})
}

// statusRecorder remembers the status a handler wrote, for the log.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (s *statusRecorder) WriteHeader(status int) {
	if s.status == 0 {
		s.status = status
	}
	s.ResponseWriter.WriteHeader(status)
}

func (s *statusRecorder) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}

func (s *statusRecorder) Unwrap() http.ResponseWriter { return s.ResponseWriter }

type requestIDKey struct{}

// requestID is the id logRequests gave r, also sent as X-Request-ID.
func requestID(r *http.Request) string {
	id, _ := r.Context().Value(requestIDKey{}).(string)
	return id
}

// logRequests gives each request an id, returned as X-Request-ID, and logs
// one line per request with it. It logs the path, never the query or
// headers, so that no password or token can reach the log.
func (a *app) logRequests(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := randomToken(9)
		w.Header().Set("X-Request-ID", id)
		r = r.WithContext(context.WithValue(r.Context(), requestIDKey{}, id))
		rec := &statusRecorder{ResponseWriter: w}
		next.ServeHTTP(rec, r)
		a.logger.Info("request", "request_id", id, "method", r.Method, "path", loggedPath(r),
			"status", rec.status, "duration", time.Since(start), "client", a.clientAddress(r))
	})
}

// limitBodies caps every request body at maxBodyBytes, whatever the route
// and whether or not it reads a body. A body announced as bigger
// (Content-Length) is refused before a byte of it is read; one that grows
// past the cap as it is read fails that read, which the handler's error
// turns into the same 413. Reading stops at the cap, so no more than
// maxBodyBytes of a body is ever held.
func limitBodies(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			writeError(w, r, &http.MaxBytesError{Limit: maxBodyBytes}, nil)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// maxLoggedPathBytes bounds a request path in the log: a client may send
// a path of many kilobytes, and would otherwise have it written whole, on
// every request, into a log that an operator reads and pays to keep.
const maxLoggedPathBytes = 512

// loggedPath is r's path as the log shows it: cut after
// maxLoggedPathBytes, at a character boundary, and marked as cut.
func loggedPath(r *http.Request) string {
	path := r.URL.Path
	if len(path) <= maxLoggedPathBytes {
		return path
	}
	// Back to the start of the character that would be split, if any;
	// a path of stray bytes is simply cut.
	cut := maxLoggedPathBytes
	for cut > maxLoggedPathBytes-(utf8.UTFMax-1) && !utf8.RuneStart(path[cut]) {
		cut--
	}
	return path[:cut] + "…(truncated)"
}

// apiPolicy is the Content-Security-Policy of every response that sets
// none of its own: JSON loads nothing, and no page of ours may be framed.
const apiPolicy = "default-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", apiPolicy)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}

// cors lets the configured origins call the API from a browser, with
// credentials, as the reference's CORSMiddleware does. Other origins get
// no CORS headers at all, so the browser keeps the response from them.
func (a *app) cors(next http.Handler) http.Handler {
	if len(a.corsOrigins) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if !a.corsOrigins[origin] {
			next.ServeHTTP(w, r)
			return
		}
		h := w.Header()
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
		if r.Method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
			h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE, OPTIONS")
			if asked := r.Header.Get("Access-Control-Request-Headers"); asked != "" {
				h.Set("Access-Control-Allow-Headers", asked)
			}
			h.Set("Access-Control-Max-Age", "600")
			w.WriteHeader(http.StatusOK)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// jsonNotFound makes the mux's own 404 and 405 answers JSON like every
// other error, keeping the 405's Allow header.
func jsonNotFound(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if h, pattern := mux.Handler(r); pattern == "" {
			// No route: h is the mux's plain-text 404 or 405, or a
			// redirect to the path's clean form. Run it against a scratch
			// recorder to learn which, and the 405's Allow.
			scratch := &headerRecorder{header: http.Header{}}
			h.ServeHTTP(scratch, r)
			if scratch.status == http.StatusNotFound || scratch.status == http.StatusMethodNotAllowed {
				if allow := scratch.header.Get("Allow"); allow != "" {
					w.Header().Set("Allow", allow)
				}
				writeError(w, r, &apiError{status: scratch.status, detail: http.StatusText(scratch.status)}, nil)
				return
			}
		}
		mux.ServeHTTP(w, r)
	})
}

// headerRecorder is a ResponseWriter that keeps the status and headers and
// throws the body away.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }
