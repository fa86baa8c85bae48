// store.go owns the SQLite database: opening and migrating it (schema.sql),
// the one writer through which every write goes (write), and the cache of
// the hot recipe reads (readCache). The SQL of each table sits beside its
// rules: users in auth.go, sessions in sessions.go, recipes in recipes.go.
//
// It holds two pools on one file: a single writer connection, so that
// writers queue in Go rather than fail with "database is locked", and
// read-only connections, which WAL lets read while the writer writes.
package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed schema.sql
var schemaSQL string

var (
	errNotFound            = errors.New("not found")
	errNotOwner            = errors.New("only its submitter or a superuser may change the recipe")
	errEmailTaken          = errors.New("email already registered")
	errRefreshTokenRefused = errors.New("refresh token unknown, expired, revoked or used")
	errSessionEnded        = errors.New("the user logged out or changed password meanwhile")
	errWriterBusy          = errors.New("the database writer stayed busy past the write deadline")
	errSearchCutOff        = errors.New("search cut off")
	errSearchTooSlow       = fmt.Errorf("%w: it ran past the search time limit", errSearchCutOff)
	errSearchBusy          = fmt.Errorf("%w: every search slot stayed busy", errSearchCutOff)
	errStorageFull         = errors.New("the database cannot grow: its disk is full (or its quota, or SQLite's max_page_count, is reached); free some space")
	// errUserIDsUsedUp: AUTOINCREMENT gives no id twice, and SQLite says
	// SQLITE_FULL at the last, as for a full disk (insertUser tells them apart).
	errUserIDsUsedUp = fmt.Errorf("the user ids are used up: the largest that SQLite allows, %d, has been given, and no id is given twice; no more users can be created", int64(math.MaxInt64))
)

// domainErrors are the answers that the store returns as they are, for
// its callers to tell the client; wrapErr wraps every other error.
var domainErrors = []error{errNotFound, errNotOwner, errEmailTaken, errRefreshTokenRefused, errSessionEnded, errUserIDsUsedUp}

// Every connection's pragmas are in its DSN: a PRAGMA run with Exec would
// reach one pooled connection only. busy_timeout matches writerWait;
// _txlock=immediate takes the write lock at BEGIN, where waiting works,
// not at the first write, where SQLite may fail at once to avoid a
// deadlock. WAL is set once the migrations succeed (openStore).
var commonPragmas = fmt.Sprintf("?_pragma=busy_timeout(%d)&_pragma=synchronous(NORMAL)&", writerWait.Milliseconds())

type store struct {
	writer, reader *sql.DB
	logger         *slog.Logger // for the news of watchExternalWrites
	liteFS         liteFSFiles  // where LiteFS says whether this node may write
	pollEvery      time.Duration
	cache          readCache
	stopPoll       context.CancelFunc
	polled         sync.WaitGroup
	opened         []openedFile // the database's files as opened: see checkFiles
	// searchSlots holds a token for each search statement that runs.
	searchSlots chan struct{}

	// The hot routes' queries, prepared once rather than parsed per request.
	userByIDQuery, userByEmailQuery, recipeByIDQuery, searchQuery, firstRecipesQuery *sql.Stmt
}

type openedFile struct {
	name string
	info os.FileInfo
}

