// main.go is the service at a glance: newServer builds the HTTP handler
// from what it depends on, routes lists every route with its guards, and
// run and serve start the program, open what the handler needs, and stop
// it in order.
//
// The README lists the other files in the order to read them.
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
	"sync"
	"syscall"
	"time"
)

// newServer builds the service's HTTP handler. It opens nothing: serve
// (and each test) opens the services first and closes them after the last
// request. now is the clock that tokens are issued and checked against.
func newServer(cfg config, logger *slog.Logger, now func() time.Time, s services) http.Handler {
	a := &app{
		services:             s,
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
		toPrimary:            nodeTransport(connectionsToPrimary(cfg.maxConnections)),
		ownScheme:            "http",
	}
	if cfg.tlsCertFile != "" {
		a.ownScheme = "https"
	}
	_, a.ownPort, _ = net.SplitHostPort(cfg.addr)
	for _, o := range cfg.corsOrigins {
		a.corsOrigins[o] = true
	}
	mux := http.NewServeMux()
	for _, rt := range a.routes() {
		mux.Handle(rt.pattern, rt.handler)
	}
	// Outermost first: a request that another node forwarded keeps its
	// client's address, every request gets an id and a line in the log, a
	// panic is caught and logged with that id, every response carries the
	// security headers and, for the configured origins, the CORS headers
	// (a 413 too, so that a browser can read it), every body is capped, and
	// on a replica, a write goes to the primary.
	return a.acceptForwarded(a.logRequests(a.recoverPanics(
		securityHeaders(a.cors(a.limitBodies(a.forwardWrites(a.jsonMuxErrors(mux))))))))
}

// route is one entry of the API: its pattern, and its handler behind the
// guards that wrap it.
type route struct {
	pattern string
	handler http.Handler
}

// routes is the whole API. A route's guards are the wrappers around its
// handler: requireUser lets only a signed-in user through and hands the
// handler that user; limitSignups, limitFailedLogins and
// limitRecipeCreations count attempts (per client address, or per user);
// handleRefresh limits itself, per session.
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

// app is what the handlers share.
type app struct {
	services
	loginLimiter         *rateLimiter // failed logins and password changes, per client address
	signupLimiter        *rateLimiter // signups, per client address
	refreshLimiter       *rateLimiter // refreshes, per session
	recipeLimiter        *rateLimiter // recipe creations, per user
	logger               *slog.Logger
	now                  func() time.Time
	accessTokenLifetime  time.Duration
	refreshTokenLifetime time.Duration
	trustedProxies       []netip.Prefix
	corsOrigins          map[string]bool
	// On a LiteFS replica, where writes go (see forwardWrites).
	toPrimary          *http.Transport
	ownScheme, ownPort string // of this node, for a .primary that names a bare host
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

// run is the whole program, which tests call with their own arguments,
// environment and streams. args are a command (serve if none) and its
// flags.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	switch {
	case len(args) > 0 && isHelpFlag(args[0]), len(args) == 1 && args[0] == "help":
		printOverview(stdout)
		return nil
	case len(args) > 1 && args[0] == "help":
		args = []string{args[1], "-h"}
	}
	name := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		name, args = args[0], args[1:]
	}
	c, ok := findCommand(name)
	if !ok {
		return usageError{fmt.Errorf("unknown command %q; the commands are %s (recipeapi -h says more)", name, commandNames())}
	}
	cfg, err := loadConfig(name, args, getenv, stdout)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	if err != nil {
		return err
	}
	return c.run(ctx, cfg, stdin, stdout, stderr)
}

const (
	// readHeaderTimeout bounds how long a client may take to send its
	// request headers (slowloris).
	readHeaderTimeout = 10 * time.Second
	// shutdownGrace bounds a stop: the requests in flight have all of it
	// but maxCloseWait, and the hashing pool that last moment.
	shutdownGrace = 10 * time.Second
)

