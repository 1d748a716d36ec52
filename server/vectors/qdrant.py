"""`QdrantIndex`: vectors in a Qdrant collection, the scale-out path.

With a URL it talks to a Qdrant server (which persists and replicates on its own); with a
path it runs qdrant-client's embedded local mode, used by the tests. Either way a small
state file in the data directory records which embedder filled the collection, so a
change of embedder is noticed at start.

Several servers may share one collection (and one SQLite database). So a disagreement found
at start is repaired in place (SQLite's vectors upserted, points SQLite no longer has
deleted), never by dropping the collection under the others; and the point count, which
only logs and stats use, is refreshed approximately and at most once a second, not counted
exactly after every write.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np
from qdrant_client import AsyncQdrantClient, models

from server.errors import Unavailable
from server.private_files import make_private_dir, write_private_text
from server.vectors.index import Hit, IndexIdentity, check_matrix, check_query

logger = logging.getLogger(__name__)

UPSERT_CHUNK = 1024
SCROLL_PAGE = 4096
COUNT_REFRESH_SECONDS = 1.0
# At start, this many vectors are read back and compared with SQLite (a full read would defeat a server).
VERIFY_SAMPLE = 256
_VERIFY_TOLERANCE = 1e-4


class QdrantIndex:
    """A Qdrant collection with cosine distance; point ids are the memory entry ids."""

    def __init__(
        self,
        client: AsyncQdrantClient,
        collection: str,
        identity: IndexIdentity,
        state_path: Path,
        *,
        count_refresh_seconds: float = COUNT_REFRESH_SECONDS,
    ) -> None:
        self._client = client
        self._collection = collection
        self._identity = identity
        self._state_path = state_path
        self._count = 0
        self._count_stale = False
        self._counted_at = 0.0
        self._count_refresh_seconds = count_refresh_seconds

    @classmethod
    def connect(
        cls,
        identity: IndexIdentity,
        state_path: Path,
        *,
        collection: str,
        url: str | None = None,
        api_key: str | None = None,
        local_path: Path | None = None,
        count_refresh_seconds: float = COUNT_REFRESH_SECONDS,
    ) -> QdrantIndex:
        """A server at ``url``, or else embedded local storage at ``local_path``."""
        if url:
            client = AsyncQdrantClient(url=url, api_key=api_key)
        elif local_path is not None:
            # Qdrant's files inside take its own modes; an owner-only directory keeps them from other users.
            make_private_dir(local_path)
            client = AsyncQdrantClient(path=str(local_path))
        else:
            raise Unavailable("the Qdrant backend needs SWITCHBOARD_VECTOR_QDRANT_URL (or a local path)")
        return cls(client, collection, identity, state_path, count_refresh_seconds=count_refresh_seconds)

    @property
    def identity(self) -> IndexIdentity:
        return self._identity

    def count(self) -> int:
        return self._count

    async def load(self) -> str | None:
        try:
            if not await self._client.collection_exists(self._collection):
                return f"there is no Qdrant collection {self._collection!r}"
            info = await self._client.get_collection(self._collection)
            self._count = (await self._client.count(self._collection, exact=True)).count
        except Exception as error:  # qdrant-client raises transport and API errors of several types
            raise Unavailable(f"cannot reach Qdrant collection {self._collection!r}: {error}") from error
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        if size != self._identity.dimensions:
            return f"the Qdrant collection has vectors of size {size}, not {self._identity.dimensions}"
        try:
            recorded = json.loads(self._state_path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            return f"the Qdrant state file {self._state_path} is missing or unreadable ({error})"
        if recorded.get("embedder") != self._identity.embedder or recorded.get("collection") != self._collection:
            return f"the collection was filled by {recorded.get('embedder')}, not {self._identity.embedder}"
        return None

    async def verify(self, ids: np.ndarray, vectors: np.ndarray) -> str | None:
        if self._count != len(ids):
            return f"the Qdrant collection holds {self._count} vectors and SQLite {len(ids)}"
        if len(ids) == 0:
            return None
        # A deterministic spread of ids, so a partial mismatch is likely to show.
        picks = np.linspace(0, len(ids) - 1, num=min(VERIFY_SAMPLE, len(ids))).astype(int)
        records = await self._client.retrieve(self._collection, ids=[int(ids[i]) for i in picks], with_vectors=True)
        stored = {int(record.id): np.asarray(record.vector, dtype=np.float32) for record in records}
        for i in picks:
            truth = vectors[i] / np.linalg.norm(vectors[i])
            got = stored.get(int(ids[i]))
            if got is None:
                return f"vector {int(ids[i])} is in SQLite but not in the Qdrant collection"
            if np.abs(got - truth).max() > _VERIFY_TOLERANCE:
                return f"vector {int(ids[i])} in Qdrant differs from its SQLite copy"
        return None

    async def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Make the collection hold exactly these vectors, in place: other servers may be searching it."""
        matrix = check_matrix(ids.tolist(), vectors, self._identity.dimensions)
        if not await self._has_usable_collection():
            await self._client.create_collection(
                self._collection,
                vectors_config=models.VectorParams(size=self._identity.dimensions, distance=models.Distance.COSINE),
            )
        await self._upsert_chunks(ids.tolist(), matrix)
        wanted = set(ids.tolist())
        extra = [point for point in await self._all_point_ids() if point not in wanted]
        for start in range(0, len(extra), UPSERT_CHUNK):
            await self._client.delete(self._collection, wait=True,
                                      points_selector=models.PointIdsList(points=extra[start:start + UPSERT_CHUNK]))
        self._count = len(wanted)
        self._count_stale = False

    async def _has_usable_collection(self) -> bool:
        """Whether the collection exists with vectors of our size. One of another size was filled by
        an embedder this database no longer has vectors of (it re-embedded them): it is replaced."""
        if not await self._client.collection_exists(self._collection):
            return False
        info = await self._client.get_collection(self._collection)
        vectors = info.config.params.vectors
        size = vectors.size if isinstance(vectors, models.VectorParams) else None
        if size == self._identity.dimensions:
            return True
        logger.warning("replacing Qdrant collection %r: its vectors have %s dimensions, the embedder makes %d",
                       self._collection, size, self._identity.dimensions)
        await self._client.delete_collection(self._collection)
        return False

    async def _all_point_ids(self) -> list[int]:
        ids: list[int] = []
        offset: models.ExtendedPointId | None = None
        while True:
            records, offset = await self._client.scroll(
                self._collection, limit=SCROLL_PAGE, offset=offset, with_payload=False, with_vectors=False
            )
            ids.extend(int(record.id) for record in records)
            if offset is None:
                return ids

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        matrix = check_matrix(ids, vectors, self._identity.dimensions)
        await self._upsert_chunks(list(ids), matrix)
        self._count_stale = True

    async def _upsert_chunks(self, ids: list[int], matrix: np.ndarray) -> None:
        for start in range(0, len(ids), UPSERT_CHUNK):
            batch = models.Batch(ids=ids[start:start + UPSERT_CHUNK], vectors=matrix[start:start + UPSERT_CHUNK].tolist())
            await self._client.upsert(self._collection, points=batch, wait=True)

    async def delete(self, ids: Collection[int]) -> int:
        if not ids:
            return 0
        present = await self._client.retrieve(self._collection, ids=list(ids), with_payload=False, with_vectors=False)
        await self._client.delete(self._collection, points_selector=models.PointIdsList(points=list(ids)), wait=True)
        self._count_stale = True
        return len(present)

    async def _refresh_count(self) -> None:
        """An approximate count (cheap for Qdrant), at most once a second after writes."""
        if self._count_stale and time.monotonic() - self._counted_at >= self._count_refresh_seconds:
            self._count_stale = False
            self._counted_at = time.monotonic()
            self._count = (await self._client.count(self._collection, exact=False)).count

    async def search(self, vector: np.ndarray, k: int, allowed: Collection[int] | None = None) -> list[Hit]:
        query = check_query(vector, k, self._identity.dimensions)
        await self._refresh_count()
        if allowed is not None and not allowed:
            return []
        query_filter = None if allowed is None else models.Filter(must=[models.HasIdCondition(has_id=list(allowed))])
        response = await self._client.query_points(
            self._collection, query=query.tolist(), limit=k, query_filter=query_filter, with_payload=False
        )
        return [Hit(int(point.id), float(point.score)) for point in response.points]

    async def save(self) -> None:
        """Qdrant keeps the points durable itself; record which embedder filled the collection."""
        state = {"collection": self._collection, "embedder": self._identity.embedder,
                 "dimensions": self._identity.dimensions, "count": self._count}
        make_private_dir(self._state_path.parent)
        # Per process: servers sharing a data directory must not write into each other's temporary file.
        temporary = self._state_path.with_name(f"{self._state_path.name}.{os.getpid()}.tmp")
        write_private_text(temporary, json.dumps(state))
        os.replace(temporary, self._state_path)

    async def close(self) -> None:
        await self._client.close()
