"""Typed reads over aiosqlite: every row of a statement as a list of tuples."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import aiosqlite

Params = Iterable[Any] | Mapping[str, Any]


async def fetch_all(conn: aiosqlite.Connection, sql: str, params: Params = ()) -> list[tuple[Any, ...]]:
    return [tuple(row) for row in await conn.execute_fetchall(sql, params)]