// serve runs the HTTP service until ctx is done (SIGINT or SIGTERM), then
// lets the requests in flight finish, and only then closes the services.
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
	cfg.addr = tcpListener.Addr().String() // with the port chosen, if it was 0
	listener := limitConnections(tcpListener, cfg.maxConnections, func(addr netip.Addr) bool {
		return inPrefixes(cfg.trustedProxies, addr)
	})
	defer listener.Close()

	reserveProcsForHashing()
	s, err := openServices(ctx, cfg, logger, stdout)
	if err != nil {
		return err
	}
	defer s.close()
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	logger.Info("serving", "url", scheme+"://"+listener.Addr().String(), "db", cfg.dbPath)
	return serveHTTP(ctx, logger, newServer(cfg, logger, time.Now, s), listener, tlsConfig)
}

// serveHTTP serves handler on listener, over TLS if tlsConfig is set,
// until ctx is done; then it lets the requests in flight finish within
// shutdownGrace less maxCloseWait, and ends those still running. It
// returns only once no handler runs, so that none meets closed services.
func serveHTTP(ctx context.Context, logger *slog.Logger, handler http.Handler, listener net.Listener, tlsConfig *tls.Config) error {
	// Shutdown never ends the contexts of the requests it waits for:
	// endRequests does, so that a request still waiting for a hash or the
	// writer when the grace runs out gives up then.
	requests, endRequests := context.WithCancel(context.Background())
	defer endRequests()
	var running sync.WaitGroup
	defer running.Wait()
	server := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			running.Add(1)
			defer running.Done()
			handler.ServeHTTP(w, r)
		}),
		TLSConfig:         tlsConfig,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		// HTTP/2 multiplexes requests on one connection: bound its streams
		// and their buffers, as MAX_CONNECTIONS and maxBodyBytes bound
		// HTTP/1.1.
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams:          32,
			MaxReceiveBufferPerStream:     maxBodyBytes,
			MaxReceiveBufferPerConnection: 4 * maxBodyBytes,
		},
		BaseContext: func(net.Listener) context.Context { return requests },
		ErrorLog:    slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
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
		endRequests()
		server.Close()
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), shutdownGrace-maxCloseWait)
	defer cancel()
	if err := server.Shutdown(shutdownCtx); err != nil {
		endRequests()
		server.Close()
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// services are what the handler uses that outlive a request: opened
// before the first request, closed after the last.
type services struct {
	store     *store
	passwords *passwordHasher
	tokenKey  *tokenKey
	nodeKey   *tokenKey // of the proofs between LiteFS nodes (nodeProof)
}

// openServices opens the database at cfg.dbPath, loads the token secret
// (JWT_SECRET, or the one kept in the database), starts the hashing pool,
// and seeds a database that has no users, printing a generated password
// to stdout. A LiteFS replica seeds nothing: its primary does.
func openServices(ctx context.Context, cfg config, logger *slog.Logger, stdout io.Writer) (s services, err error) {
	if s.store, err = openStore(ctx, cfg.dbPath, logger); err != nil {
		return s, err
	}
	defer func() {
		if err != nil {
			s.close()
		}
	}()
	secret := cfg.tokenSecret
	if secret == nil {
		if secret, err = s.store.tokenSecret(ctx); err != nil {
			return s, err
		}
	}
	s.tokenKey, s.nodeKey = newTokenKey(secret), nodeKeyOf(secret)
	if s.passwords, err = newPasswordHasherFor(ctx, s.store, cfg.bcryptCost); err != nil {
		return s, err
	}
	if s.passwords.priorityErr != nil {
		logger.Warn("password hashing runs at normal priority", "err", s.passwords.priorityErr)
	}
	if err := s.store.liteFS.writable(); err != nil {
		logger.Info("not seeding: the primary does", "err", err)
		return s, nil
	}
	return s, seedFirstSuperuser(ctx, s.store, s.passwords, cfg, stdout, logger)
}

// close stops the hashing pool, then the database, which a rehash may
// still be writing to until the pool has stopped.
func (s services) close() {
	if s.passwords != nil {
		s.passwords.close()
	}
	s.store.close()
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
