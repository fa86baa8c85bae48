// store.go owns the SQLite database: opening it, migrating it (schema.sql),
// seeding it, and every query the service makes. It is the only file that
// writes SQL.
//
// A store is safe for concurrent use. It holds two pools on the same file:
// one writer connection, so that writers queue in Go instead of failing
// with "database is locked", and a few read-only connections, which WAL
// mode lets read while the writer writes. Every connection gets its
// pragmas from the DSN, because a PRAGMA run with Exec would reach only
// whichever pooled connection happened to run it.
//
// The reads that nearly every request makes (a user by id, recipes) are
// remembered in a readCache until a write could change them; see there.
// A poller (watchExternalWrites) notices the writes of other processes,
// and a database file removed or replaced under the store (checkFiles);
// while it cannot watch, nothing is cached, and /healthz says when the
// files are no longer the ones opened.
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
	"runtime"
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
	// errWriterBusy is a write that could not have the writer within
	// writerWait: another process holds the database's write lock, or our
	// own writes queue too long. writeError answers it with 503 and
	// Retry-After.
	errWriterBusy = errors.New("the database writer stayed busy past the write deadline")
	// errSearchCutOff is a search that was not let run to its end, for
	// one of the two reasons below (see searchIndex). writeError answers
	// it with 503 and Retry-After; the home page shows a notice.
	errSearchCutOff = errors.New("search cut off")
	// errSearchTooSlow is a search statement that ran for searchTimeLimit
	// and was interrupted.
	errSearchTooSlow = fmt.Errorf("%w: it ran past the search time limit", errSearchCutOff)
	// errSearchBusy is a search that found every search slot taken for
	// searchSlotWait.
	errSearchBusy = fmt.Errorf("%w: every search slot stayed busy", errSearchCutOff)
	// errStorageFull is a write that SQLite refused with SQLITE_FULL: the
	// database cannot grow. Nothing was written, and trying again will
	// not help until an operator makes room.
	errStorageFull = errors.New("the database cannot grow: its disk is full (or its quota, or SQLite's max_page_count, is reached); free some space")
	// errUserIDsUsedUp is a new user that cannot have an id: the user
	// table's AUTOINCREMENT has given the largest, and gives none twice
	// (a reference database may hold a user of that id). SQLite says
	// SQLITE_FULL, as for a full disk; insertUser tells the two apart.
	errUserIDsUsedUp = fmt.Errorf("the user ids are used up: the largest that SQLite allows, %d, has been given, and no id is given twice; no more users can be created", int64(math.MaxInt64))
)

// domainErrors are the answers that the store returns as they are, for
// its callers to tell the client; wrapErr wraps every other error with
// what failed.
var domainErrors = []error{errNotFound, errNotOwner, errEmailTaken, errRefreshTokenRefused, errSessionEnded, errUserIDsUsedUp}

// The pragmas every connection gets. busy_timeout makes a connection wait
// for a lock instead of failing at once, for at most defaultWriterWait:
// SQLite's wait knows nothing of the write deadline (the driver, since
// modernc.org/sqlite 1.61, also ends the wait once the context of the
// call is done, which is what makes a shorter store.writerWait work).
// _txlock=immediate makes every transaction on the writer take the write
// lock at BEGIN, where waiting works, rather than at its first write,
// where SQLite may fail it at once to avoid a deadlock.
// synchronous=NORMAL in WAL mode keeps every committed transaction across
// a crash of the process (only a power loss can undo the last few). WAL
// itself is not among them: it is a property of the file, set once the
// migrations have succeeded (see openStore).
var (
	commonPragmas = fmt.Sprintf("_pragma=busy_timeout(%d)&_pragma=foreign_keys(1)&_pragma=synchronous(NORMAL)",
		defaultWriterWait.Milliseconds())
	writerParams = commonPragmas + "&_txlock=immediate"
	readerParams = commonPragmas + "&_pragma=query_only(1)"
)

