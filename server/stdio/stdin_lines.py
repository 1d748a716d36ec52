"""A file descriptor as an async stream of lines, in time linear in their length, that never holds up shutdown.

A blocking read in an anyio worker thread cannot be interrupted, so on SIGTERM a server
reading stdin that way would close its stores and then hang until the client wrote another
byte. Here a daemon thread does blocking ``os.read`` calls on the raw descriptor (no Python
buffer lock, which a daemon thread must not hold at interpreter exit) and hands lines to the
event loop; a shutdown simply stops listening, and the process exits.

Each chunk read is searched for newlines once and kept as one part of the line in progress,
so a line costs time proportional to its length (re-joining everything pending on every read
made a 50 MB line take seconds). A line longer than ``max_line_bytes`` is counted, not kept:
its bytes are dropped as they arrive and the consumer gets an `OversizedLine` in its place.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass

READ_BYTES = 65536
# Lines handed over but not yet taken: bounds memory when the consumer falls behind.
QUEUED_LINES = 16


@dataclass(frozen=True, slots=True)
class OversizedLine:
    """Stands for a line longer than the limit; ``size`` bytes (newline excluded) were read and dropped."""

    size: int


class StdinLines:
    """Async iterator over the lines read from file descriptor ``fd``, as bytes without their newline.

    A last line without a newline is delivered at end of input. Lines longer than ``max_line_bytes``
    come as `OversizedLine`. Iterate once.
    """

    def __init__(self, fd: int, max_line_bytes: int) -> None:
        self._fd = fd
        self._max_line_bytes = max_line_bytes
        self._queue: asyncio.Queue[bytes | OversizedLine | None] | None = None
        self._free_slots = threading.Semaphore(QUEUED_LINES)
        self._closed = False

    def __aiter__(self) -> StdinLines:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | OversizedLine | None] = asyncio.Queue()
        self._queue = queue

        def deliver(item: bytes | OversizedLine | None) -> bool:
            self._free_slots.acquire()
            if self._closed:
                return False
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
                return True
            except RuntimeError:  # the loop is gone: the server has shut down
                return False

        threading.Thread(target=self._pump, args=(deliver,), name="stdin-reader", daemon=True).start()
        return self

    async def __anext__(self) -> bytes | OversizedLine:
        assert self._queue is not None, "iterate with `async for`"
        item = await self._queue.get()
        self._free_slots.release()
        if item is None:
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        """Stop delivering; a reader thread blocked on a full queue wakes up and ends."""
        self._closed = True
        self._free_slots.release()

    def _pump(self, deliver: Callable[[bytes | OversizedLine | None], bool]) -> None:
        """Runs in the reader thread; ``deliver`` returns False when the consumer is gone."""
        limit = self._max_line_bytes
        parts: list[bytes] = []  # the line in progress, while it is within the limit
        size = 0  # bytes of the line in progress, kept or not
        while chunk := _read_or_eof(self._fd):
            start = 0
            while (newline := chunk.find(b"\n", start)) >= 0:
                size += newline - start
                line: bytes | OversizedLine = OversizedLine(size) if size > limit else b"".join(
                    [*parts, chunk[start:newline]]
                )
                if not deliver(line):
                    return
                parts, size, start = [], 0, newline + 1
            if start < len(chunk):
                size += len(chunk) - start
                if size <= limit:
                    parts.append(chunk[start:] if start else chunk)
                elif parts:
                    parts = []  # over the limit: from here on the line is only counted
        if size and not deliver(OversizedLine(size) if size > limit else b"".join(parts)):
            return
        deliver(None)


def _read_or_eof(fd: int) -> bytes:
    try:
        return os.read(fd, READ_BYTES)
    except OSError:  # the descriptor went away: treat it as the end of input
        return b""
