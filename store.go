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
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"golang.org/x/crypto/bcrypt"
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

	// highestCost is the highest bcrypt cost among the stored password
	// hashes, read at open and again whenever watchExternalWrites sees a
	// write: the cost a login of an unknown email must pay.
	highestCost atomic.Int64
	// costLimit is the dearest stored cost that counts: a dearer hash
	// is one nobody can log in with (unusablePasswordHash in hashing.go).
	costLimit atomic.Int64

	// The queries of the hot routes, prepared once on the readers rather
	// than parsed again for every request.
	userByIDQuery, userByEmailQuery, recipeByIDQuery, searchQuery, firstRecipesQuery, newestQuery *sql.Stmt
}

type openedFile struct {
	name string
	info os.FileInfo
}

type user struct {
	ID             int64
	FirstName      *string
	Surname        *string
	Email          string
	IsSuperuser    bool
	HashedPassword string
	// TokenGeneration counts the user's logouts and password changes; only
	// access tokens of the current generation are accepted.
	TokenGeneration int64
}

type recipe struct {
	ID          int64
	Label       string
	Source      string
	URL         string
	SubmitterID int64
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
	s.costLimit.Store(int64(bcrypt.MaxCost)) // until newPasswordHasherFor says
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
		s.notePasswordCosts,
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

// searchSQL finds recipes by the trigram index recipe_fts. The ids come
// from the index first, at most LIMIT of them, then their recipes: joined
// the other way round, SQLite would read every match to sort them by
// recipe.id.
const searchSQL = "SELECT " + recipeColumns + " FROM recipe WHERE id IN " +
	"(SELECT rowid FROM recipe_fts WHERE recipe_fts MATCH ? ORDER BY rowid LIMIT ?) ORDER BY id"

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
			// A write may have come in unseen: read what it may have changed.
			last = v
			s.notePasswordCosts(ctx) // on failure, the last value stays
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

// backupDatabase writes a consistent copy of the database at path to out
// with VACUUM INTO, which reads one snapshot while others go on writing.
// It opens its own read-only connection: a backup changes nothing.
//
// VACUUM INTO opens its file by name, resolving any symbolic link, and
// writes a journal beside it, so a name in a directory that others can
// write to could lead it elsewhere between our check and its open: to a
// link, planted meanwhile, to a file of theirs, which would receive the
// password hashes and perhaps the token secret. So SQLite writes only in
// a directory of our own (mode 0700, made beside out so that the copy can
// be linked from there), into a file that we created there (O_EXCL, mode
// 0600); the finished copy is synced and linked to out with os.Link,
// which never replaces a name: a file or link at out, there before or
// raced in, is refused.
func backupDatabase(ctx context.Context, path, out string) error {
	// SQLite reads a name that starts with "file:" as a URI, with
	// parameters that a plain copy would ignore: rather than guess what
	// was meant, ask for the plain name. "./file:x.db" names that file.
	if strings.HasPrefix(out, "file:") {
		return fmt.Errorf("backup: -o %q would be read by SQLite as a URI, not as a file name; to write a file of that name, give ./%s", out, out)
	}
	// Say at once that out is taken, before the copy is made in vain;
	// os.Link below is what makes sure.
	if _, err := os.Lstat(out); err == nil {
		return fmt.Errorf("backup: %s already exists; the backup never replaces a file", out)
	}
	// An absolute name, so that SQLite never reads the temporary name as
	// a URI either (filepath.Dir("./file:d/x.db") is "file:d").
	abs, err := filepath.Abs(out)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	dir, err := os.MkdirTemp(filepath.Dir(abs), ".backup-")
	if err != nil {
		return fmt.Errorf("backup: make a private directory beside %s: %w", out, err)
	}
	defer os.RemoveAll(dir)
	temp := filepath.Join(dir, "backup.db")
	// Empty, as VACUUM INTO allows.
	f, err := os.OpenFile(temp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	made, err := f.Stat()
	if err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if backupRaceHook != nil {
		backupRaceHook(out)
	}

	db, _ := sql.Open("sqlite", sqliteName(path)+"?mode=ro&_pragma=busy_timeout(10000)") // cannot fail, as in openStore
	defer db.Close()
	if _, err := db.ExecContext(ctx, "VACUUM INTO ?", temp); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := checkFileWeMade(temp, made); err != nil {
		return err
	}
	// The copy reaches the disk before its name appears.
	if err := f.Sync(); err != nil {
		return fmt.Errorf("backup: %w", err)
	}
	if err := os.Link(temp, out); err != nil {
		return fmt.Errorf("backup: %w; the backup never replaces a file", err)
	}
	if err := checkFileWeMade(out, made); err != nil {
		return err
	}
	// And the name reaches the disk too. Not every file system syncs a
	// directory; the copy is whole either way.
	if d, err := os.Open(filepath.Dir(abs)); err == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// backupRaceHook, if set, runs where a name could be swapped under a
// backup: after its file is made, before SQLite writes into it. Tests set
// it to swap one.
var backupRaceHook func(out string)

// checkFileWeMade returns an error unless name is, without following a
// link, the regular file made (our backup's), of mode 0600 and not empty.
func checkFileWeMade(name string, made os.FileInfo) error {
	info, err := os.Lstat(name)
	switch {
	case err != nil:
		return fmt.Errorf("backup: %w", err)
	case !os.SameFile(info, made) || !info.Mode().IsRegular():
		return fmt.Errorf("backup: %s is no longer the file the backup made; someone replaced it", name)
	case info.Mode().Perm() != 0o600:
		return fmt.Errorf("backup: %s has mode %o, not 0600", name, info.Mode().Perm())
	case info.Size() == 0:
		return fmt.Errorf("backup: SQLite wrote nothing into %s", name)
	}
	return nil
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

// emailKey is what makes two emails the same account: the email in lower
// case, in every script. It is stored in user.email_key, under a unique
// index. SQL reaches the same folding as casefold(), with which migration
// 2 filled the column and looks for emails that differ only in case.
func emailKey(email string) string { return strings.ToLower(email) }

func init() {
	sqlite.MustRegisterDeterministicScalarFunction("casefold", 1,
		func(_ *sqlite.FunctionContext, args []driver.Value) (driver.Value, error) {
			text, _ := args[0].(string)
			return emailKey(text), nil
		})
}

const highestCostQuery = `SELECT substr(hashed_password, 5, 2) FROM user
	WHERE substr(hashed_password, 5, 2) BETWEEN '04' AND ? AND hashed_password GLOB '$2[abxy]$[0-9][0-9]$*'
	ORDER BY substr(hashed_password, 5, 2) DESC LIMIT 1`

// highestPasswordCost is the highest bcrypt cost among the stored password
// hashes ($2b$12$… has cost 12) from bcrypt's least, 4, to maxCost, or 0
// if there are none. A hash of any other cost is one that nobody can log
// in with (see unusablePasswordHash in hashing.go), and a dummy hash at
// its cost would fail (over 31) or take days. Only the $2a$, $2b$, $2x$
// and $2y$ prefixes count; a hash stored by hand as $2$ or $2c$, which
// bcrypt also reads, is left out of the dummy's cost, its login only
// faster than the rest. The cost is read from the index
// user_password_cost, highest first, so this takes about as long with a
// million users as with one.
func (s *store) highestPasswordCost(ctx context.Context, maxCost int) (int, error) {
	var cost string
	err := s.reader.QueryRowContext(ctx, highestCostQuery, fmt.Sprintf("%02d", maxCost)).Scan(&cost)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return 0, fmt.Errorf("read password costs: %w", err)
	}
	n, _ := strconv.Atoi(cost) // no hashes: "", which reads as 0
	return n, nil
}

// notePasswordCosts reads the highest usable stored cost into
// s.highestCost.
func (s *store) notePasswordCosts(ctx context.Context) error {
	cost, err := s.highestPasswordCost(ctx, int(s.costLimit.Load()))
	if err == nil {
		s.highestCost.Store(int64(cost))
	}
	return err
}

// setMaxUsableCost sets the dearest stored cost that counts as usable
// (maxUsableCost, hashing.go) and reads the highest stored cost again.
func (s *store) setMaxUsableCost(ctx context.Context, maxCost int) error {
	s.costLimit.Store(int64(maxCost))
	return s.notePasswordCosts(ctx)
}

// highestStoredCost is the highest usable bcrypt cost among the stored
// password hashes, as of the last write the store noticed, or 0 if there
// are none.
func (s *store) highestStoredCost() int { return int(s.highestCost.Load()) }

// replacePasswordHash sets user id's password hash to newHash if it is
// still oldHash, and reports whether it was. It is for a rehash at a new
// cost of the same password, so it ends no session; a password change
// made meanwhile is kept.
func (s *store) replacePasswordHash(ctx context.Context, id int64, oldHash, newHash string) (bool, error) {
	var replaced int64
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"UPDATE user SET hashed_password = ? WHERE id = ? AND hashed_password = ?", newHash, id, oldHash)
		if err == nil {
			replaced, err = res.RowsAffected()
		}
		return err
	})
	return replaced == 1 && err == nil, wrapErr(err, "replace password hash of user %d", id)
}