type store struct {
	writer *sql.DB
	reader *sql.DB
	logger *slog.Logger // for what the migrations do that takes long
	// writerWait bounds how long a write may wait for the writer and the
	// database's write lock, and then take to finish (see write).
	writerWait time.Duration

	users    readCache[int64, user]
	recipes  readCache[int64, recipe]
	searches readCache[searchKey, []recipe]
	newest   readCache[int, []recipe]
	stopPoll context.CancelFunc
	polled   sync.WaitGroup
	// opened is each file of the database as the store opened it: the
	// file at the path it was given, and the -wal and -shm beside the
	// file that SQLite opened. See checkFiles.
	opened []openedFile

	// slowSearches are the searches that ran past searchTimeLimit since
	// the recipes last changed, each with when it did: a repeat within
	// slowSearchMemory is refused at once.
	slowSearches readCache[searchKey, time.Time]
	// searchSlots holds a token for each search statement that runs; its
	// capacity is the most that may run at once (see openStore).
	searchSlots chan struct{}

	// The queries of the hot routes, prepared once on the readers rather
	// than parsed again for every request.
	userByIDQuery, userByEmailQuery, recipeByIDQuery, searchQuery, firstRecipesQuery, newestQuery *sql.Stmt
}

type openedFile struct {
	name string
	info os.FileInfo
}

// openStore opens (creating if need be) the database at path and brings its
// schema up to date, telling logger about a migration that takes long
// (building the search index over many recipes); a nil logger hears
// nothing.
func openStore(ctx context.Context, path string, logger *slog.Logger) (*store, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Create the file ourselves so that it is readable by its owner only:
	// it holds password hashes and, unless JWT_SECRET is set, the token
	// secret. SQLite gives the -wal and -shm files the same mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open database %s: %w", path, err)
	}
	f.Close()

	// sql.Open fails only for a driver that is not registered, and the
	// import of modernc.org/sqlite registers this one.
	name := sqliteName(path)
	writer, _ := sql.Open("sqlite", name+"?"+writerParams)
	writer.SetMaxOpenConns(1)
	reader, _ := sql.Open("sqlite", name+"?"+readerParams)
	// One more than the readers: the poller of watchExternalWrites keeps one.
	readers := max(4, runtime.NumCPU())
	reader.SetMaxOpenConns(readers + 1)
	// Search statements may use half the CPUs (at least one) at once, and
	// so at most half the readers, of which there are at least 4 and one
	// per CPU: however costly the searches, they cannot take every core
	// or every reader, and a read by id, a login or /healthz always finds
	// a connection.
	s := &store{writer: writer, reader: reader, logger: logger, writerWait: defaultWriterWait,
		searchSlots: make(chan struct{}, max(1, runtime.NumCPU()/2))}
	s.users.sizeOf = func(_ int64, u user) int { return idKeySize + userSize(u) }
	s.recipes.sizeOf = func(_ int64, r recipe) int { return idKeySize + recipeSize(r) }
	s.searches.sizeOf = func(k searchKey, rs []recipe) int { return searchKeySize + len(k.keyword) + recipesSize(rs) }
	s.slowSearches.sizeOf = func(k searchKey, _ time.Time) int { return searchKeySize + len(k.keyword) + 24 } // 24: a time.Time
	s.newest.sizeOf = func(_ int, rs []recipe) int { return idKeySize + recipesSize(rs) }

	for _, step := range []func(context.Context) error{
		s.migrate,
		// WAL lets readers read while the writer writes. It is switched on
		// only now, so that a migration that fails leaves a database that
		// the reference made exactly as it was.
		func(ctx context.Context) error {
			_, err := s.writer.ExecContext(ctx, "PRAGMA journal_mode = WAL")
			return wrapErr(err, "use WAL")
		},
		s.prepareQueries,
		func(ctx context.Context) error { return s.noteFiles(ctx, path) },
		s.watchExternalWrites,
	} {
		if err := step(ctx); err != nil {
			s.close()
			return nil, fmt.Errorf("database %s: %w", path, err)
		}
	}
	return s, nil
}

