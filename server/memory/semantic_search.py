"""Semantic search: the live entries closest in meaning to a query.

The vector index proposes candidates; SQLite decides. Every hit is checked against the
``entries`` and ``vectors`` tables in one read snapshot, so an entry that expired, was deleted
or lost its vector since the index last heard never comes back, and the namespace and tag
filters hold exactly. When too few of the index's nearest hits pass, the search asks it for
more; with a namespace or tag filter, it searches again only among the entries that pass.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import numpy as np

from server.clock import Clock
from server.errors import InvalidArgument, Unavailable
from server.memory import vector_rows
from server.memory.models import ScoredEntry
from server.memory.readers import ReaderPool, snapshot
from server.memory.search_hits import HIT_COLUMNS, PREVIEW_CHARS, entries_with_values
from server.memory.sql import fetch_all
from server.memory.validation import check_name, check_tags, check_unicode
from server.memory.vector_sync import VectorSync
from server.vectors import Hit, SemanticIndex

SEARCH_K_MAX = 1000
QUERY_MAX_CHARS = 10_000

# Semantic hits are checked against SQLite: only live entries that still have their vector count.
_LIVE_HITS = f"""
SELECT {HIT_COLUMNS} FROM json_each(:ids) AS j
JOIN entries AS e ON e.id = j.value JOIN vectors AS v ON v.entry_id = e.id
WHERE {vector_rows.LIVE_ENTRY} AND (:namespace IS NULL OR e.namespace = :namespace)
AND {vector_rows.has_all_tags("e.tags")}
"""


@dataclass(frozen=True, slots=True)
class SemanticSearch:
    """Search by meaning over a memory store's vector index and readers (`MemoryStore.search_semantic`
    is its `search`); without a vector index, every search is `Unavailable`."""

    readers: ReaderPool
    clock: Clock
    vectors: SemanticIndex | None
    vector_sync: VectorSync | None
    max_answer_bytes: int

    async def search(
        self,
        query: str,
        *,
        namespace: str | None = None,
        tags: Sequence[str] = (),
        k: int = 10,
        min_score: float | None = None,
    ) -> list[ScoredEntry]:
        """The ``k`` live indexed entries closest in meaning to ``query``, best first, in one
        namespace or all of them, optionally only those with every one of ``tags``, scoring at
        least ``min_score`` (default: the embedder's floor for unrelated texts; -1 for every
        hit). Every hit of the vector index is checked against SQLite, so an expired or deleted
        entry never comes back. Values as in text search: within ``max_answer_bytes``, previews
        beyond."""
        vectors = self.vectors
        if vectors is None or self.vector_sync is None:
            raise Unavailable("semantic search is not enabled on this memory store")
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgument("query must be a non-empty text to search for by meaning")
        if len(query) > QUERY_MAX_CHARS:
            raise InvalidArgument(f"query must be at most {QUERY_MAX_CHARS} characters; got {len(query)}")
        check_unicode("query", query)
        if namespace is not None:
            check_name("namespace", namespace)
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= SEARCH_K_MAX:
            raise InvalidArgument(f"k must be a whole number in 1..{SEARCH_K_MAX}; got {k!r}")
        if min_score is not None and (isinstance(min_score, bool) or not -1.0 <= min_score <= 1.0):
            raise InvalidArgument(f"min_score must be a number in -1..1 (cosine similarity); got {min_score!r}")
        wanted_tags = check_tags(tags)
        if min_score is None:
            min_score = vectors.default_min_score
        await self.vector_sync.catch_up()  # a search sees every committed write
        vector = (await vectors.embed([query]))[0]
        async with self.readers.connection() as conn, snapshot(conn):
            found = await self._nearest(conn, vectors, vector, namespace, wanted_tags, min_score, k)
            entries = await entries_with_values(conn, [row for _, row in found], self.max_answer_bytes)
        return [ScoredEntry(score, entry) for (score, _), entry in zip(found, entries, strict=True)]

    async def _nearest(
        self,
        conn: aiosqlite.Connection,
        vectors: SemanticIndex,
        vector: np.ndarray,
        namespace: str | None,
        tags: Sequence[str],
        min_score: float | None,
        k: int,
    ) -> list[tuple[float, Sequence[Any]]]:
        filtered = namespace is not None or bool(tags)
        # Ask the index for a few more than k: some hits may be expired, deleted or outside the filter.
        fetch = max(4 * k, 40) if filtered else k + 10
        while True:
            # Exhausted when the index has no more to give; its count is not trusted (a shared Qdrant
            # collection's count is refreshed lazily).
            hits = await vectors.search(vector, fetch)
            found = await self._live_hits(conn, hits, namespace, tags, min_score, k)
            exhausted = len(hits) < fetch
            below_floor = min_score is not None and bool(hits) and hits[-1].score < min_score
            if len(found) >= k or exhausted or below_floor:
                return found[:k]
            if filtered:
                # A narrow filter: search only among the entries that pass it.
                allowed = await vector_rows.candidate_ids(conn, namespace, tags, self.clock.now_ms())
                hits = await vectors.search(vector, k, allowed)
                return await self._live_hits(conn, hits, namespace, tags, min_score, k)
            fetch *= 4

    async def _live_hits(
        self,
        conn: aiosqlite.Connection,
        hits: list[Hit],
        namespace: str | None,
        tags: Sequence[str],
        min_score: float | None,
        limit: int,
    ) -> list[tuple[float, Sequence[Any]]]:
        if not hits:
            return []
        rows = await fetch_all(conn,
            _LIVE_HITS,
            {
                "ids": json.dumps([hit.id for hit in hits]),
                "namespace": namespace,
                "now": self.clock.now_ms(),
                "tags": json.dumps(list(tags), ensure_ascii=False),
                "tag_count": len(tags),
                "preview_chars": PREVIEW_CHARS,
            },
        )
        rows_by_id = {row[8]: row for row in rows}
        found: list[tuple[float, Sequence[Any]]] = []
        for hit in hits:  # best first
            if len(found) == limit:
                break
            if hit.id in rows_by_id and (min_score is None or hit.score >= min_score):
                found.append((hit.score, rows_by_id[hit.id]))
        return found
