"""The background task that deletes expired entries.

Reads already hide expired entries; the sweeper only reclaims their space. It deletes
in bounded batches, each its own short write, so tool calls queue behind at most one
batch.
"""

from __future__ import annotations

import logging

import anyio

from server.memory.store import MemoryStore

logger = logging.getLogger(__name__)


class ExpirySweeper:
    """Deletes expired entries every ``interval_seconds``, ``batch_size`` rows per write."""

    def __init__(self, store: MemoryStore, *, interval_seconds: float, batch_size: int) -> None:
        self._store = store
        self._interval_seconds = interval_seconds
        self._batch_size = batch_size

    async def sweep_once(self) -> int:
        """Delete every entry that has expired by now; return how many."""
        total = 0
        while True:
            deleted = await self._store.sweep_expired(self._batch_size)
            total += deleted
            if deleted < self._batch_size:
                return total

    async def run(self) -> None:
        """Sweep forever (until cancelled). A failed sweep is logged and retried next interval."""
        while True:
            try:
                deleted = await self.sweep_once()
                if deleted:
                    logger.info("sweeper deleted %d expired memory entries", deleted)
            except Exception:  # keep the server up; the next interval tries again
                logger.exception("memory sweep failed")
            await anyio.sleep(self._interval_seconds)