// openStore opens (creating if need be) the database at path and brings its
// schema up to date, telling logger about a migration that takes long. On
// a LiteFS replica it writes nothing: it waits for the primary to create
// and migrate the database (waitForSchema).
func openStore(ctx context.Context, path string, logger *slog.Logger) (*store, error) {
	files := liteFSFilesOf(path)
	primary, err := files.primary()
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", path, err)
	}
	if primary == "" {
		// Readable by its owner only: it holds password hashes and perhaps
		// the token secret. SQLite gives the -wal and -shm files the same mode.
		f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			return nil, fmt.Errorf("open database %s: %w", path, err)
		}
		f.Close()
	} else if err := waitForFile(ctx, path, primary, logger); err != nil {
		return nil, err
	}
	open := func(params string) *sql.DB {
		db, _ := sql.Open("sqlite", sqliteName(path)+commonPragmas+params) // fails only for a driver not registered
		return db
	}
	writer := open("_pragma=foreign_keys(1)&_txlock=immediate")
	writer.SetMaxOpenConns(1)
	reader := open("_pragma=foreign_keys(1)&_pragma=query_only(1)")
	// Searches may take half the CPUs, and so at most half the readers
	// (one more for the poller): a read by id, a login or /healthz always
	// finds a connection however costly the searches.
	reader.SetMaxOpenConns(max(4, hashingWorkers()) + 1)
	s := &store{writer: writer, reader: reader, logger: logger, liteFS: files, pollEvery: externalWritePoll,
		searchSlots: make(chan struct{}, max(1, hashingWorkers()/2))}
	steps := []func(context.Context) error{
		// Foreign keys off, as SQLite's procedure for remaking a table asks.
		func(ctx context.Context) error {
			return migrate(ctx, open("_pragma=foreign_keys(0)&_txlock=immediate"), schemaSQL, logger)
		},
		// Only now, so that a failed migration leaves the file as it was.
		func(ctx context.Context) error {
			_, err := s.writer.ExecContext(ctx, "PRAGMA journal_mode = WAL")
			return wrapErr(err, "use WAL")
		},
	}
	if primary != "" {
		steps = []func(context.Context) error{func(ctx context.Context) error {
			return waitForSchema(ctx, reader, files, schemaSQL, primary, logger)
		}}
	}
	if files.onLiteFS() || primary != "" {
		// Every write but those forwarded from here comes from another
		// node, and shows only through the poll.
		s.pollEvery = replicaWritePoll
	}
	for _, step := range append(steps,
		s.prepareQueries,
		func(ctx context.Context) error { return s.noteFiles(ctx, path) },
		s.watchExternalWrites,
	) {
		if err := step(ctx); err != nil {
			s.close()
			return nil, fmt.Errorf("database %s: %w", path, err)
		}
	}
	return s, nil
}

// sqliteName is path as a file: URI, in which a '?' or '#' stays a name.
func sqliteName(path string) string { return "file:" + (&url.URL{Path: path}).EscapedPath() }

func isDomainError(err error) bool {
	return slices.ContainsFunc(domainErrors, func(d error) bool { return errors.Is(err, d) })
}

// wrapErr wraps err with what failed, unless err is nil or a domain error.
func wrapErr(err error, format string, args ...any) error {
	if err == nil || isDomainError(err) {
		return err
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

func (s *store) prepareQueries(ctx context.Context) (err error) {
	prepare := func(query string) *sql.Stmt {
		stmt, prepareErr := s.reader.PrepareContext(ctx, query)
		err = errors.Join(err, wrapErr(prepareErr, "prepare %q", query))
		return stmt
	}
	s.userByIDQuery = prepare("SELECT " + userColumns + " FROM user WHERE id = ?")
	s.userByEmailQuery = prepare("SELECT " + userColumns + " FROM user WHERE email_key = ?")
	s.recipeByIDQuery = prepare(recipeByIDSQL)
	s.searchQuery = prepare(searchSQL)
	s.firstRecipesQuery = prepare(firstRecipesSQL)
	return err
}

// close checkpoints the WAL, so that the file alone is the whole database;
// a replica leaves that to the primary, as every write.
func (s *store) close() error {
	if s.stopPoll != nil {
		s.stopPoll()
		s.polled.Wait()
	}
	var checkpointErr error
	if s.liteFS.writable() == nil {
		_, checkpointErr = s.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	}
	return errors.Join(checkpointErr, s.reader.Close(), s.writer.Close())
}

// writerWait is the write deadline: well under the server's 60 s
// WriteTimeout, and long enough for a burst of honest writes.
const writerWait = 5 * time.Second

const writerRetryAfter = 5 * time.Second // of a 503 for errWriterBusy

// write runs fn in one transaction on the writer and commits it unless fn
// fails (a domain error comes back as it is). It is bound to ctx, so that
// a client gone is not committed for late, and to writerWait, past which
// (or at SQLITE_BUSY) nothing is written and the answer is errWriterBusy:
// another process may hold the write lock as long as it likes. On a LiteFS
// replica it writes nothing: errReadOnlyReplica.
func (s *store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	if err := s.liteFS.writable(); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, writerWait, errWriterBusy)
	defer cancel()
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return s.writeFailure(ctx, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		if isDomainError(err) {
			return err
		}
		return s.writeFailure(ctx, err)
	}
	return s.writeFailure(ctx, tx.Commit())
}

// writeThenForget is write, then, if it committed, forget.
func (s *store) writeThenForget(ctx context.Context, forget func(), fn func(tx *sql.Tx) error) error {
	err := s.write(ctx, fn)
	if err == nil {
		forget()
	}
	return err
}

// writeFailure tells, of a failed step of write, whether the writer was
// busy, the database is full or read-only, or the request went away.
func (s *store) writeFailure(ctx context.Context, err error) error {
	switch code := sqliteCode(err) & 0xff; {
	case err == nil:
		return nil
	case (code == sqlite3.SQLITE_IOERR || code == sqlite3.SQLITE_READONLY) && s.liteFS.onLiteFS():
		// LiteFS refuses a write on a node that is not the primary with an
		// I/O error, even while .primary names no other node (between two
		// primaries, or before this one is told).
		return fmt.Errorf("%w: LiteFS refused the write, or the disk failed: %v", errReadOnlyReplica, err)
	case errors.Is(context.Cause(ctx), errWriterBusy), code == sqlite3.SQLITE_BUSY, code == sqlite3.SQLITE_LOCKED:
		return fmt.Errorf("%w: %v", errWriterBusy, err)
	case code == sqlite3.SQLITE_FULL:
		return fmt.Errorf("%w: %v", errStorageFull, err)
	case ctx.Err() != nil:
		return fmt.Errorf("write abandoned, nothing committed: %w", context.Cause(ctx))
	}
	return err
}

// readCache keeps the hot recipe reads (by id, a search, the newest page)
// until a write, ours or another process's, could change them; a read
// that began before a forget is not kept (generation). Cached lists are
// shared: callers must not change them.
type readCache struct {
	mu         sync.Mutex
	generation uint64
	paused     bool // keep nothing: the poller cannot watch (setPaused)
	entries    map[cacheKey][]recipe
	bytes      int
}

// cacheKey names one read: what it reads ("recipe", "search", "newest"),
// a search's keyword, and the recipe's id or the list's length.
type cacheKey struct {
	read    string
	keyword string
	n       int64
}

// readCacheBytes bounds the cache, past which it starts over: searches for
// ever new keywords (each at most maxKeywordChars) cannot grow it.
const readCacheBytes = 4 << 20

// load returns the answer for key, or else reads it and keeps it.
func (c *readCache) load(key cacheKey, read func() ([]recipe, error)) ([]recipe, error) {
	c.mu.Lock()
	recipes, ok := c.entries[key]
	generation := c.generation
	c.mu.Unlock()
	if ok {
		return recipes, nil
	}
	recipes, err := read()
	c.mu.Lock()
	defer c.mu.Unlock()
	// Not kept if a write came since: the answer may be older than it.
	if err == nil && generation == c.generation && !c.paused {
		size := entrySize(key, recipes)
		if c.entries == nil || c.bytes+size > readCacheBytes {
			c.entries, c.bytes = map[cacheKey][]recipe{}, 0
		}
		c.entries[key], c.bytes = recipes, c.bytes+size
	}
	return recipes, err
}

// entrySize is roughly the bytes an entry holds: its strings, and a guess
// at the rest (the map's slot, struct and slice headers).
func entrySize(key cacheKey, recipes []recipe) int {
	size := 96 + len(key.keyword)
	for _, r := range recipes {
		size += 96 + len(r.Label) + len(r.Source) + len(r.URL)
	}
	return size
}

func (c *readCache) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.entries, c.bytes = nil, 0
}

