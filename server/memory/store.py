"""MemoryStore: the persistent, shared key-value memory (SQLite in WAL mode through aiosqlite).

Writes go through one connection and commit in groups (see ``writer.py``); reads use a
second connection, so a read never waits behind a slow write. An expired entry is
invisible to every read from the instant it expires; the sweeper removes it later.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal, NamedTuple

import aiosqlite
import anyio

from server.clock import Clock
from server.errors import Conflict, InvalidArgument, NotFound, SwitchboardError
from server.memory.models import Entry, EntryMeta, MemoryStats, NamespaceStats, Page, PutRequest
from server.memory.schema import migrate
from server.memory.validation import (
    check_name,
    check_tags,
    check_ttl,
    check_version,
    decode_tags,
    encode_tags,
    encode_value,
)
from server.memory.writer import GroupCommitWriter

LIST_LIMIT_MAX = 1000
BATCH_MAX = 10_000
INLINE_PREPARE_MAX = 64  # larger batches are validated in a worker thread
# Above every printable character, so `key < prefix + KEY_CEILING` bounds a prefix range scan.
KEY_CEILING = "\U0010ffff"
HOUR_MS = 3_600_000

_LIVE = "(expires_ms IS NULL OR expires_ms > :now)"
_META_COLUMNS = "namespace, key, version, size, tags, created_ms, updated_ms, expires_ms"

# One statement writes a whole batch: rows arrive as a JSON array of
# [namespace, key, value_json, tags_json, size, ttl_seconds]; expiry is computed from the
# commit time. A replaced entry that had already expired starts over at version 1, as if
# it had been swept first.
_UPSERT = f"""
INSERT INTO entries (namespace, key, value, tags, version, size, created_ms, updated_ms, expires_ms)
SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),
       json_extract(j.value, '$[3]'), 1, json_extract(j.value, '$[4]'), :now, :now,
       :now + 1000 * json_extract(j.value, '$[5]')
FROM json_each(:rows) AS j WHERE true
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value, tags = excluded.tags, size = excluded.size,
    version = CASE WHEN entries.expires_ms <= :now THEN 1 ELSE entries.version + 1 END,
    created_ms = CASE WHEN entries.expires_ms <= :now THEN :now ELSE entries.created_ms END,
    updated_ms = :now, expires_ms = excluded.expires_ms
RETURNING {_META_COLUMNS}
"""

_LIVE_VERSIONS = f"""
SELECT j.key, e.version FROM json_each(:keys) AS j
LEFT JOIN entries AS e
    ON e.namespace = json_extract(j.value, '$[0]') AND e.key = json_extract(j.value, '$[1]') AND {_LIVE}
