"""`ByteBudget`: a weighted semaphore over bytes, so the file content held in memory stays bounded.

Every chunk (a small file, or one part of a large one) reserves its size before it is read
and releases it once its request is done, so memory never exceeds the budget, whatever
the number and size of the files.

It lives on one event loop and never awaits between checking and taking capacity, so it
needs no lock: the common case (room to spare) costs a comparison and an addition.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio


class ByteBudget:
    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._in_use = 0
        self._released = anyio.Event()  # replaced by a fresh one each time capacity is given back

    @property
    def in_use(self) -> int:
        return self._in_use

    @asynccontextmanager
    async def reserve(self, size: int) -> AsyncIterator[None]:
        """Hold ``size`` bytes of the budget for the body of the block. A reservation larger than the
        whole budget waits until nothing else is held, so an oversized chunk cannot deadlock."""
        while self._in_use and self._in_use + size > self.capacity:
            await self._released.wait()
        self._in_use += size
        try:
            yield
        finally:
            self._in_use -= size
            released, self._released = self._released, anyio.Event()
            released.set()  # every waiter re-checks; those that now fit go ahead
