"""MemoryStore: the persistent, shared key-value memory (SQLite in WAL mode through aiosqlite).

Writes go through one connection and commit in groups (see ``writer.py``); reads use a
small pool of other connections (``readers.py``), so a read never waits behind a write or
a long scan. An expired entry is invisible to every read from the instant it expires; the
sweeper removes it later.

With a `SemanticIndex`, indexed entries also get a vector: stored in the same transaction
as the entry, applied to the vector index after the commit (``vector_sync.py``), and
removed with the entry.

Answers are bounded: a batch by the bytes of its values, a search answer by the bytes of
the values it carries (later hits come with a preview instead of their value).

`MemoryStore` is the one door callers use. This module holds opening and closing, writes
with compare-and-set, deletes and sweeping, and reads by key, by page and for stats; the
rest of the package does one job each behind it:

- ``put_batch.py``: a batch of puts validated and encoded before it is queued
- ``vector_writes.py``: which written entries get a vector, stored in the write's transaction
- ``text_search.py``, ``semantic_search.py``: the two searches; ``search_hits.py``: what both answer with
- ``transfer.py``: export and import, entries moved as they were
- ``cursor.py``: the paging cursor of `list_page`
- ``entry_rows.py``, ``validation.py``, ``models.py``: the rows read, the checks made, the records handed back
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any, Literal

import aiosqlite
import anyio
import numpy as np

from server.clock import Clock
from server.errors import Conflict, InvalidArgument, NotFound
from server.memory import vector_rows
from server.memory.cursor import decode_cursor, encode_cursor
from server.memory.entry_rows import LIVE, META_COLUMNS, entry_from_row, meta_from_row
from server.memory.models import (
    Entry,
    EntryMeta,
    MemoryStats,
    NamespaceStats,
    Page,
    PutRequest,
)
from server.memory.put_batch import PreparedPut, cheap_to_prepare, prepare_batch
from server.memory.readers import ReaderPool, open_reader, snapshot
from server.memory.schema import migrate
from server.memory.semantic_search import SemanticSearch
from server.memory.sql import fetch_all
from server.memory.text_search import TextSearch
from server.memory.transfer import MemoryTransfer
from server.memory.validation import (
    BATCH_MAX,
    MemoryLimits,
    check_limit,
    check_name,
    check_version,
)
from server.memory.vector_sync import VectorSync
from server.memory.vector_writes import embed_requested, embed_still_indexed, forget_deleted, write_vectors
from server.memory.writer import GroupCommitWriter
from server.private_files import create_private_file, make_private_dir
from server.vectors import SemanticIndex, VectorChange

logger = logging.getLogger(__name__)

MiB = 1024 * 1024
DEFAULT_BATCH_MAX_BYTES = 64 * MiB
DEFAULT_ANSWER_MAX_BYTES = 256 * 1024
# Vector changes kept for other servers on the same database to replay; one further behind reloads all.
VECTOR_LOG_KEEP = 100_000
# Above every printable character, so `key < prefix + KEY_CEILING` bounds a prefix range scan.
KEY_CEILING = "\U0010ffff"
HOUR_MS = 3_600_000

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
RETURNING {META_COLUMNS}, id
"""

_LIVE_VERSIONS = f"""
SELECT j.key, e.version FROM json_each(:keys) AS j
LEFT JOIN entries AS e
    ON e.namespace = json_extract(j.value, '$[0]') AND e.key = json_extract(j.value, '$[1]') AND {LIVE}
"""


async def _enable_wal(conn: aiosqlite.Connection, path: Path) -> None:
    """Switch the database to WAL. The switch takes an exclusive lock without waiting on the busy
    timeout, so when another server opens the same file at the same moment it is retried briefly."""
    for attempt in range(1, 51):
        try:
            rows = await fetch_all(conn, "PRAGMA journal_mode = WAL")
            break
        except sqlite3.OperationalError as error:
            if "locked" not in str(error) or attempt == 50:
                raise
            await anyio.sleep(0.01 * attempt)
    if rows[0][0] != "wal":
        logger.warning("%s cannot use WAL (journal mode %s): reads will wait behind writes", path, rows[0][0])