// setPaused forgets every entry and, if paused, keeps none until unpaused.
func (c *readCache) setPaused(paused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.entries, c.bytes, c.paused = nil, 0, paused
}

func (s *store) forgetRecipes() { s.cache.forget() }

// externalWritePoll is how often the store asks whether another process
// (the createsuperuser command, say) has written to the file; on LiteFS,
// where other nodes' writes arrive, replicaWritePoll, so that they show
// within its 10 ms (the look is one query on the poller's connection).
const (
	externalWritePoll = 250 * time.Millisecond
	replicaWritePoll  = 10 * time.Millisecond
)

// watchExternalWrites forgets the cache whenever PRAGMA data_version, on
// a connection of its own, says another connection (our writer too)
// committed. While the files fail checkFiles, the cache keeps nothing.
func (s *store) watchExternalWrites(ctx context.Context) error {
	conn, err := s.reader.Conn(ctx)
	if err != nil {
		return fmt.Errorf("watch for writes: %w", err)
	}
	// The poll lives until close, not as long as the context of the opening.
	ctx, s.stopPoll = context.WithCancel(context.Background())
	s.polled.Go(func() {
		defer conn.Close()
		ticker := time.NewTicker(s.pollEvery)
		defer ticker.Stop()
		last, paused := int64(-1), false // -1: the first look forgets what was read before it
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			var version int64
			err := s.checkFiles()
			if err == nil {
				err = conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&version)
			}
			switch {
			case ctx.Err() != nil:
				return // closing: the look was cut short
			case err != nil && !paused:
				s.logger.Error("cannot watch the database for writes by other processes; until it can, every read goes to the database", "err", err)
			case err == nil && paused:
				s.logger.Info("watching the database for writes by other processes again; reads are cached again")
			case err == nil && version != last:
				s.cache.forget()
			}
			if paused != (err != nil) {
				paused = err != nil
				s.cache.setPaused(paused)
			}
			if err == nil {
				last = version
			}
		}
	})
	return nil
}

