"""`SemanticIndex`: the vectors of indexed memory entries, kept in step with SQLite.

SQLite holds the truth (every vector, int8-quantised, next to its entry); the vector index
is a fast copy of it. At start the index is loaded and checked against SQLite, and rebuilt
from SQLite when it is missing, damaged or disagrees. While serving, committed writes are
applied to it in the change log's order (``server/memory/vector_sync.py``), which also
saves it in the background every N vector writes; it is saved at shutdown too.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.to_thread
import numpy as np

from server.vectors.embedding import Embedder
from server.vectors.index import Hit, IndexIdentity, VectorIndex
from server.vectors.quantization import dequantize, quantize

logger = logging.getLogger(__name__)

ALL_NAMESPACES = "*"


def text_to_embed(value: Any) -> str:
    """What stands for a value in the vector space: the value itself if it is a string, its
    ``text`` field if it has a string one, else its canonical JSON."""
    if isinstance(value, str):
        return value
    text = value.get("text") if isinstance(value, dict) else None
    if isinstance(text, str):
        return text
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


@dataclass(frozen=True, slots=True)
class VectorChange:
    """What one committed write did to the vectors: applied to the index after the commit."""

    upsert_ids: list[int] = field(default_factory=list)
    upsert_vectors: np.ndarray | None = None
    delete_ids: list[int] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.upsert_ids or self.delete_ids)

    @classmethod
    def combine(cls, changes: Iterable[VectorChange | None]) -> VectorChange:
        """One change with the effect of these applied in order: the last word on each id wins."""
        final: dict[int, np.ndarray | None] = {}
        for change in changes:
            if not change:
                continue
            for deleted in change.delete_ids:  # a change deletes before it upserts (see `apply`)
                final[deleted] = None
            for row, upserted in enumerate(change.upsert_ids):
                assert change.upsert_vectors is not None
                final[upserted] = change.upsert_vectors[row]
        kept = {id_: vector for id_, vector in final.items() if vector is not None}
        return cls(
            upsert_ids=list(kept),
            upsert_vectors=np.stack(list(kept.values())) if kept else None,
            delete_ids=[id_ for id_, vector in final.items() if vector is None],
        )


class SemanticIndex:
    """Embeds entry text, stores vectors compactly, keeps the vector index in step, searches it."""

    def __init__(
        self,
        embedder: Embedder,
        index: VectorIndex,
        *,
        indexed_namespaces: Collection[str],
        save_every: int,
        min_score: float | None = None,
    ) -> None:
        if index.identity != IndexIdentity(embedder.name, embedder.dimensions):
            raise ValueError("the vector index was set up for another embedder than the one given")
        self._embedder = embedder
        self._index = index
        self._indexed_namespaces = frozenset(indexed_namespaces)
        self._min_score = min_score if min_score is not None else embedder.default_min_score
        self._save_every = save_every
        self._writes_since_save = 0  # counted by `note_unsaved`; a save is due at save_every
        self._unsaved = False  # the index differs from its file: save at close
        # Set when applying a committed change failed: the index then disagrees with SQLite, so
        # it must not be saved as if it were good; the next start rebuilds it.
        self._out_of_step = False

    @property
    def identity(self) -> IndexIdentity:
        return self._index.identity

    @property
    def embedder_name(self) -> str:
        return self._embedder.name

    @property
    def index(self) -> VectorIndex:
        return self._index

    @property
    def default_min_score(self) -> float | None:
        """Hits scoring below this are left out unless a search asks for another floor."""
        return self._min_score

    @property
    def indexed_namespaces(self) -> frozenset[str]:
        return self._indexed_namespaces

    def count(self) -> int:
        return self._index.count()

    def indexes_namespace(self, namespace: str) -> bool:
        """Whether every write to this namespace is indexed (by configuration)."""
        return ALL_NAMESPACES in self._indexed_namespaces or namespace in self._indexed_namespaces

    # -- embedding and the stored form ----------------------------------------------------

    async def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors for the texts, in a worker thread unless the embedder says they are cheap
        enough to embed on the event loop (a model never is)."""
        batch = list(texts)
        if sum(len(text) for text in batch) <= self._embedder.inline_chars:
            return self._embedder.embed(batch)
        return await anyio.to_thread.run_sync(self._embedder.embed, batch)

    def encode(self, vectors: np.ndarray) -> list[bytes]:
        """The int8 blobs SQLite keeps."""
        return quantize(vectors)

    def decode(self, blobs: Sequence[bytes]) -> np.ndarray:
        return dequantize(list(blobs), self.identity.dimensions)

    def _decode_all(self, blobs: Sequence[bytes]) -> np.ndarray:
        return self.decode(blobs) if len(blobs) else np.zeros((0, self.identity.dimensions), dtype=np.float32)

    # -- keeping the index in step --------------------------------------------------------

    async def start(self, ids: Sequence[int], blobs: Sequence[bytes]) -> None:
        """Load the persisted index and check it against SQLite's vectors; rebuild it from them
        when it is missing, damaged, or disagrees."""
        id_array = np.asarray(ids, dtype=np.int64)
        vectors = self.decode(blobs) if len(blobs) else np.zeros((0, self.identity.dimensions), dtype=np.float32)
        reason = await self._index.load()
        if reason is None:
            reason = await self._index.verify(id_array, vectors)
        if reason is None:
            logger.info("vector index loaded: %d vectors (%s)", len(id_array), self.identity.embedder)
            return
        started = time.perf_counter()
        await self._index.rebuild(id_array, vectors)
        await self._index.save()
        if len(id_array) == 0:
            logger.info("vector index started empty (%s)", reason)
            return
        logger.warning("vector index rebuilt from SQLite: %d vectors in %.2fs, because %s",
                       len(id_array), time.perf_counter() - started, reason)

    async def replace_all(self, ids: Sequence[int], blobs: Sequence[bytes]) -> None:
        """Rebuild the index from these vectors (SQLite's), when changes cannot be replayed one by one."""
        # Decoding a whole index takes long enough to stall every other call: a worker thread does it.
        vectors = await anyio.to_thread.run_sync(self._decode_all, blobs)
        await self._index.rebuild(np.asarray(ids, dtype=np.int64), vectors)
        self._out_of_step = False
        self._unsaved = True

    async def apply(self, change: VectorChange) -> None:
        """Apply a committed change to the index (the caller keeps the change log's order)."""
        if not change:
            return
        self._unsaved = True
        try:
            if change.delete_ids:
                await self._index.delete(change.delete_ids)
            if change.upsert_ids and change.upsert_vectors is not None:
                await self._index.upsert(change.upsert_ids, change.upsert_vectors)
        except Exception:
            # SQLite already committed; searches check every hit against SQLite, and the next start rebuilds.
            self._out_of_step = True
            logger.exception("the vector index could not apply a committed change; it will be rebuilt at next start")

    def note_unsaved(self, writes: int) -> bool:
        """Count vector writes applied since the last save; True once a save is due (every save_every)."""
        self._writes_since_save += writes
        return self._writes_since_save >= self._save_every

    async def save(self) -> None:
        if self._out_of_step:
            logger.warning("not saving the vector index: it is out of step with SQLite and will be rebuilt")
            return
        self._writes_since_save = 0  # also after a failed save: the next attempt waits for more writes
        self._unsaved = False  # before the await: a change applied during the save sets it again
        try:
            await self._index.save()
        except BaseException:
            self._unsaved = True
            raise

    async def search(self, vector: np.ndarray, k: int, allowed: Collection[int] | None = None) -> list[Hit]:
        return await self._index.search(vector, k, allowed)

    async def close(self) -> None:
        """Save what changed since the last save (unless out of step), then release the index."""
        try:
            if self._unsaved:
                await self.save()
        finally:
            await self._index.close()
