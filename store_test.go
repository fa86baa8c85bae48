// store_test.go tests store.go: opening and migrating the database, the
// writer and what happens when another process holds the lock, the read
// cache, crashes, and the database's files.
package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// theUserTableMigration is the index, in schema.sql's migrations, of the
// one that remakes the user table with AUTOINCREMENT.
func theUserTableMigration(t *testing.T) int {
	t.Helper()
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations {
		if strings.Contains(m.sql, "CREATE TABLE user_new") {
			return i
		}
	}
	t.Fatal("no migration in schema.sql remakes the user table (user_new)")
	return 0
}

// expectForeignKeysBoundToTheUserTable checks that recipe and session
// still name the user table in their foreign keys, and that SQLite
// enforces them on a connection with foreign keys on.
func expectForeignKeysBoundToTheUserTable(t *testing.T, path string) {
	t.Helper()
	raw := openRawDB(t, path)
	for _, tc := range []struct{ table, column, onDelete string }{
		{"recipe", "submitter_id", "NO ACTION"},
		{"session", "user_id", "CASCADE"},
	} {
		var parent, from, to, onDelete string
		if err := raw.QueryRow("SELECT \"table\", \"from\", \"to\", on_delete FROM pragma_foreign_key_list(?)", tc.table).
			Scan(&parent, &from, &to, &onDelete); err != nil {
			t.Fatalf("foreign keys of %s: %v", tc.table, err)
		}
		if parent != "user" || from != tc.column || to != "id" || onDelete != tc.onDelete {
			t.Errorf("%s's foreign key = %s → %s(%s) on delete %s, want %s → user(id) on delete %s",
				tc.table, from, parent, to, onDelete, tc.column, tc.onDelete)
		}
	}
	if n := queryInt(t, raw, "SELECT count(*) FROM sqlite_master WHERE name = 'user_new'"); n != 0 {
		t.Errorf("the table user_new is left over")
	}
	var schema string
	if err := raw.QueryRow("SELECT sql FROM sqlite_master WHERE name = 'user'").Scan(&schema); err != nil || !strings.Contains(schema, "AUTOINCREMENT") {
		t.Errorf("user table = %q, %v; want AUTOINCREMENT", schema, err)
	}
	for _, index := range []string{"ix_user_email", "ix_user_id", "user_email_key"} {
		if n := queryInt(t, raw, "SELECT count(*) FROM sqlite_master WHERE type = 'index' AND name = ? AND tbl_name = 'user'", index); n != 1 {
			t.Errorf("index %s on user: %d, want 1", index, n)
		}
	}
	if n := queryInt(t, raw, "SELECT count(*) FROM pragma_index_list('user') WHERE name = 'user_email_key' AND \"unique\""); n != 1 {
		t.Errorf("user_email_key is not unique")
	}

	enforcing, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
	if err != nil {
		t.Fatal(err)
	}
	defer enforcing.Close()
	if _, err := enforcing.Exec("INSERT INTO recipe (label, source, url, submitter_id) VALUES ('x', 'x', 'https://x.com/', 987654)"); err == nil {
		t.Errorf("a recipe naming no user was inserted, want a foreign key error")
	}
}

func TestTheUserTableRebuildKeepsEveryRowAndForeignKey(t *testing.T) {
	t.Run("over a database the reference made", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "reference.db")
		makeReferenceDB(t, path,
			`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
				VALUES (7, 'Old', 'Timer', 'old@example.com', 0, '`+passlibHash(t, "old-password")+`')`,
			`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (5, 'Soup', 'http://example.com/s', 'G', 7)`,
			// The recipe of a user the reference deleted: foreign keys
			// are off in the reference, so it stayed.
			`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (6, 'Orphan', 'http://example.com/o', 'G', 40)`,
		)
		raw := openRawDB(t, path)
		before := dumpAll(t, raw)
		e := newTestEnv(t, onDatabase(path))
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after the migration:\n%s\nwant, as before:\n%s", after, before)
		}
		if seq := queryInt(t, raw, "SELECT seq FROM sqlite_sequence WHERE name = 'user'"); seq != 40 {
			t.Errorf("sqlite_sequence for user = %d, want 40, the highest id a recipe names", seq)
		}
		if got := e.signup("new@example.com", "password123"); got.ID != 41 {
			t.Errorf("a new user's id = %d, want 41, above the orphan recipe's submitter 40", got.ID)
		}
		resp := e.get("/api/v1/auth/me", bearer(e.login("old@example.com", "old-password"))...)
		if got := decodeBody[userView](t, resp); got.ID != 7 {
			t.Errorf("the old user = %+v, want id 7", got)
		}
		e.store.close()
		expectForeignKeysBoundToTheUserTable(t, path)
	})

	t.Run("over a database of ours from before the migration", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "ours.db")
		e := newTestEnv(t, onDatabase(path))
		cook, token := newRecipeUser(e, "cook@example.com")
		postRecipe(t, e, token, "Cook's soup", "Cook", "https://example.com/soup")
		sessions := e.loginTokens("cook@example.com", "recipe-password")
		last, _ := newRecipeUser(e, "last@example.com")
		e.store.close()

		// Undo the migration by hand, as a database of ours made before it
		// would be: the user table without AUTOINCREMENT, user_version
		// just below the migration.
		raw := openRawDB(t, path)
		execAll(t, raw, "PRAGMA foreign_keys = OFF",
			`CREATE TABLE user_old (id INTEGER NOT NULL, first_name VARCHAR(256), surname VARCHAR(256),
				email VARCHAR NOT NULL, is_superuser BOOLEAN, hashed_password VARCHAR NOT NULL,
				email_key TEXT, token_generation INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (id))`,
			"INSERT INTO user_old SELECT * FROM user", "DROP TABLE user", "ALTER TABLE user_old RENAME TO user",
			"CREATE INDEX ix_user_email ON user (email)", "CREATE INDEX ix_user_id ON user (id)",
			"CREATE UNIQUE INDEX user_email_key ON user (email_key)",
			"DELETE FROM sqlite_sequence WHERE name = 'user'",
			"PRAGMA user_version = "+itoa(int64(theUserTableMigration(t))))
		// The newest user deleted by hand, leaving a session row that
		// names its id: the new high-water mark must be above it.
		deleteUserByHand(t, path, last.ID)
		usersBefore := dump(t, raw, "SELECT * FROM user ORDER BY id")
		recipesBefore := dump(t, raw, "SELECT * FROM recipe ORDER BY id")
		refreshBefore := queryInt(t, raw, "SELECT count(*) FROM session")

		e = newTestEnv(t, onDatabase(path))
		if after := dump(t, raw, "SELECT * FROM user ORDER BY id"); after != usersBefore {
			t.Errorf("users after the migration:\n%s\nwant, as before:\n%s", after, usersBefore)
		}
		if after := dump(t, raw, "SELECT * FROM recipe ORDER BY id"); after != recipesBefore {
			t.Errorf("recipes after the migration:\n%s\nwant, as before:\n%s", after, recipesBefore)
		}
		if after := queryInt(t, raw, "SELECT count(*) FROM session"); after != refreshBefore {
			t.Errorf("sessions after the migration = %d, want %d: none may be lost", after, refreshBefore)
		}
		if got := e.signup("next@example.com", "password123"); got.ID <= last.ID {
			t.Errorf("a new user's id = %d, want above the deleted user's %d", got.ID, last.ID)
		}
		// The cook's session lives on through the migration.
		expectAccessTokenWorks(t, e, mustRefresh(t, e, sessions.RefreshToken).AccessToken, cook.ID)
		e.store.close()
		expectForeignKeysBoundToTheUserTable(t, path)

		t.Run("deleting a user deletes its sessions, through the new table", func(t *testing.T) {
			enforcing, err := sql.Open("sqlite", path+"?_pragma=foreign_keys(1)")
			if err != nil {
				t.Fatal(err)
			}
			defer enforcing.Close()
			execAll(t, enforcing, "DELETE FROM recipe WHERE submitter_id = "+itoa(cook.ID))
			if _, err := enforcing.Exec("DELETE FROM user WHERE id = ?", cook.ID); err != nil {
				t.Fatal(err)
			}
			if n := queryInt(t, enforcing, "SELECT count(*) FROM session WHERE user_id = ?", cook.ID); n != 0 {
				t.Errorf("sessions of the deleted user = %d, want 0 (ON DELETE CASCADE)", n)
			}
		})
	})

	t.Run("a migration that would break a foreign key changes nothing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "broken.db")
		st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		st.close()
		raw := openRawDB(t, path)
		// Pretend the last migration has not run, and make it one that
		// would leave a recipe naming no user.
		execAll(t, raw, "PRAGMA user_version = "+itoa(int64(knownMigrations(t)-1)))
		before := dumpAll(t, raw)
		saved := schemaSQL
		t.Cleanup(func() { schemaSQL = saved })
		migrations, _ := parseMigrations(saved)
		last := migrations[len(migrations)-1]
		schemaSQL = strings.TrimSuffix(saved, last.sql) + last.sql[:strings.Index(last.sql, "\n")+1] +
			"INSERT INTO recipe (label, source, url, submitter_id) VALUES ('x', 'x', 'https://x.com/', 987654);\n"
		if st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler)); err == nil {
			st.close()
			t.Fatal("openStore ran a migration that leaves a recipe naming no user, want an error")
		} else if !strings.Contains(err.Error(), "missing parent") {
			t.Errorf("openStore error = %v, want it to say a row names a missing parent", err)
		}
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after the refused migration:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}

