// store_test.go tests store.go: opening and migrating the database (also
// one the Python reference made), the one writer and what a client sees
// while another process holds the write lock, writes whose request ends,
// the read cache and its bound, a killed process, the database's files,
// the token secret kept in the database, and a full disk.
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
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// openTestStore opens the store at path, failing the test if it cannot;
// it is closed when the test ends, if the test has not closed it.
func openTestStore(t *testing.T, path string) *store {
	t.Helper()
	st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("openStore(%s): %v", filepath.Base(path), err)
	}
	t.Cleanup(func() { st.close() })
	return st
}

// openStoreError is the error of opening the store at path; a store that
// opens is closed at once.
func openStoreError(t *testing.T, path string) error {
	st, err := openStore(t.Context(), path, slog.New(slog.DiscardHandler))
	if err == nil {
		st.close()
	}
	return err
}

// migrationIndexOf is the index in schema.sql's migrations of the first
// one whose SQL contains text: tests find a migration by what it does.
// (TestParseMigrations shows that schema.sql parses.)
func migrationIndexOf(t *testing.T, text string) int {
	t.Helper()
	migrations, _ := parseMigrations(schemaSQL)
	for i, m := range migrations {
		if strings.Contains(m.sql, text) {
			return i
		}
	}
	t.Fatalf("no migration contains %q", text)
	return 0
}

// expectForeignKeysBoundToTheUserTable checks that the user table was
// remade with AUTOINCREMENT and its indexes, that recipe and session
// still name it in their foreign keys, and that SQLite enforces them on a
// connection with foreign keys on.
func expectForeignKeysBoundToTheUserTable(t *testing.T, path string) {
	t.Helper()
	raw := openRawDB(t, path)
	for _, c := range []struct {
		query string
		want  int
	}{
		{`SELECT count(*) FROM pragma_foreign_key_list('recipe') WHERE "table" = 'user' AND "from" = 'submitter_id' AND "to" = 'id' AND on_delete = 'NO ACTION'`, 1},
		{`SELECT count(*) FROM pragma_foreign_key_list('session') WHERE "table" = 'user' AND "from" = 'user_id' AND "to" = 'id' AND on_delete = 'CASCADE'`, 1},
		{"SELECT count(*) FROM sqlite_master WHERE name = 'user_new'", 0},
		{"SELECT count(*) FROM sqlite_master WHERE name = 'user' AND sql LIKE '%AUTOINCREMENT%'", 1},
		{"SELECT count(*) FROM sqlite_master WHERE type = 'index' AND tbl_name = 'user' AND name IN ('ix_user_email', 'ix_user_id', 'user_email_key')", 3},
		{"SELECT count(*) FROM pragma_index_list('user') WHERE name = 'user_email_key' AND \"unique\"", 1},
	} {
		if got := queryInt(t, raw, c.query); got != c.want {
			t.Errorf("%s = %d, want %d", c.query, got, c.want)
		}
	}
	enforcing := openRawDB(t, path+"?_pragma=foreign_keys(1)")
	if _, err := enforcing.Exec("INSERT INTO recipe (label, source, url, submitter_id) VALUES ('x', 'x', 'https://x.com/', 987654)"); err == nil {
		t.Errorf("a recipe naming no user was inserted, want a foreign key error")
	}
}