// sqliteName is the database at path as a file: URI, so that SQLite reads
// our query parameters; the path is escaped so that a '?' or '#' in it
// stays part of the name.
func sqliteName(path string) string { return "file:" + (&url.URL{Path: path}).EscapedPath() }

// isDomainError reports whether err is one of domainErrors.
func isDomainError(err error) bool {
	return slices.ContainsFunc(domainErrors, func(d error) bool { return errors.Is(err, d) })
}

// wrapErr wraps err with what the failed step was doing, unless err is
// nil or one of domainErrors.
func wrapErr(err error, format string, args ...any) error {
	if err == nil || isDomainError(err) {
		return err
	}
	return fmt.Errorf(format+": %w", append(args, err)...)
}

func (s *store) prepareQueries(ctx context.Context) error {
	for _, q := range []struct {
		stmt **sql.Stmt
		sql  string
	}{
		{&s.userByIDQuery, "SELECT " + userColumns + " FROM user WHERE id = ?"},
		{&s.userByEmailQuery, "SELECT " + userColumns + " FROM user WHERE email_key = ?"},
		{&s.recipeByIDQuery, "SELECT " + recipeColumns + " FROM recipe WHERE id = ?"},
		{&s.searchQuery, searchSQL},
		{&s.firstRecipesQuery, "SELECT " + recipeColumns + " FROM recipe ORDER BY id LIMIT ?"},
		{&s.newestQuery, "SELECT " + recipeColumns + " FROM recipe ORDER BY id DESC LIMIT ?"},
	} {
		stmt, err := s.reader.PrepareContext(ctx, q.sql)
		if err != nil {
			return fmt.Errorf("prepare %q: %w", q.sql, err)
		}
		*q.stmt = stmt
	}
	return nil
}

// close checkpoints the WAL into the database file, so that the file alone
// is the whole database, and closes the pools (and so the statements
// prepared on them).
func (s *store) close() error {
	if s.stopPoll != nil {
		s.stopPoll()
		s.polled.Wait()
	}
	_, checkpointErr := s.writer.Exec("PRAGMA wal_checkpoint(TRUNCATE)")
	return errors.Join(checkpointErr, s.reader.Close(), s.writer.Close())
}

// defaultWriterWait is the write deadline: well under the server's 60 s
// WriteTimeout, so that a client always gets an answer, and long enough
// that a burst of honest writes, each a millisecond or so, all get their
// turn. The busy_timeout of every connection (commonPragmas) matches it.
const defaultWriterWait = 5 * time.Second

// writerRetryAfter is the Retry-After of a 503 for errWriterBusy.
const writerRetryAfter = 5 * time.Second

// write runs fn in one transaction on the writer and commits it, unless
// fn returns an error. Every write of the service goes through here
// (migrations at start excepted), for two rules:
//
//   - The transaction is bound to ctx, the request's context: a client
//     that has gone away before the commit gets its work rolled back, not
//     committed late, when it can no longer learn of it.
//   - It must begin and commit within s.writerWait. BEGIN IMMEDIATE waits
//     there for the one pooled writer connection and then for the file's
//     write lock, which another process (a sqlite3 shell, a backup tool)
//     may hold for as long as it likes. Past the deadline, or if SQLite
//     gives up with SQLITE_BUSY or SQLITE_LOCKED, the answer is
//     errWriterBusy and nothing is written.
//
// fn's statements run inside the transaction, which database/sql ends
// when the deadline passes. An answer of fn's that is one of domainErrors
// (no such recipe, not its owner, the session ended) comes back as it is
// even if the deadline passed meanwhile: nothing was written, and that is
// the answer.
func (s *store) write(ctx context.Context, fn func(tx *sql.Tx) error) error {
	ctx, cancel := context.WithTimeoutCause(ctx, s.writerWait, errWriterBusy)
	defer cancel()
	tx, err := s.writer.BeginTx(ctx, nil)
	if err != nil {
		return writeFailure(ctx, err)
	}
	defer tx.Rollback()
	if err := fn(tx); err != nil {
		if isDomainError(err) {
			return err
		}
		return writeFailure(ctx, err)
	}
	return writeFailure(ctx, tx.Commit())
}

