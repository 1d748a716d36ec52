"""`ByteBudget`: a weighted semaphore over bytes, so the file content held in memory stays bounded.

Every chunk (a small file, or one part of a large one) reserves its size before it is read
and releases it once its request is done, so memory never exceeds the budget, whatever
the number and size of the files.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class ByteBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._in_use = 0
        self._changed = anyio.Condition()

    @property
    def in_use(self) -> int:
        return self._in_use

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget for the body of the block. A reservation larger than the
        whole budget waits until nothing else is held, so an oversized chunk cannot deadlock."""
        async with self._changed:
            while self._in_use and self._in_use + size > self.capacity:
                await self._changed.wait()
            self._in_use += size
        try:
            yield
        finally:
            with anyio.CancelScope(shield=True):  # a cancelled holder must still give its bytes back
                async with self._changed:
                    self._in_use -= size
                    self._changed.notify_all()
