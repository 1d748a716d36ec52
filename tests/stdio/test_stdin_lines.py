"""`StdinLines` over a real pipe: lines cut anywhere by the reads, the last line without a newline, and
lines over the limit, which are counted and dropped as they arrive rather than held."""

from __future__ import annotations

import os
import threading
import tracemalloc
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from server.stdio.stdin_lines import READ_BYTES, OversizedLine, StdinLines

MiB = 1024 * 1024


@contextmanager
def pipe_fed_with(pieces: Iterable[bytes]) -> Iterator[int]:
    """The read end of a pipe that a thread writes ``pieces`` into, then closes."""
    read_fd, write_fd = os.pipe()

    def feed() -> None:
        with os.fdopen(write_fd, "wb", buffering=0) as pipe:
            for piece in pieces:
                pipe.write(piece)

    writer = threading.Thread(target=feed)
    writer.start()
    try:
        yield read_fd
    finally:
        writer.join()
        os.close(read_fd)


async def read_all(fd: int, max_line_bytes: int) -> list[bytes | OversizedLine]:
    return [line async for line in StdinLines(fd, max_line_bytes)]


async def test_lines_cut_anywhere_by_the_reads_come_out_whole() -> None:
    lines = [b"", b"a", b"x" * (READ_BYTES - 1), b"y" * READ_BYTES, b"z" * (READ_BYTES + 1), b"w" * (3 * READ_BYTES),
             b'{"jsonrpc":"2.0","id":1,"method":"ping"}']
    data = b"\n".join(lines) + b"\nlast line, no newline"
    pieces = [data[i:i + 1000] for i in range(0, len(data), 1000)]  # writes that split lines anywhere
    with pipe_fed_with(pieces) as fd:
        assert await read_all(fd, 4 * READ_BYTES) == [*lines, b"last line, no newline"]


async def test_a_line_over_the_limit_is_counted_not_held_and_the_next_line_is_intact() -> None:
    chunk = b"v" * MiB
    tracemalloc.start()
    try:
        with pipe_fed_with([b"before\n", *([chunk] * 64), b"\nafter\n", b"x" * (2 * MiB)]) as fd:
            lines = await read_all(fd, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert lines == [b"before", OversizedLine(64 * MiB), b"after", OversizedLine(2 * MiB)]
    # The 64 MiB line never sat in memory: what the reader holds stays near the limit.
    assert peak < 8 * MiB, f"peak {peak:,} bytes"


async def test_a_line_of_exactly_the_limit_is_delivered() -> None:
    with pipe_fed_with([b"a" * 1000, b"\n", b"b" * 1001, b"\n"]) as fd:
        assert await read_all(fd, 1000) == [b"a" * 1000, OversizedLine(1001)]


async def test_empty_input_gives_no_lines() -> None:
    with pipe_fed_with([]) as fd:
        assert await read_all(fd, 1000) == []