// noteFiles notes the file at path, and the -wal and -shm beside the file
// that SQLite opened (it resolves links), for checkFiles. It asks a reader,
// so that a replica never opens the writer connection.
func (s *store) noteFiles(ctx context.Context, path string) error {
	var file string
	if err := s.reader.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
		return fmt.Errorf("read the database's file name: %w", err)
	}
	for _, name := range []string{path, file + "-wal", file + "-shm"} {
		info, err := os.Stat(name)
		if err != nil {
			return fmt.Errorf("note the database's files: %w", err)
		}
		s.opened = append(s.opened, openedFile{name, info})
	}
	return nil
}

// checkFiles returns an error unless the database's files are still, at
// their names, the files the store opened. Whoever removes or replaces one
// leaves this server on the old files and every new opener (a command, a
// backup, our own new connections) on others; only a restart mends it.
func (s *store) checkFiles() error {
	for _, f := range s.opened {
		info, err := os.Stat(f.name)
		change := "removed"
		switch {
		case err == nil && os.SameFile(info, f.info):
			continue
		case err == nil:
			change = "replaced"
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("check the database's files: %w", err)
		}
		return fmt.Errorf("%s was %s while the database was open: other processes no longer see the database this server serves; restart the server", f.name, change)
	}
	return nil
}

// ping checks that the database's files are the ones the store opened,
// and that it answers a query on a real table.
func (s *store) ping(ctx context.Context) error {
	if err := s.checkFiles(); err != nil {
		return err
	}
	var exists bool
	return s.reader.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM recipe)").Scan(&exists)
}

type migration struct {
	version int
	sql     string
}

var migrationHeader = regexp.MustCompile(`(?m)^-- migration (\d+):`)

// parseMigrations splits schema.sql at its "-- migration N:" lines, and
// insists that the numbers run 1, 2, 3, …
func parseMigrations(text string) ([]migration, error) {
	heads := migrationHeader.FindAllStringSubmatchIndex(text, -1)
	var migrations []migration
	for i, h := range heads {
		version, _ := strconv.Atoi(text[h[2]:h[3]])
		if version != i+1 {
			return nil, fmt.Errorf("schema.sql: migration %d follows migration %d", version, i)
		}
		end := len(text)
		if i+1 < len(heads) {
			end = heads[i+1][0]
		}
		migrations = append(migrations, migration{version: version, sql: text[h[0]:end]})
	}
	return migrations, nil
}

// migrate applies, in one transaction on db, the migrations of schema (the
// text of schema.sql) that the database lacks; if any step fails, nothing
// changes. Foreign keys are off on db,
// so migrate refuses migrations that leave a row naming a missing parent
// that was not so before (such as the reference's deleted users' recipes).
func migrate(ctx context.Context, db *sql.DB, schema string, logger *slog.Logger) (err error) {
	defer db.Close()
	defer func() { err = wrapErr(err, "migrate") }()
	migrations, err := parseMigrations(schema)
	if err != nil {
		return err
	}
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	if version > len(migrations) {
		return fmt.Errorf("schema version %d is newer than this program knows (%d)", version, len(migrations))
	}
	if version == len(migrations) {
		return nil
	}
	var brokenBefore, newlyBroken string // JSON arrays
	if err := tx.QueryRowContext(ctx, brokenRowsSQL, "[]", -1).Scan(&brokenBefore); err != nil {
		return fmt.Errorf("check foreign keys: %w", err)
	}
	for _, m := range migrations[version:] {
		if err := applyMigration(ctx, tx, m, logger); err != nil {
			return err
		}
	}
	if err := tx.QueryRowContext(ctx, brokenRowsSQL, brokenBefore, 1).Scan(&newlyBroken); err != nil {
		return fmt.Errorf("check foreign keys: %w", err)
	}
	if newlyBroken != "[]" {
		return fmt.Errorf("the migrations would leave a row that names a missing parent (%s); nothing was changed", newlyBroken)
	}
	// PRAGMA takes no parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(migrations))); err != nil {
		return err
	}
	return tx.Commit()
}

// brokenRowsSQL lists, as a JSON array of at most ?2 (-1: all), the rows
// that PRAGMA foreign_key_check finds naming a parent that does not exist,
// each as "table rowid N → parent", but for those in the JSON array ?1.
const brokenRowsSQL = `SELECT json_group_array(row) FROM (SELECT row FROM (
	SELECT "table" || ' rowid ' || coalesce(rowid, 0) || ' → ' || parent AS row FROM pragma_foreign_key_check)
	WHERE row NOT IN (SELECT value FROM json_each(?1)) LIMIT ?2)`

