"""stdin as an async stream of lines that never holds up shutdown.

The SDK reads stdin in an anyio worker thread that cannot be interrupted, so on SIGTERM
the server would close its stores and then hang until the client wrote another byte.
Here a daemon thread does blocking ``os.read`` calls on the raw descriptor (no Python
buffer lock, which a daemon thread must not hold at interpreter exit) and hands lines
to the event loop; a shutdown simply stops listening, and the process exits.
"""

from __future__ import annotations

import asyncio
import threading
import os


class StdinLines:
    """Async iterator over the text lines read from file descriptor ``fd`` (UTF-8, undecodable bytes replaced)."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: asyncio.Queue[bytes | None] | None = None

    def __aiter__(self) -> StdinLines:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes | None] = asyncio.Queue()
        self._queue = queue

        def deliver(line: bytes | None) -> bool:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, line)
                return True
            except RuntimeError:  # the loop is gone: the server has shut down
                return False

        def pump() -> None:
            pending = b""
            while chunk := _read_or_eof(self._fd):
                *lines, pending = (pending + chunk).split(b"\n")
                for line in lines:
                    if not deliver(line + b"\n"):
                        return
            if pending:
                deliver(pending)
            deliver(None)

        threading.Thread(target=pump, name="stdin-reader", daemon=True).start()
        return self

    async def __anext__(self) -> str:
        assert self._queue is not None, "iterate with `async for`"
        line = await self._queue.get()
        if line is None:
            raise StopAsyncIteration
        return line.decode("utf-8", errors="replace")


def _read_or_eof(fd: int) -> bytes:
    try:
        return os.read(fd, 65536)
    except OSError:  # the descriptor went away: treat it as the end of input
        return b""
