"""HnswIndex on real hnswlib: recall against exact search, deletes and slot reuse, growth,
persistence, and refusal of bad input."""

from __future__ import annotations

from pathlib import Path

import anyio
import numpy as np
import pytest

from server.errors import InvalidArgument
from server.vectors import HnswIndex, IndexIdentity
from tests.vectors.conftest import clustered_unit_vectors

IDENTITY = IndexIdentity("test-embedder/384", 384)


def exact_top_k(vectors: np.ndarray, queries: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(queries @ vectors.T), axis=1)[:, :k]


async def filled(path: Path, vectors: np.ndarray, **options) -> HnswIndex:
    index = HnswIndex(path, IDENTITY, **options)
    await index.upsert(list(range(len(vectors))), vectors)
    return index


async def test_recall_at_10_against_exact_search_on_5000_clustered_vectors(tmp_path: Path) -> None:
    everything = clustered_unit_vectors(5200, 384)  # queries come from the same topics as the data
    vectors_5k, queries = everything[:5000], everything[5000:]
    index = await filled(tmp_path / "v.hnsw", vectors_5k)
    truth = exact_top_k(vectors_5k, queries, 10)
    found = [[hit.id for hit in await index.search(query, 10)] for query in queries]
    recall = np.mean([len(set(row) & set(expected)) / 10 for row, expected in zip(found, truth)])
    assert recall >= 0.9
    batch = await index.search_batch(queries, 10)
    assert [[hit.id for hit in row] for row in batch] == found
    best = await index.search(queries[0], 1)
    assert best[0].score == pytest.approx(float(queries[0] @ vectors_5k[best[0].id]), abs=1e-5)