// promoteToSuperuser makes user id a superuser and, in the same
// transaction, ends every session of it as endSessions does, giving it
// newHashedPassword unless that is "". Whoever held a token of the user
// before, perhaps a thief, must not hold a superuser's token after.
func (s *store) promoteToSuperuser(ctx context.Context, id int64, newHashedPassword string) error {
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) error {
		if _, err := tx.ExecContext(ctx, "UPDATE user SET is_superuser = 1 WHERE id = ?", id); err != nil {
			return err
		}
		_, err := endSessionsTx(ctx, tx, id, newHashedPassword)
		return err
	})
	if err != nil {
		// Not wrapErr: errNotFound too is a failure here, named as one.
		return fmt.Errorf("promote user %d: %w", id, err)
	}
	return nil
}

// hasUsers reports whether the database has any user.
func (s *store) hasUsers(ctx context.Context) (bool, error) { return anyUser(ctx, s.reader) }

// anyUser reports whether q, a reader or a write transaction, finds any
// user.
func anyUser(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (bool, error) {
	var exists bool
	err := q.QueryRowContext(ctx, "SELECT EXISTS (SELECT 1 FROM user)").Scan(&exists)
	return exists, wrapErr(err, "count users")
}

// seed gives an empty database its first superuser and the reference's
// three recipes. It does nothing, and reports false, if any user exists.
func (s *store) seed(ctx context.Context, email, hashedPassword string) (bool, error) {
	seeded := false
	err := s.writeThenForget(ctx, s.forgetAll, func(tx *sql.Tx) error {
		if exists, err := anyUser(ctx, tx); exists || err != nil {
			return err
		}
		admin, err := insertUser(ctx, tx, user{Email: email, IsSuperuser: true, HashedPassword: hashedPassword})
		if err != nil {
			return fmt.Errorf("create superuser: %w", err)
		}
		for _, r := range seedRecipes {
			// A recipe whose id is taken (recipes but no users) is left alone.
			if _, err := tx.ExecContext(ctx,
				"INSERT INTO recipe (id, label, source, url, submitter_id) VALUES (?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
				r.ID, r.Label, r.Source, r.URL, admin.ID); err != nil {
				return fmt.Errorf("recipe %d: %w", r.ID, err)
			}
		}
		seeded = true
		return nil
	})
	return seeded && err == nil, wrapErr(err, "seed")
}

// seedRecipes are the reference's three example recipes.
var seedRecipes = []recipe{
	{ID: 1, Label: "Chicken Vesuvio", Source: "Serious Eats",
		URL: "http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html"},
	{ID: 2, Label: "Chicken Paprikash", Source: "No Recipes",
		URL: "http://norecipes.com/recipe/chicken-paprikash/"},
	{ID: 3, Label: "Cauliflower and Tofu Curry Recipe", Source: "Serious Eats",
		URL: "http://www.seriouseats.com/recipes/2011/02/cauliflower-and-tofu-curry-recipe.html"},
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

const userColumns = "id, first_name, surname, email, COALESCE(is_superuser, 0), hashed_password, token_generation"

// rowScanner is a *sql.Row or *sql.Rows, at a row.
type rowScanner = interface{ Scan(...any) error }

func scanUser(row rowScanner) (user, error) {
	var u user
	err := row.Scan(&u.ID, &u.FirstName, &u.Surname, &u.Email, &u.IsSuperuser, &u.HashedPassword, &u.TokenGeneration)
	if errors.Is(err, sql.ErrNoRows) {
		return user{}, errNotFound
	}
	return u, err
}

// createUser inserts u and returns it with its new id, or errEmailTaken if
// the email is in use ignoring case. The unique index decides, not a check
// before the insert, so two racing signups cannot both win.
func (s *store) createUser(ctx context.Context, u user) (user, error) {
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) (err error) {
		u, err = insertUser(ctx, tx, u)
		return err
	})
	return u, wrapErr(err, "create user")
}

