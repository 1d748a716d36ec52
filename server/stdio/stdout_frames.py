"""Whole frames written to a file descriptor, in order, by one daemon thread.

Writing from a daemon thread (not an anyio worker thread) means a client that stops reading
cannot hold up shutdown: the process exits with the thread still blocked. One thread writes
every frame in turn, so frames from different tasks never interleave on the wire, and each
writer waits for its own frame, so a slow reader slows the server down instead of growing a
queue without bound.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import threading


class StdoutFrames:
    """Writes byte frames to ``fd``. Start with `start`, end with `close`."""

    def __init__(self, fd: int) -> None:
        self._fd = fd
        self._queue: queue.SimpleQueue[tuple[bytes, asyncio.AbstractEventLoop, asyncio.Future[None]] | None] = (
            queue.SimpleQueue()
        )
        self._thread = threading.Thread(target=self._run, name="stdout-writer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    async def write(self, frame: bytes) -> None:
        """Return once ``frame`` is written in full; raise the OSError (BrokenPipeError...) that stopped it."""
        loop = asyncio.get_running_loop()
        written: asyncio.Future[None] = loop.create_future()
        self._queue.put((frame, loop, written))
        await written

    def close(self) -> None:
        """The thread ends after the frames queued so far."""
        self._queue.put(None)

    def _run(self) -> None:
        broken: OSError | None = None  # once the reader has gone, every later frame fails the same way
        while (item := self._queue.get()) is not None:
            frame, loop, written = item
            if broken is None:
                try:
                    _write_all(self._fd, frame)
                except OSError as error:
                    broken = error
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody waits for this frame
                loop.call_soon_threadsafe(_settle, written, broken)


def _settle(written: asyncio.Future[None], error: OSError | None) -> None:
    if written.done():  # the writer was cancelled while waiting
        return
    if error is None:
        written.set_result(None)
    else:
        written.set_exception(error)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]