func applyMigration(ctx context.Context, tx *sql.Tx, m migration, logger *slog.Logger) error {
	if m.version == 2 {
		if err := checkNoCaseDuplicateEmails(ctx, tx); err != nil {
			return err
		}
	}
	// Building the search index reads every label, about 2 s per 100,000
	// recipes: say so, rather than start in silence.
	if strings.Contains(m.sql, "recipe_fts (recipe_fts) VALUES ('rebuild')") {
		var recipes int
		if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM recipe").Scan(&recipes); err != nil {
			return fmt.Errorf("count recipes: %w", err)
		}
		logger.Info("building the search index", "recipes", recipes)
	}
	_, err := tx.ExecContext(ctx, m.sql)
	return wrapErr(err, "migration %d", m.version)
}

// checkNoCaseDuplicateEmails refuses, naming them, the emails that would
// break migration 2's unique index: only a person can decide which to keep.
func checkNoCaseDuplicateEmails(ctx context.Context, tx *sql.Tx) error {
	var groups sql.NullString // one JSON array of emails for each email_key they share, or NULL
	if err := tx.QueryRowContext(ctx, `
		SELECT group_concat(emails, ', ' ORDER BY k) FROM (
			SELECT json_group_array(email) AS emails, k FROM (SELECT email, casefold(email) AS k FROM user ORDER BY id)
			GROUP BY k HAVING count(*) > 1)`).Scan(&groups); err != nil {
		return fmt.Errorf("look for duplicate emails: %w", err)
	}
	if groups.Valid {
		return fmt.Errorf("emails must be unique ignoring case, but these users' emails differ only in case: %s; "+
			"change or remove all but one of each group, then start again (nothing was changed)", groups.String)
	}
	return nil
}

func init() {
	sqlite.MustRegisterDeterministicScalarFunction("casefold", 1,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			text, _ := args[0].(string)
			return emailKey(text), nil
		})
}

// tokenSecret returns the token secret kept in the database, creating a
// random one the first time, so that tokens survive a restart. A LiteFS
// replica creates none: it waits for the primary's, which every node must
// share to check the others' tokens.
func (s *store) tokenSecret(ctx context.Context) ([]byte, error) {
	var stored string
	for waited := false; ; waited = true {
		err := s.reader.QueryRowContext(ctx, "SELECT value FROM app_setting WHERE name = 'jwt_secret'").Scan(&stored)
		if !errors.Is(err, sql.ErrNoRows) {
			if err != nil {
				return nil, fmt.Errorf("read token secret: %w", err)
			}
			break
		}
		readOnly := s.liteFS.writable()
		if readOnly == nil {
			err = s.write(ctx, func(tx *sql.Tx) error {
				// DO UPDATE, not DO NOTHING, so that RETURNING gives the secret kept.
				return tx.QueryRowContext(ctx, "INSERT INTO app_setting (name, value) VALUES ('jwt_secret', ?) "+
					"ON CONFLICT (name) DO UPDATE SET value = value RETURNING value", hex.EncodeToString(randomBytes(minSecretBytes))).Scan(&stored)
			})
			if err != nil {
				return nil, fmt.Errorf("store token secret: %w", err)
			}
			break
		}
		if !waited {
			s.logger.Info("waiting for the primary to create the token secret; a replica writes nothing", "err", readOnly)
		}
		if err := sleepCtx(ctx, replicaStartPoll); err != nil {
			return nil, fmt.Errorf("wait for the token secret: %w", err)
		}
	}
	secret, err := hex.DecodeString(stored)
	if err != nil || len(secret) < minSecretBytes {
		return nil, errors.New("the token secret kept in the database is damaged; delete the jwt_secret row of app_setting to make a new one")
	}
	return secret, nil
}

// rowScanner is a *sql.Row or *sql.Rows, at a row.
type rowScanner = interface{ Scan(...any) error }

// sqliteCode is the extended result code of a SQLite error, else 0.
func sqliteCode(err error) int {
	var sqliteErr *sqlite.Error
	if errors.As(err, &sqliteErr) {
		return sqliteErr.Code()
	}
	return 0
}

func isUniqueViolation(err error) bool { return sqliteCode(err) == sqlite3.SQLITE_CONSTRAINT_UNIQUE }

// isFull reports whether err is SQLITE_FULL: a full disk, or an
// AUTOINCREMENT table whose ids are used up.
func isFull(err error) bool { return sqliteCode(err)&0xff == sqlite3.SQLITE_FULL }