// writeThenForget is write, then, if it committed, forget: the caches
// that the write may have made stale.
func (s *store) writeThenForget(ctx context.Context, forget func(), fn func(tx *sql.Tx) error) error {
	err := s.write(ctx, fn)
	if err == nil {
		forget()
	}
	return err
}

// writeFailure tells, of a failed step of write, whether the writer was
// busy (the deadline passed, or SQLite reported a lock it could not get),
// the database is full, or the request went away; anything else is
// returned as it is.
func writeFailure(ctx context.Context, err error) error {
	var sqliteErr *sqlite.Error
	switch {
	case err == nil:
		return nil
	case errors.Is(context.Cause(ctx), errWriterBusy):
		return fmt.Errorf("%w: %v", errWriterBusy, err)
	case errors.As(err, &sqliteErr) && (sqliteErr.Code()&0xff == sqlite3.SQLITE_BUSY || sqliteErr.Code()&0xff == sqlite3.SQLITE_LOCKED):
		return fmt.Errorf("%w: %v", errWriterBusy, err)
	case isFull(err):
		return fmt.Errorf("%w: %v", errStorageFull, err)
	case ctx.Err() != nil:
		return fmt.Errorf("write abandoned, nothing committed: %w", context.Cause(ctx))
	}
	return err
}

// readCache remembers the answers of hot reads until a write could have
// changed them. Every write this process makes goes through the store,
// which calls forget once the write has committed; writes by another
// process on the same file (the createsuperuser command, say) are noticed
// by watchExternalWrites within externalWritePoll. While it cannot tell
// (its query fails, or a file of the database was removed or replaced),
// the caches are paused: they keep nothing, and every read goes to the
// database.
//
// A read that began before a write must not keep its older answer after
// the write: get hands out the cache's generation, and put keeps an answer
// only if nothing was forgotten since. Cached values are shared: callers
// must not change them.
//
// An entry's size counts its key as well as its value: a search's key is
// its keyword, which a client chooses (at most maxKeywordChars
// characters, so at most 4 bytes each).
type readCache[K comparable, V any] struct {
	sizeOf func(K, V) int // roughly how many bytes an entry holds, key and value

	mu         sync.Mutex
	generation uint64
	entries    map[K]V
	bytes      int
	paused     bool // see setPaused
}

// readCacheLimit and readCacheBytes bound each cache; past either, the
// cache starts over, so that searches for ever new keywords, or for many
// long recipes, cannot grow it without end.
const (
	readCacheLimit = 4096
	readCacheBytes = 4 << 20
)

func (c *readCache[K, V]) get(key K) (value V, generation uint64, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	value, ok = c.entries[key]
	return value, c.generation, ok
}

func (c *readCache[K, V]) put(key K, value V, generation uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if generation != c.generation || c.paused {
		return // a write came in between (this answer may be old), or paused
	}
	size := c.sizeOf(key, value)
	if c.entries == nil || len(c.entries) >= readCacheLimit || c.bytes+size > readCacheBytes {
		c.entries = make(map[K]V)
		c.bytes = 0
	}
	c.entries[key] = value
	c.bytes += size
}

func (c *readCache[K, V]) forget() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.entries = nil
	c.bytes = 0
}

// setPaused forgets every entry and, if paused, keeps none until it is
// set again unpaused; a read that began before either is not kept.
func (c *readCache[K, V]) setPaused(paused bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.generation++
	c.entries = nil
	c.bytes = 0
	c.paused = paused
}