// insertUser is how every user comes to be, by signup, createsuperuser or
// seeding: it inserts u in tx with a fresh identity. The user table's
// AUTOINCREMENT gives an id above every id ever given (schema.sql). A
// random first token generation, and the deletion of any session row
// that names the id, keep whatever tokens could still name it (made under
// the same secret for a user whose database was deleted, or left by a
// user deleted by hand) from ever fitting the new user.
func insertUser(ctx context.Context, tx *sql.Tx, u user) (user, error) {
	u.TokenGeneration = randomGeneration()
	res, err := tx.ExecContext(ctx, `INSERT INTO user
		(first_name, surname, email, email_key, is_superuser, hashed_password, token_generation)
		VALUES (?, ?, ?, ?, ?, ?, ?)`,
		u.FirstName, u.Surname, u.Email, emailKey(u.Email), u.IsSuperuser, u.HashedPassword, u.TokenGeneration)
	if isUniqueViolation(err) {
		return user{}, errEmailTaken
	}
	if isFull(err) && userIDsUsedUp(ctx, tx) {
		return user{}, errUserIDsUsedUp
	}
	if err != nil {
		return user{}, err
	}
	if u.ID, err = res.LastInsertId(); err != nil {
		return user{}, err
	}
	_, err = tx.ExecContext(ctx, "DELETE FROM session WHERE user_id = ?", u.ID)
	return u, err
}

