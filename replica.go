// replica.go owns running as one node of a LiteFS cluster
// (github.com/superfly/litefs). LiteFS copies the database from the one
// node that may write, the primary, to read-only replicas. A replica
// serves reads from its copy and forwards every request that may write
// to the primary (forwardWrites); the primary says how far its database
// had got when it answered (markPosition), and the replica answers only
// once its copy has got as far (waitForPosition), so that a client reads
// its own writes from the same replica at once.
//
// LiteFS tells a node its role in files beside the database: ".primary"
// is there on a replica only, and names the primary; "<db>-pos" holds how
// far this node's copy has got, as the TXID of its last transaction.
//
// A forwarded request carries the client's address for the limits, which
// the primary believes only with a proof made with the token secret that
// every node shares (nodeProof): from anyone else, it is ignored.
package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

var (
	// errReadOnlyReplica is a write on a node whose copy of the database
	// LiteFS keeps read-only: a replica, or a node between two primaries.
	errReadOnlyReplica = errors.New("this node's database is a read-only LiteFS replica")
	// errPrimaryUnreachable is a forwarded write that got no answer.
	errPrimaryUnreachable = errors.New("cannot forward the write to the primary")
)

// The headers between nodes. The first three go from a replica to the
// primary; the last comes back in the primary's answer.
const (
	forwardedHeader    = "Recipeapi-Forwarded"     // "1": never to be forwarded again, proof or not
	forwardedForHeader = "Recipeapi-Forwarded-For" // the client, as addressGroup counts it
	nodeProofHeader    = "Recipeapi-Node-Proof"    // "<unix seconds>.<proof>", see nodeProof
	positionHeader     = "Recipeapi-Position"      // the primary's TXID after the write, in hex
)

const (
	// positionWait bounds how long a replica holds a forwarded write's
	// answer, waiting for its copy to reach the primary's position. Past
	// it, the answer goes out all the same: the write is done, and only
	// the next read here might not show it yet.
	positionWait = 2 * time.Second
	// forwardTimeout bounds a forwarded request, its wait for a connection
	// to the primary among them: under the server's WriteTimeout, so that
	// the client hears why.
	forwardTimeout = 50 * time.Second
	// maxConnectionsToPrimary bounds a replica's connections to the
	// primary; see connectionsToPrimary.
	maxConnectionsToPrimary = 128
	// nodeProofMaxAge is how far the clock in a proof may be from the
	// primary's: a captured proof is worthless once it is older.
	nodeProofMaxAge = 30 * time.Second
	// replicaRetryAfter is the Retry-After of a write that found no primary.
	replicaRetryAfter = 2 * time.Second
)

// liteFSFiles are the files beside a database through which LiteFS speaks.
type liteFSFiles struct {
	primaryFile  string // ".primary"
	positionFile string // "<db>-pos"
}

func liteFSFilesOf(dbPath string) liteFSFiles {
	return liteFSFiles{primaryFile: filepath.Join(filepath.Dir(dbPath), ".primary"), positionFile: dbPath + "-pos"}
}

// primary returns the node that LiteFS names in .primary, or "" if there
// is no such file: this node is the primary, or the database is not on
// LiteFS. It is read at each write, since the primary may change.
func (f liteFSFiles) primary() (string, error) {
	name, err := readSmallFile(f.primaryFile)
	if errors.Is(err, os.ErrNotExist) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read LiteFS's %s: %w", f.primaryFile, err)
	}
	if name == "" {
		return "", fmt.Errorf("LiteFS's %s names no primary", f.primaryFile)
	}
	return name, nil
}

// writable returns errReadOnlyReplica, naming the primary, if LiteFS keeps
// this node's copy of the database read-only (or .primary cannot be
// read); else nil.
func (f liteFSFiles) writable() error {
	primary, err := f.primary()
	switch {
	case err != nil:
		return fmt.Errorf("%w: %w", errReadOnlyReplica, err)
	case primary != "":
		return fmt.Errorf("%w; the primary is %s", errReadOnlyReplica, primary)
	}
	return nil
}

