"""Export and import: entries moved out of and into a memory store as they were.

An export reads live entries with everything they carry (value, version, tags, creation,
update and expiry times) in (namespace, key) order, a page at a time. An import writes such
entries back unchanged, one chunk per transaction, and never replaces a live entry: where the
store already holds a key, it keeps what it holds and the report says so. ``switchboard memory
export`` and ``import`` (``server/cli/memory.py``) are the JSON-lines ends of these two calls.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiosqlite
import numpy as np

from server.clock import Clock
from server.errors import InvalidArgument, SwitchboardError
from server.memory.entry_rows import LIVE, META_COLUMNS, entry_from_row
from server.memory.models import Entry, ImportedEntry, ImportReport, PutRequest, Skipped
from server.memory.readers import ReaderPool
from server.memory.sql import fetch_all
from server.memory.validation import BATCH_MAX, LIST_LIMIT_MAX, check_limit, check_name, check_tags, encode_tags, encode_value
from server.memory.vector_sync import VectorSync
from server.memory.vector_writes import embed_requested, write_vectors
from server.memory.writer import GroupCommitWriter
from server.vectors import SemanticIndex, VectorChange

# An import writes rows as exported: [namespace, key, value_json, tags_json, version, size,
# created_ms, updated_ms, expires_ms]; it never replaces a live entry.
_IMPORT = """
INSERT INTO entries (namespace, key, value, tags, version, size, created_ms, updated_ms, expires_ms)
SELECT json_extract(j.value, '$[0]'), json_extract(j.value, '$[1]'), json_extract(j.value, '$[2]'),
       json_extract(j.value, '$[3]'), json_extract(j.value, '$[4]'), json_extract(j.value, '$[5]'),
       json_extract(j.value, '$[6]'), json_extract(j.value, '$[7]'), json_extract(j.value, '$[8]')
FROM json_each(:rows) AS j WHERE true
ON CONFLICT (namespace, key) DO UPDATE SET
    value = excluded.value, tags = excluded.tags, version = excluded.version, size = excluded.size,
    created_ms = excluded.created_ms, updated_ms = excluded.updated_ms, expires_ms = excluded.expires_ms
WHERE entries.expires_ms IS NOT NULL AND entries.expires_ms <= :now
RETURNING namespace, key, id
"""


@dataclass(frozen=True, slots=True)
class MemoryTransfer:
    """Export pages and import chunks over a memory store's readers and writer (`MemoryStore`
    owns them and offers both calls)."""

    readers: ReaderPool
    writer: GroupCommitWriter
    clock: Clock
    max_value_bytes: int
    vectors: SemanticIndex | None
    vector_sync: VectorSync | None

    async def export_page(self, *, namespace: str | None = None, after: tuple[str, str] = ("", ""),
                          limit: int = LIST_LIMIT_MAX) -> list[Entry]:
        """Live entries with their values, in (namespace, key) order after ``after``; all
        namespaces, or only ``namespace``. For exports: page on with the last entry's pair."""
        if namespace is not None:
            check_name("namespace", namespace)
        check_limit(limit)
        async with self.readers.connection() as conn:
            rows = await fetch_all(conn,
                f"SELECT {META_COLUMNS}, value FROM entries WHERE (namespace, key) > (:after_namespace, :after_key) "
                f"AND (:only IS NULL OR namespace = :only) AND {LIVE} ORDER BY namespace, key LIMIT :limit",
                {"after_namespace": after[0], "after_key": after[1], "only": namespace,
                 "now": self.clock.now_ms(), "limit": limit},
            )
        return [entry_from_row(row) for row in rows]

    async def import_entries(self, entries: Sequence[ImportedEntry]) -> ImportReport:
        """Writes exported entries as they were (version, times, tags) in one transaction, each
        unless it is invalid, has expired, or its key holds a live entry already; answers what was
        written and what was skipped, and why. Entries of indexed namespaces get their vectors."""
        if not 1 <= len(entries) <= BATCH_MAX:
            raise InvalidArgument(f"an import chunk holds 1..{BATCH_MAX} entries; got {len(entries)}")
        now = self.clock.now_ms()
        skipped: list[Skipped] = []
        rows: list[list[Any]] = []
        accepted: list[ImportedEntry] = []
        for entry in entries:
            reason = self._import_problem(entry, now)
            if reason is not None:
                skipped.append(Skipped(str(entry.namespace), str(entry.key), reason))
                continue
            value_json, size = encode_value(entry.value, self.max_value_bytes)
            rows.append([entry.namespace, entry.key, value_json, encode_tags(tuple(entry.tags)), entry.version, size,
                         entry.created_ms, entry.updated_ms, entry.expires_ms])
            accepted.append(entry)
        if not accepted:
            return ImportReport(0, skipped)
        embedded = await embed_requested(self.vectors, [PutRequest(e.namespace, e.key, e.value) for e in accepted])
        written, _ = await self.writer.submit(partial(self._write_imports, accepted, rows, embedded), self.vector_sync)
        for entry in accepted:
            if (entry.namespace, entry.key) not in written:
                skipped.append(Skipped(entry.namespace, entry.key, "a live entry holds this key"))
        return ImportReport(len(written), skipped)

    def _import_problem(self, entry: ImportedEntry, now: int) -> str | None:
        try:
            check_name("namespace", entry.namespace)
            check_name("key", entry.key)
            check_tags(entry.tags)
            encode_value(entry.value, self.max_value_bytes)
        except SwitchboardError as error:
            return error.message
        times = (entry.version, entry.created_ms, entry.updated_ms)
        if not all(isinstance(number, int) and not isinstance(number, bool) and number >= 1 for number in times):
            return "version, created_ms and updated_ms must be positive whole numbers"
        if entry.expires_ms is not None and (not isinstance(entry.expires_ms, int) or entry.expires_ms <= now):
            return "expired"
        return None

    async def _write_imports(
        self, entries: list[ImportedEntry], rows: list[list[Any]], embedded: dict[int, np.ndarray],
        conn: aiosqlite.Connection,
    ) -> tuple[set[tuple[str, str]], VectorChange | None]:
        # A key whose entry has expired (not yet swept) is taken over; a live one is left alone.
        found = await fetch_all(conn, _IMPORT, {"rows": json.dumps(rows, ensure_ascii=False),
                                                "now": self.clock.now_ms()})
        ids = {(row[0], row[1]): row[2] for row in found}
        if self.vectors is None:
            return set(ids), None
        positions = [i for i, e in enumerate(entries) if (e.namespace, e.key) in ids]
        change = await write_vectors(conn, self.vectors, [ids[(entries[i].namespace, entries[i].key)] for i in positions],
                                     {n: embedded[i] for n, i in enumerate(positions) if i in embedded})
        return set(ids), change
