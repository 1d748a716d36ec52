"""The vectors of written entries: which entries a write gives a vector, and storing those
vectors inside the write's transaction.

An entry gets a vector when its write asks for one (``index``), when its namespace is
configured as indexed, or when it overwrites an entry that has one (it stays indexed). Puts and
imports embed what they can before they are queued on the writer, so the slow part never holds
the shared transaction; only "is this overwritten entry indexed?" needs the writer's view.
Each function hands back the `VectorChange` that `VectorSync` applies to the index after the
commit: SQLite's rows are the truth, the index follows them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import aiosqlite
import numpy as np

from server.memory import vector_rows
from server.memory.models import PutRequest
from server.memory.put_batch import PreparedPut
from server.vectors import SemanticIndex, VectorChange, text_to_embed


async def embed_requested(vectors: SemanticIndex | None, requests: Sequence[PutRequest]) -> dict[int, np.ndarray]:
    """Vectors for the entries that asked for one or live in an indexed namespace, by position."""
    if vectors is None:
        return {}
    positions = [i for i, r in enumerate(requests) if r.index or vectors.indexes_namespace(r.namespace)]
    if not positions:
        return {}
    embedded = await vectors.embed([text_to_embed(requests[i].value) for i in positions])
    return dict(zip(positions, embedded))


async def embed_still_indexed(
    conn: aiosqlite.Connection,
    vectors: SemanticIndex,
    puts: Sequence[PreparedPut],
    values: Sequence[Any],
    embedded: dict[int, np.ndarray],
    now: int,
) -> dict[int, np.ndarray]:
    """Vectors for the puts not in ``embedded`` that overwrite a live indexed entry, by position.
    Call inside the write's transaction, before the upsert."""
    others = [i for i in range(len(puts)) if i not in embedded]
    found = await vector_rows.indexed_positions(conn, [(puts[i].namespace, puts[i].key) for i in others], now)
    if not found:
        return {}
    positions = [others[j] for j in found]
    new_vectors = await vectors.embed([text_to_embed(values[i]) for i in positions])
    return dict(zip(positions, new_vectors))


async def write_vectors(
    conn: aiosqlite.Connection, vectors: SemanticIndex, ids: list[int], embedded: dict[int, np.ndarray]
) -> VectorChange:
    """Store the vectors ``embedded`` holds (by position in ``ids``, the written entries' ids) and
    drop the old vector of every other written entry."""
    positions = sorted(embedded)
    upsert_ids = [ids[i] for i in positions]
    decoded = None
    if positions:
        blobs = vectors.encode(np.stack([embedded[i] for i in positions]))
        await vector_rows.write(conn, upsert_ids, blobs)
        decoded = vectors.decode(blobs)  # the index holds exactly what SQLite holds
    # Replacing an expired entry without indexing it: its old vector goes.
    dropped = await vector_rows.drop(conn, [ids[i] for i in range(len(ids)) if i not in embedded])
    return VectorChange(upsert_ids, decoded, dropped)


def forget_deleted(vectors: SemanticIndex | None, ids: list[int]) -> VectorChange | None:
    """The change for deleted entries: their rows in ``vectors`` went with them (a trigger), their
    points in the index go after the commit."""
    return VectorChange(delete_ids=ids) if vectors is not None and ids else None
