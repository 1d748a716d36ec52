"""`ReaderPool`: a few read-only SQLite connections, so a quick read never queues behind a long scan.

Each aiosqlite connection runs its statements one after another in its own thread; with one
connection, a `retrieve` waits for a text search over hundreds of megabytes. With a pool,
reads run side by side (SQLite releases the GIL while it works, and WAL lets readers
proceed while the writer commits). `snapshot` makes several statements on one of them read
the same committed state.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite
import anyio


class ReaderPool:
    """``size`` read-only connections to one database, lent out one caller at a time."""

    def __init__(self, connections: list[aiosqlite.Connection]) -> None:
        self._all = connections
        self._idle: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        for conn in connections:
            self._idle.put_nowait(conn)

    @classmethod
    async def open(cls, path: Path, size: int) -> ReaderPool:
        connections: list[aiosqlite.Connection] = []
        try:
            for _ in range(size):
                connections.append(await open_reader(path))
        except BaseException:
            for conn in connections:
                await conn.close()
            raise
        return cls(connections)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[aiosqlite.Connection]:
        conn = await self._idle.get()
        try:
            yield conn
        finally:
            self._idle.put_nowait(conn)

    async def close(self) -> None:
        for conn in self._all:
            await conn.close()


async def open_reader(path: Path) -> aiosqlite.Connection:
    """A connection that can only read, waiting briefly when another process holds a lock."""
    conn = await aiosqlite.connect(path, isolation_level=None)
    try:
        await conn.execute("PRAGMA busy_timeout = 10000")
        await conn.execute("PRAGMA query_only = ON")
    except BaseException:
        await conn.close()
        raise
    return conn


@asynccontextmanager
async def snapshot(conn: aiosqlite.Connection) -> AsyncIterator[None]:
    """Every statement inside reads the same committed state (one read transaction)."""
    await conn.execute("BEGIN")
    try:
        yield
    finally:
        with anyio.CancelScope(shield=True):  # a cancelled call must not hand back a connection mid-transaction
            await conn.execute("COMMIT")