// startChild runs the service as a child process with env, and waits
// until it answers.
func startChild(t *testing.T, env ...string) (*exec.Cmd, string) {
	t.Helper()
	addr := freeLoopbackAddress(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{"RECIPEAPI_RUN_AS_SERVICE=1", "ADDR=" + addr}, env...)...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitForHealthy(t, "http://"+addr)
	return cmd, "http://" + addr
}

func TestAcknowledgedWritesSurviveAKilledProcess(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "crash.db")
	env := []string{"DATABASE_PATH=" + dbPath, "BCRYPT_COST=4", "FIRST_SUPERUSER_PW=" + adminPassword, "LOGIN_ATTEMPTS_PER_MINUTE=0",
		"RECIPE_CREATION_BURST=0"} // one account writes as fast as it can
	child, base := startChild(t, env...)
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)

	// Many clients create recipes until the process dies under them.
	var (
		mu           sync.Mutex
		acknowledged = map[string]string{} // id → label
		wg           sync.WaitGroup
	)
	for client := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				label := fmt.Sprintf("crash test %d-%d", client, i)
				body := fmt.Sprintf(`{"label":%q,"source":"test","url":"https://example.com/%d/%d"}`, label, client, i)
				req, _ := http.NewRequest("POST", base+"/api/v1/recipes/", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					return // the process is gone
				}
				created := struct {
					ID int64 `json:"id"`
				}{}
				data, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode == http.StatusCreated && json.Unmarshal(data, &created) == nil {
					mu.Lock()
					acknowledged[fmt.Sprint(created.ID)] = label
					mu.Unlock()
				}
			}
		})
	}
	time.Sleep(500 * time.Millisecond)
	if err := child.Process.Kill(); err != nil { // SIGKILL: no chance to clean up
		t.Fatal(err)
	}
	child.Wait()
	wg.Wait()
	if len(acknowledged) == 0 {
		t.Fatal("no recipe was created before the kill; the test proves nothing")
	}

	_, base = startChild(t, env...)
	for id, label := range acknowledged {
		resp, err := http.Get(base + "/api/v1/recipes/" + id)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(data), label) {
			t.Errorf("GET /api/v1/recipes/%s after the crash = %d %s, want %q", id, resp.StatusCode, data, label)
		}
	}
	t.Logf("%d acknowledged recipes, all there after the kill", len(acknowledged))
	expectIntegrityOK(t, dbPath)
}

// keepsReads reports whether the store's cache keeps what a read puts in
// it, and forgets it again. No recipe has id 0.
func keepsReads(s *store) bool {
	key := cacheKey{read: "recipe", n: 0}
	s.cache.load(key, func() ([]recipe, error) { return []recipe{{}}, nil })
	kept := cacheHolds(s, key)
	s.cache.forget()
	return kept
}

func TestADatabaseWhoseFilesAreRemovedOrReplacedIsUnhealthy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		change func(t *testing.T, path string)
		want   string // in the log
	}{
		{"removing the -wal and the -shm", func(t *testing.T, path string) {
			for _, name := range []string{path + "-wal", path + "-shm"} {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
		}, "test.db-wal was removed"},
		{"replacing the database file", func(t *testing.T, path string) {
			other := openRawDB(t, path+".new")
			execAll(t, other, "CREATE TABLE t (x)")
			other.Close()
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, "test.db was replaced"},
	} {
		t.Run(tc.name+" under a running server makes /healthz 503, stops the caches, and the log says why", func(t *testing.T) {
			e := newTestEnv(t)
			expectStatus(t, e.get("/healthz"), http.StatusOK)
			tc.change(t, e.cfg.dbPath)
			expectDetail(t, e.get("/healthz"), http.StatusServiceUnavailable, "Database unavailable")
			waitFor(t, "the caches to keep nothing", func() bool { return !keepsReads(e.store) })
			e.store.close() // the poller is done: its log can be read
			logs := e.logs.String()
			if !strings.Contains(logs, tc.want) || !strings.Contains(logs, "restart the server") {
				t.Errorf("the log does not say %q and that the server needs a restart:\n%s", tc.want, logs)
			}
			if n := strings.Count(logs, "cannot watch the database"); n != 1 {
				t.Errorf("the log says %d times that the database cannot be watched, want once:\n%s", n, logs)
			}
		})
	}
}

func TestTheWriteWatchSaysOnceThatItStoppedAndOnceThatItGoesOnAgain(t *testing.T) {
	e := newTestEnv(t)
	path := e.cfg.dbPath
	move := func(from, to string) {
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Rename(path+suffix+from, path+suffix+to); err != nil {
				t.Fatal(err)
			}
		}
	}
	move("", ".away")
	waitFor(t, "the caches to keep nothing", func() bool { return !keepsReads(e.store) })
	time.Sleep(4 * externalWritePoll) // a few more looks, in vain
	move(".away", "")
	waitFor(t, "the caches to keep reads again", func() bool { return keepsReads(e.store) })
	expectStatus(t, e.get("/healthz"), http.StatusOK)
	e.store.close() // the poller is done: its log can be read
	logs := e.logs.String()
	for _, said := range []string{"cannot watch the database", "watching the database for writes by other processes again"} {
		if n := strings.Count(logs, said); n != 1 {
			t.Errorf("the log says %q %d times, want once:\n%s", said, n, logs)
		}
	}
}