"""


class _PreparedPut(NamedTuple):  # a tuple: batches build ten thousand of these
    namespace: str
    key: str
    value_json: str
    tags_json: str
    size: int
    ttl_seconds: int | None
    if_version: int | None


def _meta(row: Sequence[Any]) -> EntryMeta:
    return EntryMeta(row[0], row[1], row[2], row[3], decode_tags(row[4]), row[5], row[6], row[7])


class MemoryStore:
    """Namespaced JSON entries with versions, tags and per-entry TTL, persisted in SQLite."""

    def __init__(
        self,
        path: Path,
        reader: aiosqlite.Connection,
        writer_conn: aiosqlite.Connection,
        writer: GroupCommitWriter,
        clock: Clock,
        max_value_bytes: int,
        max_ttl_seconds: int,
    ) -> None:
        self.path = path
        self._reader = reader
        self._writer_conn = writer_conn
        self._writer = writer
        self._clock = clock
        self.max_value_bytes = max_value_bytes
        self.max_ttl_seconds = max_ttl_seconds

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock: Clock,
        max_value_bytes: int,
        max_ttl_seconds: int,
        synchronous: Literal["full", "normal"] = "full",
        group_commit_max: int = 512,
    ) -> MemoryStore:
        """Open (creating and migrating if needed) the database at ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        writer_conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await writer_conn.execute("PRAGMA busy_timeout = 10000")  # another process may hold the lock briefly
            await writer_conn.execute("PRAGMA journal_mode = WAL")
            await writer_conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            await migrate(writer_conn)
            reader = await aiosqlite.connect(path, isolation_level=None)
        except BaseException:
            await writer_conn.close()
            raise
        await reader.execute("PRAGMA busy_timeout = 10000")
        await reader.execute("PRAGMA query_only = ON")
        writer = GroupCommitWriter(writer_conn, group_commit_max)
        writer.start()
        return cls(path, reader, writer_conn, writer, clock, max_value_bytes, max_ttl_seconds)

    async def close(self) -> None:
        """Commit what is queued, checkpoint the WAL into the main file, and close both connections."""
        await self._writer.close()
        await self._reader.close()
        await self._writer_conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        await self._writer_conn.close()

    # -- writes ---------------------------------------------------------------------------

    async def put(
        self,
        namespace: str,
        key: str,
        value: Any,
        *,
        ttl_seconds: int | None = None,
        tags: Sequence[str] = (),
        if_version: int | None = None,
    ) -> EntryMeta:
        """Create or replace one entry. With ``if_version``, write only if the entry is at that
        version (0: only if absent); otherwise raise `Conflict` naming the current version."""
        (meta,) = await self.put_many([PutRequest(namespace, key, value, ttl_seconds, tuple(tags), if_version)])
        return meta

    async def put_many(self, requests: Sequence[PutRequest]) -> list[EntryMeta]:
        """Write up to 10,000 entries in one transaction: all of them, or (on any invalid entry
        or failed ``if_version``) none. Results come back in request order."""
        if not 1 <= len(requests) <= BATCH_MAX:
            raise InvalidArgument(f"a batch holds 1..{BATCH_MAX} entries; got {len(requests)}")
        if len(requests) <= INLINE_PREPARE_MAX:
            prepared, rows = self._prepare_batch(requests)
        else:  # validating and encoding thousands of values would stall the event loop
            prepared, rows = await anyio.to_thread.run_sync(self._prepare_batch, requests)
        return await self._writer.submit(partial(self._write_puts, prepared, rows))

    def _prepare_batch(self, requests: Sequence[PutRequest]) -> tuple[list[_PreparedPut], str]:
        """Validate every request and encode the rows the upsert reads (see `_UPSERT`)."""
        prepared = [self._prepare(request, index, len(requests)) for index, request in enumerate(requests)]
        if len(prepared) > 1 and len({(p.namespace, p.key) for p in prepared}) < len(prepared):
            seen: set[tuple[str, str]] = set()
            for put in prepared:
                if (put.namespace, put.key) in seen:
                    raise InvalidArgument(f"key {put.key!r} appears twice in namespace {put.namespace!r} in one batch")
                seen.add((put.namespace, put.key))
        rows = json.dumps([[p.namespace, p.key, p.value_json, p.tags_json, p.size, p.ttl_seconds] for p in prepared],
                          ensure_ascii=False)
        return prepared, rows

    def _prepare(self, request: PutRequest, index: int, count: int) -> _PreparedPut:
        try:
            namespace = check_name("namespace", request.namespace)
            key = check_name("key", request.key)
            value_json, size = encode_value(request.value, self.max_value_bytes)
            tags = check_tags(request.tags)
            ttl = check_ttl(request.ttl_seconds, self.max_ttl_seconds)
            if_version = check_version("if_version", request.if_version)
        except SwitchboardError as error:
            if count == 1:
                raise
            raise type(error)(f"entry {index}: {error.message}; nothing was written") from None
        return _PreparedPut(namespace, key, value_json, encode_tags(tags), size, ttl, if_version)

    async def _write_puts(self, puts: list[_PreparedPut], rows: str, conn: aiosqlite.Connection) -> list[EntryMeta]:
        now = self._clock.now_ms()
        guarded = [put for put in puts if put.if_version is not None]
        if guarded:
            await self._check_versions(conn, guarded, now)
        written = {(row[0], row[1]): _meta(row) for row in await conn.execute_fetchall(_UPSERT, {"rows": rows, "now": now})}
        return [written[(p.namespace, p.key)] for p in puts]

    async def _check_versions(self, conn: aiosqlite.Connection, puts: list[_PreparedPut], now: int) -> None:
        keys = json.dumps([[p.namespace, p.key] for p in puts], ensure_ascii=False)
        current = {row[0]: row[1] for row in await conn.execute_fetchall(_LIVE_VERSIONS, {"keys": keys, "now": now})}
        problems = []
        for index, put in enumerate(puts):
            version = current.get(index)
            if version == put.if_version or (version is None and put.if_version == 0):
                continue
            where = f"key {put.key!r} in namespace {put.namespace!r}"
            if version is None:
                problems.append(f"{where} does not exist (if_version {put.if_version}; use 0 for 'only if absent')")
            else:
                problems.append(f"{where} is at version {version}, not if_version {put.if_version}")
        if problems:
            more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
            raise Conflict("; ".join(problems[:3]) + more + "; nothing was written")

    async def delete(self, namespace: str, key: str, *, if_version: int | None = None) -> int:
        """Delete one live entry; return 1, or 0 when there was none. With ``if_version``, a
        missing entry is `NotFound` and a different version is `Conflict`."""
        check_name("namespace", namespace)
        check_name("key", key)
        check_version("if_version", if_version)
        return await self._writer.submit(partial(self._delete_one, namespace, key, if_version))

    async def _delete_one(self, namespace: str, key: str, if_version: int | None, conn: aiosqlite.Connection) -> int:
        params = {"namespace": namespace, "key": key, "now": self._clock.now_ms()}
        where = f"namespace = :namespace AND key = :key AND {_LIVE}"
        if if_version is not None:
            rows = await conn.execute_fetchall(f"SELECT version FROM entries WHERE {where}", params)
            if not rows:
                raise NotFound(f"key {key!r} in namespace {namespace!r} does not exist or has expired")
            if rows[0][0] != if_version:
                raise Conflict(
                    f"key {key!r} in namespace {namespace!r} is at version {rows[0][0]}, not if_version "
                    f"{if_version}; nothing was deleted"
                )
        cursor = await conn.execute(f"DELETE FROM entries WHERE {where}", params)
        return cursor.rowcount

    async def delete_namespace(self, namespace: str) -> int:
        """Delete every entry of a namespace; return how many live entries were deleted."""
        check_name("namespace", namespace)
        return await self._writer.submit(partial(self._delete_namespace, namespace))

    async def _delete_namespace(self, namespace: str, conn: aiosqlite.Connection) -> int:
        params = {"namespace": namespace, "now": self._clock.now_ms()}
        expired = await conn.execute_fetchall(
            f"SELECT count(*) FROM entries WHERE namespace = :namespace AND NOT {_LIVE}", params
        )
        cursor = await conn.execute("DELETE FROM entries WHERE namespace = :namespace", params)
        await self._count_expired(conn, expired[0][0])
        return cursor.rowcount - expired[0][0]

    async def sweep_expired(self, batch_size: int) -> int:
        """Delete up to ``batch_size`` expired entries (oldest expiry first); return how many."""
        return await self._writer.submit(partial(self._sweep, batch_size))

    async def _sweep(self, batch_size: int, conn: aiosqlite.Connection) -> int:
        cursor = await conn.execute(
            "DELETE FROM entries WHERE id IN "
            "(SELECT id FROM entries WHERE expires_ms <= :now ORDER BY expires_ms LIMIT :limit)",
            {"now": self._clock.now_ms(), "limit": batch_size},
        )
        await self._count_expired(conn, cursor.rowcount)
        return cursor.rowcount

    @staticmethod
    async def _count_expired(conn: aiosqlite.Connection, count: int) -> None:
        if count:
            await conn.execute("UPDATE counters SET value = value + ? WHERE name = 'expired_total'", (count,))

    # -- reads ----------------------------------------------------------------------------

    async def get(self, namespace: str, key: str) -> Entry | None:
        """The live entry, or None if it does not exist or has expired."""
        check_name("namespace", namespace)
        check_name("key", key)
        rows = await self._reader.execute_fetchall(
            f"SELECT {_META_COLUMNS}, value FROM entries WHERE namespace = :namespace AND key = :key AND {_LIVE}",
            {"namespace": namespace, "key": key, "now": self._clock.now_ms()},
        )
        return self._entry(rows[0]) if rows else None

    async def list(self, namespace: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        """Live entries of ``namespace`` in key order, without values, one page at a time."""
        check_name("namespace", namespace)
        self._check_limit(limit)
        if not isinstance(prefix, str) or len(prefix) > 256:
            raise InvalidArgument("prefix must be a string of at most 256 characters")
        after = self._decode_cursor(cursor, namespace) if cursor else ""
        rows = await self._reader.execute_fetchall(
            f"SELECT {_META_COLUMNS} FROM entries WHERE namespace = :namespace "
            f"AND key >= :low AND key < :high AND key > :after AND {_LIVE} ORDER BY key LIMIT :limit",
            {
                "namespace": namespace,
                "low": prefix,
                "high": prefix + KEY_CEILING,
                "after": after,
                "now": self._clock.now_ms(),
                "limit": limit + 1,
            },
        )
        entries = [_meta(row) for row in rows[:limit]]
        next_cursor = self._encode_cursor(namespace, entries[-1].key) if len(rows) > limit else None
        return Page(entries, next_cursor)

    async def search(
        self,
        *,
        namespace: str | None = None,
        key_glob: str | None = None,
        text: str | None = None,
        limit: int = 100,
    ) -> list[Entry]:
        """Live entries whose key matches ``key_glob`` (``*``, ``?``, ``[...]``) and whose value
        text contains ``text`` (ASCII case-insensitive), across one namespace or all of them."""
        if namespace is not None:
            check_name("namespace", namespace)
        if not key_glob and not text:
            raise InvalidArgument("search needs a key glob (pattern, e.g. 'agent-*') or a text to look for (query)")
        self._check_limit(limit)
        rows = await self._reader.execute_fetchall(
            f"SELECT {_META_COLUMNS}, value FROM entries WHERE {_LIVE} "
            "AND (:namespace IS NULL OR namespace = :namespace) "
            "AND (:glob IS NULL OR key GLOB :glob) "
            "AND (:text IS NULL OR instr(lower(value), lower(:text)) > 0) "
            "ORDER BY namespace, key LIMIT :limit",
            {
                "namespace": namespace,
                "glob": key_glob or None,
                "text": text or None,
                "now": self._clock.now_ms(),
                "limit": limit,
            },
        )
        return [self._entry(row) for row in rows]

    async def stats(self) -> MemoryStats:
        """Per-namespace and total counts over live entries, the file size, and how many entries expired so far."""
        now = self._clock.now_ms()
        rows = await self._reader.execute_fetchall(
            "SELECT namespace, count(*), sum(size), min(created_ms), max(updated_ms), "
            "sum(expires_ms IS NOT NULL AND expires_ms <= :soon) "
            f"FROM entries WHERE {_LIVE} GROUP BY namespace ORDER BY namespace",
            {"now": now, "soon": now + HOUR_MS},
        )
        expired = await self._reader.execute_fetchall("SELECT value FROM counters WHERE name = 'expired_total'")
        namespaces = [NamespaceStats(*row) for row in rows]
        return MemoryStats(
            namespaces=namespaces,
            total_entries=sum(ns.entries for ns in namespaces),
            total_bytes=sum(ns.bytes for ns in namespaces),
            database_bytes=self._database_bytes(),
            expired_total=expired[0][0],
        )

    # -- helpers --------------------------------------------------------------------------

    def _database_bytes(self) -> int:
        total = 0
        for suffix in ("", "-wal"):
            try:
                total += os.stat(f"{self.path}{suffix}").st_size
            except FileNotFoundError:
                pass
        return total

    @staticmethod
    def _entry(row: Sequence[Any]) -> Entry:
        return Entry(row[0], row[1], row[2], row[3], decode_tags(row[4]), row[5], row[6], row[7], json.loads(row[8]))

    @staticmethod
    def _check_limit(limit: object) -> None:
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
            raise InvalidArgument(f"limit must be a whole number in 1..{LIST_LIMIT_MAX}; got {limit!r}")

    @staticmethod
    def _encode_cursor(namespace: str, last_key: str) -> str:
        raw = json.dumps([namespace, last_key], ensure_ascii=False).encode("utf-8")
        return base64.urlsafe_b64encode(raw).decode("ascii")

    @staticmethod
    def _decode_cursor(cursor: str, namespace: str) -> str:
        try:
            cursor_namespace, last_key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
            if not isinstance(cursor_namespace, str) or not isinstance(last_key, str):
                raise ValueError
        except (ValueError, TypeError, UnicodeError, binascii.Error):
            raise InvalidArgument(
                "cursor is not one this server issued; pass next_cursor from the previous list result unchanged"
            ) from None
        if cursor_namespace != namespace:
            raise InvalidArgument(
                f"cursor belongs to a listing of namespace {cursor_namespace!r}, not {namespace!r}"
            )
        return last_key
