// store_test.go tests the database layer and the contract rows that rest on
// it: a database that the Python reference made is migrated in place and
// keeps its users, passwords, recipes and ids, and nothing is seeded into
// it; two emails that differ only in case stop the migration with a message
// naming them and change nothing; migrating is idempotent, and a database
// newer than the program is refused; schema.sql's migrations must be
// numbered in order; a fresh database is seeded once, with the contract's
// three recipes; emails are unique ignoring case even under racing signups;
// many concurrent writers never see "database is locked"; once the user
// ids are used up, or the database cannot grow, a write answers 503 saying
// which; the file is private to its owner; and the token secret kept in the
// database is stable.
// Every test runs on a real SQLite file in t.TempDir().
package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode"

	"golang.org/x/crypto/bcrypt"
)

// referenceDDL is the schema the reference's Alembic revision ec46ad7fc181
// creates in SQLite, written out by hand so that the test does not depend
// on our schema.sql.
var referenceDDL = []string{
	`CREATE TABLE user (
		id INTEGER NOT NULL,
		first_name VARCHAR(256),
		surname VARCHAR(256),
		email VARCHAR NOT NULL,
		is_superuser BOOLEAN,
		hashed_password VARCHAR NOT NULL,
		PRIMARY KEY (id)
	)`,
	`CREATE INDEX ix_user_email ON user (email)`,
	`CREATE INDEX ix_user_id ON user (id)`,
	`CREATE TABLE recipe (
		id INTEGER NOT NULL,
		label VARCHAR(256) NOT NULL,
		url VARCHAR(256),
		source VARCHAR(256),
		submitter_id INTEGER,
		PRIMARY KEY (id),
		FOREIGN KEY(submitter_id) REFERENCES user (id)
	)`,
	`CREATE INDEX ix_recipe_id ON recipe (id)`,
	`CREATE INDEX ix_recipe_url ON recipe (url)`,
	`CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)`,
	`INSERT INTO alembic_version (version_num) VALUES ('ec46ad7fc181')`,
}

// passlibHash hashes password as passlib writes it: bcrypt with the $2b$
// prefix (the same algorithm as Go's $2a$).
func passlibHash(t *testing.T, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), testBcryptCost)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(string(hash), "$2a$") {
		t.Fatalf("bcrypt hash %q does not start with $2a$", hash)
	}
	return "$2b$" + strings.TrimPrefix(string(hash), "$2a$")
}