// onLiteFS reports whether LiteFS serves the database: it keeps a -pos
// file beside it.
func (f liteFSFiles) onLiteFS() bool {
	_, err := os.Stat(f.positionFile)
	return err == nil
}

// position reads how far this node's copy has got: the TXID that starts
// the -pos file ("<16 hex digits>/<checksum>"); 0 without LiteFS.
func (f liteFSFiles) position() (uint64, error) {
	text, err := readSmallFile(f.positionFile)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read LiteFS's position: %w", err)
	}
	return parsePosition(text)
}

// parsePosition reads the TXID of a -pos file's text, as LiteFS writes it.
func parsePosition(text string) (uint64, error) {
	txid, _, _ := strings.Cut(text, "/")
	if len(txid) != 16 {
		return 0, fmt.Errorf("LiteFS's position %q is not a 16-digit TXID", text)
	}
	n, err := strconv.ParseUint(txid, 16, 64)
	if err != nil {
		return 0, fmt.Errorf("LiteFS's position %q is not a 16-digit TXID", text)
	}
	return n, nil
}

// readSmallFile returns the text of one of LiteFS's files, which hold a
// line at most, without the newline; a longer file is not one of them.
func readSmallFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	text, err := io.ReadAll(io.LimitReader(f, 257))
	if err != nil {
		return "", err
	}
	if len(text) > 256 {
		return "", fmt.Errorf("%s is longer than LiteFS writes it", path)
	}
	return strings.TrimSpace(string(text)), nil
}

// primaryURL is the root URL of the primary's service, from the name in
// .primary: "host:port", or a bare host, which means this node's own port
// (ownPort). Nothing but a host and a port is taken from the file.
func primaryURL(name, scheme, ownPort string) (*url.URL, error) {
	host, port, err := net.SplitHostPort(name)
	if err != nil { // a bare host, or a bare IPv6 address
		host, port = strings.TrimSuffix(strings.TrimPrefix(name, "["), "]"), ownPort
	}
	number, portErr := strconv.Atoi(port)
	// A zone (fe80::1%eth0) names this machine's interface, and no URL
	// spells it plainly: no primary is named so.
	if !isHostName(host) || strings.Contains(host, "%") || portErr != nil || number < 1 || number > 65535 || port != strconv.Itoa(number) {
		return nil, fmt.Errorf("LiteFS's .primary names %q, which is not a host and port", name)
	}
	return &url.URL{Scheme: scheme, Host: net.JoinHostPort(host, port)}, nil
}

// connectionsToPrimary is how many connections a replica may hold to the
// primary: maxConnectionsToPrimary, or half of one client's share of
// MAX_CONNECTIONS (perClientShare), which every node should share, if that
// is less: the primary counts the replica as one client, and must not
// refuse its connections, whoever else is at its address.
func connectionsToPrimary(maxConnections int) int {
	return min(maxConnectionsToPrimary, perClientShare(maxConnections)/2)
}

// nodeTransport is how a replica reaches the primary: a short dial, so
// that a primary that is down is told at once, and at most connections
// connections, for which a request waits within forwardTimeout.
func nodeTransport(connections int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxConnsPerHost:     connections,
		MaxIdleConnsPerHost: connections,
		IdleConnTimeout:     90 * time.Second,
		// The primary's answer is passed on as it comes, not gzipped on
		// the way. No Proxy: HTTP_PROXY is not for the nodes' network.
		DisableCompression: true,
	}
}