// migrationIndexOf is the index in schema.sql's migrations of the first
// one whose SQL contains text: tests find a migration by what it does.
func migrationIndexOf(t *testing.T, text string) int {
	t.Helper()
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		t.Fatal(err)
	}
	for i, m := range migrations {
		if strings.Contains(m.sql, text) {
			return i
		}
	}
	t.Fatalf("no migration contains %q", text)
	return 0
}

func TestRefreshTokensOfTheOldTableCarryOverIntoSessions(t *testing.T) {
	// A database as it was just before the migration that made sessions,
	// with refresh tokens in every state.
	path := filepath.Join(t.TempDir(), "before-sessions.db")
	makeReferenceDB(t, path)
	migrations, _ := parseMigrations(schemaSQL)
	before := migrationIndexOf(t, "CREATE TABLE session")
	raw := openRawDB(t, path)
	for _, m := range migrations[:before] {
		execAll(t, raw, m.sql)
	}
	hash := passlibHash(t, "password123")
	live, spent, expired, orphan := randomToken(32), randomToken(32), randomToken(32), randomToken(32)
	digest := func(token string) string { // as a blob literal
		d := sha256.Sum256([]byte(token))
		return "x'" + hex.EncodeToString(d[:]) + "'"
	}
	future, past := time.Now().Add(time.Hour).Unix(), time.Now().Add(-time.Hour).Unix()
	execAll(t, raw,
		fmt.Sprintf(`INSERT INTO user (id, email, email_key, is_superuser, hashed_password) VALUES (4, 'cook@example.com', 'cook@example.com', 0, '%s')`, hash),
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 4, 'a', %d, 0)`, digest(live), future),
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 4, 'b', %d, 1)`, digest(spent), future),
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 4, 'c', %d, 0)`, digest(expired), past),
		"PRAGMA foreign_keys = OFF",
		fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (%s, 99, 'd', %d, 0)`, digest(orphan), future),
		"PRAGMA user_version = "+strconv.Itoa(before),
	)
	raw.Close()
	e := newTestEnv(t, onDatabase(path))

	t.Run("only the live token of an existing user becomes a session", func(t *testing.T) {
		if n := queryInt(t, e.store.reader, "SELECT count(*) FROM session"); n != 1 {
			t.Errorf("sessions after the migration = %d, want 1", n)
		}
		if n := refreshRows(t, e, live); n != 1 {
			t.Errorf("the live token has %d session rows, want 1", n)
		}
	})
	for _, tc := range []struct{ name, token string }{
		{"a spent token stays refused", spent},
		{"an expired token stays refused", expired},
		{"a token of a user deleted by hand is refused", orphan},
	} {
		t.Run(tc.name, func(t *testing.T) { expectRefreshTokenRefused(t, e, tc.token) })
	}
	var next tokenResponse
	t.Run("the live token works once, and gives a token of the new shape", func(t *testing.T) {
		next = mustRefresh(t, e, live)
		expectAccessTokenWorks(t, e, next.AccessToken, 4)
		raw, _ := base64.RawURLEncoding.DecodeString(live)
		if !strings.HasPrefix(next.RefreshToken, base64.RawURLEncoding.EncodeToString(raw[:15])) {
			t.Errorf("the next token %q does not keep the first bytes of %q as its session's handle", next.RefreshToken, live)
		}
	})
	t.Run("presenting the old token again is reuse: the session ends", func(t *testing.T) {
		expectRefreshTokenRefused(t, e, live)
		expectRefreshTokenRefused(t, e, next.RefreshToken)
	})
}

// schemaOf is the database's whole schema.
func schemaOf(t *testing.T, db *sql.DB) string {
	t.Helper()
	return dump(t, db, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
}

// startOverAReferenceDatabase makes a database as the reference would
// hold it: user 7, Old Timer, password old-password; superuser 9,
// chef@example.com, password chef-password; and recipes 5 and 12 of
// theirs and 13 of no one. It starts a service over it, checks in a
// subtest that the start changed none of those rows, and returns the
// service and a raw connection to the file.
func startOverAReferenceDatabase(t *testing.T) (e *testEnv, raw *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "reference.db")
	makeReferenceDB(t, path,
		fmt.Sprintf(`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
			VALUES (7, 'Old', 'Timer', 'Old.Timer@example.com', 0, '%s')`, passlibHash(t, "old-password")),
		fmt.Sprintf(`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
			VALUES (9, NULL, NULL, 'chef@example.com', 1, '%s')`, passlibHash(t, "chef-password")),
		`INSERT INTO recipe (id, label, url, source, submitter_id)
			VALUES (5, 'Old Soup', 'http://example.com/soup', 'Grandma', 7)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id)
			VALUES (12, 'Old Bread', 'https://example.com/bread', 'Chef', 9)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id)
			VALUES (13, 'Bare', NULL, NULL, NULL)`,
	)
	raw = openRawDB(t, path)
	before := dumpAll(t, raw)
	e = newTestEnv(t, onDatabase(path))
	t.Run("every row of the reference is kept, unchanged", func(t *testing.T) {
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after migration:\n%s\nwant, as before:\n%s", after, before)
		}
	})
	return e, raw
}

