"""Semantic memory on a real SQLite file and real hnswlib (and Qdrant local): what is indexed,
what is removed, and how the index is kept in step with SQLite across restarts."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest

from server.errors import InvalidArgument, Unavailable
from server.memory import MemoryStore, PutRequest
from server.vectors import HashingEmbedder, HnswIndex, IndexIdentity, SemanticIndex
from server.vectors.qdrant import QdrantIndex
from tests.manual_clock import ManualClock


@pytest.fixture
def open_store(tmp_path: Path, clock: ManualClock):
    @asynccontextmanager
    async def opened(*, dimensions: int = 384, namespaces=("notes",), save_every: int = 1000,
                     backend: str = "hnsw", reembed: bool = False) -> AsyncIterator[MemoryStore]:
        embedder = HashingEmbedder(dimensions)
        identity = IndexIdentity(embedder.name, embedder.dimensions)
        if backend == "qdrant":
            index = QdrantIndex.connect(identity, tmp_path / "qdrant.json", collection="memory",
                                        local_path=tmp_path / "qdrant")
        else:
            index = HnswIndex(tmp_path / "vectors.hnsw", identity)
        vectors = SemanticIndex(embedder, index, indexed_namespaces=namespaces, save_every=save_every)
        try:
            store = await MemoryStore.open(tmp_path / "memory.sqlite3", clock=clock, max_value_bytes=64 * 1024,
                                           max_ttl_seconds=3600, vectors=vectors, reembed_vectors=reembed)
        except BaseException:
            await index.close()
            raise
        try:
            yield store
        finally:
            await store.close()

    return opened


async def keys(store: MemoryStore, query: str, **options) -> list[str]:
    """Keys of the hits, best first; every hit unless a min_score is given (None: the default floor)."""
    options.setdefault("min_score", -1.0)
    return [hit.entry.key for hit in await store.search_semantic(query, **options)]


async def indexed(store: MemoryStore) -> int:
    """How many vectors the index holds once every committed write has reached it."""
    await store.sync_vectors()
    assert store.vectors is not None
    return store.vectors.count()


def stored_keys(tmp_path: Path) -> set[str]:
    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:
        return {row[0] for row in conn.execute("SELECT key FROM entries WHERE namespace = 'notes'")}


def vector_rows(tmp_path: Path) -> list[tuple[int, int]]:
    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:
        return conn.execute("SELECT entry_id, length(vector) FROM vectors ORDER BY entry_id").fetchall()


async def seed(store: MemoryStore) -> None:
    await store.put("notes", "login", "fixed the login bug in the auth service", tags=["auth", "bug"])
    await store.put("notes", "sailing", {"text": "sailing trip to the islands", "days": 3})
    await store.put("notes", "deploy", "deployed the billing service to production", tags=["ops"])
    await store.put("plain", "login-too", "login bug notes, not indexed")


async def test_indexed_namespace_and_index_flag_decide_what_is_searchable(open_store, tmp_path: Path) -> None:
    async with open_store() as store:
        await seed(store)
        assert (await keys(store, "login bug auth"))[0] == "login"
        assert "login-too" not in await keys(store, "login bug", k=10)
        await store.put("plain", "flagged", "the login bug came back", index=True)
        assert set(await keys(store, "login bug", k=2)) == {"login", "flagged"}
        assert await keys(store, "login bug", namespace="plain") == ["flagged"]
        assert await keys(store, "service", tags=["ops"]) == ["deploy"]
        assert await keys(store, "service", tags=["auth", "bug"]) == ["login"]
        assert await keys(store, "login bug", min_score=0.99) == []
        hit = (await store.search_semantic("sailing trip islands", k=1))[0]
        assert hit.entry.value == {"text": "sailing trip to the islands", "days": 3} and 0 < hit.score <= 1
    assert [length for _, length in vector_rows(tmp_path)] == [388] * 4  # int8 + scale, not 1,536 float32 bytes


async def test_overwrite_re_embeds_and_an_indexed_entry_stays_indexed(open_store) -> None:
    async with open_store() as store:
        await store.put("plain", "k", "kubernetes cluster upgrade", index=True)
        await store.put("plain", "k", "quarterly budget spreadsheet")  # no flag: still indexed, new text
        assert await keys(store, "budget spreadsheet") == ["k"]
        hit = (await store.search_semantic("kubernetes cluster upgrade", min_score=-1))[0]
        assert hit.score < 0.3


async def test_delete_namespace_delete_and_expiry_remove_vectors(open_store, clock: ManualClock, tmp_path: Path) -> None:
    async with open_store() as store:
        await seed(store)
        await store.put("notes", "brief", "login bug workaround, temporary", ttl_seconds=10)
        assert "brief" in await keys(store, "login bug workaround")
        clock.advance(10)
        assert "brief" not in await keys(store, "login bug workaround", k=10)  # expired, not yet swept
        assert "brief" not in await keys(store, "login bug workaround", k=10, namespace="notes")
        assert await store.sweep_expired(100) == 1
        assert await store.delete("notes", "login") == 1
        assert "login" not in await keys(store, "login bug auth", k=10)
        assert await indexed(store) == 2 and len(vector_rows(tmp_path)) == 2
        assert await store.delete_namespace("notes") == 2
        assert await keys(store, "sailing") == [] and await indexed(store) == 0 and vector_rows(tmp_path) == []


async def test_store_over_an_expired_indexed_entry_without_index_drops_its_vector(open_store, clock) -> None:
    async with open_store() as store:
        await store.put("plain", "k", "login bug", index=True, ttl_seconds=5)
        clock.advance(5)
        await store.put("plain", "k", "login bug again")  # starts fresh, as if swept first
        assert await keys(store, "login bug") == [] and await indexed(store) == 0


async def test_batch_indexes_in_one_write_and_reports_every_bad_entry(open_store, tmp_path: Path) -> None:
    async with open_store() as store:
        good = [PutRequest("notes", f"k{i}", f"note {i} about topic {i % 7}") for i in range(2000)]
        await store.put_many(good)
        assert await indexed(store) == 2000 and len(vector_rows(tmp_path)) == 2000
        bad = [PutRequest("notes", "ok", "fine"), PutRequest("notes", "", "x"), PutRequest("notes", "t", "y", tags=("",)),
               PutRequest("notes", "z", "z", ttl_seconds=-1)]
        with pytest.raises(InvalidArgument, match=r"3 of 4 entries are invalid: entry 1: key .*; entry 2: tag .*"
                                                  r"; entry 3: ttl .*; nothing was written"):
            await store.put_many(bad)
        assert await indexed(store) == 2000 and await store.get("notes", "ok") is None


@pytest.mark.parametrize(
    ("arguments", "message"),
    [({"query": ""}, "non-empty"), ({"query": "   "}, "non-empty"), ({"query": "x", "k": 0}, "k must be"),
     ({"query": "x", "k": 1001}, "k must be"), ({"query": "x", "min_score": 1.5}, "min_score"),
     ({"query": "x", "namespace": ""}, "namespace must be"), ({"query": "x" * 10_001}, "at most 10000")],
)
async def test_bad_searches_are_refused(open_store, arguments, message) -> None:
    async with open_store() as store:
        with pytest.raises(InvalidArgument, match=message):
            await store.search_semantic(**arguments)


async def test_the_index_is_loaded_at_restart_not_rebuilt(open_store, caplog) -> None:
    async with open_store() as store:
        await seed(store)
        before = await keys(store, "login bug", k=3)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="server.vectors"):
        async with open_store() as store:
            assert await keys(store, "login bug", k=3) == before
    assert "vector index loaded: 3 vectors" in caplog.text and "rebuilt" not in caplog.text


def delete_index_file(tmp_path: Path) -> None:
    (tmp_path / "vectors.hnsw").unlink()


def corrupt_index_file(tmp_path: Path) -> None:
    path = tmp_path / "vectors.hnsw"
    path.write_bytes(path.read_bytes()[:100])


def delete_an_entry_behind_the_index(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:  # its vector goes with it (trigger)
        conn.execute("DELETE FROM entries WHERE key = 'sailing'")


def change_a_vector_behind_the_index(tmp_path: Path) -> None:
    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:
        conn.execute("UPDATE vectors SET vector = (SELECT vector FROM vectors v JOIN entries e ON e.id = v.entry_id "
                     "WHERE e.key = 'deploy') WHERE entry_id = (SELECT id FROM entries WHERE key = 'login')")


@pytest.mark.parametrize(
    ("damage", "reason"),
    [(delete_index_file, "no index file"), (corrupt_index_file, "does not match the digest"),
     (delete_an_entry_behind_the_index, "holds 3 vectors and SQLite 2"),
     (change_a_vector_behind_the_index, "differs from its SQLite copy")],
)
async def test_a_missing_damaged_or_disagreeing_index_is_rebuilt_from_sqlite(open_store, tmp_path, caplog, damage,
                                                                             reason) -> None:
    async with open_store() as store:
        await seed(store)
    damage(tmp_path)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="server.vectors"):
        async with open_store() as store:
            expected = {row[0] for row in vector_rows(tmp_path)}
            assert store.vectors.count() == len(expected)
            found = await store.search_semantic("deployed billing service production", k=3, min_score=-1)
            assert "deploy" in [hit.entry.key for hit in found[:2]]  # a tie with 'login' when its vector was copied
            assert {hit.entry.key for hit in found} == {key for key in ("login", "sailing", "deploy")
                                                        if key in stored_keys(tmp_path)}
    assert "vector index rebuilt from SQLite" in caplog.text and reason in caplog.text


async def test_vectors_of_another_embedder_are_refused_unless_reembedding(open_store) -> None:
    async with open_store() as store:
        await seed(store)
    with pytest.raises(Unavailable, match="3 vectors made by hashing-v1/384, but the configured embedder is "
                                          "hashing-v1/128"):
        async with open_store(dimensions=128):
            pass
    async with open_store(dimensions=128, reembed=True) as store:
        assert (await keys(store, "login bug auth"))[0] == "login" and store.vectors.count() == 3


async def test_qdrant_backend_keeps_step_with_sqlite(open_store, tmp_path: Path, caplog) -> None:
    async with open_store(backend="qdrant") as store:
        await seed(store)
        assert (await keys(store, "login bug auth"))[0] == "login"
        await store.delete("notes", "sailing")
        assert set(await keys(store, "sailing trip islands", k=5)) == {"login", "deploy"}
    with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:
        conn.execute("DELETE FROM entries WHERE key = 'deploy'")
    with caplog.at_level(logging.INFO, logger="server.vectors"):
        async with open_store(backend="qdrant") as store:
            assert store.vectors.count() == 1
            assert await keys(store, "deployed billing") == ["login"]
    assert "holds 2 vectors and SQLite 1" in caplog.text


async def test_entries_written_before_their_namespace_was_indexed_are_indexed_at_start(open_store) -> None:
    async with open_store(namespaces=()) as store:
        await store.put("later", "k", "observability dashboards for the queue")
        await store.put("elsewhere", "j", "observability dashboards elsewhere")
        assert await keys(store, "observability dashboards") == []
    async with open_store(namespaces=("later",)) as store:
        assert await keys(store, "observability dashboards") == ["k"] and store.vectors.count() == 1


async def test_two_servers_on_one_database_see_each_others_vectors(open_store, clock: ManualClock) -> None:
    async with open_store() as first, open_store() as second:
        await seed(first)
        assert (await keys(second, "login bug auth"))[0] == "login"
        # An overwrite elsewhere re-ranks here; a delete elsewhere removes it here.
        await first.put("notes", "sailing", "fixed another login bug in auth")
        assert set(await keys(second, "login bug auth", k=2)) == {"login", "sailing"}
        await first.delete("notes", "login")
        assert "login" not in await keys(second, "login bug auth")
        # And the other way round, while both keep writing.
        await second.put("notes", "kayak", "kayak trip to the islands")
        assert (await keys(first, "kayak islands"))[0] == "kayak"
        assert second.vectors is not None and first.vectors is not None
        assert second.vectors.count() == first.vectors.count() == 3


async def test_a_server_behind_the_trimmed_change_log_reloads_every_vector(open_store, tmp_path: Path) -> None:
    async with open_store() as first, open_store() as second:
        await seed(first)
        with sqlite3.connect(tmp_path / "memory.sqlite3") as conn:  # as the sweeper's trim would, far behind
            conn.execute("DELETE FROM vector_changes")
        await first.put("notes", "kayak", "kayak trip to the islands")
        assert (await keys(second, "kayak islands"))[0] == "kayak"
        assert second.vectors is not None and second.vectors.count() == 4


async def test_unrelated_entries_are_left_out_by_default_and_kept_on_request(open_store) -> None:
    async with open_store() as store:
        await store.put("notes", "chatter", "again")
        await store.put("notes", "work", "the coder agent finished the parser refactor")
        assert await keys(store, "coder", min_score=None) == ["work"]  # 'again' shares nothing with it: no padding at score 0
        assert set(await keys(store, "coder", min_score=-1)) == {"work", "chatter"}


async def test_a_query_with_a_lone_surrogate_is_invalid_argument(open_store) -> None:
    async with open_store() as store:
        with pytest.raises(InvalidArgument, match="query holds a lone surrogate"):
            await store.search_semantic("login \udc00 bug")
