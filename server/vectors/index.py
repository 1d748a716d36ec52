"""The `VectorIndex` protocol every backend implements, and what a search returns."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from server.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class Hit:
    """One search result: the vector's id and its cosine similarity to the query (1 = same direction)."""

    id: int
    score: float


@dataclass(frozen=True, slots=True)
class IndexIdentity:
    """What built an index. Vectors of another embedder or dimension are never mixed into it."""

    embedder: str
    dimensions: int


class VectorIndex(Protocol):
    """Approximate nearest-neighbour search over unit vectors keyed by integer ids (cosine)."""

    @property
    def identity(self) -> IndexIdentity: ...

    async def load(self) -> str | None:
        """Open what was persisted. Returns None when it is usable, else why not (missing, corrupt,
        built by another embedder); the caller then rebuilds."""
        ...

    async def verify(self, ids: np.ndarray, vectors: np.ndarray) -> str | None:
        """After `load`: None when the index holds exactly these vectors, else how it disagrees."""
        ...

    async def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Replace the whole content with these vectors."""
        ...

    async def upsert(self, ids: Sequence[int], vectors: np.ndarray) -> None:
        """Insert or replace vectors by id."""
        ...

    async def delete(self, ids: Collection[int]) -> int:
        """Remove these ids (unknown ones are ignored); return how many were present."""
        ...

    async def search(self, vector: np.ndarray, k: int, allowed: Collection[int] | None = None) -> list[Hit]:
        """The ``k`` nearest ids, best first; with ``allowed``, only among those ids."""
        ...

    def count(self) -> int:
        """How many vectors the index holds."""
        ...

    async def save(self) -> None:
        """Persist durably (an embedded index writes its file; a server-backed one records its state)."""
        ...

    async def close(self) -> None: ...


def check_matrix(ids: Sequence[int], vectors: np.ndarray, dimensions: int) -> np.ndarray:
    """The vectors as a C-contiguous float32 matrix, after checking their shape against ids and dimension."""
    matrix = np.ascontiguousarray(vectors, dtype=np.float32)
    if matrix.ndim != 2 or matrix.shape[1] != dimensions:
        raise InvalidArgument(f"vectors must have {dimensions} dimensions; got shape {tuple(matrix.shape)}")
    if matrix.shape[0] != len(ids):
        raise InvalidArgument(f"{len(ids)} ids but {matrix.shape[0]} vectors")
    if len(set(ids)) != len(ids):
        raise InvalidArgument("the same id appears twice in one upsert")
    if not np.isfinite(matrix).all():
        raise InvalidArgument("vectors must not contain NaN or infinity")
    return matrix


def check_query(vector: np.ndarray, k: int, dimensions: int) -> np.ndarray:
    query = np.ascontiguousarray(vector, dtype=np.float32).reshape(-1)
    if query.shape[0] != dimensions:
        raise InvalidArgument(f"the query vector must have {dimensions} dimensions; got {query.shape[0]}")
    if not np.isfinite(query).all() or not np.any(query):
        raise InvalidArgument("the query vector must be finite and not all zero")
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise InvalidArgument(f"k must be a whole number >= 1; got {k!r}")
    return query


def exact_search(ids: np.ndarray, matrix: np.ndarray, query: np.ndarray, k: int) -> list[Hit]:
    """Brute-force cosine top-k over unit rows: the fallback for small candidate sets."""
    if len(ids) == 0:
        return []
    scores = matrix @ (query / np.linalg.norm(query))
    take = min(k, len(ids))
    best = np.argpartition(-scores, take - 1)[:take]
    best = best[np.argsort(-scores[best], kind="stable")]
    return [Hit(int(ids[i]), float(scores[i])) for i in best]