func TestAReferenceDatabaseIsMigratedInPlace(t *testing.T) {
	e, raw := startOverAReferenceDatabase(t)

	t.Run("nothing was seeded", func(t *testing.T) {
		if n := queryInt(t, raw, "SELECT count(*) FROM user"); n != 2 {
			t.Errorf("users = %d, want the reference's 2", n)
		}
		if n := queryInt(t, raw, "SELECT count(*) FROM user WHERE email = 'admin@recipeapi.com' COLLATE NOCASE"); n != 0 {
			t.Errorf("admin users = %d, want 0", n)
		}
		if n := queryInt(t, raw, "SELECT count(*) FROM recipe"); n != 3 {
			t.Errorf("recipes = %d, want the reference's 3", n)
		}
		expectDetail(t, e.get("/api/v1/recipes/1"), http.StatusNotFound, "Recipe with ID 1 not found")
		resp := e.tryLogin("admin@recipeapi.com", adminPassword)
		expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
	})

	t.Run("user_version is the number of migrations", func(t *testing.T) {
		if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
			t.Errorf("PRAGMA user_version = %d, want %d", got, want)
		}
	})

	t.Run("the old user logs in with the old password", func(t *testing.T) {
		for _, email := range []string{"Old.Timer@example.com", "old.timer@EXAMPLE.com"} {
			token := e.login(email, "old-password")
			resp := e.get("/api/v1/auth/me", bearer(token)...)
			expectStatus(t, resp, http.StatusOK)
			got := decodeBody[userView](t, resp)
			if got.ID != 7 || got.Email != "Old.Timer@example.com" || got.IsSuperuser ||
				got.FirstName == nil || *got.FirstName != "Old" || got.Surname == nil || *got.Surname != "Timer" {
				t.Errorf("GET /api/v1/auth/me = %+v, want the reference's user 7", got)
			}
		}
		resp := e.tryLogin("Old.Timer@example.com", "wrong-password")
		expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")
	})

	t.Run("the old superuser is still a superuser", func(t *testing.T) {
		resp := e.get("/api/v1/auth/me", bearer(e.login("chef@example.com", "chef-password"))...)
		expectStatus(t, resp, http.StatusOK)
		if got := decodeBody[userView](t, resp); got.ID != 9 || !got.IsSuperuser || got.FirstName != nil {
			t.Errorf("GET /api/v1/auth/me = %+v, want the reference's superuser 9", got)
		}
	})

	for _, tc := range []struct {
		name, id, want string
	}{
		{"a recipe is served with its old id", "5",
			`{"label":"Old Soup","source":"Grandma","url":"http://example.com/soup","id":5,"submitter_id":7}`},
		{"another recipe is served with its old id", "12",
			`{"label":"Old Bread","source":"Chef","url":"https://example.com/bread","id":12,"submitter_id":9}`},
		{"a recipe with no source, url or submitter is still served", "13",
			`{"label":"Bare","source":"","url":"","id":13,"submitter_id":0}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := e.get("/api/v1/recipes/" + tc.id)
			expectStatus(t, resp, http.StatusOK)
			if body := readBody(t, resp); body != tc.want {
				t.Errorf("GET /api/v1/recipes/%s = %s, want %s", tc.id, body, tc.want)
			}
		})
	}

	t.Run("the old recipes are found by search, in id order", func(t *testing.T) {
		if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=old"); !slices.Equal(got, []int64{5, 12}) {
			t.Errorf("GET /api/v1/recipes/search/?keyword=old = ids %v, want [5 12]", got)
		}
	})

	t.Run("a new recipe's id follows the old ones", func(t *testing.T) {
		token := e.login("Old.Timer@example.com", "old-password")
		if got := postRecipe(t, e, token, "New Stew", "Me", "http://example.com/stew"); got.ID != 14 || got.SubmitterID != 7 {
			t.Errorf("POST /api/v1/recipes/ = id %d by %d, want id 14 by 7", got.ID, got.SubmitterID)
		}
	})
}

func TestEmailsDifferingOnlyInCaseStopTheMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reference.db")
	hash := passlibHash(t, "some-password")
	makeReferenceDB(t, path,
		fmt.Sprintf(`INSERT INTO user (id, email, is_superuser, hashed_password) VALUES (1, 'A@x.com', 0, '%s')`, hash),
		fmt.Sprintf(`INSERT INTO user (id, email, is_superuser, hashed_password) VALUES (2, 'b@x.com', 0, '%s')`, hash),
		fmt.Sprintf(`INSERT INTO user (id, email, is_superuser, hashed_password) VALUES (3, 'a@x.com', 0, '%s')`, hash),
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (1, 'Soup', 'http://x.com/s', 'A', 1)`,
	)
	raw := openRawDB(t, path)
	if _, err := raw.Exec(fmt.Sprintf(`INSERT INTO user (id, email, is_superuser, hashed_password) VALUES (4, 'Ünï@x.com', 0, '%s'), (5, 'üNÏ@x.com', 0, '%s')`, hash, hash)); err != nil {
		t.Fatal(err)
	}
	rowsBefore, schemaBefore := dumpAll(t, raw), schemaOf(t, raw)
	bytesBefore, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
	if err == nil {
		st.close()
		t.Fatal("openStore succeeded on a database with A@x.com and a@x.com, want an error naming them")
	}

	t.Run("the error names both emails", func(t *testing.T) {
		msg := err.Error()
		if !strings.Contains(msg, "A@x.com") || !strings.Contains(msg, "a@x.com") {
			t.Errorf("openStore error = %q, want both A@x.com and a@x.com named", msg)
		}
		if strings.Contains(msg, "b@x.com") {
			t.Errorf("openStore error = %q names b@x.com, which has no twin", msg)
		}
		if !strings.Contains(msg, "Ünï@x.com") || !strings.Contains(msg, "üNÏ@x.com") {
			t.Errorf("openStore error = %q, want Ünï@x.com and üNÏ@x.com, which differ in case beyond ASCII, named", msg)
		}
		if strings.Contains(msg, "\n") {
			t.Errorf("openStore error = %q, want one line", msg)
		}
	})

	t.Run("the database is unchanged", func(t *testing.T) {
		if v := queryInt(t, raw, "PRAGMA user_version"); v != 0 {
			t.Errorf("PRAGMA user_version = %d, want 0", v)
		}
		if n := queryInt(t, raw, "SELECT count(*) FROM sqlite_master WHERE name = 'user_email_key'"); n != 0 {
			t.Errorf("index user_email_key exists, want none")
		}
		if bytesAfter, _ := os.ReadFile(path); !bytes.Equal(bytesAfter, bytesBefore) {
			t.Errorf("the database file changed (%d bytes before, %d after)", len(bytesBefore), len(bytesAfter))
		}
		if _, err := os.Stat(path + "-wal"); err == nil {
			t.Errorf("the refused migration left a WAL file: the journal mode was changed")
		}
		if n := queryInt(t, raw, "SELECT count(*) FROM sqlite_master WHERE name = 'app_setting'"); n != 0 {
			t.Errorf("table app_setting exists, want none")
		}
		if after := schemaOf(t, raw); after != schemaBefore {
			t.Errorf("schema after the refused migration:\n%s\nwant, as before:\n%s", after, schemaBefore)
		}
		if after := dumpAll(t, raw); after != rowsBefore {
			t.Errorf("rows after the refused migration:\n%s\nwant, as before:\n%s", after, rowsBefore)
		}
	})

	t.Run("once one of the pair is changed, the migration goes through", func(t *testing.T) {
		execAll(t, raw, `UPDATE user SET email = 'a2@x.com' WHERE id = 3`, `DELETE FROM user WHERE id = 5`)
		st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("openStore after fixing the pair: %v", err)
		}
		st.close()
		if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
			t.Errorf("PRAGMA user_version = %d, want %d", got, want)
		}
	})
}