// randomGeneration is a first token generation for a new user: a random
// whole number that a JSON number holds exactly.
func randomGeneration() int64 {
	return int64(binary.BigEndian.Uint64(randomBytes(8))>>12) + 1
}

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

// userIDsUsedUp reports whether the user table's AUTOINCREMENT can give no
// more ids: it gives one above both the highest it gave and the highest
// there, so either at the largest rowid ends it. (The recipe table has no
// AUTOINCREMENT: past the largest id, SQLite picks unused ids at random.)
func userIDsUsedUp(ctx context.Context, tx *sql.Tx) bool {
	var usedUp bool
	err := tx.QueryRowContext(ctx, `SELECT (SELECT coalesce(max(id), 0) FROM user) = ?1
		OR EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'user' AND seq = ?1)`, int64(math.MaxInt64)).Scan(&usedUp)
	return err == nil && usedUp
}

// userByEmail finds a user by email, ignoring case; errNotFound if none.
func (s *store) userByEmail(ctx context.Context, email string) (user, error) {
	u, err := scanUser(s.userByEmailQuery.QueryRowContext(ctx, emailKey(email)))
	return u, wrapErr(err, "user by email")
}

// userByID finds a user by id; errNotFound if none.
func (s *store) userByID(ctx context.Context, id int64) (user, error) {
	u, err := cached(&s.users, id, func() (user, error) {
		return scanUser(s.userByIDQuery.QueryRowContext(ctx, id))
	})
	return u, wrapErr(err, "user %d", id)
}

// Recipes written by the reference may have NULL source, url or submitter;
// they read as "" and 0.
const recipeColumns = "id, label, COALESCE(source, ''), COALESCE(url, ''), COALESCE(submitter_id, 0)"

func scanRecipe(row rowScanner) (recipe, error) {
	var r recipe
	err := row.Scan(&r.ID, &r.Label, &r.Source, &r.URL, &r.SubmitterID)
	if errors.Is(err, sql.ErrNoRows) {
		return recipe{}, errNotFound
	}
	return r, err
}

// scanRecipes reads every recipe of a query that returned rows and err:
// an empty list, not nil, if it found none, so that JSON says [].
func scanRecipes(rows *sql.Rows, err error) ([]recipe, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	recipes := []recipe{}
	for rows.Next() {
		r, err := scanRecipe(rows)
		if err != nil {
			return nil, err
		}
		recipes = append(recipes, r)
	}
	return recipes, rows.Err()
}

// recipeByID finds a recipe by id; errNotFound if none.
func (s *store) recipeByID(ctx context.Context, id int64) (recipe, error) {
	r, err := cached(&s.recipes, id, func() (recipe, error) {
		return scanRecipe(s.recipeByIDQuery.QueryRowContext(ctx, id))
	})
	return r, wrapErr(err, "recipe %d", id)
}

