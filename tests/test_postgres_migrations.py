"""PostgreSQL schema migrations against a real private cluster (`tests.fixtures.postgres_cluster`):
applied once, by one of several servers starting together, never half."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import psycopg
import pytest

from server.errors import Unavailable
from server.postgres_migrations import apply_migrations, schema_version
from tests.fixtures.postgres_cluster import PostgresCluster


@pytest.fixture
async def database(postgres_cluster: PostgresCluster) -> AsyncIterator[str]:
    """A fresh database of its own in the session's cluster."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    async with await psycopg.AsyncConnection.connect(postgres_cluster.url, autocommit=True) as admin:
        await admin.execute(f"CREATE DATABASE {name}".encode())
    yield postgres_cluster.url.replace("/switchboard?", f"/{name}?")
    async with await psycopg.AsyncConnection.connect(postgres_cluster.url, autocommit=True) as admin:
        await admin.execute(f"DROP DATABASE {name} WITH (FORCE)".encode())


# Each migration also counts that it ran: a script run twice would count two.
MIGRATIONS = (
    """
    CREATE TABLE runs (version INTEGER NOT NULL);
    CREATE TABLE notes (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO runs VALUES (1);
    """,
    """
    ALTER TABLE notes ADD COLUMN expires_ms BIGINT;
    INSERT INTO runs VALUES (2);
    """,
)


async def runs(url: str) -> list[int]:
    async with await psycopg.AsyncConnection.connect(url) as conn:
        return [row[0] for row in await (await conn.execute("SELECT version FROM runs ORDER BY version")).fetchall()]


async def test_migrations_apply_once_and_a_second_start_finds_them_done(database: str) -> None:
    async with await psycopg.AsyncConnection.connect(database) as conn:
        assert await schema_version(conn, "memory") == 0
        assert await apply_migrations(conn, MIGRATIONS[:1], "memory") == 1
        assert await apply_migrations(conn, MIGRATIONS, "memory") == 2
        assert await apply_migrations(conn, MIGRATIONS, "memory") == 2
        assert await schema_version(conn, "memory") == 2
        assert await schema_version(conn, "agents") == 0, "each schema keeps its own version"
    assert await runs(database) == [1, 2]


async def test_servers_starting_together_migrate_once(database: str) -> None:
    async def start() -> int:
        async with await psycopg.AsyncConnection.connect(database) as conn:
            return await apply_migrations(conn, MIGRATIONS, "memory")

    assert await asyncio.gather(*(start() for _ in range(8))) == [2] * 8
    assert await runs(database) == [1, 2]


async def test_a_failing_migration_leaves_the_schema_as_it_was(database: str) -> None:
    broken = (*MIGRATIONS, "CREATE TABLE later (id INTEGER); INSERT INTO runs VALUES (3); SELECT 1/0;")
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await apply_migrations(conn, MIGRATIONS, "memory")
        with pytest.raises(psycopg.errors.DivisionByZero):
            await apply_migrations(conn, broken, "memory")
        assert await schema_version(conn, "memory") == 2
        assert (await (await conn.execute("SELECT to_regclass('later')")).fetchone()) == (None,)
    assert await runs(database) == [1, 2]


async def test_a_newer_schema_is_refused_and_left_alone(database: str) -> None:
    async with await psycopg.AsyncConnection.connect(database) as conn:
        await apply_migrations(conn, MIGRATIONS, "memory")
        with pytest.raises(Unavailable, match="at version 2, newer than this Switchboard understands \\(1\\)"):
            await apply_migrations(conn, MIGRATIONS[:1], "memory")
        assert await schema_version(conn, "memory") == 2
