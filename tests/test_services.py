"""The services lifecycle: the sweeper really runs on its interval, and closing stops it and closes SQLite."""

from __future__ import annotations

import sqlite3
from contextlib import closing

import anyio

from server.clock import ManualClock
from server.config import Settings
from server.services import open_services


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