// cached returns the answer for key from c, or else reads it with read and
// remembers it.
func cached[K comparable, V any](c *readCache[K, V], key K, read func() (V, error)) (V, error) {
	value, generation, ok := c.get(key)
	if ok {
		return value, nil
	}
	value, err := read()
	if err == nil {
		c.put(key, value, generation)
	}
	return value, err
}

// The sizes of cache entries: their strings, and a guess at the rest (the
// map's slot for the entry, struct and slice headers).
const (
	idKeySize     = 64 // an integer key and the map slot around it
	searchKeySize = 80 // a searchKey's headers and the map slot, without the keyword's bytes
)

func userSize(u user) int {
	size := 128 + len(u.Email) + len(u.HashedPassword)
	for _, name := range []*string{u.FirstName, u.Surname} {
		if name != nil {
			size += 16 + len(*name)
		}
	}
	return size
}

func recipeSize(r recipe) int {
	return 96 + len(r.Label) + len(r.Source) + len(r.URL)
}

func recipesSize(recipes []recipe) int {
	size := 24
	for _, r := range recipes {
		size += recipeSize(r)
	}
	return size
}

func (s *store) forgetUsers() { s.users.forget() }

func (s *store) forgetAll() {
	s.forgetUsers()
	s.forgetRecipes()
}

// setCaching pauses every read cache, or sets them going again, from
// empty.
func (s *store) setCaching(on bool) {
	s.users.setPaused(!on)
	s.recipes.setPaused(!on)
	s.searches.setPaused(!on)
	s.newest.setPaused(!on)
}

func (s *store) forgetRecipes() {
	s.recipes.forget()
	s.searches.forget()
	s.slowSearches.forget()
	s.newest.forget()
}

// externalWritePoll is how often the store asks SQLite whether another
// process has written to the file, and so how long a change made by, say,
// the createsuperuser command may go unseen by a running server.
const externalWritePoll = 250 * time.Millisecond

// watchExternalWrites forgets every cache whenever PRAGMA data_version
// says that another connection committed a change. It holds a connection
// of its own: data_version compares with the connection's last look.
//
// At each look it also checks the database's files (checkFiles). While
// it cannot watch, because the query fails or a file is no longer the
// one opened, the caches keep nothing and every read goes to the
// database; it logs once when it stops watching and once when it can
// watch again, not at every look.
func (s *store) watchExternalWrites(ctx context.Context) error {
	conn, err := s.reader.Conn(ctx)
	if err != nil {
		return fmt.Errorf("watch for writes: %w", err)
	}
	version := func(ctx context.Context) (v int64, err error) {
		err = conn.QueryRowContext(ctx, "PRAGMA data_version").Scan(&v)
		return v, err
	}
	last, err := version(ctx)
	if err != nil {
		conn.Close()
		return fmt.Errorf("watch for writes: %w", err)
	}
	look := func(ctx context.Context) (int64, error) {
		if err := s.checkFiles(); err != nil {
			return 0, err
		}
		return version(ctx)
	}
	// The poll lives until close, not as long as the context of the opening.
	ctx, s.stopPoll = context.WithCancel(context.Background())
	s.polled.Go(func() {
		defer conn.Close()
		ticker := time.NewTicker(externalWritePoll)
		defer ticker.Stop()
		watching := true
		for {
			select {
			case <-ctx.Done():
				return
			case <-ticker.C:
			}
			v, err := look(ctx)
			switch {
			case ctx.Err() != nil:
				return // closing: the look was cut short
			case err != nil:
				if watching {
					s.logger.Error("cannot watch the database for writes by other processes; until it can, every read goes to the database", "err", err)
					s.setCaching(false)
					watching = false
				}
				continue
			case !watching:
				s.logger.Info("watching the database for writes by other processes again; reads are cached again")
				s.setCaching(true)
				watching = true
			case v == last:
				continue
			default:
				// Our own writer counts as another connection too, so this
				// also forgets after our writes, which forgot already.
				s.forgetAll()
			}
			last = v
		}
	})
	return nil
}