class MemoryStore:
    """Namespaced JSON entries with versions, tags and per-entry TTL, persisted in SQLite.

    Writes, deletes, sweeping, `get`, `list_page` and `stats` are its own methods; `search`
    (`TextSearch`), `search_semantic` (`SemanticSearch`), `export_page` and `import_entries`
    (`MemoryTransfer`) are those classes' methods over the same connections."""

    def __init__(
        self,
        path: Path,
        readers: ReaderPool,
        writer_conn: aiosqlite.Connection,
        writer: GroupCommitWriter,
        clock: Clock,
        limits: MemoryLimits,
        vectors: SemanticIndex | None = None,
        vector_sync: VectorSync | None = None,
    ) -> None:
        self.path = path
        self._readers = readers
        self._writer_conn = writer_conn
        self._writer = writer
        self._clock = clock
        self.limits = limits
        self._vectors = vectors
        self._sync = vector_sync
        # Calls answered by their own modules, bound here once so that each signature, its
        # defaults and its docstring are written in one place.
        transfer = MemoryTransfer(readers, writer, clock, limits.max_value_bytes, vectors, vector_sync)
        self.export_page = transfer.export_page
        self.import_entries = transfer.import_entries
        self.search = TextSearch(readers, clock, limits.max_answer_bytes).search
        self.search_semantic = SemanticSearch(readers, clock, vectors, vector_sync, limits.max_answer_bytes).search

    @property
    def vectors(self) -> SemanticIndex | None:
        return self._vectors

    @property
    def max_ttl_seconds(self) -> int:
        return self.limits.max_ttl_seconds

    @classmethod
    async def open(
        cls,
        path: Path,
        *,
        clock: Clock,
        max_value_bytes: int,
        max_ttl_seconds: int,
        max_batch_bytes: int = DEFAULT_BATCH_MAX_BYTES,
        max_answer_bytes: int = DEFAULT_ANSWER_MAX_BYTES,
        synchronous: Literal["full", "normal"] = "full",
        group_commit_max: int = 512,
        readers: int = 4,
        vectors: SemanticIndex | None = None,
        reembed_vectors: bool = False,
    ) -> MemoryStore:
        """Open (creating and migrating if needed) the database at ``path``. With ``vectors``, the
        vector index is loaded and checked against the stored vectors, or rebuilt from them."""
        limits = MemoryLimits(max_value_bytes, max_ttl_seconds, max_batch_bytes, max_answer_bytes)
        make_private_dir(path.parent)
        create_private_file(path)  # owner-only before SQLite writes a byte (its -wal and -shm follow its mode)
        async with contextlib.AsyncExitStack() as undo:  # what is opened is closed again if a later step fails
            writer_conn = await aiosqlite.connect(path, isolation_level=None)
            undo.push_async_callback(writer_conn.close)
            await writer_conn.execute("PRAGMA busy_timeout = 10000")  # another process may hold the lock briefly
            await _enable_wal(writer_conn, path)
            await writer_conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
            await migrate(writer_conn)
            sync: VectorSync | None = None
            if vectors is not None:
                writer_token = uuid.uuid4().hex
                await vector_rows.log_changes_of_this_process(writer_conn, writer_token)
                position = await vector_rows.open_vectors(writer_conn, vectors, reembed=reembed_vectors)
                log_reader = await open_reader(path)
                undo.push_async_callback(log_reader.close)
                sync = VectorSync(vectors, log_reader, writer_token=writer_token, position=position)
            pool = await ReaderPool.open(path, readers)
            undo.pop_all()
        writer = GroupCommitWriter(writer_conn, group_commit_max)
        writer.start()
        if sync is not None:
            sync.start()
        return cls(path, pool, writer_conn, writer, clock, limits, vectors, sync)

    async def close(self) -> None:
        """Commit what is queued and bring the vector index up to it, checkpoint the WAL into the
        main file, close every connection, then save and close the vector index. Each step runs
        even when an earlier one failed."""
        async with contextlib.AsyncExitStack() as steps:  # callbacks run last-pushed first
            if self._vectors is not None:
                steps.push_async_callback(self._vectors.close)
            steps.push_async_callback(self._writer_conn.close)
            steps.push_async_callback(self._writer_conn.execute, "PRAGMA wal_checkpoint(TRUNCATE)")
            steps.push_async_callback(self._readers.close)
            if self._sync is not None:
                steps.push_async_callback(self._sync.close)
            steps.push_async_callback(self._writer.close)

    async def sync_vectors(self) -> None:
        """Bring the vector index up to every committed write (searches do this themselves)."""
        if self._sync is not None:
            await self._sync.catch_up()

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
        index: bool = False,
    ) -> EntryMeta:
        """Create or replace one entry. With ``if_version``, write only if the entry is at that
        version (0: only if absent); otherwise raise `Conflict` naming the current version.
        ``index`` gives it a vector even in a namespace not configured as indexed."""
        (meta,) = await self.put_many([PutRequest(namespace, key, value, ttl_seconds, tuple(tags), if_version, index)])
        return meta

    async def put_many(self, requests: Sequence[PutRequest]) -> list[EntryMeta]:
        """Write up to 10,000 entries in one transaction (and one vector-index upsert): all of
        them, or (on any invalid entry or failed ``if_version``) none; every invalid entry is
        named in the error. Results come back in request order."""
        if not 1 <= len(requests) <= BATCH_MAX:
            raise InvalidArgument(f"a batch holds 1..{BATCH_MAX} entries; got {len(requests)}")
        can_index = self._vectors is not None
        if cheap_to_prepare([request.value for request in requests]):
            prepared, rows = prepare_batch(requests, self.limits, can_index)
        else:  # encoding megabytes of values would stall every other call on the event loop
            prepared, rows = await anyio.to_thread.run_sync(prepare_batch, requests, self.limits, can_index)
        embedded = await embed_requested(self._vectors, requests)
        values = [request.value for request in requests]
        metas: list[EntryMeta]
        metas, _ = await self._writer.submit(partial(self._write_puts, prepared, rows, values, embedded), self._sync)
        return metas

    async def _write_puts(
        self,
        puts: list[PreparedPut],
        rows: str,
        values: list[Any],
        embedded: dict[int, np.ndarray],
        conn: aiosqlite.Connection,
    ) -> tuple[list[EntryMeta], VectorChange | None]:
        now = self._clock.now_ms()
        guarded = [put for put in puts if put.if_version is not None]
        if guarded:
            await self._check_versions(conn, guarded, now)
        if self._vectors is not None:
            # Before anything is written: an overwrite of an indexed entry is re-embedded.
            embedded = embedded | await embed_still_indexed(conn, self._vectors, puts, values, embedded, now)
        written = {(row[0], row[1]): (meta_from_row(row), row[8])
                   for row in await fetch_all(conn, _UPSERT, {"rows": rows, "now": now})}
        metas = [written[(p.namespace, p.key)][0] for p in puts]
        if self._vectors is None:
            return metas, None
        ids = [written[(p.namespace, p.key)][1] for p in puts]
        return metas, await write_vectors(conn, self._vectors, ids, embedded)

    async def _check_versions(self, conn: aiosqlite.Connection, puts: list[PreparedPut], now: int) -> None:
        """Compare-and-set, inside the write's transaction and before it writes: one put whose
        ``if_version`` does not hold refuses the whole batch, naming the first three that failed."""
        keys = json.dumps([[p.namespace, p.key] for p in puts], ensure_ascii=False)
        current = {row[0]: row[1] for row in await fetch_all(conn, _LIVE_VERSIONS, {"keys": keys, "now": now})}
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
        deleted: int
        deleted, _ = await self._writer.submit(partial(self._delete_one, namespace, key, if_version), self._sync)
        return deleted

    async def _delete_one(
        self, namespace: str, key: str, if_version: int | None, conn: aiosqlite.Connection
    ) -> tuple[int, VectorChange | None]:
        params = {"namespace": namespace, "key": key, "now": self._clock.now_ms()}
        where = f"namespace = :namespace AND key = :key AND {LIVE}"
        if if_version is not None:
            rows = await fetch_all(conn, f"SELECT version FROM entries WHERE {where}", params)
            if not rows:
                raise NotFound(f"key {key!r} in namespace {namespace!r} does not exist or has expired")
            if rows[0][0] != if_version:
                raise Conflict(
                    f"key {key!r} in namespace {namespace!r} is at version {rows[0][0]}, not if_version "
                    f"{if_version}; nothing was deleted"
                )
        ids = [row[0] for row in await fetch_all(conn, f"DELETE FROM entries WHERE {where} RETURNING id", params)]
        return len(ids), forget_deleted(self._vectors, ids)

    async def delete_namespace(self, namespace: str) -> int:
        """Delete every entry of a namespace; return how many live entries were deleted."""
        check_name("namespace", namespace)
        deleted: int
        deleted, _ = await self._writer.submit(partial(self._delete_namespace, namespace), self._sync)
        return deleted

    async def _delete_namespace(self, namespace: str, conn: aiosqlite.Connection) -> tuple[int, VectorChange | None]:
        params = {"namespace": namespace, "now": self._clock.now_ms()}
        expired = await fetch_all(conn,
            f"SELECT count(*) FROM entries WHERE namespace = :namespace AND NOT {LIVE}", params
        )
        ids = [row[0] for row in
               await fetch_all(conn, "DELETE FROM entries WHERE namespace = :namespace RETURNING id", params)]
        await self._count_expired(conn, expired[0][0])
        return len(ids) - expired[0][0], forget_deleted(self._vectors, ids)

    async def sweep_expired(self, batch_size: int) -> int:
        """Delete up to ``batch_size`` expired entries (oldest expiry first); return how many."""
        deleted: int
        deleted, _ = await self._writer.submit(partial(self._sweep, batch_size), self._sync)
        return deleted

    async def _sweep(self, batch_size: int, conn: aiosqlite.Connection) -> tuple[int, VectorChange | None]:
        rows = await fetch_all(conn,
            "DELETE FROM entries WHERE id IN "
            "(SELECT id FROM entries WHERE expires_ms <= :now ORDER BY expires_ms LIMIT :limit) RETURNING id",
            {"now": self._clock.now_ms(), "limit": batch_size},
        )
        ids = [row[0] for row in rows]
        await self._count_expired(conn, len(ids))
        if self._sync is not None:
            await vector_rows.trim_changes(conn, VECTOR_LOG_KEEP, self._sync.position)
        return len(ids), forget_deleted(self._vectors, ids)

    @staticmethod
    async def _count_expired(conn: aiosqlite.Connection, count: int) -> None:
        if count:
            await conn.execute("UPDATE counters SET value = value + ? WHERE name = 'expired_total'", (count,))

    # -- reads ----------------------------------------------------------------------------

    async def get(self, namespace: str, key: str) -> Entry | None:
        """The live entry, or None if it does not exist or has expired."""
        check_name("namespace", namespace)
        check_name("key", key)
        async with self._readers.connection() as conn:
            rows = await fetch_all(conn,
                f"SELECT {META_COLUMNS}, value FROM entries WHERE namespace = :namespace AND key = :key AND {LIVE}",
                {"namespace": namespace, "key": key, "now": self._clock.now_ms()},
            )
        return entry_from_row(rows[0]) if rows else None

    async def list_page(self, namespace: str, *, prefix: str = "", limit: int = 100, cursor: str | None = None) -> Page:
        """Live entries of ``namespace`` in key order, without values, one page at a time."""
        check_name("namespace", namespace)
        check_limit(limit)
        if not isinstance(prefix, str) or len(prefix) > 256:
            raise InvalidArgument("prefix must be a string of at most 256 characters")
        after = decode_cursor(cursor, namespace) if cursor else ""
        async with self._readers.connection() as conn:
            rows = await fetch_all(conn,
                f"SELECT {META_COLUMNS} FROM entries WHERE namespace = :namespace "
                f"AND key >= :low AND key < :high AND key > :after AND {LIVE} ORDER BY key LIMIT :limit",
                {
                    "namespace": namespace,
                    "low": prefix,
                    "high": prefix + KEY_CEILING,
                    "after": after,
                    "now": self._clock.now_ms(),
                    "limit": limit + 1,
                },
            )
        entries = [meta_from_row(row) for row in rows[:limit]]
        next_cursor = encode_cursor(namespace, entries[-1].key) if len(rows) > limit else None
        return Page(entries, next_cursor)

    async def stats(self) -> MemoryStats:
        """Per-namespace and total counts over live entries, the file size, and how many entries expired so far."""
        now = self._clock.now_ms()
        async with self._readers.connection() as conn, snapshot(conn):
            rows = await fetch_all(conn,
                "SELECT namespace, count(*), sum(size), min(created_ms), max(updated_ms), "
                "sum(expires_ms IS NOT NULL AND expires_ms <= :soon) "
                f"FROM entries WHERE {LIVE} GROUP BY namespace ORDER BY namespace",
                {"now": now, "soon": now + HOUR_MS},
            )
            expired = await fetch_all(conn, "SELECT value FROM counters WHERE name = 'expired_total'")
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
            with contextlib.suppress(FileNotFoundError):
                total += os.stat(f"{self.path}{suffix}").st_size
        return total
