"""Typed reads over aiosqlite: every row of a statement as a list of tuples, or its single value."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiosqlite

Params = Iterable[Any] | Mapping[str, Any]


async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.execute_fetchall(sql, params)]


async def fetch_value(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> Any:
    """The first column of the first row (the statement must return one)."""
    rows = await fetch_all(conn, sql, params)
    return rows[0][0]