// searchRecipes returns, in id order, up to limit recipes whose label
// contains keyword, ignoring case in every script. Every character of
// keyword stands for itself: '%', '_', '*', quotes and words such as OR
// or NEAR are not operators. An empty keyword matches every recipe; a
// keyword that holds a NUL matches none (handleSearch refuses it first):
// SQLite would end the query at the NUL, and so search for less than was
// asked.
//
// The search runs on the trigram index recipe_fts (see schema.sql), so
// the table is not scanned: it costs time in proportion to the labels
// that hold every three-character piece of the keyword, and to how long
// each takes to check for the whole keyword. Labels built for it (a long
// run of "a" with an "aab" after a break, searched for "aaa…ab") make
// that check walk hundreds of positions in each label: 20,000 such
// labels took 5.6 s. So a search statement runs under a time limit and
// in a search slot (searchIndex), and is otherwise refused with
// errSearchCutOff, which is never cached as an answer. A keyword that
// ran out of time is remembered, its ASCII letters folded, and refused at
// once for slowSearchMemory or until the recipes change.
//
// Case is folded by SQLite's table, Unicode's simple case folding: "ς"
// finds "Σ" and "ſ" finds "S", as strings.EqualFold would say; "İ" is a
// letter of its own (Unicode folds it to "i" only for Turkish); letters
// given a case pair after Unicode 6 (Georgian Mtavruli, Cherokee lower
// case, a few Latin and Cyrillic ones) match only in the case they are
// written. A keyword needs at least 3 characters: a trigram index finds
// nothing shorter; handleSearch asks for that many.
func (s *store) searchRecipes(ctx context.Context, keyword string, limit int) ([]recipe, error) {
	if strings.ContainsRune(keyword, 0) {
		return []recipe{}, nil
	}
	// The index folds A–Z as this does, so every spelling of a keyword
	// in ASCII upper and lower case is one search, and one cache entry.
	key := searchKey{foldASCII(validUTF8(keyword)), limit}
	slowAt, generation, slow := s.slowSearches.get(key)
	if slow && time.Since(slowAt) < slowSearchMemory {
		return nil, fmt.Errorf("search recipes: %w (refused at once: it did %s ago)", errSearchTooSlow, time.Since(slowAt).Round(time.Millisecond))
	}
	return cached(&s.searches, key, func() ([]recipe, error) {
		if key.keyword == "" {
			recipes, err := scanRecipes(s.firstRecipesQuery.QueryContext(ctx, limit))
			return recipes, wrapErr(err, "first recipes")
		}
		recipes, err := s.searchIndex(ctx, key.keyword, limit)
		if errors.Is(err, errSearchTooSlow) {
			s.slowSearches.put(key, time.Now(), generation)
		}
		return recipes, wrapErr(err, "search recipes")
	})
}

// slowSearchMemory is how long a search that ran past searchTimeLimit is
// refused at once, unless the recipes change first. A search cut off by
// chance, in a moment when the machine was slow, is refused no longer.
const slowSearchMemory = time.Minute

// searchTimeLimit bounds the time one search statement may run. An
// honest search takes a few milliseconds, even at 100,000 recipes (see
// BenchmarkSearchAt100kRecipes), and one whose keyword is made of pieces
// that most labels hold about 10 ms there; a hostile one could take
// seconds. Past the limit the driver interrupts the statement inside
// SQLite, which stops within a few milliseconds (BenchmarkHostileSearch).
// With searchSlotWait it keeps the answer to any search, found or
// refused, near 200 ms, within the contract's 250 ms. (Under the race
// detector, both are raceSlowdown times longer: it slows SQLite as much.)
const searchTimeLimit = 150 * time.Millisecond * raceSlowdown

// searchSlotWait bounds how long a search waits for one of s.searchSlots;
// past it, the search is refused with errSearchBusy. The waiters are
// requests, at most one per connection (MAX_CONNECTIONS bounds them), and
// each waits no longer than this.
const searchSlotWait = 50 * time.Millisecond * raceSlowdown

// searchRetryAfter is the Retry-After of a 503 for errSearchCutOff: by
// then the slots are likely free again (a keyword that ran out of time is
// still refused, for slowSearchMemory, unless the recipes change).
const searchRetryAfter = time.Second

// searchIndex runs searchSQL for keyword (folded, and without a NUL) in a
// search slot, for at most searchTimeLimit: errSearchBusy if no slot came
// free within searchSlotWait, errSearchTooSlow if the statement ran out of
// time. A client that goes away ends either wait with its own error.
func (s *store) searchIndex(ctx context.Context, keyword string, limit int) ([]recipe, error) {
	wait, stopWaiting := context.WithTimeout(ctx, searchSlotWait)
	defer stopWaiting()
	select {
	case s.searchSlots <- struct{}{}:
		defer func() { <-s.searchSlots }()
	case <-wait.Done():
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		return nil, errSearchBusy
	}
	run, stop := context.WithTimeoutCause(ctx, searchTimeLimit, errSearchTooSlow)
	defer stop()
	recipes, err := scanRecipes(s.searchQuery.QueryContext(run, ftsPhrase(keyword), limit))
	if err != nil && errors.Is(context.Cause(run), errSearchTooSlow) {
		return nil, errSearchTooSlow
	}
	return recipes, err
}

