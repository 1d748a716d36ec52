"""The SQLite schema of the memory store, as forward-only migrations keyed by ``PRAGMA user_version``.

To change the schema, append a migration; never edit one that has shipped.
"""

from __future__ import annotations

import aiosqlite

from server.sqlite_migrations import apply_migrations

MIGRATIONS: tuple[str, ...] = (
    # 1: entries, the expiry index the sweeper walks, and the expired-entries counter.
    """
    CREATE TABLE entries (
        id          INTEGER PRIMARY KEY,
        namespace   TEXT    NOT NULL,
        key         TEXT    NOT NULL,
        value       TEXT    NOT NULL,          -- canonical JSON text
        tags        TEXT    NOT NULL DEFAULT '[]',
        version     INTEGER NOT NULL,
        size        INTEGER NOT NULL,          -- bytes of `value` (UTF-8)
        created_ms  INTEGER NOT NULL,
        updated_ms  INTEGER NOT NULL,
        expires_ms  INTEGER,                   -- NULL: never expires
        UNIQUE (namespace, key)                -- also serves prefix listing as a range scan
    );
    CREATE INDEX entries_by_expiry ON entries (expires_ms) WHERE expires_ms IS NOT NULL;
    CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;
    INSERT INTO counters (name, value) VALUES ('expired_total', 0);
    -- An expired entry that a store replaces before the sweeper reached it still counts as expired.
    CREATE TRIGGER count_expired_on_overwrite BEFORE UPDATE ON entries
    WHEN OLD.expires_ms IS NOT NULL AND OLD.expires_ms <= NEW.updated_ms
    BEGIN
        UPDATE counters SET value = value + 1 WHERE name = 'expired_total';
    END;
    """,
    # 2: vectors of indexed entries (int8-quantised, see server/vectors/quantization.py), which
    # embedder made them, and a trigger so no vector outlives its entry (delete, namespace delete, sweep).
    """
    CREATE TABLE vectors (
        entry_id    INTEGER PRIMARY KEY,       -- entries.id
        vector      BLOB    NOT NULL           -- float32 scale, then one int8 per dimension
    );
    CREATE TABLE vector_space (
        only        INTEGER PRIMARY KEY CHECK (only = 1),
        embedder    TEXT    NOT NULL,          -- e.g. hashing-v1/384
        dimensions  INTEGER NOT NULL
    ) WITHOUT ROWID;
    CREATE TRIGGER drop_vector_with_entry AFTER DELETE ON entries
    BEGIN
        DELETE FROM vectors WHERE entry_id = OLD.id;
    END;
    """,
    # 3: every change to a vector, and which server process made it, so each server sharing this
    # database brings its in-memory index up to date with the others' writes (see vector_rows.py).
    """
    CREATE TABLE vector_changes (
        seq         INTEGER PRIMARY KEY AUTOINCREMENT,   -- never reused, so a position is unambiguous
        entry_id    INTEGER NOT NULL,
        writer      TEXT    NOT NULL                     -- the writing process's token
    );
    """,
)


async def migrate(conn: aiosqlite.Connection) -> int:
    """Bring the memory database to the newest schema; return the version it is at."""
    return await apply_migrations(conn, MIGRATIONS, "memory")