// noteFiles remembers which files the database is: the file at path, and
// the -wal and -shm beside the file that SQLite opened (it resolves
// links, so that may be elsewhere), for checkFiles to compare.
func (s *store) noteFiles(ctx context.Context, path string) error {
	var file string
	if err := s.writer.QueryRowContext(ctx, "SELECT file FROM pragma_database_list WHERE name = 'main'").Scan(&file); err != nil {
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
// their names, the files the store opened. SQLite keeps all three open
// for as long as any connection is, and the poller's connection is open
// as long as the store, so SQLite itself never removes one meanwhile.
// Someone else who does leaves this process on the files it opened and
// everyone else on new ones: the createsuperuser command, a backup, and
// even this process's own new connections see another database than the
// one this server serves, and its writes go where no one else looks.
// On Linux, with the -wal and -shm removed, another process sees only the
// last checkpoint, and a new connection of ours fails with "disk I/O
// error"; with the database file replaced, what we write from then on is
// lost. Only a restart, which opens the files now at the names, mends it.
func (s *store) checkFiles() error {
	for _, f := range s.opened {
		info, err := os.Stat(f.name)
		switch {
		case errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("%s was removed while the database was open: other processes no longer see the database this server serves; restart the server", f.name)
		case err != nil:
			return fmt.Errorf("check the database's files: %w", err)
		case !os.SameFile(info, f.info):
			return fmt.Errorf("%s was replaced while the database was open: other processes no longer see the database this server serves; restart the server", f.name)
		}
	}
	return nil
}

// schemaVersion is the number of the last migration applied.
func (s *store) schemaVersion(ctx context.Context) (int, error) {
	var version int
	err := s.reader.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version)
	return version, wrapErr(err, "read schema version")
}

// ping checks that the database's files are the ones the store opened
// (checkFiles), and that the database answers a query on a real table,
// not only that a connection opens.
func (s *store) ping(ctx context.Context) error {
	if err := s.checkFiles(); err != nil {
		return err
	}
	var exists bool
	return s.reader.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM recipe)").Scan(&exists)
}

// migration is one numbered section of schema.sql.
type migration struct {
	version int
	sql     string
}

var migrationHeader = regexp.MustCompile(`(?m)^-- migration (\d+):`)

// parseMigrations splits schema.sql at its "-- migration N:" lines, and
// insists that the numbers run 1, 2, 3, … so that a mistake in the file
// fails every test rather than a user's database.
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