func TestMigrations(t *testing.T) {
	t.Run("migrating twice is a no-op", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "twice.db")
		st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("first openStore: %v", err)
		}
		st.close()
		raw := openRawDB(t, path)
		schema := schemaOf(t, raw)
		st, err = openStore(t.Context(), path, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatalf("second openStore: %v", err)
		}
		st.close()
		if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
			t.Errorf("PRAGMA user_version = %d after two opens, want %d", got, want)
		}
		if after := schemaOf(t, raw); after != schema {
			t.Errorf("schema after the second open:\n%s\nwant, as after the first:\n%s", after, schema)
		}
		if n := queryInt(t, raw, "SELECT count(*) FROM alembic_version"); n != 1 {
			t.Errorf("alembic_version rows = %d, want 1", n)
		}
	})

	t.Run("a database newer than the program is refused", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "newer.db")
		st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		st.close()
		newer := knownMigrations(t) + 1
		raw := openRawDB(t, path)
		execAll(t, raw, "PRAGMA user_version = "+strconv.Itoa(newer))

		st, err = openStore(t.Context(), path, slog.New(slog.DiscardHandler))
		if err == nil {
			st.close()
			t.Fatalf("openStore on a database at version %d succeeded, want an error", newer)
		}
		if msg := err.Error(); !strings.Contains(msg, "newer") || !strings.Contains(msg, strconv.Itoa(newer)) {
			t.Errorf("openStore error = %q, want it to say version %d is newer than this program knows", msg, newer)
		}
		if v := queryInt(t, raw, "PRAGMA user_version"); v != newer {
			t.Errorf("PRAGMA user_version = %d after the refusal, want %d unchanged", v, newer)
		}
	})
}

func TestParseMigrations(t *testing.T) {
	section := func(n int) string {
		return fmt.Sprintf("-- migration %d: step %d\nCREATE TABLE t%d (x);\n", n, n, n)
	}
	t.Run("migrations numbered 1, 2, 3 are split in order", func(t *testing.T) {
		text := "-- a preamble\n\n" + section(1) + section(2) + section(3)
		got, err := parseMigrations(text)
		if err != nil {
			t.Fatalf("parseMigrations = %v, want no error", err)
		}
		if len(got) != 3 {
			t.Fatalf("parseMigrations = %d migrations, want 3", len(got))
		}
		for i, m := range got {
			if m.version != i+1 || m.sql != section(i+1) {
				t.Errorf("migration %d = %d %q, want %d %q", i, m.version, m.sql, i+1, section(i+1))
			}
		}
	})
	for _, tc := range []struct {
		name, text, wantInError string
	}{
		{"a gap in the numbers is refused", section(1) + section(3), "migration 3"},
		{"a first migration other than 1 is refused", section(2) + section(3), "migration 2"},
		{"a repeated number is refused", section(1) + section(1), "migration 1 follows migration 1"},
		{"numbers out of order are refused", section(1) + section(3) + section(2), "migration 3"},
		{"numbers in reverse are refused", section(2) + section(1), "migration 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMigrations(tc.text)
			if err == nil {
				t.Fatalf("parseMigrations = %d migrations, no error; want an error naming %q", len(got), tc.wantInError)
			}
			if !strings.Contains(err.Error(), tc.wantInError) {
				t.Errorf("parseMigrations error = %q, want it to name %q", err, tc.wantInError)
			}
		})
	}
	t.Run("the shipped schema.sql parses, starting at 1", func(t *testing.T) {
		got, err := parseMigrations(schemaSQL)
		if err != nil || len(got) < 2 || got[0].version != 1 {
			t.Errorf("parseMigrations(schema.sql) = %d migrations, %v; want at least 2 from 1", len(got), err)
		}
	})
}

func TestManyWritersAtOnceNeverSeeALockedDatabase(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "writer@example.com")
	const writers, perWriter, readers = 32, 10, 8

	var (
		mu       sync.Mutex
		created  = map[int64]string{} // id → label
		failures []string
		reads    int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}

	start := make(chan struct{})
	done := make(chan struct{})
	var writing, reading sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			<-start
			for i := range perWriter {
				label := fmt.Sprintf("writer %02d recipe %02d", w, i)
				resp := e.postJSON("/api/v1/recipes/", recipeBody(label, "load", "https://example.com/load"), bearer(token)...)
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != http.StatusCreated {
					fail("POST /api/v1/recipes/ %q = %d %s, want 201", label, resp.StatusCode, body)
					continue
				}
				var got recipe
				if err := json.Unmarshal(body, &got); err != nil {
					fail("POST /api/v1/recipes/ %q: decode %s: %v", label, body, err)
					continue
				}
				mu.Lock()
				if other, dup := created[got.ID]; dup {
					failures = append(failures, fmt.Sprintf("id %d given to both %q and %q", got.ID, other, label))
				}
				created[got.ID] = label
				mu.Unlock()
			}
		})
	}
	targets := []string{"/api/v1/recipes/1", "/api/v1/recipes/search/?keyword=writer&max_results=100", "/"}
	for r := range readers {
		reading.Go(func() {
			<-start
			for i := 0; ; i++ {
				// A short pause, so that the readers share the machine
				// with the writers rather than starve them.
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				target := targets[(r+i)%len(targets)]
				if resp := e.get(target); resp.StatusCode != http.StatusOK {
					body, _ := io.ReadAll(resp.Body)
					fail("GET %s = %d %s, want 200", target, resp.StatusCode, body)
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		})
	}
	close(start)
	writing.Wait()
	close(done)
	reading.Wait()

	for _, f := range failures {
		t.Error(f)
	}
	if reads == 0 {
		t.Error("no read ran while the writers wrote")
	}
	if len(created) != writers*perWriter {
		t.Errorf("recipes created = %d, want %d", len(created), writers*perWriter)
	}
	for id, label := range created {
		resp := e.get("/api/v1/recipes/" + strconv.FormatInt(id, 10))
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /api/v1/recipes/%d = %d, want 200", id, resp.StatusCode)
			continue
		}
		if got := decodeBody[recipe](t, resp); got.Label != label {
			t.Errorf("GET /api/v1/recipes/%d = label %q, want %q", id, got.Label, label)
		}
	}
	if logs := e.logs.String(); strings.Contains(logs, "locked") || strings.Contains(logs, "SQLITE_BUSY") {
		t.Errorf("the log mentions a locked database:\n%s", logs)
	}
}

