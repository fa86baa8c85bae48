-- schema.sql is every change this service makes to its database, as
-- numbered migrations. store.go applies, in one transaction at start, each
-- migration whose number is above the database's PRAGMA user_version, then
-- sets user_version to the last number. Append new migrations; never edit
-- one that has shipped.

-- migration 1: the Python reference's tables, as its Alembic revision
-- ec46ad7fc181 creates them in SQLite. IF NOT EXISTS lets a database that
-- the reference made pass through unchanged, and the alembic_version row
-- lets the reference's own tools keep working on a database that we made.
CREATE TABLE IF NOT EXISTS user (
	id INTEGER NOT NULL,
	first_name VARCHAR(256),
	surname VARCHAR(256),
	email VARCHAR NOT NULL,
	is_superuser BOOLEAN,
	hashed_password VARCHAR NOT NULL,
	PRIMARY KEY (id)
);
CREATE INDEX IF NOT EXISTS ix_user_email ON user (email);
CREATE INDEX IF NOT EXISTS ix_user_id ON user (id);
CREATE TABLE IF NOT EXISTS recipe (
	id INTEGER NOT NULL,
	label VARCHAR(256) NOT NULL,
	url VARCHAR(256),
	source VARCHAR(256),
	submitter_id INTEGER,
	PRIMARY KEY (id),
	FOREIGN KEY(submitter_id) REFERENCES user (id)
);
CREATE INDEX IF NOT EXISTS ix_recipe_id ON recipe (id);
CREATE INDEX IF NOT EXISTS ix_recipe_url ON recipe (url);
CREATE TABLE IF NOT EXISTS alembic_version (
	version_num VARCHAR(32) NOT NULL,
	CONSTRAINT alembic_version_pkc PRIMARY KEY (version_num)
);
INSERT INTO alembic_version (version_num)
	SELECT 'ec46ad7fc181' WHERE NOT EXISTS (SELECT 1 FROM alembic_version);

-- migration 2: one account per email ignoring case, enforced by the
-- database so that two racing signups cannot both win. email_key is the
-- email in lower case, folded by Go's strings.ToLower (registered as the
-- SQL function casefold, see store.go): SQLite's own NOCASE and lower()
-- fold ASCII letters only. Also a place to keep the generated token
-- secret, so that tokens survive a restart.
ALTER TABLE user ADD COLUMN email_key TEXT;
UPDATE user SET email_key = casefold(email);
CREATE UNIQUE INDEX user_email_key ON user (email_key);
CREATE TABLE app_setting (
	name TEXT NOT NULL PRIMARY KEY,
	value TEXT NOT NULL
);