// forwardWrites sends every request that may write (any method but GET,
// HEAD and OPTIONS) to the primary, if this node is a replica. A request
// marked as forwarded already (forwardedHeader), by a node or by anyone,
// is not forwarded again, nor run here: a replica answers it 503 at once,
// so that two nodes that each name the other, or whose proofs the other
// cannot check, never pass a request back and forth, and so that no
// client can have a write's limits counted on a replica.
//
// The body is read whole first (limitBodies caps it), so that a client
// that sends it slowly holds only its own connection, never one of the
// few to the primary.
func (a *app) forwardWrites(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions {
			next.ServeHTTP(w, r)
			return
		}
		primary, err := a.store.liteFS.primary()
		switch {
		case err == nil && primary == "": // this node writes
			next.ServeHTTP(w, r)
			return
		case r.Header.Get(forwardedHeader) != "":
			a.writeError(w, r, fmt.Errorf("%w: a forwarded write reached it (.primary: %q, %v)", errReadOnlyReplica, primary, err))
			return
		}
		// The whole forward, the wait for the body too, fits within
		// forwardTimeout, and so within the server's WriteTimeout.
		ctx, cancel := context.WithTimeout(r.Context(), forwardTimeout)
		defer cancel()
		var target *url.URL
		if err == nil {
			target, err = primaryURL(primary, a.ownScheme, a.ownPort)
		}
		if err != nil {
			a.writeError(w, r, fmt.Errorf("%w: %w", errPrimaryUnreachable, err))
			return
		}
		body, err := io.ReadAll(r.Body)
		if err != nil {
			a.writeError(w, r, fmt.Errorf("%w: %w", errUnreadableBody, err))
			return
		}
		r.Body, r.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
		a.proxyTo(target, w.Header().Clone()).ServeHTTP(w, r.WithContext(ctx))
	})
}

// proxyTo forwards a request to the primary at target, with the client's
// address and this node's proof of it, and holds the answer until this
// replica has the write (waitForPosition). own are the headers this node
// has set on the answer already (its id, security and CORS headers): the
// primary's copies of them are dropped, so that each is sent once, but
// for Vary, a list, of which only the values in own are dropped.
func (a *app) proxyTo(target *url.URL, own http.Header) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			// Set, not Add: whatever the client sent in these is replaced.
			client := a.clientAddress(pr.In)
			pr.Out.Header.Set(forwardedHeader, "1")
			pr.Out.Header.Set(forwardedForHeader, client)
			pr.Out.Header.Set(nodeProofHeader, nodeProof(a.nodeKey, a.now(), pr.Out.Method, target.Host, pr.Out.URL.RequestURI(), client))
			// The primary logs the request under this node's id for it.
			pr.Out.Header.Set("X-Request-ID", requestID(pr.In))
			// The body is here whole: the primary's 100 Continue would
			// reach the client, and clear the headers set for it so far.
			pr.Out.Header.Del("Expect")
		},
		Transport: a.toPrimary,
		ModifyResponse: func(resp *http.Response) error {
			position := resp.Header.Get(positionHeader)
			resp.Header.Del(positionHeader) // between nodes only
			for name, values := range own {
				if name != "Vary" {
					resp.Header.Del(name)
					continue
				}
				primarys := resp.Header.Values("Vary")
				resp.Header.Del("Vary")
				for _, v := range primarys {
					if !slices.Contains(values, v) {
						resp.Header.Add("Vary", v)
					}
				}
			}
			if position != "" {
				a.waitForPosition(resp.Request, position)
			}
			// What this node had cached may be older than the write.
			a.store.forgetRecipes()
			return nil
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(r.Context().Err(), context.Canceled) {
				a.writeError(w, r, err) // the client went away: nobody reads it
				return
			}
			a.writeError(w, r, fmt.Errorf("%w %s: %w", errPrimaryUnreachable, target.Host, err))
		},
	}
}

// waitForPosition waits, at most positionWait, until this node's copy of
// the database has got as far as position, the primary's TXID after the
// forwarded request req. It polls the -pos file, which LiteFS serves from
// memory.
func (a *app) waitForPosition(req *http.Request, position string) {
	want, err := strconv.ParseUint(position, 16, 64)
	if err != nil {
		a.logger.Warn("the primary's answer names no position; this replica may not show the write yet",
			"request_id", requestID(req), "position", position)
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), positionWait)
	defer cancel()
	// A replica is most often a few milliseconds behind: look after 1 ms,
	// then less often, up to each 8 ms, so that many waiters read the
	// file a bounded number of times.
	for pause := time.Millisecond; ; pause = min(2*pause, 8*time.Millisecond) {
		have, err := a.store.liteFS.position()
		if err == nil && have >= want {
			return
		}
		if sleepCtx(ctx, pause) != nil {
			a.logger.Warn("this replica did not reach the primary's position in time; a read here may not show the write yet",
				"request_id", requestID(req), "want", position, "have", fmt.Sprintf("%016x", have), "err", err)
			return
		}
	}
}