func TestAFullDatabaseAnswers503(t *testing.T) {
	e := newTestEnv(t)
	token := e.login("admin@recipeapi.com", adminPassword)
	// The writer's one connection may not grow the file any more, as if
	// the disk were full: SQLite says SQLITE_FULL either way.
	pages := queryInt(t, e.store.writer, "PRAGMA page_count")
	if _, err := e.store.writer.Exec(fmt.Sprintf("PRAGMA max_page_count = %d", pages)); err != nil {
		t.Fatal(err)
	}
	long := strings.Repeat("x", 240)
	for _, tc := range []struct {
		name  string
		write func(i int) *http.Response
	}{
		{"recipes are created until one answers 503, saying the database is full", func(i int) *http.Response {
			return e.postJSON("/api/v1/recipes/", fmt.Sprintf(`{"label":"%s %d","source":"%s","url":"https://example.com/%d"}`, long, i, long, i), bearer(token)...)
		}},
		{"users sign up until one answers 503, saying the database is full, since the ids are not used up", func(i int) *http.Response {
			return e.postJSON("/api/v1/auth/signup", fmt.Sprintf(`{"email":"cook%d@example.com","password":"password123","first_name":"%s"}`, i, long))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for i := range 100 {
				if resp := tc.write(i); resp.StatusCode != http.StatusCreated {
					expectDetail(t, resp, http.StatusServiceUnavailable, "Database full: nothing could be written")
					return
				}
			}
			t.Fatal("100 writes fitted into a database that may not grow")
		})
	}
	if logs := e.logs.String(); !strings.Contains(logs, "database full") || !strings.Contains(logs, "free some space") {
		t.Errorf("the log does not say that the database is full, and what to do:\n%s", logs)
	}
}

func TestTheDatabaseFileIsPrivate(t *testing.T) {
	e := newTestEnv(t)
	for _, path := range []string{e.cfg.dbPath, e.cfg.dbPath + "-wal", e.cfg.dbPath + "-shm"} {
		info, err := os.Stat(path)
		if errors.Is(err, os.ErrNotExist) && path != e.cfg.dbPath {
			continue // SQLite makes these only when it needs them
		}
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(path), mode)
		}
	}
}

