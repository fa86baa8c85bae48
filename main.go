// main.go starts the service: its configuration (flags over environment
// over defaults), its commands, the server's lifetime, and the one list of
// routes, with the guards of each.
//
// The rest lives by concern, in the order the README suggests reading
// it: http.go (errors, body readers, middleware), jwt.go (access tokens)
// and jsonobject.go (the strict JSON reader it shares with http.go),
// auth.go (signup, login, the bearer-token guard), hashing.go (bcrypt's
// worker pool; hashing_linux.go lowers its threads' priority),
// ratelimit.go (the attempt and refresh limits), sessions.go (refresh,
// logout, password change), recipes.go (recipes and the home page),
// static.go (OpenAPI, /docs, favicon), store.go (the database; schema.sql
// its migrations), commands.go (the operator's commands), help.go (what
// -h prints, and every setting's default), connlimit.go
// (MAX_CONNECTIONS) and race_slowdown_on.go and race_slowdown_off.go (how
// much the race detector slows SQLite, which the search bounds allow for).
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/crypto/bcrypt"
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
		return usageError{fmt.Errorf("unknown command %q; the commands are %s (recipeapi -h says more)", command, commandNames())}
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

// shutdownGrace bounds a stop, from SIGINT or SIGTERM to the end of serve:
// the requests in flight have all of it but maxCloseWait to finish, and
// the hashing pool that last moment to stop (passwordHasher.close). A
// variable so that a test can shorten it.
var shutdownGrace = 10 * time.Second

// serve runs the HTTP service until ctx is done (SIGINT or SIGTERM), then
// lets the requests in flight finish and closes the database, all within
// shutdownGrace (serveHTTP, app.close).
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

	reserveProcsForHashing()
	a, err := newServer(ctx, cfg, logger, time.Now, stdout)
	if err != nil {
		return err
	}
	defer a.close()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	logger.Info("serving", "url", scheme+"://"+listener.Addr().String(), "db", cfg.dbPath)
	return a.serveHTTP(ctx, listener, tlsConfig)
}

// serveHTTP serves a on listener, over TLS if tlsConfig is set, until ctx
// is done; then it lets the requests in flight finish, within
// shutdownGrace less maxCloseWait, and ends those that are still running.
func (a *app) serveHTTP(ctx context.Context, listener net.Listener, tlsConfig *tls.Config) error {
	// net/http's Shutdown waits for the requests in flight but never ends
	// their contexts: every request's context ends with endRequests, so
	// that one still waiting for a hash or for the database writer when
	// the grace runs out gives up then.
	requests, endRequests := context.WithCancel(context.Background())
	defer endRequests()
	// Timeouts so that slow or idle clients cannot hold connections open.
	server := &http.Server{
		Handler:           a.handler,
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
		BaseContext: func(net.Listener) context.Context { return requests },
		ErrorLog:    slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
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

	a.logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace-maxCloseWait)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		endRequests()
		server.Close()
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

// app is the service: what the handlers share, and the HTTP handler that
// serves them.
type app struct {
	handler              http.Handler // every route, behind the middleware
	store                *store
	passwords            *passwordHasher
	loginLimiter         *rateLimiter // failed logins and password changes, per client address
	signupLimiter        *rateLimiter // signups, per client address
	refreshLimiter       *rateLimiter // refreshes, per session
	recipeLimiter        *rateLimiter // recipe creations, per user
	logger               *slog.Logger
	now                  func() time.Time // the clock tokens are issued and checked against
	tokenKey             *tokenKey
	accessTokenLifetime  time.Duration
	refreshTokenLifetime time.Duration
	trustedProxies       []netip.Prefix
	corsOrigins          map[string]bool
	lastHomePage         renderedPage    // GET /'s last page (recipes.go)
	unusableHashes       unusableHashLog // users whose unusable hash was logged
}

// newServer opens the database at cfg.dbPath and the hashing pool, seeds
// a database that has no users (printing a generated password to stdout),
// and builds the service's whole HTTP handler. serve and the tests build
// the service only through here; close ends it.
func newServer(ctx context.Context, cfg config, logger *slog.Logger, now func() time.Time, stdout io.Writer) (_ *app, err error) {
	a := &app{
		loginLimiter:         newRateLimiter(cfg.loginAttemptsPerMinute, time.Minute, now),
		signupLimiter:        newRateLimiter(cfg.signupsPerHour, time.Hour, now),
		refreshLimiter:       newRateLimiter(refreshBurst, refreshBurst*refreshInterval, now),
		recipeLimiter:        newRateLimiter(cfg.recipeCreationBurst, time.Duration(cfg.recipeCreationBurst)*recipeCreationInterval, now),
		logger:               logger,
		now:                  now,
		accessTokenLifetime:  cfg.accessTokenLifetime,
		refreshTokenLifetime: cfg.refreshTokenLifetime,
		trustedProxies:       cfg.trustedProxies,
		corsOrigins:          map[string]bool{},
	}
	if a.store, err = openStore(ctx, cfg.dbPath, logger); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.close()
		}
	}()
	secret := cfg.tokenSecret
	if secret == nil {
		if secret, err = a.store.tokenSecret(ctx); err != nil {
			return nil, err
		}
	}
	a.tokenKey = newTokenKey(secret)
	if a.passwords, err = newPasswordHasherFor(ctx, a.store, cfg.bcryptCost); err != nil {
		return nil, err
	}
	if a.passwords.priorityErr != nil {
		logger.Warn("password hashing runs at normal priority", "err", a.passwords.priorityErr)
	}
	if err = seedFirstSuperuser(ctx, a.store, a.passwords, cfg, stdout, logger); err != nil {
		return nil, err
	}
	for _, o := range cfg.corsOrigins {
		a.corsOrigins[o] = true
	}
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	// Outermost first: every request gets an id and a line in the log, and
	// a panic below is caught and logged with that id; every response
	// carries the security headers and, for the configured origins, the
	// CORS headers (a 413 too, so that a browser client can read it);
	// every request body is capped.
	a.handler = a.logRequests(a.recoverPanics(securityHeaders(a.cors(a.limitBodies(a.jsonMuxErrors(mux))))))
	return a, nil
}

