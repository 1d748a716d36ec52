"""The services lifecycle: the sweeper really runs on its interval, and closing stops it and closes SQLite."""

from __future__ import annotations

import asyncio
import sqlite3
from contextlib import closing

import anyio
import pytest

from server.config import Settings
from server.services import open_services
from tests.manual_clock import ManualClock


async def test_background_sweeper_removes_expired_rows_and_shutdown_closes(tmp_path, clock: ManualClock) -> None:
    settings = Settings(data_dir=tmp_path, memory_sweep_interval_seconds=0.01, memory_sweep_batch_size=3)
    async with open_services(settings, clock) as services:
        for i in range(10):
            await services.memory.put("ns", f"k{i}", i, ttl_seconds=60)
        await services.memory.put("ns", "forever", 1)
        clock.advance(61)
        with anyio.fail_after(10):  # poll against a deadline; the sweeper runs every 10 ms
            while (await services.memory.stats()).expired_total < 10:
                await anyio.sleep(0.01)
        with closing(sqlite3.connect(services.memory.path)) as conn:
            rows = conn.execute("SELECT key FROM entries").fetchall()
        assert rows == [("forever",)]
    assert not (tmp_path / "memory.sqlite3-wal").exists()  # checkpointed and closed


async def test_every_part_closes_even_when_another_part_fails_to_close(
    tmp_path, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    from server import services as services_module

    opened: list[object] = []
    real_open = services_module.open_object_store

    async def open_failing_store(settings: Settings) -> object:
        store = await real_open(settings)

        async def close() -> None:
            raise OSError("the object store's close failed")

        store.close = close  # type: ignore[method-assign]
        opened.append(store)
        return store

    monkeypatch.setattr(services_module, "open_object_store", open_failing_store)
    settings = Settings(data_dir=tmp_path, memory_sweep_interval_seconds=0.01)
    tasks_before = set(asyncio.all_tasks())
    with pytest.raises(OSError, match="close failed"):
        async with open_services(settings, clock) as services:
            await services.memory.put("ns", "k", "kept")
    assert opened
    assert not (tmp_path / "memory.sqlite3-wal").exists()  # SQLite was still checkpointed and closed
    leftover = [task for task in asyncio.all_tasks() - tasks_before if not task.done()]
    assert leftover == []  # the sweeper and the vector sync stopped
    with closing(sqlite3.connect(tmp_path / "memory.sqlite3")) as conn:
        assert conn.execute("SELECT value FROM entries").fetchall() == [('"kept"',)]