// openRawDB opens the database file directly, as another program would.
func openRawDB(t *testing.T, path string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// execAll runs statements on db, failing the test at the first error.
func execAll(t *testing.T, db *sql.DB, statements ...string) {
	t.Helper()
	for _, s := range statements {
		if _, err := db.Exec(s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// makeReferenceDB creates, at path, a database as the reference makes it,
// then runs rows (its INSERTs), and closes it.
func makeReferenceDB(t *testing.T, path string, rows ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	execAll(t, db, referenceDDL...)
	execAll(t, db, rows...)
}

// queryRows returns the columns and every row that query yields, each
// value as the driver gives it.
func queryRows(t *testing.T, db *sql.DB, query string) (cols []string, rows [][]any) {
	t.Helper()
	result, err := db.Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer result.Close()
	if cols, err = result.Columns(); err != nil {
		t.Fatal(err)
	}
	for result.Next() {
		values := make([]any, len(cols))
		pointers := make([]any, len(cols))
		for i := range values {
			pointers[i] = &values[i]
		}
		if err := result.Scan(pointers...); err != nil {
			t.Fatal(err)
		}
		rows = append(rows, values)
	}
	if err := result.Err(); err != nil {
		t.Fatal(err)
	}
	return cols, rows
}

// dump returns every row query yields, one line per row, for comparing a
// table before and after.
func dump(t *testing.T, db *sql.DB, query string) string {
	t.Helper()
	_, rows := queryRows(t, db, query)
	var out strings.Builder
	for _, values := range rows {
		for i, v := range values {
			if b, ok := v.([]byte); ok {
				values[i] = string(b)
			}
		}
		fmt.Fprintf(&out, "%q\n", values)
	}
	return out.String()
}

// dumpAll is every row of the reference's tables.
func dumpAll(t *testing.T, db *sql.DB) string {
	t.Helper()
	return dump(t, db, "SELECT id, first_name, surname, email, is_superuser, hashed_password FROM user ORDER BY id") +
		dump(t, db, "SELECT * FROM recipe ORDER BY id") +
		dump(t, db, "SELECT * FROM alembic_version ORDER BY version_num")
}

// schemaOf is the database's whole schema.
func schemaOf(t *testing.T, db *sql.DB) string {
	t.Helper()
	return dump(t, db, "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
}

func queryInt(t *testing.T, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// knownMigrations is how many migrations schema.sql holds.
func knownMigrations(t *testing.T) int {
	t.Helper()
	migrations, err := parseMigrations(schemaSQL)
	if err != nil {
		t.Fatalf("parseMigrations(schema.sql): %v", err)
	}
	return len(migrations)
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

// contractRecipes are the contract's three seeded recipes, by the seeded
// superuser (id 1), as "id|label|source|url|submitter_id".
var contractRecipes = []string{
	"1|Chicken Vesuvio|Serious Eats|http://www.seriouseats.com/recipes/2011/12/chicken-vesuvio-recipe.html|1",
	"2|Chicken Paprikash|No Recipes|http://norecipes.com/recipe/chicken-paprikash/|1",
	"3|Cauliflower and Tofu Curry Recipe|Serious Eats|http://www.seriouseats.com/recipes/2011/02/cauliflower-and-tofu-curry-recipe.html|1",
}

func TestAFreshDatabaseIsSeededOnce(t *testing.T) {
	e := newTestEnv(t)
	raw := openRawDB(t, e.cfg.dbPath)
	recipeRows := func(t *testing.T) []string {
		t.Helper()
		rows, err := raw.Query("SELECT id || '|' || label || '|' || source || '|' || url || '|' || submitter_id FROM recipe ORDER BY id")
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		var got []string
		for rows.Next() {
			var s string
			if err := rows.Scan(&s); err != nil {
				t.Fatal(err)
			}
			got = append(got, s)
		}
		return got
	}

	t.Run("the first superuser is the only user", func(t *testing.T) {
		got := dump(t, raw, "SELECT id, email, is_superuser, first_name, surname FROM user")
		want := fmt.Sprintf("%q\n", []any{int64(1), "admin@recipeapi.com", int64(1), nil, nil})
		if got != want {
			t.Errorf("users = %s, want %s", got, want)
		}
		e.login("admin@recipeapi.com", adminPassword)
	})

	t.Run("exactly the contract's three recipes, by the superuser", func(t *testing.T) {
		if got := recipeRows(t); !slices.Equal(got, contractRecipes) {
			t.Errorf("recipes =\n%q\nwant\n%q", got, contractRecipes)
		}
	})

	t.Run("the schema is at the last migration", func(t *testing.T) {
		if got, want := queryInt(t, raw, "PRAGMA user_version"), knownMigrations(t); got != want {
			t.Errorf("PRAGMA user_version = %d, want %d", got, want)
		}
		if got := dump(t, raw, "SELECT version_num FROM alembic_version"); got != fmt.Sprintf("%q\n", []any{"ec46ad7fc181"}) {
			t.Errorf("alembic_version = %s, want ec46ad7fc181", got)
		}
	})

	t.Run("starting again seeds nothing and changes no password", func(t *testing.T) {
		before := dumpAll(t, raw)
		e.store.close()
		cfg := e.cfg
		cfg.firstSuperuserPassword = "a-different-password"
		again := startTestEnv(t, cfg, time.Now)
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after a restart:\n%s\nwant, as before:\n%s", after, before)
		}
		again.login("admin@recipeapi.com", adminPassword)
		resp := again.tryLogin("admin@recipeapi.com", "a-different-password")
		expectDetail(t, resp, http.StatusBadRequest, "Incorrect username or password")

		created, err := again.store.seed(t.Context(), "other@recipeapi.com", passlibHash(t, "other-password"))
		if err != nil || created {
			t.Errorf("seed on a database with users = %v, %v; want false, nil", created, err)
		}
		var printed strings.Builder
		cfg.firstSuperuserPassword = "" // a generated password would be printed
		if err := seedFirstSuperuser(t.Context(), again.store, again.passwords, cfg, &printed, slog.New(slog.DiscardHandler)); err != nil {
			t.Errorf("seedFirstSuperuser on a seeded database = %v", err)
		}
		if printed.Len() != 0 {
			t.Errorf("seedFirstSuperuser on a seeded database printed %q, want nothing", printed.String())
		}
		if after := dumpAll(t, raw); after != before {
			t.Errorf("rows after seeding again:\n%s\nwant, as before:\n%s", after, before)
		}
	})
}

// caseVariant returns email with the letters chosen by the bits of n in
// upper case: each n below 2^(letters) gives a different spelling.
func caseVariant(email string, n int) string {
	out := []rune(email)
	bit := 0
	for i, r := range out {
		if unicode.IsLetter(r) {
			if n&(1<<bit) != 0 {
				out[i] = unicode.ToUpper(r)
			}
			bit++
		}
	}
	return string(out)
}

func TestEmailsAreUniqueIgnoringCase(t *testing.T) {
	t.Run("the store refuses an email that differs only in case", func(t *testing.T) {
		e := newTestEnv(t)
		first, err := e.store.createUser(t.Context(), user{Email: "A@x.com", HashedPassword: "x"})
		if err != nil {
			t.Fatalf("createUser(A@x.com) = %v", err)
		}
		for _, email := range []string{"a@X.COM", "A@x.com", "a@x.com", "A@X.COM"} {
			if _, err := e.store.createUser(t.Context(), user{Email: email, HashedPassword: "x"}); !errors.Is(err, errEmailTaken) {
				t.Errorf("createUser(%s) after A@x.com = %v, want errEmailTaken", email, err)
			}
		}
		if _, err := e.store.createUser(t.Context(), user{Email: "b@x.com", HashedPassword: "x"}); err != nil {
			t.Errorf("createUser(b@x.com) = %v, want no error", err)
		}
		found, err := e.store.userByEmail(t.Context(), "a@X.COM")
		if err != nil || found.ID != first.ID || found.Email != "A@x.com" {
			t.Errorf("userByEmail(a@X.COM) = %+v, %v; want user %d as A@x.com", found, err, first.ID)
		}
	})

	t.Run("of 20 racing signups of one email in different cases, exactly one wins", func(t *testing.T) {
		e := newTestEnv(t)
		const racers = 20
		type outcome struct {
			email  string
			status int
			body   string
		}
		outcomes := make(chan outcome, racers)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range racers {
			email := caseVariant("racer@example.com", i)
			wg.Go(func() {
				<-start
				body := fmt.Sprintf(`{"email":%q,"password":"racer-password"}`, email)
				// A 503 means the hashers were all busy: the contract's
				// answer to a flood, which a client retries.
				for attempt := 0; ; attempt++ {
					resp := e.postJSON("/api/v1/auth/signup", body)
					text, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != http.StatusServiceUnavailable || attempt == 200 {
						outcomes <- outcome{email, resp.StatusCode, string(text)}
						return
					}
					time.Sleep(5 * time.Millisecond)
				}
			})
		}
		close(start)
		wg.Wait()
		close(outcomes)

		var winners []string
		for o := range outcomes {
			switch o.status {
			case http.StatusCreated:
				winners = append(winners, o.email)
			case http.StatusBadRequest:
				if want := `{"detail":"The user with this email already exists in the system"}`; o.body != want {
					t.Errorf("POST /api/v1/auth/signup %s = 400 %s, want %s", o.email, o.body, want)
				}
			default:
				t.Errorf("POST /api/v1/auth/signup %s = %d %s, want 201 or 400", o.email, o.status, o.body)
			}
		}
		if len(winners) != 1 {
			t.Errorf("signups that won = %q, want exactly one", winners)
		}
		raw := openRawDB(t, e.cfg.dbPath)
		if n := queryInt(t, raw, "SELECT count(*) FROM user WHERE email = 'racer@example.com' COLLATE NOCASE"); n != 1 {
			t.Errorf("users with the racers' email = %d, want 1", n)
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

func TestOnceTheUserIDsAreUsedUpASignupSaysSo(t *testing.T) {
	// A reference database whose last user has the largest id SQLite
	// allows: the migration's AUTOINCREMENT can give no id after it.
	path := filepath.Join(t.TempDir(), "reference.db")
	makeReferenceDB(t, path, fmt.Sprintf(`INSERT INTO user (id, first_name, surname, email, is_superuser, hashed_password)
		VALUES (%d, 'Last', 'One', 'last@example.com', 0, '%s')`, int64(math.MaxInt64), passlibHash(t, "last-password")))
	e := newTestEnv(t, onDatabase(path))

	t.Run("a signup answers 503, saying why, with no Retry-After, and the log tells the operator", func(t *testing.T) {
		resp := e.postJSON("/api/v1/auth/signup", `{"email":"new@example.com","password":"password123"}`)
		if retry := resp.Header.Get("Retry-After"); retry != "" {
			t.Errorf("Retry-After = %q; want none: waiting will not help", retry)
		}
		expectDetail(t, resp, http.StatusServiceUnavailable, "No more accounts can be created: the user ids are used up")
		if logs := e.logs.String(); !strings.Contains(logs, "user ids are used up") {
			t.Errorf("the log does not say that the user ids are used up:\n%s", logs)
		}
	})
	t.Run("the users there log in and submit recipes as before", func(t *testing.T) {
		token := e.login("last@example.com", "last-password")
		resp := e.postJSON("/api/v1/recipes/", `{"label":"Last Soup","source":"s","url":"https://example.com/soup"}`, bearer(token)...)
		expectStatus(t, resp, http.StatusCreated)
	})
	t.Run("createsuperuser of a new email says why in one line", func(t *testing.T) {
		_, err := runCommand(t, map[string]string{"BCRYPT_COST": "4"}, "a-strong-password\n", "createsuperuser", "-db", path, "-email", "boss@example.com")
		if err == nil || !strings.Contains(err.Error(), "user ids are used up") || strings.Contains(err.Error(), "\n") {
			t.Errorf("createsuperuser = %v, want one line saying the user ids are used up", err)
		}
	})
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