// ftsPhrase quotes keyword as an FTS5 phrase: inside double quotes (each
// one in keyword doubled) nothing is an operator, so the index is asked
// for exactly these characters in this order. keyword must hold no NUL,
// at which SQLite would end the query (searchRecipes sees to it).
func ftsPhrase(keyword string) string {
	return `"` + strings.ReplaceAll(keyword, `"`, `""`) + `"`
}

// foldASCII is s with the letters A–Z in lower case and every other
// character as it is: the part of the index's case folding that is
// certain to be the same in Go.
func foldASCII(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// validUTF8 replaces each byte of s that is not part of a UTF-8 character
// with U+FFFD, one for one (as strings.Map does, and the scan that the
// index replaced did): the keyword keeps the number of characters it was
// checked for, and SQLite, which reads a stray byte its own way, never
// sees one.
func validUTF8(s string) string {
	if utf8.ValidString(s) {
		return s
	}
	return strings.Map(func(r rune) rune { return r }, s)
}

type searchKey struct {
	keyword string
	limit   int
}

// newestRecipes returns up to limit recipes, newest (highest id) first.
func (s *store) newestRecipes(ctx context.Context, limit int) ([]recipe, error) {
	return cached(&s.newest, limit, func() ([]recipe, error) {
		recipes, err := scanRecipes(s.newestQuery.QueryContext(ctx, limit))
		return recipes, wrapErr(err, "newest recipes")
	})
}

// olderRecipes returns up to limit recipes with an id below id, newest
// first: a page of the home page after the one that ended at id. The
// primary key orders them, so a page costs its own rows, however deep.
func (s *store) olderRecipes(ctx context.Context, id int64, limit int) ([]recipe, error) {
	recipes, err := scanRecipes(s.reader.QueryContext(ctx,
		"SELECT "+recipeColumns+" FROM recipe WHERE id < ? ORDER BY id DESC LIMIT ?", id, limit))
	return recipes, wrapErr(err, "recipes older than %d", id)
}

// newerRecipes returns the up to limit recipes with an id just above id,
// newest first: a page of the home page before the one that began at id.
func (s *store) newerRecipes(ctx context.Context, id int64, limit int) ([]recipe, error) {
	recipes, err := scanRecipes(s.reader.QueryContext(ctx,
		"SELECT "+recipeColumns+" FROM recipe WHERE id > ? ORDER BY id LIMIT ?", id, limit))
	slices.Reverse(recipes)
	return recipes, wrapErr(err, "recipes newer than %d", id)
}

// createRecipe inserts r and returns it with its new id.
func (s *store) createRecipe(ctx context.Context, r recipe) (recipe, error) {
	err := s.writeThenForget(ctx, s.forgetRecipes, func(tx *sql.Tx) error {
		res, err := tx.ExecContext(ctx,
			"INSERT INTO recipe (label, source, url, submitter_id) VALUES (?, ?, ?, ?)",
			r.Label, r.Source, r.URL, r.SubmitterID)
		if err == nil {
			r.ID, err = res.LastInsertId()
		}
		return err
	})
	return r, wrapErr(err, "create recipe")
}

// refreshGrant is a refresh token as the store keeps it: only digests.
// Every token of one login session starts with the same random handle
// (see sessions.go), so that a spent token still names its session.
type refreshGrant struct {
	handle    []byte // SHA-256 of the session's handle, the token's first bytes
	digest    []byte // SHA-256 of the whole token the client holds
	expiresAt time.Time
}

// addSession starts a login session for u, holding grant, its first
// refresh token; unless u has logged out or changed password since u was
// read (a login that checked the old password must not outlive the
// change): then errSessionEnded. See insertSession for what else it
// deletes.
func (s *store) addSession(ctx context.Context, u user, grant refreshGrant, now time.Time) error {
	err := s.write(ctx, func(tx *sql.Tx) error {
		if err := checkGenerationUnchanged(ctx, tx, u); err != nil {
			return err
		}
		return insertSession(ctx, tx, u.ID, grant, now)
	})
	return wrapErr(err, "add session")
}

// checkGenerationUnchanged returns errSessionEnded unless u still exists and
// its token generation is still what it was when u was read. Every change
// that ends sessions (logout, password change, createsuperuser) moves the
// generation on. The hash alone may change without it: a rehash on login
// stores the same password at a new cost, and must not fail a login or a
// password change that read the user before it.
func checkGenerationUnchanged(ctx context.Context, tx *sql.Tx, u user) error {
	var generation int64
	err := tx.QueryRowContext(ctx, "SELECT token_generation FROM user WHERE id = ?", u.ID).Scan(&generation)
	if errors.Is(err, sql.ErrNoRows) || (err == nil && generation != u.TokenGeneration) {
		return errSessionEnded
	}
	return wrapErr(err, "check session")
}

// changePassword gives u a new password hash and ends every session of u,
// as endSessions does, and starts the session of the client that changed
// it with grant, all in one transaction; unless u logged out or changed
// password since u was read: then errSessionEnded, and nothing changes.
// It returns u's new token generation.
func (s *store) changePassword(ctx context.Context, u user, newHashedPassword string, grant refreshGrant, now time.Time) (int64, error) {
	var generation int64
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) (err error) {
		if err := checkGenerationUnchanged(ctx, tx, u); err != nil {
			return err
		}
		if generation, err = endSessionsTx(ctx, tx, u.ID, newHashedPassword); err != nil {
			return err
		}
		return insertSession(ctx, tx, u.ID, grant, now)
	})
	return generation, wrapErr(err, "change password")
}

