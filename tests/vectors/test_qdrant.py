"""QdrantIndex on a real qdrant-client local collection (the same API a Qdrant server serves)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from server.errors import InvalidArgument
from server.vectors import IndexIdentity
from server.vectors.qdrant import QdrantIndex
from tests.vectors.conftest import clustered_unit_vectors

IDENTITY = IndexIdentity("test-embedder/384", 384)


def local_index(tmp_path: Path, identity: IndexIdentity = IDENTITY) -> QdrantIndex:
    return QdrantIndex.connect(identity, tmp_path / "state.json", collection="memory", local_path=tmp_path / "qdrant",
                               count_refresh_seconds=0)


async def test_upsert_search_delete_and_filter(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(300, 384)
    index = local_index(tmp_path)
    try:
        assert "no Qdrant collection" in await index.load()
        await index.rebuild(np.arange(200), vectors[:200])
        await index.upsert(list(range(200, 300)), vectors[200:])
        exact = np.argsort(-(vectors @ vectors[42]))[:5]
        assert [hit.id for hit in await index.search(vectors[42], 5)] == exact.tolist()
        assert index.count() == 300  # refreshed by the search
        assert (await index.search(vectors[42], 1))[0].score == pytest.approx(1.0, abs=1e-5)
        assert {hit.id for hit in await index.search(vectors[42], 10, {1, 2, 3})} == {1, 2, 3}
        assert await index.delete([42, 99999]) == 1
        assert 42 not in [hit.id for hit in await index.search(vectors[42], 10)]
        with pytest.raises(InvalidArgument, match="384 dimensions"):
            await index.upsert([7], np.ones((1, 12)))
        with pytest.raises(InvalidArgument, match="384 dimensions"):
            await index.search(np.ones(12), 3)
        await index.search(vectors[1], 1)
        assert index.count() == 299
    finally:
        await index.close()


async def test_state_survives_reopening_and_disagreements_are_reported(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(100, 384)
    index = local_index(tmp_path)
    await index.rebuild(np.arange(100), vectors)
    await index.save()
    await index.close()

    reopened = local_index(tmp_path)
    try:
        assert await reopened.load() is None and reopened.count() == 100
        assert await reopened.verify(np.arange(100), vectors) is None
        assert "SQLite 99" in await reopened.verify(np.arange(99), vectors[:99])
        changed = vectors.copy()
        changed[:, :] = vectors[::-1]
        assert "differs" in await reopened.verify(np.arange(100), changed)
    finally:
        await reopened.close()

    other = local_index(tmp_path, IndexIdentity("other/384", 384))
    try:
        assert "filled by test-embedder/384" in await other.load()
    finally:
        await other.close()


async def test_a_disagreeing_collection_is_repaired_in_place_never_dropped(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(120, 384)
    index = local_index(tmp_path)
    try:
        await index.rebuild(np.arange(100), vectors[:100])
        dropped: list[str] = []
        drop = index._client.delete_collection

        async def noting_drop(name: str, **options: object) -> bool:
            dropped.append(name)
            return await drop(name, **options)

        index._client.delete_collection = noting_drop  # type: ignore[method-assign]
        # SQLite now holds 10..119: ten points too many in the collection, twenty missing.
        await index.rebuild(np.arange(10, 120), vectors[10:120])
        assert dropped == []
        assert sorted(await index._all_point_ids()) == list(range(10, 120)) and index.count() == 110
        assert (await index.search(vectors[115], 1))[0].id == 115
    finally:
        await index.close()