type forwardedClientKey struct{}

// forwardedRequestID is the id that the node that forwarded r logged it
// under, for this node to log it under too; "" if none.
func forwardedRequestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-ID"); forwardedByNode(r) && len(id) <= 64 && isRequestID(id) {
		return id
	}
	return ""
}

// isRequestID reports whether id could be one of randomToken's.
func isRequestID(id string) bool {
	_, err := base64.RawURLEncoding.DecodeString(id)
	return id != "" && err == nil
}

// forwardedByNode reports whether another node forwarded r with a proof
// that acceptForwarded believed.
func forwardedByNode(r *http.Request) bool {
	_, ok := r.Context().Value(forwardedClientKey{}).(string)
	return ok
}

// acceptForwarded takes the client's address from a request that another
// node forwarded with a valid proof, for clientAddress, and marks the
// answer with this node's position. From anyone else, the client and the
// proof are dropped, and a proof that does not hold is logged.
func (a *app) acceptForwarded(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		client, ok := verifyNodeProof(a.nodeKey, a.now(), r)
		if !ok && r.Header.Get(nodeProofHeader) != "" {
			a.logger.Warn("a node's proof of a forwarded client does not hold, so the limits count the sender; "+
				"if the sender is a node, do all nodes have the same JWT_SECRET, and clocks within 30 s?",
				"sender", r.RemoteAddr)
		}
		r.Header.Del(forwardedForHeader)
		r.Header.Del(nodeProofHeader)
		if ok {
			r = r.WithContext(context.WithValue(r.Context(), forwardedClientKey{}, client))
			w = &positionWriter{ResponseWriter: w, files: a.store.liteFS}
		}
		next.ServeHTTP(w, r)
	})
}

// positionWriter adds this node's position to an answer as its header is
// written, which is after the handler's write has committed.
type positionWriter struct {
	http.ResponseWriter
	files   liteFSFiles
	written bool
}

func (p *positionWriter) WriteHeader(status int) {
	if !p.written {
		p.written = true
		// Only the primary's position is worth a wait: a replica that
		// answers a forwarded request has written nothing.
		if position, err := p.files.position(); p.files.writable() == nil && err == nil && position > 0 {
			p.Header().Set(positionHeader, fmt.Sprintf("%016x", position))
		}
	}
	p.ResponseWriter.WriteHeader(status)
}

func (p *positionWriter) Write(b []byte) (int, error) {
	if !p.written {
		p.WriteHeader(http.StatusOK)
	}
	return p.ResponseWriter.Write(b)
}

func (p *positionWriter) Unwrap() http.ResponseWriter { return p.ResponseWriter }

// nodeProof is a replica's word that it forwards a request for client:
// the time, and an HMAC-SHA256, under a key made from the token secret
// (nodeKeyOf), of the time, the client, and the request's method, host
// (the primary) and target. Only a node, which knows the secret, can
// make one, and it is good for that request only.
func nodeProof(key *tokenKey, now time.Time, method, host, target, client string) string {
	unix := strconv.FormatInt(now.Unix(), 10)
	return unix + "." + base64.RawURLEncoding.EncodeToString(key.sum(nodeProofInput(unix, method, host, target, client)))
}

func nodeProofInput(fields ...string) []byte {
	return []byte(strings.Join(append([]string{"recipeapi forwarded v1"}, fields...), "\n"))
}

// verifyNodeProof returns the client that another node forwarded r for,
// if r carries a valid proof of it made within nodeProofMaxAge of now.
func verifyNodeProof(key *tokenKey, now time.Time, r *http.Request) (string, bool) {
	client, proof := r.Header.Get(forwardedForHeader), r.Header.Get(nodeProofHeader)
	if client == "" || proof == "" {
		return "", false
	}
	unix, sum, ok := strings.Cut(proof, ".")
	seconds, err := strconv.ParseInt(unix, 10, 64)
	if !ok || err != nil || unix != strconv.FormatInt(seconds, 10) {
		return "", false
	}
	if age := now.Sub(time.Unix(seconds, 0)); age > nodeProofMaxAge || age < -nodeProofMaxAge {
		return "", false
	}
	// Compared as written, not decoded: a decoder would pass over a line
	// break, and so believe more than one spelling of a proof.
	want := base64.RawURLEncoding.EncodeToString(key.sum(nodeProofInput(unix, r.Method, r.Host, r.URL.RequestURI(), client)))
	if !hmac.Equal([]byte(sum), []byte(want)) {
		return "", false
	}
	if !isAddressGroup(client) {
		return "", false
	}
	return client, true
}

