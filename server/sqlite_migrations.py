"""Forward-only SQLite migrations keyed by ``PRAGMA user_version``: each database (memory, agents)
keeps a tuple of scripts; to change a schema, append one, never edit one that has shipped."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import aiosqlite

from server.errors import Unavailable


async def apply_migrations(conn: aiosqlite.Connection, migrations: tuple[str, ...], database: str) -> int:
    """Bring the database to the newest schema; return the version it is at.

    The version is read inside the write transaction, so two servers starting together on one
    data directory cannot both apply the same migration."""
    await conn.execute("BEGIN IMMEDIATE")
    try:
        async with conn.execute("PRAGMA user_version") as cursor:
            row = await cursor.fetchone()
        current = int(row[0]) if row else 0
        if current > len(migrations):
            raise Unavailable(
                f"the {database} database is at schema version {current}, newer than this Switchboard "
                f"understands ({len(migrations)}); upgrade Switchboard or point SWITCHBOARD_DATA_DIR elsewhere"
            )
        for version in range(current + 1, len(migrations) + 1):
            for statement in _statements(migrations[version - 1]):
                await conn.execute(statement)
            await conn.execute(f"PRAGMA user_version = {version}")
        await conn.commit()
    except BaseException:
        await conn.rollback()
        raise
    return len(migrations)


def _statements(script: str) -> Iterator[str]:
    """The statements of a migration one by one (a trigger body's semicolons stay inside its statement)."""
    pending = ""
    for line in script.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            yield pending
            pending = ""
    if pending.strip():
        raise ValueError(f"a migration ends in an incomplete statement: {pending.strip()[:80]!r}")