// close stops the hashing pool, then the database: a rehash may still be
// writing until the pool has stopped. It takes at most maxCloseWait more
// than the database takes to close.
func (a *app) close() {
	if a.passwords != nil {
		a.passwords.close()
	}
	a.store.close()
}

// route is one entry of the API: its pattern, and its handler behind the
// guards that wrap it.
type route struct {
	pattern string
	handler http.Handler
}

// routes is the service's whole API surface. The guards of each route are
// the wrappers around its handler: requireUser lets only a signed-in user
// through, and hands the handler that user (auth.go); limitSignups and
// limitFailedLogins count attempts per client address (auth.go), and
// limitRecipeCreations counts a user's new recipes (recipes.go), each with
// a rateLimiter of its own (ratelimit.go); the refresh limit is inside
// handleRefresh, since it counts per session (sessions.go).
func (a *app) routes() []route {
	return []route{
		{"POST /api/v1/auth/signup", a.limitSignups(a.api(a.handleSignup))},
		{"POST /api/v1/auth/login", a.limitFailedLogins(a.api(a.handleLogin))},
		{"GET /api/v1/auth/me", a.requireUser(a.handleMe)},
		{"POST /api/v1/auth/refresh", a.api(a.handleRefresh)},
		{"POST /api/v1/auth/logout", a.requireUser(a.handleLogout)},
		{"POST /api/v1/auth/password", a.limitFailedLogins(a.requireUser(a.handleChangePassword))},

		{"GET /api/v1/recipes/{recipe_id}", a.api(a.handleRecipe)},
		{"GET /api/v1/recipes/search/{$}", a.api(a.handleSearch)},
		{"GET /api/v1/recipes/search", a.api(a.handleSearch)},
		{"POST /api/v1/recipes/{$}", a.requireUser(a.limitRecipeCreations(a.handleCreateRecipe))},
		{"GET /api/v1/recipes/my-recipes/{$}", a.requireUser(a.handleMyRecipes)},
		{"GET /api/v1/recipes/my-recipes", a.requireUser(a.handleMyRecipes)},
		{"PUT /api/v1/recipes/{recipe_id}", a.requireUser(a.handleUpdateRecipe)},
		{"DELETE /api/v1/recipes/{recipe_id}", a.requireUser(a.handleDeleteRecipe)},

		{"GET /{$}", a.api(a.handleHome)},
		{"GET /healthz", a.api(a.handleHealth)},
		{"GET /api/v1/openapi.json", http.HandlerFunc(handleOpenAPI)},
		{"GET /docs", a.api(handleDocs)},
		{"GET /docs/{file}", a.api(handleDocs)},
		{"GET /favicon.ico", http.HandlerFunc(handleFavicon)},
	}
}

func (a *app) handleHealth(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := a.store.ping(ctx); err != nil {
		a.logger.Error("health check", "err", err)
		return errDatabaseDown
	}
	return writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
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