// isAddressGroup reports whether client is as addressGroup writes one.
func isAddressGroup(client string) bool {
	if addr, err := netip.ParseAddr(client); err == nil {
		return addressGroup(addr) == client
	}
	prefix, err := netip.ParsePrefix(client)
	return err == nil && addressGroup(prefix.Addr()) == client
}

// nodeKeyOf is the key of nodeProof: HMAC-SHA256 of a fixed label under
// the token secret, so that no proof is ever a token's signature.
func nodeKeyOf(secret []byte) *tokenKey {
	return newTokenKey(newTokenKey(secret).sum([]byte("recipeapi: the key of a node's proof of a forwarded client")))
}

// replicaStartPoll is how often a replica that waits for the primary, to
// create the database, migrate it or make the token secret, looks again.
const replicaStartPoll = 200 * time.Millisecond

// errPromoted ends a replica's wait at its start when .primary goes: LiteFS
// has made this node the primary, or names none between two primaries.
// Started again, the node opens the database as its role then says. Under
// `litefs mount`, which stops when the service does, the service manager
// starts both again, and LiteFS waits for a primary before it starts the
// service.
var errPromoted = errors.New("LiteFS names no primary now (this node was promoted, or the cluster is between primaries); start it again, to open the database as its role is then")

// stillReplica returns errPromoted if .primary names no primary now.
func stillReplica(files liteFSFiles) error {
	primary, err := files.primary()
	if err == nil && primary == "" {
		return errPromoted
	}
	return err
}

// waitForFile waits until the primary has created the database at path,
// which a replica may not do, saying once why it waits. The wait has no
// end but ctx's (stopping the service), or this node's promotion.
func waitForFile(ctx context.Context, path, primary string, logger *slog.Logger) error {
	for waited := false; ; waited = true {
		_, err := os.Stat(path)
		if !errors.Is(err, os.ErrNotExist) {
			return err
		}
		if err := stillReplica(liteFSFilesOf(path)); err != nil {
			return err
		}
		if !waited {
			logger.Info("waiting for the primary to create the database; a replica writes nothing", "primary", primary)
		}
		if err := sleepCtx(ctx, replicaStartPoll); err != nil {
			return fmt.Errorf("wait for the database: %w", err)
		}
	}
}

// waitForSchema waits until the primary has migrated the replicated
// database to the version that schema (schema.sql) ends at, since a
// replica may not migrate it, saying why it waits at each version it sees.
// As waitForFile, it ends only with ctx or this node's promotion.
func waitForSchema(ctx context.Context, db *sql.DB, files liteFSFiles, schema, primary string, logger *slog.Logger) error {
	migrations, err := parseMigrations(schema)
	if err != nil {
		return err
	}
	for seen := -1; ; {
		var version int
		if err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
			return fmt.Errorf("read schema version: %w", err)
		}
		switch {
		case version == len(migrations):
			return nil
		case version > len(migrations):
			return fmt.Errorf("schema version %d is newer than this program knows (%d)", version, len(migrations))
		case version != seen:
			logger.Info("waiting for the primary to migrate the database; a replica writes nothing",
				"primary", primary, "schema_version", version, "needed", len(migrations))
			seen = version
		}
		if err := stillReplica(files); err != nil {
			return err
		}
		if err := sleepCtx(ctx, replicaStartPoll); err != nil {
			return fmt.Errorf("wait for the primary to migrate: %w", err)
		}
	}
}

// sleepCtx waits d, or less if ctx ends first, and then says why.
func sleepCtx(ctx context.Context, d time.Duration) error {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-timer.C:
		return nil
	}
}
