// identity_test.go tests that an identity never carries over to someone
// else: the seeded first superuser starts afresh, user ids are never given
// twice (the user table's AUTOINCREMENT, added by a migration that keeps
// every row and every foreign key), createsuperuser ends every session of
// the account it changes, and what answers an authenticated request is
// never cached.
package main

import (
	"database/sql"
	"log/slog"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// deleteUserByHand deletes a user as an operator with the sqlite3 shell
// would: on a connection of its own, with foreign keys off (the shell's
// default), so that the user's recipes and sessions stay.
func deleteUserByHand(t *testing.T, path string, id int64) {
	t.Helper()
	raw := openRawDB(t, path)
	raw.SetMaxOpenConns(1) // so that the PRAGMA holds for the DELETE
	execAll(t, raw, "PRAGMA foreign_keys = OFF")
	if _, err := raw.Exec("DELETE FROM user WHERE id = ?", id); err != nil {
		t.Fatal(err)
	}
	raw.Close()
}

func TestTheSeededSuperuserStartsWithAFreshIdentity(t *testing.T) {
	old := newTestEnv(t)
	cfg := old.cfg
	oldAdmin := old.loginTokens("admin@recipeapi.com", adminPassword)
	old.store.close()

	t.Run("a new database with the same secret: the old admin's token is not the new superuser", func(t *testing.T) {
		// A new file, the same JWT_SECRET.
		e := newTestEnv(t, func(c *config) { c.firstSuperuser = "boss@example.com" })
		boss, err := e.store.userByEmail(t.Context(), "boss@example.com")
		if err != nil || boss.ID != 1 {
			t.Fatalf("seeded superuser = %+v, %v; want id 1, as the old admin had", boss, err)
		}
		if boss.TokenGeneration == 0 {
			t.Errorf("seeded superuser's token generation = 0, want a random one")
		}
		expectAccessTokenRefused(t, e, oldAdmin.AccessToken)
		expectDetail(t, e.send("DELETE", "/api/v1/recipes/1", nil, bearer(oldAdmin.AccessToken)...),
			http.StatusUnauthorized, "Could not validate credentials")
	})

	t.Run("every user deleted by hand and the id counter reset: the old refresh token is not the new superuser's", func(t *testing.T) {
		raw := openRawDB(t, cfg.dbPath)
		execAll(t, raw, "PRAGMA foreign_keys = OFF", "DELETE FROM user", "UPDATE sqlite_sequence SET seq = 0 WHERE name = 'user'")
		raw.Close()
		e := newTestEnv(t, onDatabase(cfg.dbPath), func(c *config) { c.firstSuperuser = "heir@example.com" })
		heir, err := e.store.userByEmail(t.Context(), "heir@example.com")
		if err != nil || heir.ID != 1 {
			t.Fatalf("seeded superuser = %+v, %v; want id 1 again", heir, err)
		}
		expectAccessTokenRefused(t, e, oldAdmin.AccessToken)
		expectRefreshTokenRefused(t, e, oldAdmin.RefreshToken)
	})
}

func TestUserIDsAreNeverReused(t *testing.T) {
	e := newTestEnv(t)
	leaver, leaverToken := newRecipeUser(e, "leaver@example.com")
	soup := postRecipe(t, e, leaverToken, "Leaver's soup", "Leaver", "https://example.com/soup")
	deleteUserByHand(t, e.cfg.dbPath, leaver.ID)

	newcomer, newcomerToken := newRecipeUser(e, "newcomer@example.com")
	t.Run("the next signup gets a new id", func(t *testing.T) {
		if newcomer.ID <= leaver.ID {
			t.Errorf("newcomer id = %d, want above the deleted user's %d", newcomer.ID, leaver.ID)
		}
	})
	t.Run("the newcomer sees none of the deleted user's recipes", func(t *testing.T) {
		resp := e.get("/api/v1/recipes/my-recipes/", bearer(newcomerToken)...)
		expectStatus(t, resp, http.StatusOK)
		if got := decodeBody[map[string][]recipe](t, resp)["results"]; len(got) != 0 {
			t.Errorf("GET /api/v1/recipes/my-recipes/ = %+v, want none", got)
		}
	})
	t.Run("the newcomer may not change them", func(t *testing.T) {
		expectDetail(t, e.sendJSON("PUT", "/api/v1/recipes/"+itoa(soup.ID), recipeBody("Mine now", "Me", "https://example.com/x"), bearer(newcomerToken)...),
			http.StatusForbidden, "You can only update your recipes")
		expectDetail(t, e.send("DELETE", "/api/v1/recipes/"+itoa(soup.ID), nil, bearer(newcomerToken)...),
			http.StatusForbidden, "You can only delete your recipes")
	})
	t.Run("the deleted user's access token is refused", func(t *testing.T) {
		expectAccessTokenRefused(t, e, leaverToken)
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

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

func TestCreatesuperuserEndsEverySessionOfTheAccount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.db")
	env := map[string]string{"BCRYPT_COST": "4", "FIRST_SUPERUSER_PW": adminPassword, "DATABASE_PATH": path}
	for _, tc := range []struct{ name, stdin, password string }{
		{"promoted without a new password", "", "password123"},
		{"promoted with a new password", "a-new-password\n", "a-new-password"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newTestEnv(t, onDatabase(path))
			email := strings.ReplaceAll(tc.name, " ", "-") + "@example.com"
			u := e.signup(email, "password123")
			stolen := e.loginTokens(email, "password123")
			e.store.close()

			out, err := runCommand(t, env, tc.stdin, "createsuperuser", "-email", email)
			if err != nil || !strings.Contains(out, "must log in again") {
				t.Fatalf("createsuperuser = %q, %v; want it to say the user must log in again", out, err)
			}

			e = newTestEnv(t, onDatabase(path))
			defer e.store.close()
			expectAccessTokenRefused(t, e, stolen.AccessToken)
			expectRefreshTokenRefused(t, e, stolen.RefreshToken)
			fresh := e.loginTokens(email, tc.password)
			resp := e.get("/api/v1/auth/me", bearer(fresh.AccessToken)...)
			if got := decodeBody[userView](t, resp); got.ID != u.ID || !got.IsSuperuser {
				t.Errorf("GET /api/v1/auth/me after a new login = %+v, want superuser %d", got, u.ID)
			}
		})
	}
}

func TestEveryAuthenticatedResponseIsMarkedNoStore(t *testing.T) {
	e := newTestEnv(t)
	_, token := newRecipeUser(e, "cook@example.com")
	soup := postRecipe(t, e, token, "Soup", "Me", "https://example.com/soup")
	for _, tc := range []struct {
		name string
		send func() *http.Response
	}{
		{"GET /auth/me", func() *http.Response { return e.get("/api/v1/auth/me", bearer(token)...) }},
		{"GET /recipes/my-recipes/", func() *http.Response { return e.get("/api/v1/recipes/my-recipes/", bearer(token)...) }},
		{"GET /recipes/my-recipes", func() *http.Response { return e.get("/api/v1/recipes/my-recipes", bearer(token)...) }},
		{"POST /recipes/", func() *http.Response {
			return e.postJSON("/api/v1/recipes/", recipeBody("Stew", "Me", "https://example.com/stew"), bearer(token)...)
		}},
		{"PUT /recipes/{id}", func() *http.Response {
			return e.sendJSON("PUT", "/api/v1/recipes/"+itoa(soup.ID), recipeBody("Soup", "Me", "https://example.com/soup"), bearer(token)...)
		}},
		{"a refused PUT on another's recipe", func() *http.Response {
			return e.sendJSON("PUT", "/api/v1/recipes/1", recipeBody("Soup", "Me", "https://example.com/soup"), bearer(token)...)
		}},
		{"a 401 for a bad token", func() *http.Response { return e.get("/api/v1/auth/me", bearer("nope")...) }},
		{"DELETE /recipes/{id}", func() *http.Response {
			return e.send("DELETE", "/api/v1/recipes/"+itoa(soup.ID), nil, bearer(token)...)
		}},
		{"POST /auth/logout", func() *http.Response { return e.send("POST", "/api/v1/auth/logout", nil, bearer(token)...) }},
	} {
		t.Run(tc.name+" carries Cache-Control: no-store", func(t *testing.T) {
			resp := tc.send()
			if got := resp.Header.Get("Cache-Control"); got != "no-store" {
				t.Errorf("%s %s = %d with Cache-Control %q, want no-store", resp.Request.Method, resp.Request.URL, resp.StatusCode, got)
			}
		})
	}
}
