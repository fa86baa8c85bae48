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
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
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