-- migration 3: sessions. token_generation moves on at every logout and
-- password change; an access token carries the generation it was issued
-- in (as its "gen" claim, absent meaning 0, as in every token the reference
-- issued) and is refused once the user's generation has moved past it.
-- refresh_token keeps only the SHA-256 digest of each refresh token.
-- family names the login a token descends from; a token presented twice
-- deletes its whole family. A deleted row is a revoked token.
ALTER TABLE user ADD COLUMN token_generation INTEGER NOT NULL DEFAULT 0;
CREATE TABLE refresh_token (
	id INTEGER PRIMARY KEY,
	digest BLOB NOT NULL UNIQUE,
	user_id INTEGER NOT NULL REFERENCES user (id) ON DELETE CASCADE,
	family TEXT NOT NULL,
	expires_at INTEGER NOT NULL, -- Unix seconds
	used INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX refresh_token_user ON refresh_token (user_id);
CREATE INDEX refresh_token_family ON refresh_token (family);
CREATE INDEX refresh_token_expiry ON refresh_token (expires_at);

-- migration 4: search by index. recipe_fts indexes each recipe's label by
-- trigram (every run of three characters), folding case as SQLite's
-- Unicode tables do, so that a keyword of three characters or more finds
-- the labels that contain it without reading every label. It holds no
-- copy of the labels (content='recipe'); the three triggers keep it in
-- step with every change to recipe, whichever program makes it, using the
-- 'delete' command that an external-content table needs, and 'rebuild'
-- indexes the recipes already there (a database the reference made).
CREATE VIRTUAL TABLE recipe_fts USING fts5(
	label, content='recipe', content_rowid='id', tokenize='trigram case_sensitive 0'
);
CREATE TRIGGER recipe_fts_insert AFTER INSERT ON recipe BEGIN
	INSERT INTO recipe_fts (rowid, label) VALUES (new.id, new.label);
END;
CREATE TRIGGER recipe_fts_delete AFTER DELETE ON recipe BEGIN
	INSERT INTO recipe_fts (recipe_fts, rowid, label) VALUES ('delete', old.id, old.label);
END;
CREATE TRIGGER recipe_fts_update AFTER UPDATE ON recipe BEGIN
	INSERT INTO recipe_fts (recipe_fts, rowid, label) VALUES ('delete', old.id, old.label);
	INSERT INTO recipe_fts (rowid, label) VALUES (new.id, new.label);
END;
INSERT INTO recipe_fts (recipe_fts) VALUES ('rebuild');

-- migration 5: my-recipes reads one user's recipes a page at a time, in id
-- order; this index finds them without reading every recipe (its entries
-- are ordered by submitter, then by id).
CREATE INDEX recipe_submitter ON recipe (submitter_id);

-- migration 6: one row per login session, however often it is refreshed.
-- A refresh token is a random handle, the same for every token of one
-- session, followed by random bytes new at each refresh (sessions.go).
-- session keeps the SHA-256 digest of the handle and of the current token
-- only: the current token is the one that works, and a token that carries
-- the handle but is not the current one was spent, and so reused. The
-- refresh tokens that were live under migration 3 go on working: each
-- becomes a session whose handle is filled in at its first refresh (those
-- of users deleted by hand are dropped).
-- AUTOINCREMENT keeps ids growing, so the highest ids are the newest
-- sessions, and a new session never takes an ended one's id.
CREATE TABLE session (
	id INTEGER PRIMARY KEY AUTOINCREMENT,
	user_id INTEGER NOT NULL REFERENCES user (id) ON DELETE CASCADE,
	handle BLOB UNIQUE,
	digest BLOB NOT NULL UNIQUE,
	expires_at INTEGER NOT NULL -- Unix seconds
);
CREATE INDEX session_user ON session (user_id);
CREATE INDEX session_expiry ON session (expires_at);
INSERT INTO session (user_id, digest, expires_at)
	SELECT user_id, digest, expires_at FROM refresh_token
	WHERE used = 0 AND expires_at > unixepoch() AND user_id IN (SELECT id FROM user)
	ORDER BY id;
DROP TABLE refresh_token;

-- migration 7: the cost of each password hash ($2b$12$… has cost 12),
-- indexed, so that the highest stored cost is found without reading every
-- user. The store reads it again after every write it notices, for the
-- dummy hash that an unknown email is compared against.
CREATE INDEX user_password_cost ON user (substr(hashed_password, 5, 2));

-- migration 8: a user id is never given twice. SQLite gives a new row the
-- highest id plus one, so once the newest user is deleted (by hand: the
-- service deletes no users) the next one gets that id back, and with it
-- the recipes that still name it. AUTOINCREMENT makes SQLite remember, in
-- sqlite_sequence, the highest id ever given and give only ids above it;
-- it can only be declared when a table is made, so the table is made again
-- as SQLite's twelve-step procedure has it
-- (https://www.sqlite.org/lang_altertable.html#otheralter): same column
-- names and types as the reference's, the same indexes, every row kept.
-- store.go runs the migrations with foreign keys off, as the procedure
-- asks (with them on, dropping the old table would delete every session
-- through ON DELETE CASCADE), and checks afterwards that no row
-- names a user that it did not name before. The other tables' REFERENCES
-- user (id) name the table, so they bind to the new one. The high-water
-- mark starts above every id that any row still names, so that not even
-- a user deleted before this migration can have an heir.
CREATE TABLE user_new (
	id INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
	first_name VARCHAR(256),
	surname VARCHAR(256),
	email VARCHAR NOT NULL,
	is_superuser BOOLEAN,
	hashed_password VARCHAR NOT NULL,
	email_key TEXT,
	token_generation INTEGER NOT NULL DEFAULT 0
);
INSERT INTO user_new (id, first_name, surname, email, is_superuser, hashed_password, email_key, token_generation)
	SELECT id, first_name, surname, email, is_superuser, hashed_password, email_key, token_generation FROM user;
DROP TABLE user;
ALTER TABLE user_new RENAME TO user;
CREATE INDEX ix_user_email ON user (email);
CREATE INDEX ix_user_id ON user (id);
CREATE UNIQUE INDEX user_email_key ON user (email_key);
CREATE INDEX user_password_cost ON user (substr(hashed_password, 5, 2));
DELETE FROM sqlite_sequence WHERE name = 'user';
INSERT INTO sqlite_sequence (name, seq) SELECT 'user', max(
	(SELECT coalesce(max(id), 0) FROM user),
	(SELECT coalesce(max(submitter_id), 0) FROM recipe WHERE typeof(submitter_id) = 'integer'),
	(SELECT coalesce(max(user_id), 0) FROM session WHERE typeof(user_id) = 'integer'));