// migrate applies, in one transaction, the migrations the database has not
// had yet. If any step fails, nothing changes.
//
// Foreign keys are off while they run, on the one connection that runs
// them: SQLite's procedure for remaking a table asks for it (see migration
// 8 in schema.sql), and PRAGMA foreign_keys cannot change inside a
// transaction. So that no migration can leave a row naming a parent that
// is not there, PRAGMA foreign_key_check runs before and after, and the
// migrations are refused if it finds a row it did not find before. (Rows
// that broke a foreign key already, such as the recipes of a user whom the
// reference deleted, are kept as they were.) Foreign keys are on again
// before the connection goes back to the pool.
func (s *store) migrate(ctx context.Context) (err error) {
	defer func() { err = wrapErr(err, "migrate") }()
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		return err
	}
	conn, err := s.writer.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "PRAGMA foreign_keys = OFF"); err != nil {
		return fmt.Errorf("turn foreign keys off: %w", err)
	}
	defer func() {
		if _, onErr := conn.ExecContext(context.WithoutCancel(ctx), "PRAGMA foreign_keys = ON"); onErr != nil {
			err = errors.Join(err, fmt.Errorf("turn foreign keys back on: %w", onErr))
			conn.Raw(func(any) error { return driver.ErrBadConn }) // never reuse it
		}
	}()
	tx, err := conn.BeginTx(ctx, nil)
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
	var brokenBefore string // a JSON array
	if err := tx.QueryRowContext(ctx, "SELECT json_group_array(row) FROM ("+brokenRowsSQL+")").Scan(&brokenBefore); err != nil {
		return fmt.Errorf("check foreign keys: %w", err)
	}
	for _, m := range migrations[version:] {
		if m.version == 2 {
			if err := checkNoCaseDuplicateEmails(ctx, tx); err != nil {
				return err
			}
		}
		// Building the search index reads every label: about 2 s per
		// 100,000 recipes, once. Say so, rather than start in silence.
		buildsSearchIndex := strings.Contains(m.sql, "recipe_fts (recipe_fts) VALUES ('rebuild')")
		var recipes int
		if buildsSearchIndex {
			if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM recipe").Scan(&recipes); err != nil {
				return fmt.Errorf("count recipes: %w", err)
			}
			s.logger.Info("building the search index", "recipes", recipes)
		}
		started := time.Now()
		if _, err := tx.ExecContext(ctx, m.sql); err != nil {
			return fmt.Errorf("migration %d: %w", m.version, err)
		}
		if buildsSearchIndex {
			s.logger.Info("built the search index", "recipes", recipes, "duration_ms", milliseconds(time.Since(started)))
		}
	}
	var newlyBroken string
	err = tx.QueryRowContext(ctx, "SELECT row FROM ("+brokenRowsSQL+") WHERE row NOT IN (SELECT value FROM json_each(?)) LIMIT 1",
		brokenBefore).Scan(&newlyBroken)
	if err == nil {
		return fmt.Errorf("the migrations would leave a row that names a missing parent (%s); nothing was changed", newlyBroken)
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("check foreign keys: %w", err)
	}
	// PRAGMA takes no parameters; the value is our own integer.
	if _, err := tx.ExecContext(ctx, "PRAGMA user_version = "+strconv.Itoa(len(migrations))); err != nil {
		return fmt.Errorf("set schema version: %w", err)
	}
	return wrapErr(tx.Commit(), "commit")
}

// brokenRowsSQL lists the rows that name a parent row that does not exist,
// each as "table rowid N → parent", as PRAGMA foreign_key_check finds them.
const brokenRowsSQL = `SELECT "table" || ' rowid ' || coalesce(rowid, 0) || ' → ' || parent AS row FROM pragma_foreign_key_check`

// checkNoCaseDuplicateEmails refuses, naming them, the emails that would
// break migration 2's unique index: the reference let "A@x.com" and
// "a@x.com" sign up as two users, and only a person can decide which to keep.
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
// random one the first time, so that tokens survive a restart.
func (s *store) tokenSecret(ctx context.Context) ([]byte, error) {
	fresh := randomBytes(minSecretBytes)
	var stored string
	err := s.write(ctx, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx,
			"INSERT INTO app_setting (name, value) VALUES ('jwt_secret', ?) ON CONFLICT (name) DO NOTHING",
			hex.EncodeToString(fresh)); err != nil {
			return err
		}
		return tx.QueryRowContext(ctx, "SELECT value FROM app_setting WHERE name = 'jwt_secret'").Scan(&stored)
	})
	if err != nil {
		return nil, fmt.Errorf("store token secret: %w", err)
	}
	secret, err := hex.DecodeString(stored)
	if err != nil || len(secret) < minSecretBytes {
		return nil, errors.New("the token secret kept in the database is damaged; delete the jwt_secret row of app_setting to make a new one")
	}
	return secret, nil
}

// rowScanner is a *sql.Row or *sql.Rows, at a row.
type rowScanner = interface{ Scan(...any) error }

func isUniqueViolation(err error) bool {
	var sqliteErr *sqlite.Error
	return errors.As(err, &sqliteErr) && sqliteErr.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE
}

// isFull reports whether err is SQLite's SQLITE_FULL: "database or disk
// is full", which is also what an AUTOINCREMENT table says once its ids
// are used up.
func isFull(err error) bool {
	var sqliteErr *sqlite.Error
	return errors.As(err, &sqliteErr) && sqliteErr.Code()&0xff == sqlite3.SQLITE_FULL
}