func TestTheTokenSecretIsKeptInTheDatabase(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "secret.db")
	st, err := openStore(ctx, path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	first, err := st.tokenSecret(ctx)
	if err != nil {
		t.Fatalf("tokenSecret = %v", err)
	}
	if len(first) < 32 {
		t.Errorf("tokenSecret is %d bytes, want at least 32", len(first))
	}
	if again, err := st.tokenSecret(ctx); err != nil || string(again) != string(first) {
		t.Errorf("a second tokenSecret = %x, %v; want %x again", again, err, first)
	}
	st.close()

	st, err = openStore(ctx, path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer st.close()
	if reopened, err := st.tokenSecret(ctx); err != nil || string(reopened) != string(first) {
		t.Errorf("tokenSecret after reopening = %x, %v; want %x", reopened, err, first)
	}

	other, err := openStore(ctx, filepath.Join(t.TempDir(), "other.db"), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer other.close()
	if secret, err := other.tokenSecret(ctx); err != nil || string(secret) == string(first) {
		t.Errorf("another database's tokenSecret = %x, %v; want a different random secret", secret, err)
	}
}

func TestReadCacheNeverKeepsAnAnswerOlderThanAWrite(t *testing.T) {
	var c readCache
	key := cacheKey{read: "recipe", n: 1}
	holds := func() bool { _, ok := c.entries[key]; return ok }
	c.load(key, func() ([]recipe, error) {
		c.forget() // a write commits while the read is under way
		return []recipe{{Label: "old"}}, nil
	})
	if holds() {
		t.Error("an answer read before a write was kept after it")
	}
	c.load(key, func() ([]recipe, error) { return []recipe{{Label: "new"}}, nil })
	if got, err := c.load(key, func() ([]recipe, error) { return nil, errors.New("read again") }); err != nil || got[0].Label != "new" {
		t.Errorf("load = %v, %v; want the kept answer", got, err)
	}
	c.setPaused(true)
	c.load(key, func() ([]recipe, error) { return []recipe{{}}, nil })
	if holds() {
		t.Error("a paused cache kept an answer")
	}
	c.setPaused(false)
	long := make([]recipe, 100)
	for i := range long {
		long[i] = recipe{Label: strings.Repeat("é", 256), Source: strings.Repeat("é", 256), URL: strings.Repeat("u", 256)}
	}
	for i := range 200 {
		c.load(cacheKey{read: "newest", n: int64(i)}, func() ([]recipe, error) { return long, nil })
	}
	if c.bytes > readCacheBytes {
		t.Errorf("the cache holds %d bytes, more than its limit %d", c.bytes, readCacheBytes)
	}
}

func TestWritesAreSeenAtOnceByReads(t *testing.T) {
	e := newTestEnv(t)
	token := e.login("admin@recipeapi.com", adminPassword)
	// Warm every cache, then change what they hold.
	e.get("/api/v1/recipes/1")
	e.get("/api/v1/recipes/search/?keyword=vesuvio")
	e.get("/")
	resp := e.sendJSON("PUT", "/api/v1/recipes/1", `{"label":"Chicken Vesuvio II","source":"s","url":"https://example.com/v"}`, bearer(token)...)
	expectStatus(t, resp, http.StatusOK)
	for _, path := range []string{"/api/v1/recipes/1", "/api/v1/recipes/search/?keyword=vesuvio", "/"} {
		body, _ := io.ReadAll(e.get(path).Body)
		if !strings.Contains(string(body), "Chicken Vesuvio II") {
			t.Errorf("GET %s after the update = %.200s, want the new label", path, body)
		}
	}
	expectStatus(t, e.sendJSON("DELETE", "/api/v1/recipes/1", "", bearer(token)...), http.StatusNoContent)
	expectStatus(t, e.get("/api/v1/recipes/1"), http.StatusNotFound)
}

func TestTheSearchCacheCountsItsKeysAndStaysWithinItsBound(t *testing.T) {
	e := newTestEnv(t)
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	// Keywords of the longest length searched, in 4-byte characters, so
	// that each key is as big as a key can be (1 KiB).
	const searches = 6000
	for i := range searches {
		keyword := fmt.Sprintf("%06d", i) + strings.Repeat("𝄞", maxKeywordChars-6)
		expectStatus(t, e.get("/api/v1/recipes/search/?keyword="+url.QueryEscape(keyword)), http.StatusOK)
	}
	runtime.GC()
	runtime.ReadMemStats(&after)

	c := &e.store.cache
	c.mu.Lock()
	keyBytes, entries := 0, 0
	for k := range c.entries {
		keyBytes += len(k.keyword)
		if k.read == "search" {
			entries++
		}
	}
	counted := c.bytes
	c.mu.Unlock()
	if entries == 0 {
		t.Fatal("the search cache is empty: nothing was measured")
	}
	if counted < keyBytes {
		t.Errorf("the search cache counts %d bytes but its keys alone hold %d", counted, keyBytes)
	}
	if counted > readCacheBytes {
		t.Errorf("the search cache counts %d bytes, more than its bound %d", counted, readCacheBytes)
	}
	if grown := int64(after.HeapAlloc) - int64(before.HeapAlloc); grown > 2*readCacheBytes {
		t.Errorf("the heap grew by %d bytes after %d distinct searches, want at most %d", grown, searches, 2*readCacheBytes)
	}
}

// expectSessionsWork logs email in, refreshes, and logs out, checking each
// step, as a user of a migrated database would.
func expectSessionsWork(t *testing.T, e *testEnv, email, password string, userID int64) {
	t.Helper()
	login := e.loginTokens(email, password)
	expectAccessTokenWorks(t, e, login.AccessToken, userID)
	renewed := mustRefresh(t, e, login.RefreshToken)
	expectAccessTokenWorks(t, e, renewed.AccessToken, userID)
	expectRefreshTokenRefused(t, e, login.RefreshToken)
	expectStatus(t, e.send("POST", "/api/v1/auth/logout", nil, bearer(renewed.AccessToken)...), http.StatusNoContent)
	expectAccessTokenRefused(t, e, renewed.AccessToken)
	expectAccessTokenRefused(t, e, login.AccessToken)
	expectRefreshTokenRefused(t, e, renewed.RefreshToken)
	expectAccessTokenWorks(t, e, e.loginTokens(email, password).AccessToken, userID)
}

func TestMigration3OverAReferenceDatabase(t *testing.T) {
	e, raw := startOverAReferenceDatabase(t)
	// A token the reference issued before the move, with the same secret.
	oldToken := referenceAccessToken(e, 9)
	t.Run("every user starts at token generation 0 with no refresh tokens", func(t *testing.T) {
		if n := queryInt(t, raw, "SELECT count(*) FROM user WHERE token_generation = 0"); n != 2 {
			t.Errorf("users at generation 0 = %d, want 2", n)
		}
		if n := queryInt(t, raw, "SELECT count(*) FROM session"); n != 0 {
			t.Errorf("sessions = %d, want 0", n)
		}
		if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
			t.Errorf("PRAGMA user_version = %d, want %d", got, want)
		}
	})
	t.Run("a token the reference issued still works", func(t *testing.T) {
		expectAccessTokenWorks(t, e, oldToken, 9)
	})
	t.Run("a user of the reference logs in, refreshes and logs out", func(t *testing.T) {
		expectSessionsWork(t, e, "old.timer@example.com", "old-password", 7)
	})
	t.Run("one user's logout leaves the other's reference token working", func(t *testing.T) {
		expectAccessTokenWorks(t, e, oldToken, 9)
	})
	t.Run("a user of the reference sees their old recipes in my-recipes and may change them", func(t *testing.T) {
		token := e.login("old.timer@example.com", "old-password")
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(token)...)
		expectStatus(t, resp, http.StatusOK)
		want := `{"results":[{"label":"Old Soup","source":"Grandma","url":"http://example.com/soup","id":5,"submitter_id":7}]}`
		if body := readBody(t, resp); body != want {
			t.Errorf("GET /api/v1/recipes/my-recipes/ = %s, want %s", body, want)
		}
		expectStatus(t, e.sendJSON("PUT", "/api/v1/recipes/5", recipeBody("Old Soup", "Grandma", "http://example.com/soup2"), bearer(token)...), http.StatusOK)
		expectDetail(t, e.send("DELETE", "/api/v1/recipes/12", nil, bearer(token)...), http.StatusForbidden, "You can only delete your recipes")
	})
	t.Run("the reference's superuser logs in, refreshes and logs out, which ends its reference token", func(t *testing.T) {
		expectSessionsWork(t, e, "chef@example.com", "chef-password", 9)
		expectAccessTokenRefused(t, e, oldToken)
	})
	t.Run("the reference's superuser may delete a recipe with no submitter", func(t *testing.T) {
		token := e.login("chef@example.com", "chef-password")
		expectStatus(t, e.send("DELETE", "/api/v1/recipes/13", nil, bearer(token)...), http.StatusNoContent)
	})
}

// holdWriteLock takes the write lock of the database at path on a
// connection of its own, as another program would with BEGIN IMMEDIATE,
// and keeps it until release is called (or the test ends).
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	released := false
	release = func() {
		if released {
			return
		}
		released = true
		conn.ExecContext(context.Background(), "ROLLBACK")
		conn.Close()
		db.Close()
	}
	t.Cleanup(release)
	return release
}

// everyRow is every row of the tables that a write could change.
func everyRow(t *testing.T, e *testEnv) string {
	t.Helper()
	return dump(t, e.store.reader, "SELECT id, email, hashed_password, token_generation FROM user ORDER BY id") +
		dump(t, e.store.reader, "SELECT * FROM recipe ORDER BY id") +
		dump(t, e.store.reader, "SELECT id, user_id, hex(digest), expires_at FROM session ORDER BY id")
}

