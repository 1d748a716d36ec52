"""`HnswIndex`: the embedded vector index, hnswlib (cosine) in memory, persisted to one file.

Writes are serialised by one lock. The graph itself is guarded by a second, fair lock:
a search (a fraction of a millisecond, on the event-loop thread) never runs while the
graph changes, because a search that overlaps an insert can miss neighbours. A large
upsert therefore inserts in chunks in a worker thread using every core, and searches
that arrive meanwhile are answered between two chunks.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Collection, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import hnswlib
import numpy as np

from server.private_files import make_private_dir, write_private_text
from server.vectors.index import Hit, IndexIdentity, check_matrix, check_query, exact_search

logger = logging.getLogger(__name__)

METADATA_FORMAT = 1
# Upserts of more vectors than this go to a worker thread using every core; smaller ones are
# cheaper inline than the thread hop.
INLINE_UPSERT_MAX = 8
# Vectors inserted per turn of a large upsert: bounds how long a search waits (a fraction of a second).
UPSERT_CHUNK = 1024
# With a candidate set this small, exact search over the candidates beats a filtered graph walk.
EXACT_SEARCH_MAX = 2048
_VERIFY_CHUNK = 8192
# hnswlib normalises what it stores for cosine; a stored vector and its SQLite copy agree to float rounding.
_VERIFY_TOLERANCE = 1e-4


def available_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


class HnswIndex:
    """An HNSW graph over unit vectors (cosine): M, ef_construction and ef_search as configured, ef
    never below k, capacity doubling as it fills, deletes marked and their slots reused."""

    def __init__(
        self,
        path: Path,
        identity: IndexIdentity,
        *,
        m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 64,
        threads: int | None = None,
        initial_capacity: int = 1024,
    ) -> None:
        self._path = path
        self._metadata_path = path.with_name(path.name + ".json")
        self._identity = identity
        self._m = m
        self._ef_construction = ef_construction
        self._ef_search = ef_search
        self._threads = threads or available_cores()
        self._initial_capacity = initial_capacity
        self._index = self._empty(initial_capacity)
        self._live: set[int] = set()
        # Labels marked deleted whose slot may not have been reused yet (hnswlib reuses an arbitrary one).
        self._deleted: set[int] = set()
        # fast_acquire: an uncontended lock does not yield to the event loop (a search costs ~0.1 ms; a yield ~0.03).
        self._write_lock = anyio.Lock(fast_acquire=True)
        self._graph_lock = anyio.Lock(fast_acquire=True)

    @property
    def identity(self) -> IndexIdentity:
        return self._identity

    @property
    def path(self) -> Path:
        return self._path

    def count(self) -> int:
        return len(self._live)

    # -- persistence ----------------------------------------------------------------------

    async def load(self) -> str | None:
        async with self._write_lock:
            return await anyio.to_thread.run_sync(self._load_blocking)

    def _load_blocking(self) -> str | None:
        if not self._path.exists():
            return f"there is no index file at {self._path}"
        try:
            metadata = json.loads(self._metadata_path.read_text(encoding="utf-8"))
            recorded = IndexIdentity(metadata["embedder"], int(metadata["dimensions"]))
            digest, count, vacant = str(metadata["digest"]), int(metadata["count"]), set(metadata["vacant"])
            if metadata["format"] != METADATA_FORMAT:
                return f"the index metadata is format {metadata['format']}, not {METADATA_FORMAT}"
        except (OSError, ValueError, KeyError, TypeError) as error:
            return f"the index metadata {self._metadata_path} is missing or unreadable ({error})"
        if recorded != self._identity:
            return f"the index file was built by {recorded.embedder}, not the configured {self._identity.embedder}"
        if _file_digest(self._path) != digest:
            return "the index file does not match the digest recorded when it was saved (damaged or replaced)"
        index = hnswlib.Index(space="cosine", dim=self._identity.dimensions)
        try:
            index.load_index(str(self._path), allow_replace_deleted=True)
        except (RuntimeError, MemoryError) as error:
            return f"hnswlib cannot read the index file ({error})"
        live = set(index.get_ids_list()) - vacant
        if len(live) != count:
            return f"the index file holds {len(live)} live vectors, its metadata says {count}"
        index.set_ef(self._ef_search)
        index.set_num_threads(self._threads)
        self._index, self._live, self._deleted = index, live, vacant
        return None

    async def save(self) -> None:
        """Write the index to a temporary file, then rename it over the old one, so a crash
        mid-save leaves the previous file intact; the metadata (digest, count) follows the same way."""
        async with self._write_lock:
            await anyio.to_thread.run_sync(self._save_blocking)

    def _save_blocking(self) -> None:
        make_private_dir(self._path.parent)
        # Per process: servers sharing a data directory must not write into each other's temporary file.
        temporary = self._path.with_name(f"{self._path.name}.{os.getpid()}.tmp")
        write_private_text(temporary, "")  # hnswlib overwrites it in place, so the index is owner-only throughout
        self._index.save_index(str(temporary))
        _fsync(temporary)
        metadata = {
            "format": METADATA_FORMAT,
            "embedder": self._identity.embedder,
            "dimensions": self._identity.dimensions,
            "m": self._m,
            "ef_construction": self._ef_construction,
            "digest": _file_digest(temporary),
            "count": len(self._live),
            "vacant": sorted(set(self._index.get_ids_list()) - self._live),
        }
        os.replace(temporary, self._path)
        temporary_metadata = self._metadata_path.with_name(f"{self._metadata_path.name}.{os.getpid()}.tmp")
        write_private_text(temporary_metadata, json.dumps(metadata))
        _fsync(temporary_metadata)
        os.replace(temporary_metadata, self._metadata_path)
        _fsync(self._path.parent)

    async def verify(self, ids: np.ndarray, vectors: np.ndarray) -> str | None:
        return await anyio.to_thread.run_sync(self._verify_blocking, ids, vectors)

    def _verify_blocking(self, ids: np.ndarray, vectors: np.ndarray) -> str | None:
        expected = set(ids.tolist())
        if expected != self._live:
            missing, extra = len(expected - self._live), len(self._live - expected)
            return (f"the index holds {len(self._live)} vectors and SQLite {len(expected)} "
                    f"({missing} missing from the index, {extra} not in SQLite)")
        for start in range(0, len(ids), _VERIFY_CHUNK):
            chunk = ids[start:start + _VERIFY_CHUNK]
            stored = np.asarray(self._index.get_items(chunk.tolist()), dtype=np.float32)
            truth = vectors[start:start + _VERIFY_CHUNK]
            truth = truth / np.linalg.norm(truth, axis=1, keepdims=True)
            if stored.shape != truth.shape or np.abs(stored - truth).max(initial=0.0) > _VERIFY_TOLERANCE:
                return "a vector in the index differs from its SQLite copy"
        return None

    async def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        async with self._write_lock:  # checking and building both take long: a worker thread does them
            index, live = await anyio.to_thread.run_sync(self._build_blocking, ids, vectors)
            self._index, self._live, self._deleted = index, live, set()

    def _build_blocking(self, ids: np.ndarray, vectors: np.ndarray) -> tuple[Any, set[int]]:
        matrix = check_matrix(ids.tolist(), vectors, self._identity.dimensions)
        capacity = self._initial_capacity
        while capacity < len(ids):
            capacity *= 2
        index = self._empty(capacity)
        if len(ids):
            index.add_items(matrix, ids, num_threads=self._threads)
        return index, set(ids.tolist())

    async def close(self) -> None:
        """Nothing to release; the caller saves first if it wants the state kept."""

    # -- writes ---------------------------------------------------------------------------

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        matrix = check_matrix(ids, vectors, self._identity.dimensions)
        labels = np.asarray(ids, dtype=np.uint64)
        async with self._write_lock:
            await self._revive([label for label in ids if label in self._deleted])
            known = np.fromiter((label in self._live for label in ids), dtype=bool, count=len(ids))
            await self._ensure_capacity(int((~known).sum()))
            # In place for known labels: replace_deleted would give a live label a second slot.
            await self._insert(matrix[known], labels[known], replace_deleted=False)
            await self._insert(matrix[~known], labels[~known], replace_deleted=True)
            self._live.update(ids)
            await self._forget_reused_slots()

    async def _revive(self, labels: list[int]) -> None:
        """A label deleted earlier comes back in its old slot when hnswlib still has it."""
        if not labels:
            return
        async with self._graph_lock:
            for label in labels:
                self._deleted.discard(label)
                try:
                    self._index.unmark_deleted(label)
                    self._live.add(label)
                except RuntimeError:  # its slot was reused meanwhile: it is simply new
                    pass

    async def delete(self, ids: Collection[int]) -> int:
        async with self._write_lock:
            present = [label for label in ids if label in self._live]
            if len(present) <= INLINE_UPSERT_MAX * 8:
                async with self._graph_lock:
                    self._mark_deleted(present)
            else:  # a namespace of 200,000 entries: marking them all would stall the event loop
                for start in range(0, len(present), UPSERT_CHUNK * 16):
                    chunk = present[start:start + UPSERT_CHUNK * 16]
                    async with self._graph_lock:  # searches queued meanwhile go between chunks
                        await anyio.to_thread.run_sync(self._mark_deleted, chunk)
            await self._forget_reused_slots()
            return len(present)

    def _mark_deleted(self, labels: list[int]) -> None:
        for label in labels:
            self._index.mark_deleted(label)
        self._live.difference_update(labels)
        self._deleted.update(labels)

    async def _forget_reused_slots(self) -> None:
        """`_deleted` remembers deleted labels so they can be revived in place; hnswlib hands their
        slots to new labels at will, so once it names more labels than there are vacant slots,
        it is trimmed to the labels hnswlib still holds (at most once per that many deletes)."""
        vacant = self._index.element_count - len(self._live)
        if len(self._deleted) > 2 * vacant + 1024:
            held = await anyio.to_thread.run_sync(self._index.get_ids_list)
            self._deleted = set(held) - self._live

    async def _ensure_capacity(self, new_labels: int) -> None:
        vacant = self._index.element_count - len(self._live)
        needed = self._index.element_count + max(0, new_labels - vacant)
        if needed <= self._index.max_elements:
            return
        capacity = max(self._index.max_elements * 2, self._initial_capacity)
        while capacity < needed:
            capacity *= 2
        async with self._graph_lock:
            await anyio.to_thread.run_sync(self._index.resize_index, capacity)
        logger.info("vector index grown to %d slots", capacity)

    async def _insert(self, matrix: np.ndarray, labels: np.ndarray, *, replace_deleted: bool) -> None:
        if len(labels) <= INLINE_UPSERT_MAX:
            if len(labels):
                async with self._graph_lock:
                    self._index.add_items(matrix, labels, num_threads=1, replace_deleted=replace_deleted)
            return
        for start in range(0, len(labels), UPSERT_CHUNK):
            chunk = slice(start, start + UPSERT_CHUNK)
            async with self._graph_lock:  # fair: searches queued meanwhile go before the next chunk
                await anyio.to_thread.run_sync(
                    partial(self._index.add_items, matrix[chunk], labels[chunk], num_threads=self._threads,
                            replace_deleted=replace_deleted)
                )

    # -- reads ----------------------------------------------------------------------------

    async def search(self, vector: np.ndarray, k: int, allowed: Collection[int] | None = None) -> list[Hit]:
        query = check_query(vector, k, self._identity.dimensions)
        async with self._graph_lock:
            if allowed is None:
                return self._search_graph(query, min(k, len(self._live)), None, self._live)
            candidates = [label for label in allowed if label in self._live]
            if len(candidates) <= EXACT_SEARCH_MAX:
                return self._search_exact(query, k, candidates)
            return self._search_graph(query, min(k, len(candidates)), set(candidates), candidates)

    async def search_batch(self, queries: np.ndarray, k: int) -> list[list[Hit]]:
        """Many queries at once on every core (for bulk work and benchmarks)."""
        matrix = check_matrix(list(range(len(queries))), queries, self._identity.dimensions)
        take = min(k, len(self._live))
        if take == 0:
            return [[] for _ in range(len(matrix))]
        async with self._write_lock, self._graph_lock:
            self._index.set_ef(max(self._ef_search, take))
            labels, distances = await anyio.to_thread.run_sync(
                lambda: self._index.knn_query(matrix, k=take, num_threads=self._threads)
            )
        return [[Hit(label, 1.0 - distance) for label, distance in zip(row_labels, row_distances)]
                for row_labels, row_distances in zip(labels.tolist(), distances.tolist())]

    def _search_graph(self, query: np.ndarray, k: int, allowed: set[int] | None, pool: Collection[int]) -> list[Hit]:
        if k <= 0:
            return []
        ef = max(self._ef_search, k)
        if self._index.ef != ef:
            self._index.set_ef(ef)
        try:
            labels, distances = self._index.knn_query(
                query, k=k, num_threads=1, filter=None if allowed is None else allowed.__contains__
            )
        except RuntimeError:
            # hnswlib found fewer than k (heavy deletes or a narrow filter): answer exactly instead.
            return self._search_exact(query, k, list(pool))
        # tolist() first: converting numpy scalars one by one costs more than the search of a small index.
        return [Hit(label, 1.0 - distance) for label, distance in zip(labels[0].tolist(), distances[0].tolist())]

    def _search_exact(self, query: np.ndarray, k: int, candidates: list[int]) -> list[Hit]:
        if not candidates:
            return []
        matrix = np.asarray(self._index.get_items(candidates), dtype=np.float32)
        return exact_search(np.asarray(candidates), matrix, query, k)

    def _empty(self, capacity: int) -> Any:
        index = hnswlib.Index(space="cosine", dim=self._identity.dimensions)
        index.init_index(max_elements=capacity, M=self._m, ef_construction=self._ef_construction,
                         allow_replace_deleted=True)
        index.set_ef(self._ef_search)
        index.set_num_threads(self._threads)
        return index


def _file_digest(path: Path) -> str:
    with path.open("rb") as file:
        return hashlib.file_digest(file, "blake2b").hexdigest()


def _fsync(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)