// insertSession adds a session of userID holding grant. So that the
// session table needs no cleaning job and no user can fill it, it also
// deletes, first, every expired session of userID and up to
// sessionSweepRows expired sessions of anyone, and then userID's oldest
// sessions past the newest maxSessionsPerUser.
func insertSession(ctx context.Context, tx *sql.Tx, userID int64, grant refreshGrant, now time.Time) error {
	if _, err := tx.ExecContext(ctx, "DELETE FROM session WHERE user_id = ? AND expires_at <= ?", userID, now.Unix()); err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		"DELETE FROM session WHERE id IN (SELECT id FROM session WHERE expires_at <= ? LIMIT ?)",
		now.Unix(), sessionSweepRows); err != nil {
		return fmt.Errorf("delete expired sessions: %w", err)
	}
	if _, err := tx.ExecContext(ctx,
		"INSERT INTO session (user_id, handle, digest, expires_at) VALUES (?, ?, ?, ?)",
		userID, grant.handle, grant.digest, grant.expiresAt.Unix()); err != nil {
		return fmt.Errorf("add session: %w", err)
	}
	// Ids only grow (AUTOINCREMENT), so the highest are the newest.
	if _, err := tx.ExecContext(ctx, `DELETE FROM session WHERE user_id = ?1 AND id <=
		(SELECT id FROM session WHERE user_id = ?1 ORDER BY id DESC LIMIT 1 OFFSET ?2)`,
		userID, maxSessionsPerUser); err != nil {
		return fmt.Errorf("end the oldest sessions: %w", err)
	}
	return nil
}

// sessionOf returns the id of the session that a presented refresh
// token names, by its digest (the session's current token) or by its
// handle (any token the session ever had), or 0 if none. It asks a
// reader, so that guesses at tokens need not queue for the one writer
// that rotateSession takes.
func (s *store) sessionOf(ctx context.Context, presented refreshGrant) (int64, error) {
	var id int64
	err := s.reader.QueryRowContext(ctx, "SELECT id FROM session WHERE digest = ? OR handle = ? LIMIT 1",
		presented.digest, presented.handle).Scan(&id)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	return id, wrapErr(err, "look up refresh token")
}

// rotateSession spends presented, the current refresh token of its
// session, and makes next the session's current token; it returns the
// session's user. The session keeps its one row: only the current
// token's digest is kept, and the handle that all its tokens share.
//
// errRefreshTokenRefused, when presented is:
//   - not the current token of any session, but carries a session's
//     handle: a spent token (or one made from a spent one), so two parties
//     hold the session. It is taken as stolen and the session is ended,
//     so neither the thief nor the victim can go on with it (reuse
//     detection, RFC 9700 §4.14.2); other sessions of the user go on.
//   - unknown, or of an expired session;
//   - of a session whose user is gone (deleted by hand with foreign keys
//     off, which leaves its sessions behind): the session is deleted.
//
// The writer's transactions begin IMMEDIATE, so two rotations of the same
// token run one after the other: the first wins, the second sees a spent
// token, which ends the session.
func (s *store) rotateSession(ctx context.Context, presented, next refreshGrant, now time.Time) (user, error) {
	var u user
	var invalid bool
	err := s.write(ctx, func(tx *sql.Tx) error {
		var id, userID, expiresAt int64
		err := tx.QueryRowContext(ctx, "SELECT id, user_id, expires_at FROM session WHERE digest = ?", presented.digest).
			Scan(&id, &userID, &expiresAt)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			invalid = true
			_, err := tx.ExecContext(ctx, "DELETE FROM session WHERE handle = ?", presented.handle)
			return err
		case err != nil:
			return err
		case expiresAt <= now.Unix():
			invalid = true
			return nil
		}
		u, err = scanUser(tx.QueryRowContext(ctx, "SELECT "+userColumns+" FROM user WHERE id = ?", userID))
		if errors.Is(err, errNotFound) {
			invalid = true
			_, err := tx.ExecContext(ctx, "DELETE FROM session WHERE id = ?", id)
			return err
		}
		if err != nil {
			return err
		}
		// Setting the handle matters only to a session carried over from
		// the refresh_token table (schema.sql), which has none until then.
		_, err = tx.ExecContext(ctx, "UPDATE session SET handle = ?, digest = ?, expires_at = ? WHERE id = ?",
			next.handle, next.digest, next.expiresAt.Unix(), id)
		return err
	})
	if err != nil {
		return user{}, fmt.Errorf("rotate refresh token: %w", err)
	}
	if invalid {
		return user{}, errRefreshTokenRefused
	}
	return u, nil
}