func TestWhileAnotherProcessHoldsTheWriteLock(t *testing.T) {
	t.Parallel() // it waits out the write deadline
	e := newTestEnv(t)
	cook, token := newRecipeUser(e, "cook@example.com")
	mine := postRecipe(t, e, token, "Soup", "Cook", "https://example.com/soup")
	session := e.loginTokens("cook@example.com", "recipe-password")
	before := everyRow(t, e)

	release := holdWriteLock(t, e.cfg.dbPath)
	// All at once, so that the test waits out the deadline once; they queue
	// for the writer as concurrent requests do, under one deadline each.
	t.Run("every write", func(t *testing.T) { expectWritesRefused(t, e, token, mine.ID, session.RefreshToken) })
	for _, target := range []string{
		fmt.Sprintf("/api/v1/recipes/%d", mine.ID),
		"/api/v1/recipes/search/?keyword=soup",
		"/api/v1/recipes/my-recipes/",
		"/api/v1/auth/me",
		"/",
		"/healthz",
	} {
		t.Run("GET "+target+" answers 200 meanwhile, at once", func(t *testing.T) {
			start := time.Now()
			expectStatus(t, e.get(target, bearer(token)...), http.StatusOK)
			if took := time.Since(start); took > time.Second {
				t.Errorf("GET %s took %v, want under 1s", target, took)
			}
		})
	}

	release()
	t.Run("nothing refused was written, then or once the lock is gone", func(t *testing.T) {
		time.Sleep(time.Second) // room for a late commit, which would be a bug
		if after := everyRow(t, e); after != before {
			t.Errorf("rows after the refused writes:\n%s\nwant, as before:\n%s", after, before)
		}
	})
	t.Run("the same writes work once the lock is gone", func(t *testing.T) {
		expectStatus(t, e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Cook", "https://example.com/stew"), bearer(token)...), http.StatusCreated)
		expectAccessTokenWorks(t, e, mustRefresh(t, e, session.RefreshToken).AccessToken, cook.ID)
	})
	if logs := e.logs.String(); strings.Contains(logs, "internal error") {
		t.Errorf("the log has an internal error, want only warnings:\n%s", logs)
	}
}

// expectWritesRefused sends every kind of write, at once, while another
// connection holds the write lock: each must answer 503 with Retry-After
// within the write deadline.
func expectWritesRefused(t *testing.T, e *testEnv, token string, recipeID int64, refreshToken string) {
	for _, tc := range []struct {
		name string
		send func() *http.Response
	}{
		{"a create", func() *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Cook", "https://example.com/stew"), bearer(token)...)
		}},
		{"an update", func() *http.Response {
			return e.sendJSON("PUT", fmt.Sprintf("/api/v1/recipes/%d", recipeID), recipeBody("Broth", "Cook", "https://example.com/broth"), bearer(token)...)
		}},
		{"a delete", func() *http.Response {
			return e.send("DELETE", fmt.Sprintf("/api/v1/recipes/%d", recipeID), nil, bearer(token)...)
		}},
		{"a signup", func() *http.Response {
			return e.postJSON("/api/v1/auth/signup", `{"email":"new@example.com","password":"password123"}`)
		}},
		{"a login", func() *http.Response {
			return e.tryLogin("cook@example.com", "recipe-password")
		}},
		{"a refresh", func() *http.Response { return refresh(e, refreshToken) }},
		{"a logout", func() *http.Response {
			return e.send("POST", "/api/v1/auth/logout", nil, bearer(token)...)
		}},
		{"a password change", func() *http.Response {
			return e.postJSON("/api/v1/auth/password", passwordBody("recipe-password", "another-password"), bearer(token)...)
		}},
	} {
		t.Run(tc.name+" answers 503 with Retry-After within the deadline", func(t *testing.T) {
			t.Parallel()
			start := time.Now()
			resp := tc.send()
			// The deadline, and room for a busy machine.
			if took := time.Since(start); took > writerWait+2*time.Second {
				t.Errorf("%s %s took %v, want about the deadline %v", resp.Request.Method, resp.Request.URL, took, writerWait)
			}
			if got := resp.Header.Get("Retry-After"); got != strconv.Itoa(int(writerRetryAfter/time.Second)) {
				t.Errorf("%s %s: Retry-After = %q, want %d", resp.Request.Method, resp.Request.URL, got, writerRetryAfter/time.Second)
			}
			expectDetail(t, resp, http.StatusServiceUnavailable, "Database busy, try again later")
		})
	}
}

func TestAWriteWhoseRequestEndsIsRolledBack(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	before := everyRow(t, e)

	t.Run("a create whose client goes away while it waits for the lock is never committed", func(t *testing.T) {
		release := holdWriteLock(t, e.cfg.dbPath)
		ctx, cancel := context.WithCancel(t.Context())
		r := newRequest("POST", "/api/v1/recipes/", strings.NewReader(recipeBody("Stew", "Cook", "https://example.com/stew")),
			append([]string{"Content-Type", "application/json"}, bearer(token)...)...).WithContext(ctx)
		answered := make(chan *http.Response, 1)
		go func() { answered <- e.serve(r) }()
		time.Sleep(200 * time.Millisecond)
		cancel()
		select {
		case resp := <-answered:
			if resp.StatusCode == http.StatusCreated {
				t.Errorf("POST /api/v1/recipes/ = 201 after its client went away")
			}
		case <-time.After(writerWait / 2): // the request's end, not the deadline, must stop the wait
			t.Fatalf("POST /api/v1/recipes/ still waits for the lock %v after its client went away", writerWait/2)
		}
		release()
		time.Sleep(100 * time.Millisecond)
		if after := everyRow(t, e); after != before {
			t.Errorf("rows after the abandoned create:\n%s\nwant, as before:\n%s", after, before)
		}
	})
	t.Run("a write whose request ends between its statements and its commit is rolled back", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		err := e.store.write(ctx, func(tx *sql.Tx) error {
			if _, err := tx.ExecContext(ctx, "INSERT INTO recipe (label) VALUES ('late')"); err != nil {
				return err
			}
			cancel() // the client goes away before the commit
			return nil
		})
		if err == nil {
			t.Error("store.write = nil after its request ended before the commit, want an error")
		}
		if n := queryInt(t, e.store.reader, "SELECT count(*) FROM recipe WHERE label = 'late'"); n != 0 {
			t.Errorf("%d rows of the abandoned write were committed, want 0", n)
		}
	})
}

func TestALockHeldByAnotherProcessGetsA503FromTheService(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the service's whole write deadline, which -short asks to leave out")
	}
	t.Parallel() // it waits out the write deadline
	dbPath := filepath.Join(t.TempDir(), "locked.db")
	_, base := startChild(t, "DATABASE_PATH="+dbPath, "BCRYPT_COST=4", "FIRST_SUPERUSER_PW="+adminPassword, "LOGIN_ATTEMPTS_PER_MINUTE=0")
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)
	create := func() (*http.Response, error) {
		req, _ := http.NewRequest("POST", base+"/api/v1/recipes/", strings.NewReader(recipeBody("Stew", "Cook", "https://example.com/stew")))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+token)
		return http.DefaultClient.Do(req)
	}

	release := holdWriteLock(t, dbPath) // this test's process, not the service's
	start := time.Now()
	resp, err := create()
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /api/v1/recipes/ under another process's lock = %d, Retry-After %q; want 503 with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if took < writerWait-time.Second || took > writerWait+5*time.Second {
		t.Errorf("POST /api/v1/recipes/ answered after %v, want about the write deadline %v", took, writerWait)
	}
	readStart := time.Now()
	if resp, err := http.Get(base + "/api/v1/recipes/1"); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/recipes/1 under the lock = %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}
	if took := time.Since(readStart); took > time.Second {
		t.Errorf("GET /api/v1/recipes/1 under the lock took %v, want under 1s", took)
	}
	release()

	time.Sleep(500 * time.Millisecond)
	raw := openRawDB(t, dbPath)
	if n := queryInt(t, raw, "SELECT count(*) FROM recipe WHERE label = 'Stew'"); n != 0 {
		t.Errorf("%d refused creates were committed after the lock was released, want 0", n)
	}
}
