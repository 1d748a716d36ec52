"""Forward-only PostgreSQL migrations, versioned per schema like the SQLite ones
(`server.sqlite_migrations`): each schema (memory, agents) keeps a tuple of scripts; to change one,
append a script, never edit one that has shipped.

The versions live in ``switchboard_schema`` (one row per schema). Several servers may start at
once against one database: each applies migrations inside one transaction that first takes a
transaction-level advisory lock, so one of them migrates and the others, waiting on the lock,
find the work done. A failing script rolls the whole transaction back: no schema is left half
migrated.
"""

from __future__ import annotations

import psycopg
from psycopg.rows import TupleRow

from server.errors import Unavailable

# pg_advisory_xact_lock's key for schema changes: any fixed 64-bit number, the same for every server.
MIGRATION_LOCK_KEY = 0x5357_4254_4D49_4752  # "SWBTMIGR"


async def apply_migrations(conn: psycopg.AsyncConnection[TupleRow], migrations: tuple[str, ...], schema: str) -> int:
    """Brings ``schema`` to its newest version on ``conn`` (not in a transaction); answers that version.
    Raises `Unavailable` when the database is at a newer version than this Switchboard knows."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_KEY,))
        await conn.execute("CREATE TABLE IF NOT EXISTS switchboard_schema (name TEXT PRIMARY KEY, "
                           "version INTEGER NOT NULL)")
        current = await schema_version(conn, schema)
        if current > len(migrations):
            raise Unavailable(
                f"the {schema} schema in PostgreSQL is at version {current}, newer than this Switchboard "
                f"understands ({len(migrations)}); upgrade Switchboard or point SWITCHBOARD_DATABASE_URL elsewhere")
        for version in range(current + 1, len(migrations) + 1):
            # Without parameters psycopg sends a script whole, so one migration may hold many statements.
            await conn.execute(migrations[version - 1].encode())
        if len(migrations) > current:
            await conn.execute("INSERT INTO switchboard_schema (name, version) VALUES (%s, %s) "
                               "ON CONFLICT (name) DO UPDATE SET version = EXCLUDED.version", (schema, len(migrations)))
    return len(migrations)


async def schema_version(conn: psycopg.AsyncConnection[TupleRow], schema: str) -> int:
    """The version ``schema`` is at (0: never migrated, or no Switchboard schema at all)."""
    exists = await (await conn.execute("SELECT to_regclass('switchboard_schema') IS NOT NULL")).fetchone()
    if not exists or not exists[0]:
        return 0
    row = await (await conn.execute("SELECT version FROM switchboard_schema WHERE name = %s", (schema,))).fetchone()
    return int(row[0]) if row else 0