// endSessions ends every session of the user: it moves the user's token
// generation on, which retires every access token issued so far, and
// deletes every session, and so every refresh token. It returns the new
// generation, or errNotFound if there is no such user.
func (s *store) endSessions(ctx context.Context, userID int64) (int64, error) {
	var generation int64
	err := s.writeThenForget(ctx, s.forgetUsers, func(tx *sql.Tx) (err error) {
		generation, err = endSessionsTx(ctx, tx, userID, "")
		return err
	})
	return generation, wrapErr(err, "end sessions")
}

// endSessionsTx is endSessions in tx, with newHashedPassword, unless "",
// replacing the password in the same transaction.
func endSessionsTx(ctx context.Context, tx *sql.Tx, userID int64, newHashedPassword string) (int64, error) {
	var generation int64
	err := tx.QueryRowContext(ctx, `
		UPDATE user SET token_generation = token_generation + 1,
			hashed_password = CASE WHEN ?1 = '' THEN hashed_password ELSE ?1 END
		WHERE id = ?2 RETURNING token_generation`,
		newHashedPassword, userID).Scan(&generation)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, errNotFound
	}
	if err == nil {
		_, err = tx.ExecContext(ctx, "DELETE FROM session WHERE user_id = ?", userID)
	}
	return generation, err
}

// recipesBySubmitter returns, in id order, the recipes userID submitted,
// passing over the first skip of them and returning at most limit.
func (s *store) recipesBySubmitter(ctx context.Context, userID int64, skip, limit int) ([]recipe, error) {
	recipes, err := scanRecipes(s.reader.QueryContext(ctx,
		"SELECT "+recipeColumns+" FROM recipe WHERE submitter_id = ? ORDER BY id LIMIT ? OFFSET ?", userID, limit, skip))
	return recipes, wrapErr(err, "recipes of user %d", userID)
}

// changeRecipe runs allowed on recipe id as it stands and, if it says
// yes, change, all in one write transaction: nothing can come between the
// check and the write (a delete, then a new recipe that reuses the id).
// It returns errNotFound if there is no such recipe, errNotOwner if
// allowed says no.
func (s *store) changeRecipe(ctx context.Context, id int64, allowed func(recipe) bool, change func(*sql.Tx) error) error {
	err := s.writeThenForget(ctx, s.forgetRecipes, func(tx *sql.Tx) error {
		current, err := scanRecipe(tx.QueryRowContext(ctx, "SELECT "+recipeColumns+" FROM recipe WHERE id = ?", id))
		if err == nil && !allowed(current) {
			err = errNotOwner
		}
		if err != nil {
			return err
		}
		return change(tx)
	})
	return wrapErr(err, "change recipe %d", id)
}

// updateRecipe replaces the label, source and url of recipe r.ID if
// allowed says so, and returns the recipe as it now is.
func (s *store) updateRecipe(ctx context.Context, r recipe, allowed func(recipe) bool) (recipe, error) {
	err := s.changeRecipe(ctx, r.ID, allowed, func(tx *sql.Tx) (err error) {
		r, err = scanRecipe(tx.QueryRowContext(ctx,
			"UPDATE recipe SET label = ?, source = ?, url = ? WHERE id = ? RETURNING "+recipeColumns,
			r.Label, r.Source, r.URL, r.ID))
		return err
	})
	return r, err
}

// deleteRecipe deletes recipe id if allowed says so.
func (s *store) deleteRecipe(ctx context.Context, id int64, allowed func(recipe) bool) error {
	return s.changeRecipe(ctx, id, allowed, func(tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, "DELETE FROM recipe WHERE id = ?", id)
		return err
	})
}
