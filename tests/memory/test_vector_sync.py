"""The vector index follows SQLite's change log without ever holding up a write: own changes never
force a reload, a reload or a save runs beside the writes, and updates land in log order even
when two servers write the same entry at once. Real SQLite files, real hnswlib."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, closing
from pathlib import Path
from typing import Any

import anyio
import numpy as np
import pytest

from server.memory import MemoryStore, PutRequest
from server.vectors import HashingEmbedder, HnswIndex, IndexIdentity, SemanticIndex
from tests.manual_clock import ManualClock

# A guard against a hang, not a measure of speed: every step below takes milliseconds.
HANG_GUARD_SECONDS = 20


class GatedIndex(HnswIndex):
    """A real HnswIndex whose rebuild or save waits for a gate: how a slow reload or a slow save
    of a large index looks from outside, made deterministic."""

    def __init__(self, path: Path, identity: IndexIdentity) -> None:
        super().__init__(path, identity)
        self.gate_rebuilds = False
        self.gate_saves = False
        self.gate = asyncio.Event()
        self.waiting = asyncio.Event()

    async def rebuild(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        if self.gate_rebuilds:
            self.waiting.set()
            await self.gate.wait()
        await super().rebuild(ids, vectors)

    async def save(self) -> None:
        if self.gate_saves:
            self.waiting.set()
            await self.gate.wait()
        await super().save()


@pytest.fixture
def open_store(tmp_path: Path, clock: ManualClock) -> Callable[..., Any]:
    @asynccontextmanager
    async def opened(*, save_every: int = 1000, index_dir: Path | None = None) -> AsyncIterator[MemoryStore]:
        embedder = HashingEmbedder(64)
        index = GatedIndex((index_dir or tmp_path) / "vectors.hnsw", IndexIdentity(embedder.name, embedder.dimensions))
        vectors = SemanticIndex(embedder, index, indexed_namespaces=["*"], save_every=save_every)
        store = await MemoryStore.open(tmp_path / "memory.sqlite3", clock=clock, max_value_bytes=64 * 1024,
                                       max_ttl_seconds=3600, vectors=vectors)
        try:
            yield store
        finally:
            index.gate.set()
            await store.close()

    return opened


def gated(store: MemoryStore) -> GatedIndex:
    assert store.vectors is not None and isinstance(store.vectors.index, GatedIndex)
    return store.vectors.index


async def top(store: MemoryStore, query: str) -> tuple[str, float]:
    hit = (await store.search_semantic(query, k=1, min_score=-1))[0]
    return hit.entry.key, hit.score


@pytest.mark.parametrize("applied_before_the_sweep", [True, False])
async def test_own_writes_never_force_a_reload_even_after_the_log_is_trimmed(
    open_store: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, applied_before_the_sweep: bool
) -> None:
    monkeypatch.setattr("server.memory.store.VECTOR_LOG_KEEP", 50)
    async with open_store() as store:
        for batch in range(4):
            await store.put_many([PutRequest("notes", f"k{batch}-{i}", f"note {i} of batch {batch}")
                                  for i in range(100)])
        await store.put("notes", "expiring", "soon gone", ttl_seconds=1)
        store._clock.advance(2)  # type: ignore[attr-defined]
        if applied_before_the_sweep:
            await store.sync_vectors()
        assert await store.sweep_expired(10) == 1  # the sweep trims the log
        if applied_before_the_sweep:  # to its newest 50 rows; else not past what the index has yet to apply
            with closing(sqlite3.connect(store.path)) as conn:
                assert conn.execute("SELECT count(*) FROM vector_changes").fetchone()[0] == 50
        with caplog.at_level(logging.WARNING, logger="server.memory"):
            assert await top(store, "note 7 of batch 3") == ("k3-7", pytest.approx(1.0, abs=1e-3))
        assert "reloaded" not in caplog.text
        assert store.vectors is not None and store.vectors.count() == 400


async def test_a_reload_runs_while_writes_go_on(open_store: Any, caplog: pytest.LogCaptureFixture) -> None:
    async with open_store() as writer, open_store() as behind:
        await writer.put("notes", "first", "the first note")
        await behind.sync_vectors()
        await writer.put_many([PutRequest("notes", f"k{i}", f"bulk note {i}") for i in range(20)])
        with closing(sqlite3.connect(writer.path)) as conn, conn:  # the log trimmed past `behind`'s position
            conn.execute("DELETE FROM vector_changes")
        await writer.put("notes", "later", "a later note")
        index = gated(behind)
        index.gate_rebuilds = True
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(behind.sync_vectors)  # must reload: the log no longer reaches back
                await index.waiting.wait()  # the reload is under way and cannot finish yet
                for i in range(5):  # meanwhile, `behind` itself writes, and every write is acknowledged
                    meta = await behind.put("notes", f"during-{i}", f"written during the reload {i}")
                    assert meta.version == 1
                index.gate.set()
        assert "reloaded from SQLite" in caplog.text
        assert await top(behind, "written during the reload 3") == ("during-3", pytest.approx(1.0, abs=1e-3))
        assert await top(behind, "a later note") == ("later", pytest.approx(1.0, abs=1e-3))
        assert behind.vectors is not None and behind.vectors.count() == 27


async def test_saving_the_index_never_holds_up_a_write(open_store: Any, tmp_path: Path) -> None:
    async with open_store(save_every=5) as store:
        index = gated(store)
        index.gate_saves = True
        before = (tmp_path / "vectors.hnsw.json").read_text()  # saved at start
        with anyio.fail_after(HANG_GUARD_SECONDS):
            for i in range(20):  # four saves come due; none may delay an acknowledgement
                await store.put("notes", f"k{i}", f"note number {i}")
            await index.waiting.wait()  # a save was started, in the background
            assert (tmp_path / "vectors.hnsw.json").read_text() == before
            index.gate.set()
            while '"count": 20' not in (tmp_path / "vectors.hnsw.json").read_text():
                await store.put("notes", "nudge", "one more write makes the next save due")
                await anyio.sleep(0.05)


async def test_a_failing_save_neither_fails_writes_nor_retries_on_every_write(
    open_store: Any, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    directory = tmp_path / "index"
    directory.mkdir()
    async with open_store(save_every=3, index_dir=directory) as store:
        directory.chmod(0o500)
        (directory / "vectors.hnsw").rename(directory / "moved")  # and a file where the index goes
        try:
            blocker = directory / "vectors.hnsw"
            blocker.mkdir()  # saving replaces a file by a rename: a directory in its place refuses it
            with anyio.fail_after(HANG_GUARD_SECONDS):
                for i in range(3):
                    await store.put("notes", f"k{i}", f"note {i}")
                while "saving the vector index failed" not in caplog.text:
                    await store.sync_vectors()
                    await anyio.sleep(0.05)
                await store.put("notes", "k3", "below save_every again: no new attempt")
                await store.sync_vectors()
            assert caplog.text.count("saving the vector index failed") == 1
            assert await top(store, "below save_every again: no new attempt") == ("k3", pytest.approx(1.0, abs=1e-3))
            blocker.rmdir()
        finally:
            directory.chmod(0o700)


async def test_a_stale_own_update_never_lands_after_a_newer_one_from_another_server(open_store: Any) -> None:
    async with open_store() as mine, open_store() as theirs:
        await mine.put("notes", "shared", "placeholder text")
        sync = mine._sync  # type: ignore[attr-defined]
        gate = asyncio.Event()
        told = sync.committed

        async def told_late(results: list[Any], sealed: object) -> None:
            await gate.wait()  # this server's commit is done; telling the index comes late
            await told(results, sealed)

        sync.committed = told_late
        with anyio.fail_after(HANG_GUARD_SECONDS):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(mine.put, "notes", "shared", "alpha version of the shared entry")
                while True:  # until my write is committed
                    with closing(sqlite3.connect(mine.path)) as conn:
                        value = conn.execute("SELECT value FROM entries WHERE key = 'shared'").fetchone()[0]
                    if "alpha" in value:
                        break
                    await anyio.sleep(0.01)
                await theirs.put("notes", "shared", "omega revision written elsewhere later")
                await mine.sync_vectors()  # catches up past both changes: omega is in
                gate.set()  # now my older change reaches the index's queue
        await mine.sync_vectors()
        assert await top(mine, "omega revision written elsewhere later") == ("shared", pytest.approx(1.0, abs=1e-3))
        key, score = await top(mine, "alpha version of the shared entry")
        assert not (key == "shared" and score > 0.99)