// startOverAReferenceDatabase makes a database as the reference would
// hold it: user 7, Old Timer, password old-password; superuser 9,
// chef@example.com, password chef-password; recipes 5 and 12 of theirs,
// 13 of no one, and 6 of user 40, whom the reference deleted (its foreign
// keys are off, so the recipe stayed). It starts a service over it,
// checks that the start changed none of those rows, and returns the
// service and a raw connection to the file.
func startOverAReferenceDatabase(t *testing.T) (e *testEnv, raw *sql.DB) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "reference.db")
	makeReferenceDB(t, path,
		fmt.Sprintf(`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
			VALUES (7, 'Old', 'Timer', 'Old.Timer@example.com', 0, '%s')`, passlibHash(t, "old-password")),
		fmt.Sprintf(`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
			VALUES (9, NULL, NULL, 'chef@example.com', 1, '%s')`, passlibHash(t, "chef-password")),
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (5, 'Old Soup', 'http://example.com/soup', 'Grandma', 7)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (6, 'Orphan', 'http://example.com/o', 'G', 40)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (12, 'Old Bread', 'https://example.com/bread', 'Chef', 9)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (13, 'Bare', NULL, NULL, NULL)`,
	)
	raw = openRawDB(t, path)
	before := dumpAll(t, raw)
	e = newTestEnv(t, onDatabase(path))
	if after := dumpAll(t, raw); after != before {
		t.Errorf("rows after the migration:\n%s\nwant, as before:\n%s", after, before)
	}
	return e, raw
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

// Each case starts a service over a database of its own, so that none
// sees what another did.
func TestAReferenceDatabaseIsMigratedInPlace(t *testing.T) {
	for _, tc := range []struct {
		name  string
		check func(t *testing.T, e *testEnv, raw *sql.DB)
	}{
		{"nothing is seeded, and the schema is the newest", func(t *testing.T, e *testEnv, raw *sql.DB) {
			for _, c := range []struct {
				query string
				want  int
			}{
				{"SELECT count(*) FROM user", 2},
				{"SELECT count(*) FROM user WHERE email = 'admin@recipeapi.com' COLLATE NOCASE", 0},
				{"SELECT count(*) FROM user WHERE token_generation = 0", 2},
				{"SELECT count(*) FROM recipe", 4},
				{"SELECT count(*) FROM session", 0},
				{"PRAGMA user_version", knownMigrations(t)},
			} {
				if got := queryInt(t, raw, c.query); got != c.want {
					t.Errorf("%s = %d, want %d", c.query, got, c.want)
				}
			}
			expectDetail(t, e.get("/api/v1/recipes/1"), http.StatusNotFound, "Recipe with ID 1 not found")
			expectDetail(t, e.tryLogin("admin@recipeapi.com", adminPassword), http.StatusBadRequest, "Incorrect username or password")
		}},
		{"the old users log in with their old passwords, the email in any case, and are as they were", func(t *testing.T, e *testEnv, raw *sql.DB) {
			oldTimer := `{"first_name":"Old","surname":"Timer","email":"Old.Timer@example.com","is_superuser":false,"id":7}`
			for _, tc := range []struct{ email, password, want string }{
				{"Old.Timer@example.com", "old-password", oldTimer},
				{"old.timer@EXAMPLE.com", "old-password", oldTimer},
				{"chef@example.com", "chef-password", `{"first_name":null,"surname":null,"email":"chef@example.com","is_superuser":true,"id":9}`},
			} {
				resp := e.get("/api/v1/auth/me", bearer(e.login(tc.email, tc.password))...)
				expectStatus(t, resp, http.StatusOK)
				if body := readBody(t, resp); body != tc.want {
					t.Errorf("GET /api/v1/auth/me after login as %s = %s, want %s", tc.email, body, tc.want)
				}
			}
			expectDetail(t, e.tryLogin("Old.Timer@example.com", "wrong-password"), http.StatusBadRequest, "Incorrect username or password")
		}},
		{"the old recipes are served with their old ids, and found by search in id order", func(t *testing.T, e *testEnv, raw *sql.DB) {
			for id, want := range map[string]string{
				"5":  `{"label":"Old Soup","source":"Grandma","url":"http://example.com/soup","id":5,"submitter_id":7}`,
				"6":  `{"label":"Orphan","source":"G","url":"http://example.com/o","id":6,"submitter_id":40}`,
				"12": `{"label":"Old Bread","source":"Chef","url":"https://example.com/bread","id":12,"submitter_id":9}`,
				"13": `{"label":"Bare","source":"","url":"","id":13,"submitter_id":0}`,
			} {
				resp := e.get("/api/v1/recipes/" + id)
				expectStatus(t, resp, http.StatusOK)
				if body := readBody(t, resp); body != want {
					t.Errorf("GET /api/v1/recipes/%s = %s, want %s", id, body, want)
				}
			}
			if got := searchIDs(t, e, "/api/v1/recipes/search/?keyword=old"); !slices.Equal(got, []int64{5, 12}) {
				t.Errorf("GET /api/v1/recipes/search/?keyword=old = ids %v, want [5 12]", got)
			}
		}},
		{"a new recipe's id follows the old ones", func(t *testing.T, e *testEnv, raw *sql.DB) {
			token := e.login("Old.Timer@example.com", "old-password")
			if got := postRecipe(t, e, token, "New Stew", "Me", "http://example.com/stew"); got.ID != 14 || got.SubmitterID != 7 {
				t.Errorf("POST /api/v1/recipes/ = id %d by %d, want id 14 by 7", got.ID, got.SubmitterID)
			}
		}},
		{"a new user's id is above every id a row names, and the foreign keys bind to the remade user table", func(t *testing.T, e *testEnv, raw *sql.DB) {
			if seq := queryInt(t, raw, "SELECT seq FROM sqlite_sequence WHERE name = 'user'"); seq != 40 {
				t.Errorf("sqlite_sequence for user = %d, want 40, the highest id a recipe names", seq)
			}
			if got := e.signup("new@example.com", "password123"); got.ID != 41 {
				t.Errorf("a new user's id = %d, want 41, above the orphan recipe's submitter 40", got.ID)
			}
			e.store.close()
			expectForeignKeysBoundToTheUserTable(t, e.cfg.dbPath)
		}},
		{"a token the reference issued works until its own user logs out, not another", func(t *testing.T, e *testEnv, raw *sql.DB) {
			oldToken := referenceAccessToken(e, 9)
			expectAccessTokenWorks(t, e, oldToken, 9)
			expectSessionsWork(t, e, "old.timer@example.com", "old-password", 7)
			expectAccessTokenWorks(t, e, oldToken, 9)
			expectSessionsWork(t, e, "chef@example.com", "chef-password", 9)
			expectAccessTokenRefused(t, e, oldToken)
		}},
		{"the old user sees their recipes in my-recipes and may change them, not another's", func(t *testing.T, e *testEnv, raw *sql.DB) {
			token := e.login("old.timer@example.com", "old-password")
			resp := e.get("/api/v1/recipes/my-recipes/", bearer(token)...)
			expectStatus(t, resp, http.StatusOK)
			want := `{"results":[{"label":"Old Soup","source":"Grandma","url":"http://example.com/soup","id":5,"submitter_id":7}]}`
			if body := readBody(t, resp); body != want {
				t.Errorf("GET /api/v1/recipes/my-recipes/ = %s, want %s", body, want)
			}
			expectStatus(t, e.sendJSON("PUT", "/api/v1/recipes/5", recipeBody("Old Soup", "Grandma", "http://example.com/soup2"), bearer(token)...), http.StatusOK)
			expectDetail(t, e.send("DELETE", "/api/v1/recipes/12", nil, bearer(token)...), http.StatusForbidden, "You can only delete your recipes")
		}},
		{"the old superuser may delete a recipe with no submitter", func(t *testing.T, e *testEnv, raw *sql.DB) {
			token := e.login("chef@example.com", "chef-password")
			expectStatus(t, e.send("DELETE", "/api/v1/recipes/13", nil, bearer(token)...), http.StatusNoContent)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, raw := startOverAReferenceDatabase(t)
			tc.check(t, e, raw)
		})
	}
}

func TestTheUserTableRebuildOverADatabaseOfOursKeepsEveryRowAndSession(t *testing.T) {
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
		"PRAGMA user_version = "+itoa(int64(migrationIndexOf(t, "CREATE TABLE user_new"))))
	// The newest user deleted by hand, leaving a session row that
	// names its id: the new high-water mark must be above it.
	deleteUserByHand(t, path, last.ID)
	rows := func() string {
		return dump(t, raw, "SELECT * FROM user ORDER BY id") + dump(t, raw, "SELECT * FROM recipe ORDER BY id") +
			dump(t, raw, "SELECT * FROM session ORDER BY id")
	}
	rowsBefore := rows()

	e = newTestEnv(t, onDatabase(path))
	if after := rows(); after != rowsBefore {
		t.Errorf("users, recipes and sessions after the migration:\n%s\nwant, as before:\n%s", after, rowsBefore)
	}
	if got := e.signup("next@example.com", "password123"); got.ID <= last.ID {
		t.Errorf("a new user's id = %d, want above the deleted user's %d", got.ID, last.ID)
	}
	// The cook's session lives on through the migration.
	expectAccessTokenWorks(t, e, mustRefresh(t, e, sessions.RefreshToken).AccessToken, cook.ID)
	e.store.close()
	expectForeignKeysBoundToTheUserTable(t, path)

	// Deleting a user deletes its sessions, through the new table.
	enforcing := openRawDB(t, path+"?_pragma=foreign_keys(1)")
	execAll(t, enforcing, "DELETE FROM recipe WHERE submitter_id = "+itoa(cook.ID), "DELETE FROM user WHERE id = "+itoa(cook.ID))
	if n := queryInt(t, enforcing, "SELECT count(*) FROM session WHERE user_id = ?", cook.ID); n != 0 {
		t.Errorf("sessions of the deleted user = %d, want 0 (ON DELETE CASCADE)", n)
	}
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
	live, spent, expired, orphan := randomToken(32), randomToken(32), randomToken(32), randomToken(32)
	insert := func(token string, userID int64, expiresAt time.Time, used int) string {
		d := sha256.Sum256([]byte(token))
		return fmt.Sprintf(`INSERT INTO refresh_token (digest, user_id, family, expires_at, used) VALUES (x'%s', %d, '%s', %d, %d)`,
			hex.EncodeToString(d[:]), userID, token[:8], expiresAt.Unix(), used)
	}
	future, past := time.Now().Add(time.Hour), time.Now().Add(-time.Hour)
	execAll(t, raw,
		fmt.Sprintf(`INSERT INTO user (id, email, email_key, is_superuser, hashed_password) VALUES (4, 'cook@example.com', 'cook@example.com', 0, '%s')`, passlibHash(t, "password123")),
		insert(live, 4, future, 0), insert(spent, 4, future, 1), insert(expired, 4, past, 0),
		"PRAGMA foreign_keys = OFF", insert(orphan, 99, future, 0),
		"PRAGMA user_version = "+strconv.Itoa(before),
	)
	raw.Close()
	e := newTestEnv(t, onDatabase(path))

	// In this order: the live token's one refresh comes last.
	if n := queryInt(t, e.store.reader, "SELECT count(*) FROM session"); n != 1 {
		t.Errorf("sessions after the migration = %d, want 1, for the live token only", n)
	}
	if n := refreshRows(t, e, live); n != 1 {
		t.Errorf("the live token has %d session rows, want 1", n)
	}
	for name, refused := range map[string]string{"a spent token": spent, "an expired token": expired, "a token of a user deleted by hand": orphan} {
		t.Run(name+" stays refused", func(t *testing.T) { expectRefreshTokenRefused(t, e, refused) })
	}
	next := mustRefresh(t, e, live)
	expectAccessTokenWorks(t, e, next.AccessToken, 4)
	rawLive, _ := base64.RawURLEncoding.DecodeString(live)
	if !strings.HasPrefix(next.RefreshToken, base64.RawURLEncoding.EncodeToString(rawLive[:15])) {
		t.Errorf("the next token %q does not keep the first bytes of %q as its session's handle", next.RefreshToken, live)
	}
	// Presenting the old token again is reuse: the session ends.
	expectRefreshTokenRefused(t, e, live)
	expectRefreshTokenRefused(t, e, next.RefreshToken)
}

func TestEmailsDifferingOnlyInCaseStopTheMigration(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reference.db")
	hash := passlibHash(t, "some-password")
	var users []string
	for id, email := range []string{"A@x.com", "b@x.com", "a@x.com", "Ünï@x.com", "üNÏ@x.com"} {
		users = append(users, fmt.Sprintf(`INSERT INTO user (id, email, is_superuser, hashed_password) VALUES (%d, '%s', 0, '%s')`, id+1, email, hash))
	}
	makeReferenceDB(t, path, append(users, `INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (1, 'Soup', 'http://x.com/s', 'A', 1)`)...)
	bytesBefore, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}

	err = openStoreError(t, path)
	if err == nil {
		t.Fatal("openStore succeeded on a database with A@x.com and a@x.com, want an error naming them")
	}
	msg := err.Error()
	for _, email := range []string{"A@x.com", "a@x.com", "Ünï@x.com", "üNÏ@x.com"} { // the last two differ in case beyond ASCII
		if !strings.Contains(msg, email) {
			t.Errorf("openStore error = %q, want %s named", msg, email)
		}
	}
	if strings.Contains(msg, "b@x.com") || strings.Contains(msg, "\n") {
		t.Errorf("openStore error = %q names b@x.com, which has no twin, or is not one line", msg)
	}
	// Nothing changed: not a byte of the file (schema, rows, user_version),
	// and no WAL (the journal mode changes only after the migrations).
	if bytesAfter, _ := os.ReadFile(path); !bytes.Equal(bytesAfter, bytesBefore) {
		t.Errorf("the database file changed (%d bytes before, %d after)", len(bytesBefore), len(bytesAfter))
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Errorf("the refused migration left a WAL file: the journal mode was changed")
	}

	// Once one of each pair is changed, the migration goes through.
	raw := openRawDB(t, path)
	execAll(t, raw, `UPDATE user SET email = 'a2@x.com' WHERE id = 3`, `DELETE FROM user WHERE id = 5`)
	if err := openStoreError(t, path); err != nil {
		t.Fatalf("openStore after fixing the pairs: %v", err)
	}
	if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
		t.Errorf("PRAGMA user_version after fixing the pairs = %d, want %d", got, want)
	}
}

// Each case opens a store over a database made by a first open, then
// changed by prepare, which returns the user_version it must have after,
// and the schema to migrate it with ("": schema.sql, through openStore).
func TestMigrations(t *testing.T) {
	for _, tc := range []struct {
		name      string
		prepare   func(t *testing.T, raw *sql.DB) (version int, schema string)
		wantError string // "": none
	}{
		{"migrating twice is a no-op", func(t *testing.T, raw *sql.DB) (int, string) { return knownMigrations(t), "" }, ""},
		{"a database newer than the program is refused, and left as it is", func(t *testing.T, raw *sql.DB) (int, string) {
			execAll(t, raw, "PRAGMA user_version = "+itoa(int64(knownMigrations(t)+1)))
			return knownMigrations(t) + 1, ""
		}, fmt.Sprintf("schema version %d is newer than this program knows (%d)", knownMigrations(t)+1, knownMigrations(t))},
		{"a migration that would leave a row naming a missing parent changes nothing", func(t *testing.T, raw *sql.DB) (int, string) {
			// Pretend the last migration has not run, and make it one that
			// would leave a recipe naming no user.
			execAll(t, raw, "PRAGMA user_version = "+itoa(int64(knownMigrations(t)-1)))
			migrations, _ := parseMigrations(schemaSQL)
			last := migrations[len(migrations)-1]
			return len(migrations) - 1, strings.TrimSuffix(schemaSQL, last.sql) + last.sql[:strings.Index(last.sql, "\n")+1] +
				"INSERT INTO recipe (label, source, url, submitter_id) VALUES ('x', 'x', 'https://x.com/', 987654);\n"
		}, `missing parent (["recipe rowid 1 → user"]); nothing was changed`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "test.db")
			openTestStore(t, path).close()
			raw := openRawDB(t, path)
			version, schema := tc.prepare(t, raw)
			contents := func() string {
				return dump(t, raw, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name") + dumpAll(t, raw)
			}
			before := contents()
			var err error
			if schema == "" {
				err = openStoreError(t, path)
			} else { // as openStore migrates, but with this schema
				db, _ := sql.Open("sqlite", sqliteName(path)+commonPragmas+"_pragma=foreign_keys(0)&_txlock=immediate")
				err = migrate(t.Context(), db, schema, slog.New(slog.DiscardHandler))
			}
			if tc.wantError == "" && err != nil || tc.wantError != "" && (err == nil || !strings.Contains(err.Error(), tc.wantError)) {
				t.Errorf("openStore = %v, want the error %q", err, tc.wantError)
			}
			if got := queryInt(t, raw, "PRAGMA user_version"); got != version {
				t.Errorf("PRAGMA user_version = %d, want %d", got, version)
			}
			if after := contents(); after != before {
				t.Errorf("schema and rows after the second open:\n%s\nwant, as before it:\n%s", after, before)
			}
		})
	}
}

func TestParseMigrations(t *testing.T) {
	section := func(n int) string {
		return fmt.Sprintf("-- migration %d: step %d\nCREATE TABLE t%d (x);\n", n, n, n)
	}
	t.Run("migrations numbered 1, 2, 3 are split in order", func(t *testing.T) {
		got, err := parseMigrations("-- a preamble\n\n" + section(1) + section(2) + section(3))
		if err != nil || len(got) != 3 {
			t.Fatalf("parseMigrations = %d migrations, %v; want 3, no error", len(got), err)
		}
		for i, m := range got {
			if m.version != i+1 || m.sql != section(i+1) {
				t.Errorf("migration %d = %d %q, want %d %q", i, m.version, m.sql, i+1, section(i+1))
			}
		}
	})
	for _, tc := range []struct {
		name, text, wantError string
	}{
		{"a gap in the numbers is refused", section(1) + section(3), "migration 3 follows migration 1"},
		{"a first migration other than 1 is refused", section(2) + section(3), "migration 2 follows migration 0"},
		{"a repeated number is refused", section(1) + section(1), "migration 1 follows migration 1"},
		{"numbers out of order are refused", section(1) + section(3) + section(2), "migration 3 follows migration 1"},
		{"numbers in reverse are refused", section(2) + section(1), "migration 2 follows migration 0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, err := parseMigrations(tc.text); err == nil || err.Error() != "schema.sql: "+tc.wantError {
				t.Errorf("parseMigrations = %d migrations, %v; want the error %q", len(got), err, "schema.sql: "+tc.wantError)
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

// sendOver sends method target with body (JSON, if any) and token, and
// returns the answer and its body, or the error of a request left
// unanswered.
func sendOver(client *http.Client, method, target, token, body string) (*http.Response, string, error) {
	req, _ := http.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, "", err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, string(data), err
}

func TestAcknowledgedWritesSurviveAKilledProcess(t *testing.T) {
	dbPath := filepath.Join(t.TempDir(), "crash.db")
	env := []string{"DATABASE_PATH=" + dbPath, "BCRYPT_COST=4", "FIRST_SUPERUSER_PW=" + adminPassword, "LOGIN_ATTEMPTS_PER_MINUTE=0",
		"RECIPE_CREATION_BURST=0"} // one account writes as fast as it can
	child, base := startChild(t, env...)
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)
	client := &http.Client{Transport: &http.Transport{}} // its connections die with the child
	defer client.CloseIdleConnections()

	// Many clients create recipes until the process dies under them.
	var (
		mu           sync.Mutex
		acknowledged = map[int64]string{} // id → label
		unanswered   int                  // writes the process received and died before answering
		wg           sync.WaitGroup
	)
	for c := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				label := fmt.Sprintf("crash test %d-%d", c, i)
				resp, body, err := sendOver(client, "POST", base+"/api/v1/recipes/", token,
					recipeBody(label, "test", fmt.Sprintf("https://example.com/%d/%d", c, i)))
				var created recipe
				mu.Lock()
				switch {
				case err != nil && !errors.Is(err, syscall.ECONNREFUSED):
					unanswered++
				case err == nil && resp.StatusCode == http.StatusCreated && json.Unmarshal([]byte(body), &created) == nil:
					acknowledged[created.ID] = label
				}
				mu.Unlock()
				if err != nil {
					return // the process is gone
				}
			}
		})
	}
	// Killed once it has acknowledged some writes, while the clients go on
	// sending more: SIGKILL, no chance to clean up.
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		n := len(acknowledged)
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d writes acknowledged within a minute, want 20 before the kill", n)
		}
	}
	if err := child.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	child.Wait()
	wg.Wait()
	if unanswered == 0 {
		t.Fatal("no write was under way when the process was killed; the test proves nothing")
	}

	_, base = startChild(t, env...)
	for id, label := range acknowledged {
		resp, body, err := sendOver(client, "GET", base+"/api/v1/recipes/"+itoa(id), "", "")
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || !strings.Contains(body, label) {
			t.Errorf("GET /api/v1/recipes/%d after the kill = %d %s, want 200 with %q", id, resp.StatusCode, body, label)
		}
	}
	t.Logf("%d acknowledged recipes, all there after a kill that left %d unanswered", len(acknowledged), unanswered)
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
	move := func(t *testing.T, path, from, to string) {
		for _, suffix := range []string{"-wal", "-shm"} {
			if err := os.Rename(path+suffix+from, path+suffix+to); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, tc := range []struct {
		name    string
		change  func(t *testing.T, path string)
		restore func(t *testing.T, path string) // nil: only a restart mends it
		says    []string                        // in the log
	}{
		{"removing the -wal and the -shm", func(t *testing.T, path string) {
			for _, name := range []string{path + "-wal", path + "-shm"} {
				if err := os.Remove(name); err != nil {
					t.Fatal(err)
				}
			}
		}, nil, []string{"test.db-wal was removed", "restart the server"}},
		{"replacing the database file", func(t *testing.T, path string) {
			other := openRawDB(t, path+".new")
			execAll(t, other, "CREATE TABLE t (x)")
			other.Close()
			if err := os.Rename(path+".new", path); err != nil {
				t.Fatal(err)
			}
		}, nil, []string{"test.db was replaced", "restart the server"}},
		{"moving the -wal and the -shm away, then back", func(t *testing.T, path string) { move(t, path, "", ".away") },
			func(t *testing.T, path string) { move(t, path, ".away", "") },
			[]string{"test.db-wal was removed"}},
	} {
		t.Run(tc.name+" makes /healthz 503, stops the caches, and the log says why, once", func(t *testing.T) {
			e := newTestEnv(t)
			expectStatus(t, e.get("/healthz"), http.StatusOK)
			tc.change(t, e.cfg.dbPath)
			expectDetail(t, e.get("/healthz"), http.StatusServiceUnavailable, "Database unavailable")
			waitFor(t, "the caches to keep nothing", func() bool { return !keepsReads(e.store) })
			time.Sleep(4 * externalWritePoll) // a few more looks, in vain
			again := 0                        // times the log says the watch goes on again
			if tc.restore != nil {
				again = 1
				tc.restore(t, e.cfg.dbPath)
				waitFor(t, "the caches to keep reads again", func() bool { return keepsReads(e.store) })
				expectStatus(t, e.get("/healthz"), http.StatusOK)
			}
			e.store.close() // the poller is done: its log can be read
			logs := e.logs.String()
			for _, said := range tc.says {
				if !strings.Contains(logs, said) {
					t.Errorf("the log does not say %q:\n%s", said, logs)
				}
			}
			for said, want := range map[string]int{
				"cannot watch the database":                                 1,
				"watching the database for writes by other processes again": again,
			} {
				if n := strings.Count(logs, said); n != want {
					t.Errorf("the log says %q %d times, want %d:\n%s", said, n, want, logs)
				}
			}
		})
	}
}

// Writes queue in Go for the one writer connection, so that none meets
// SQLite's "database is locked", while reads go on. On a loaded machine a
// write may still wait out its deadline in that queue: errWriterBusy (a
// 503, which a client sends again as its Retry-After asks), but with no
// word from SQLite. So a writer sends such a write again, and the test
// fails on what the claim is about: SQLite's refusal, a write that never
// lands, or writes that did not queue for the one connection.
func TestManyWritersAtOnceNeverSeeALockedDatabase(t *testing.T) {
	e := newTestEnv(t)
	const writers, perWriter, readers, attempts = 32, 10, 8, 20
	var (
		mu            sync.Mutex
		created       = map[int64]string{} // id → label
		failures      []string
		reads, resent int
	)
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	locked := func(err error) bool {
		return strings.Contains(fmt.Sprint(err), "locked") || strings.Contains(fmt.Sprint(err), "SQLITE_BUSY")
	}
	var writing, reading sync.WaitGroup
	for w := range writers {
		writing.Go(func() {
			for i := range perWriter {
				r := recipe{Label: fmt.Sprintf("writer %02d recipe %02d", w, i), SubmitterID: 1}
				got, err := e.store.createRecipe(t.Context(), r)
				for attempt := 1; errors.Is(err, errWriterBusy) && !locked(err) && attempt < attempts; attempt++ {
					mu.Lock()
					resent++
					mu.Unlock()
					got, err = e.store.createRecipe(t.Context(), r)
				}
				if err != nil {
					fail("createRecipe %q (%d attempts at most): %v", r.Label, attempts, err)
					continue
				}
				mu.Lock()
				if other, dup := created[got.ID]; dup {
					failures = append(failures, fmt.Sprintf("id %d given to both %q and %q", got.ID, other, r.Label))
				}
				created[got.ID] = r.Label
				mu.Unlock()
			}
		})
	}
	done := make(chan struct{})
	for r := range readers {
		reading.Go(func() {
			for {
				// A short pause, so that the readers share the machine
				// with the writers rather than starve them.
				select {
				case <-done:
					return
				case <-time.After(time.Millisecond):
				}
				_, err := e.store.recipeByID(t.Context(), 1)
				if r%2 == 1 {
					_, err = e.store.recipesBySubmitter(t.Context(), 1, 0, 100)
				}
				if err != nil {
					fail("a read while the writers wrote: %v", err)
				}
				mu.Lock()
				reads++
				mu.Unlock()
			}
		})
	}
	writing.Wait()
	close(done)
	reading.Wait()

	for _, f := range failures {
		t.Error(f)
	}
	if reads == 0 {
		t.Error("no read ran while the writers wrote")
	}
	if stats := e.store.writer.Stats(); stats.MaxOpenConnections != 1 || stats.WaitCount == 0 {
		t.Errorf("writer pool: at most %d connections, %d waits for one; want 1, and writes that waited for it",
			stats.MaxOpenConnections, stats.WaitCount)
	}
	if len(created) != writers*perWriter {
		t.Errorf("recipes created = %d, want %d", len(created), writers*perWriter)
	}
	for id, label := range created {
		if got, err := e.store.recipeByID(t.Context(), id); err != nil || got.Label != label {
			t.Errorf("recipe %d = %q, %v; want %q", id, got.Label, err, label)
		}
	}
	t.Logf("%d reads meanwhile; %d writes waited out the deadline in the queue and were sent again", reads, resent)
}

func TestAFullDatabaseAnswers503(t *testing.T) {
	e := newTestEnv(t)
	token := e.login("admin@recipeapi.com", adminPassword)
	// The writer's one connection may not grow the file any more, as if
	// the disk were full: SQLite says SQLITE_FULL either way.
	pages := queryInt(t, e.store.writer, "PRAGMA page_count")
	execAll(t, e.store.writer, fmt.Sprintf("PRAGMA max_page_count = %d", pages))
	long := strings.Repeat("x", 240)
	for _, tc := range []struct {
		name  string
		write func(i int) *http.Response
	}{
		{"recipes are created until one answers 503, saying the database is full", func(i int) *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody(fmt.Sprintf("%s %d", long, i), long, fmt.Sprintf("https://example.com/%d", i)), bearer(token)...)
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

// The file holds the secret (and password hashes): only its owner may
// read it.
func TestTheTokenSecretIsKeptInTheDatabaseThatOnlyItsOwnerReads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret.db")
	st := openTestStore(t, path)
	// The store notes all three when it opens (noteFiles): each exists.
	for _, name := range []string{path, path + "-wal", path + "-shm"} {
		info, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if mode := info.Mode().Perm(); mode != 0o600 {
			t.Errorf("%s has mode %o, want 600", filepath.Base(name), mode)
		}
	}
	first, err := st.tokenSecret(t.Context())
	if err != nil || len(first) < 32 {
		t.Fatalf("tokenSecret = %x, %v; want at least 32 bytes", first, err)
	}
	if again, err := st.tokenSecret(t.Context()); err != nil || !bytes.Equal(again, first) {
		t.Errorf("a second tokenSecret = %x, %v; want %x again", again, err, first)
	}
	st.close()

	st = openTestStore(t, path)
	if reopened, err := st.tokenSecret(t.Context()); err != nil || !bytes.Equal(reopened, first) {
		t.Errorf("tokenSecret after reopening = %x, %v; want %x", reopened, err, first)
	}
	other := openTestStore(t, filepath.Join(t.TempDir(), "other.db"))
	if secret, err := other.tokenSecret(t.Context()); err != nil || bytes.Equal(secret, first) {
		t.Errorf("another database's tokenSecret = %x, %v; want a different random secret", secret, err)
	}

	ended, cancel := context.WithCancel(t.Context())
	cancel()
	if secret, err := st.tokenSecret(ended); !errors.Is(err, context.Canceled) {
		t.Errorf("tokenSecret for a request that ended = %x, %v; want context.Canceled", secret, err)
	}
	for _, damaged := range []string{"not hex", hex.EncodeToString(first[:minSecretBytes-1])} {
		execAll(t, st.writer, "UPDATE app_setting SET value = '"+damaged+"' WHERE name = 'jwt_secret'")
		if secret, err := st.tokenSecret(t.Context()); err == nil || !strings.Contains(err.Error(), "delete the jwt_secret row") {
			t.Errorf("tokenSecret kept as %q = %x, %v; want an error saying to delete the row", damaged, secret, err)
		}
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
	// 200 such lists are about 30 MB, far past the bound.
	for i := range 200 {
		c.load(cacheKey{read: "newest", n: int64(i)}, func() ([]recipe, error) { return long, nil })
	}
	if c.bytes > readCacheBytes || len(c.entries) == 0 {
		t.Errorf("the cache holds %d entries, %d bytes; want some, within its limit %d", len(c.entries), c.bytes, readCacheBytes)
	}
}

func TestWritesAreSeenAtOnceByReads(t *testing.T) {
	e := newTestEnv(t)
	token := e.login("admin@recipeapi.com", adminPassword)
	targets := []string{"/api/v1/recipes/1", "/api/v1/recipes/search/?keyword=vesuvio", "/"}
	// Every read cached, then a change to what they hold. The watch of the
	// file forgets the cache after the login's write: read until it keeps.
	waitFor(t, "the three reads to be cached", func() bool {
		for _, target := range targets {
			e.get(target) // only an answer of 200 is cached
		}
		return cacheEntries(e.store, "") == len(targets)
	})
	resp := e.sendJSON("PUT", "/api/v1/recipes/1", `{"label":"Chicken Vesuvio II","source":"s","url":"https://example.com/v"}`, bearer(token)...)
	expectStatus(t, resp, http.StatusOK)
	for _, target := range targets {
		if body := readBody(t, e.get(target)); !strings.Contains(body, "Chicken Vesuvio II") {
			t.Errorf("GET %s after the update = %.200s, want the new label", target, body)
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
		target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(fmt.Sprintf("%06d", i)+strings.Repeat("𝄞", maxKeywordChars-6))
		// A search that a loaded machine makes run past its time limit
		// answers 503 and is not cached: it is sent again.
		resp := e.get(target)
		for attempt := 1; resp.StatusCode == http.StatusServiceUnavailable && attempt < 20; attempt++ {
			resp = e.get(target)
		}
		expectStatus(t, resp, http.StatusOK)
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

// holdWriteLock takes the write lock of the database at path on a
// connection of its own, as another program would with BEGIN IMMEDIATE,
// checks that a third connection is refused it, and keeps it until
// release is called (or the test ends).
func holdWriteLock(t *testing.T, path string) (release func()) {
	t.Helper()
	db := openRawDB(t, path)
	conn, err := db.Conn(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.ExecContext(context.Background(), "BEGIN IMMEDIATE"); err != nil {
		t.Fatalf("BEGIN IMMEDIATE: %v", err)
	}
	other := openRawDB(t, path) // no busy_timeout: refused at once
	if _, err := other.Exec("BEGIN IMMEDIATE"); !strings.Contains(fmt.Sprint(err), "SQLITE_BUSY") {
		t.Fatalf("BEGIN IMMEDIATE beside the holder = %v, want SQLITE_BUSY: the lock is not held", err)
	}
	other.Close()
	var once sync.Once
	release = func() {
		once.Do(func() {
			conn.ExecContext(context.Background(), "ROLLBACK")
			conn.Close()
		})
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

// expectAnsweredAtTheDeadline checks that a write took the write deadline
// (it waited for the lock rather than fail at once) but not much more
// (room for a busy machine).
func expectAnsweredAtTheDeadline(t *testing.T, what string, took time.Duration) {
	t.Helper()
	if took < writerWait*9/10 || took > writerWait+5*time.Second {
		t.Errorf("%s answered after %v, want about the write deadline %v", what, took, writerWait)
	}
}

func TestWhileAnotherProcessHoldsTheWriteLock(t *testing.T) {
	t.Parallel() // it waits out the write deadline
	e := newTestEnv(t)
	cook, token := newRecipeUser(e, "cook@example.com")
	mine := postRecipe(t, e, token, "Soup", "Cook", "https://example.com/soup")
	session := e.loginTokens("cook@example.com", "recipe-password")
	recipePath := "/api/v1/recipes/" + itoa(mine.ID)
	before := everyRow(t, e)

	release := holdWriteLock(t, e.cfg.dbPath)
	// A create whose client goes away while it waits for the lock stops
	// waiting: 499, not the deadline's 503 (nor, below, a row).
	ctx, cancel := context.WithCancel(t.Context())
	r := newRequest("POST", "/api/v1/recipes/", strings.NewReader(recipeBody("Gone", "Cook", "https://example.com/gone")),
		append([]string{"Content-Type", "application/json"}, bearer(token)...)...).WithContext(ctx)
	answered := make(chan *http.Response, 1)
	go func() { answered <- e.serve(r) }()
	// The writer's one connection in use is the create waiting for the lock.
	waitFor(t, "the create to wait for the lock", func() bool { return e.store.writer.Stats().InUse == 1 })
	cancel()
	select {
	case resp := <-answered:
		expectDetail(t, resp, 499, "Client Closed Request")
	case <-time.After(2 * writerWait):
		t.Fatalf("POST /api/v1/recipes/ still waits for the lock %v after its client went away", 2*writerWait)
	}

	// Every kind of write at once, so that the test waits out the deadline
	// once; they queue for the writer as concurrent requests do, under one
	// deadline each. Goroutines, not parallel subtests, which -parallel
	// (GOMAXPROCS) would run a few at a time.
	writes := []struct {
		name string
		send func() *http.Response
	}{
		{"a create", func() *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Cook", "https://example.com/stew"), bearer(token)...)
		}},
		{"an update", func() *http.Response {
			return e.sendJSON("PUT", recipePath, recipeBody("Broth", "Cook", "https://example.com/broth"), bearer(token)...)
		}},
		{"a delete", func() *http.Response { return e.send("DELETE", recipePath, nil, bearer(token)...) }},
		{"a signup", func() *http.Response {
			return e.postJSON("/api/v1/auth/signup", `{"email":"new@example.com","password":"password123"}`)
		}},
		{"a login", func() *http.Response { return e.tryLogin("cook@example.com", "recipe-password") }},
		{"a refresh", func() *http.Response { return refresh(e, session.RefreshToken) }},
		{"a logout", func() *http.Response { return e.send("POST", "/api/v1/auth/logout", nil, bearer(token)...) }},
		{"a password change", func() *http.Response {
			return e.postJSON("/api/v1/auth/password", passwordBody("recipe-password", "another-password"), bearer(token)...)
		}},
	}
	answers := make([]*http.Response, len(writes))
	took := make([]time.Duration, len(writes))
	var sending sync.WaitGroup
	for i, w := range writes {
		sending.Go(func() {
			start := time.Now()
			answers[i] = w.send()
			took[i] = time.Since(start)
		})
	}
	sending.Wait()
	for i, w := range writes {
		t.Run(w.name+" answers 503 with Retry-After at the deadline", func(t *testing.T) {
			resp := answers[i]
			expectAnsweredAtTheDeadline(t, resp.Request.Method+" "+resp.Request.URL.Path, took[i])
			if got := resp.Header.Get("Retry-After"); got != strconv.Itoa(int(writerRetryAfter/time.Second)) {
				t.Errorf("%s %s: Retry-After = %q, want %d", resp.Request.Method, resp.Request.URL, got, writerRetryAfter/time.Second)
			}
			expectDetail(t, resp, http.StatusServiceUnavailable, "Database busy, try again later")
		})
	}
	// The reads answer meanwhile: a read that waited for the lock would
	// wait until it is released, after them.
	for _, target := range []string{recipePath, "/api/v1/recipes/search/?keyword=soup", "/api/v1/recipes/my-recipes/", "/api/v1/auth/me", "/", "/healthz"} {
		start := time.Now()
		expectStatus(t, e.get(target, bearer(token)...), http.StatusOK)
		if took := time.Since(start); took > writerWait/2 {
			t.Errorf("GET %s under the lock took %v, want well under the write deadline %v", target, took, writerWait)
		}
	}

	release()
	time.Sleep(time.Second) // room for a late commit, which would be a bug
	if after := everyRow(t, e); after != before {
		t.Errorf("rows after the abandoned and the refused writes, once the lock is gone:\n%s\nwant, as before:\n%s", after, before)
	}
	// The same writes work once the lock is gone.
	expectStatus(t, e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Cook", "https://example.com/stew"), bearer(token)...), http.StatusCreated)
	expectAccessTokenWorks(t, e, mustRefresh(t, e, session.RefreshToken).AccessToken, cook.ID)
	if logs := e.logs.String(); strings.Contains(logs, "internal error") {
		t.Errorf("the log has an internal error, want only warnings:\n%s", logs)
	}
}

func TestAWriteThatDoesNotFinishIsRolledBack(t *testing.T) {
	failure := errors.New("the write's own failure")
	for _, tc := range []struct {
		name    string
		finish  func(cancel context.CancelFunc) error // after the write's statements
		wantErr error
	}{
		{"a write whose request ends between its statements and its commit is rolled back",
			func(cancel context.CancelFunc) error { cancel(); return nil }, context.Canceled},
		{"a write whose function fails is rolled back, and its error comes back as it is",
			func(context.CancelFunc) error { return failure }, failure},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t)
			ctx, cancel := context.WithCancel(t.Context())
			defer cancel()
			err := e.store.write(ctx, func(tx *sql.Tx) error {
				if _, err := tx.ExecContext(ctx, "INSERT INTO recipe (label) VALUES ('late')"); err != nil {
					return err
				}
				return tc.finish(cancel)
			})
			if !errors.Is(err, tc.wantErr) {
				t.Errorf("store.write = %v, want %v", err, tc.wantErr)
			}
			if n := queryInt(t, e.store.reader, "SELECT count(*) FROM recipe WHERE label = 'late'"); n != 0 {
				t.Errorf("%d rows of the unfinished write were committed, want 0", n)
			}
		})
	}
}

func TestALockHeldByAnotherProcessGetsA503FromTheService(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the service's whole write deadline, which -short asks to leave out")
	}
	t.Parallel() // it waits out the write deadline
	dbPath := filepath.Join(t.TempDir(), "locked.db")
	_, base := startChild(t, "DATABASE_PATH="+dbPath, "BCRYPT_COST=4", "FIRST_SUPERUSER_PW="+adminPassword, "LOGIN_ATTEMPTS_PER_MINUTE=0")
	token := loginOver(t, base, "admin@recipeapi.com", adminPassword)
	client := &http.Client{Transport: &http.Transport{}}
	defer client.CloseIdleConnections()

	release := holdWriteLock(t, dbPath) // this test's process, not the service's
	start := time.Now()
	resp, body, err := sendOver(client, "POST", base+"/api/v1/recipes/", token, recipeBody("Stew", "Cook", "https://example.com/stew"))
	expectAnsweredAtTheDeadline(t, "POST /api/v1/recipes/ under another process's lock", time.Since(start))
	if err != nil {
		t.Fatal(err)
	}
	if want := `{"detail":"Database busy, try again later"}`; resp.StatusCode != http.StatusServiceUnavailable || body != want || resp.Header.Get("Retry-After") == "" {
		t.Errorf("POST /api/v1/recipes/ under another process's lock = %d %s, Retry-After %q; want 503 %s with Retry-After",
			resp.StatusCode, body, resp.Header.Get("Retry-After"), want)
	}
	start = time.Now()
	if resp, body, err = sendOver(client, "GET", base+"/api/v1/recipes/1", "", ""); err != nil || resp.StatusCode != http.StatusOK {
		t.Errorf("GET /api/v1/recipes/1 under the lock: %v %s, want 200", err, body)
	}
	if took := time.Since(start); took > writerWait/2 {
		t.Errorf("GET /api/v1/recipes/1 under the lock took %v, want well under the write deadline %v", took, writerWait)
	}
	release()

	time.Sleep(500 * time.Millisecond) // room for a late commit, which would be a bug
	if n := queryInt(t, openRawDB(t, dbPath), "SELECT count(*) FROM recipe WHERE label = 'Stew'"); n != 0 {
		t.Errorf("%d refused creates were committed after the lock was released, want 0", n)
	}
}

func TestTheSearchIndexIsBuiltOverAReferenceDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "reference.db")
	makeReferenceDB(t, path,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (4, 'ÉCLAIR AU CAFÉ', NULL, NULL, NULL)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (8, 'Old "quoted" 100% soup', NULL, NULL, NULL)`,
		`INSERT INTO recipe (id, label, url, source, submitter_id) VALUES (9, 'Plain bread', NULL, NULL, NULL)`,
	)
	var logs bytes.Buffer
	st, err := openStore(t.Context(), path, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	st.close()
	if !strings.Contains(logs.String(), "building the search index") || !strings.Contains(logs.String(), "recipes=3") {
		t.Errorf("the log = %q, want a line saying the search index is built over 3 recipes", logs.String())
	}

	e := newTestEnv(t, onDatabase(path))
	for keyword, want := range map[string][]int64{"éclair": {4}, `"quoted"`: {8}, "0% s": {8}, "BREAD": {9}, "old": {8}} {
		target := "/api/v1/recipes/search/?keyword=" + url.QueryEscape(keyword)
		if got := searchIDs(t, e, target); !slices.Equal(got, want) {
			t.Errorf("GET %s on a migrated reference database = ids %v, want %v", target, got, want)
		}
	}
	t.Run("a second start does not build the index again", func(t *testing.T) {
		logs.Reset()
		st, err := openStore(t.Context(), path, slog.New(slog.NewTextHandler(&logs, nil)))
		if err != nil {
			t.Fatal(err)
		}
		st.close()
		if strings.Contains(logs.String(), "search index") {
			t.Errorf("the log of a second start = %q, want nothing about the index", logs.String())
		}
	})
}