async def test_deleted_vectors_never_return_and_their_slots_are_reused(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(300, 384)
    index = await filled(tmp_path / "v.hnsw", vectors[:200], initial_capacity=256)
    assert await index.delete([5, 6, 7, 12345]) == 3
    assert index.count() == 197
    assert 5 not in [hit.id for hit in await index.search(vectors[5], 50)]
    await index.upsert([1000, 1001, 1002], vectors[200:203])
    assert index._index.element_count == 200  # three new labels took the three freed slots
    assert (await index.search(vectors[201], 1))[0].id == 1001
    await index.upsert([5], vectors[5:6])  # a deleted id comes back
    assert (await index.search(vectors[5], 1))[0].id == 5 and index.count() == 201


async def test_remembered_deleted_labels_stay_bounded_by_the_vacant_slots(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(512, 16)
    index = HnswIndex(tmp_path / "v.hnsw", IndexIdentity("test-embedder/16", 16), initial_capacity=256,
                      ef_construction=32)
    await index.upsert(list(range(256)), vectors[:256])
    next_label = 256
    for _ in range(100):  # 6,400 deletes, each slot reused by a new label straight away
        victims = sorted(index._live)[:64]
        assert await index.delete(victims) == 64
        fresh = list(range(next_label, next_label + 64))
        await index.upsert(fresh, vectors[[label % 512 for label in fresh]])
        next_label += 64
    assert index.count() == 256 and index._index.element_count <= 256
    assert len(index._deleted) <= 1024 + 2 * (index._index.element_count - index.count())
    assert await index.delete(sorted(index._live)[:5]) == 5  # deleting still works after trimming
    newest = next_label - 1
    assert (await index.search(vectors[newest % 512], 1))[0].id == newest


async def test_a_large_delete_runs_in_chunks_and_leaves_searches_correct(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(5000, 384)
    index = await filled(tmp_path / "v.hnsw", vectors)
    assert await index.delete(range(0, 5000, 2)) == 2500
    hits = await index.search(vectors[3], 10)
    assert hits[0].id == 3 and all(hit.id % 2 == 1 for hit in hits) and index.count() == 2500


async def test_capacity_doubles_as_it_fills_and_updates_happen_in_place(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(100, 384)
    index = HnswIndex(tmp_path / "v.hnsw", IDENTITY, initial_capacity=16)
    for start in range(0, 100, 10):
        await index.upsert(list(range(start, start + 10)), vectors[start:start + 10])
    assert index._index.max_elements == 128 and index.count() == 100
    await index.upsert([3], vectors[50:51])
    assert index.count() == 100 and index._index.element_count == 100
    assert [hit.id for hit in await index.search(vectors[50], 2)] in ([3, 50], [50, 3])


async def test_allowed_ids_restrict_results_small_and_large_candidate_sets(tmp_path: Path, vectors_5k) -> None:
    index = await filled(tmp_path / "v.hnsw", vectors_5k)
    few = {10, 20, 30}
    assert {hit.id for hit in await index.search(vectors_5k[10], 10, few)} == few
    many = set(range(0, 5000, 2))  # above the exact-search cut-off: a filtered graph search
    hits = await index.search(vectors_5k[11], 10, many)
    assert len(hits) == 10 and all(hit.id in many for hit in hits)


async def test_k_larger_than_the_index_returns_everything(tmp_path: Path) -> None:
    index = await filled(tmp_path / "v.hnsw", clustered_unit_vectors(5, 384))
    assert len(await index.search(clustered_unit_vectors(1, 384, seed=1)[0], 50)) == 5
    assert await HnswIndex(tmp_path / "empty.hnsw", IDENTITY).search(np.ones(384), 3) == []


@pytest.mark.parametrize(
    ("ids", "shape", "message"),
    [([1], (1, 383), "must have 384 dimensions"), ([1, 2], (1, 384), "2 ids but 1 vectors"),
     ([1, 1], (2, 384), "same id appears twice")],
)
async def test_bad_upserts_are_refused_and_change_nothing(tmp_path: Path, ids, shape, message) -> None:
    index = await filled(tmp_path / "v.hnsw", clustered_unit_vectors(10, 384))
    with pytest.raises(InvalidArgument, match=message):
        await index.upsert(ids, np.ones(shape, dtype=np.float32))
    assert index.count() == 10 and index._index.element_count == 10


@pytest.mark.parametrize(("query", "k", "message"), [(np.ones(10), 5, "384 dimensions"), (np.ones(384), 0, "k must be"),
                                                     (np.zeros(384), 5, "not all zero")])
async def test_bad_queries_are_refused(tmp_path: Path, query, k, message) -> None:
    index = await filled(tmp_path / "v.hnsw", clustered_unit_vectors(10, 384))
    with pytest.raises(InvalidArgument, match=message):
        await index.search(query, k)


async def test_save_then_load_gives_the_same_answers(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(400, 384)
    path = tmp_path / "v.hnsw"
    index = await filled(path, vectors)
    await index.delete([0, 1])
    await index.save()
    assert not list(tmp_path.glob("*.tmp"))
    loaded = HnswIndex(path, IDENTITY)
    assert await loaded.load() is None and loaded.count() == 398
    ids = np.arange(2, 400)
    assert await loaded.verify(ids, vectors[2:]) is None
    assert [h.id for h in await loaded.search(vectors[7], 5)] == [h.id for h in await index.search(vectors[7], 5)]
    await loaded.upsert([9999], vectors[:1])  # the freed slots are known again after loading
    assert loaded._index.element_count == 400


async def test_load_says_why_a_file_cannot_be_used(tmp_path: Path) -> None:
    path = tmp_path / "v.hnsw"
    assert "no index file" in await HnswIndex(path, IDENTITY).load()
    index = await filled(path, clustered_unit_vectors(50, 384))
    await index.save()
    assert "built by test-embedder/384" in await HnswIndex(path, IndexIdentity("other/384", 384)).load()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert "does not match the digest" in await HnswIndex(path, IDENTITY).load()


async def test_verify_reports_disagreement_with_the_truth(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(50, 384)
    index = await filled(tmp_path / "v.hnsw", vectors)
    assert "49 missing" not in (await index.verify(np.arange(51), np.vstack([vectors, vectors[:1]])))
    assert "SQLite 51" in await index.verify(np.arange(51), np.vstack([vectors, vectors[:1]]))
    changed = vectors.copy()
    changed[3] = vectors[4]
    assert "differs" in await index.verify(np.arange(50), changed)


async def test_searches_answer_while_a_large_upsert_runs_in_a_worker_thread(tmp_path: Path) -> None:
    vectors = clustered_unit_vectors(6000, 384)
    index = await filled(tmp_path / "v.hnsw", vectors[:1000])
    upserted = anyio.Event()

    async def upsert_the_rest() -> None:
        await index.upsert(list(range(1000, 6000)), vectors[1000:])
        upserted.set()

    answered_meanwhile = 0
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(upsert_the_rest)
        await anyio.sleep(0)  # let the upsert start and hand its work to the thread
        while not upserted.is_set():
            hits = await index.search(vectors[3], 1)
            assert hits[0].id == 3
            answered_meanwhile += 0 if upserted.is_set() else 1
            await anyio.sleep(0)
    assert answered_meanwhile >= 1 and index.count() == 6000


def test_combined_vector_changes_keep_the_last_word_on_each_id() -> None:
    from server.vectors.semantic import VectorChange

    a, b, c = (np.full((1, 3), value, dtype=np.float32) for value in (1.0, 2.0, 3.0))
    combined = VectorChange.combine([
        VectorChange(upsert_ids=[1], upsert_vectors=a),
        None,
        VectorChange(delete_ids=[1, 2]),
        VectorChange(upsert_ids=[2, 3], upsert_vectors=np.vstack([b, c])),
        VectorChange(upsert_ids=[3], upsert_vectors=a, delete_ids=[4]),
    ])
    assert combined.upsert_ids == [2, 3] and combined.delete_ids == [1, 4]
    assert combined.upsert_vectors is not None
    assert combined.upsert_vectors.tolist() == [[2.0] * 3, [1.0] * 3]
    assert not VectorChange.combine([None, VectorChange()])
