"""stdio benchmark: how long a ping waits behind one 50 MB line.

Run: .venv/bin/python benchmarks/stdio_bench.py   [--megabytes 50] [--runs 3]

Baseline: the line reader as it was (a copy below: every 64 KiB read re-joins and re-splits
everything pending, so a line costs time quadratic in its length). Contender: `StdinLines`,
which searches each read once and joins a line's parts once. Both read the same bytes from a
pipe that a thread fills, in the same run; the time is from the first byte written to the
ping line's delivery. Then, for scale, the same through a real `switchboard serve`: the time
from the first byte of the long line to the ping's answer (the long line is a request the
server refuses after parsing it).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.stdio.stdin_lines import OversizedLine, StdinLines  # noqa: E402

PING = b'{"jsonrpc":"2.0","id":2,"method":"ping"}'
MiB = 1024 * 1024


def long_line(megabytes: int) -> bytes:
    """One JSON-RPC request of about ``megabytes`` MB: a call whose argument is one long string."""
    head = b'{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"no_such_tool","arguments":{"v":"'
    return head + b"x" * (megabytes * 1_000_000 - len(head) - 4) + b'"}}}'


def feed(fd: int, data: bytes) -> threading.Thread:
    def write() -> None:
        with os.fdopen(fd, "wb", buffering=0) as pipe:
            pipe.write(data)

    thread = threading.Thread(target=write)
    thread.start()
    return thread


def old_reader(fd: int, deliver: Callable[[bytes], bool]) -> None:
    """The line reader before this change (server/stdin_lines.py at 17d0e9d), without its thread and queue."""
    pending = b""
    while chunk := os.read(fd, 65536):
        *lines, pending = (pending + chunk).split(b"\n")
        for line in lines:
            if not deliver(line + b"\n"):
                return


def time_old(data: bytes) -> float:
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    writer = feed(write_fd, data)
    waited: list[float] = []

    def deliver(line: bytes) -> bool:
        if line.rstrip(b"\n") == PING:
            waited.append(time.perf_counter() - start)
            return False
        return True

    old_reader(read_fd, deliver)
    os.close(read_fd)
    writer.join()
    return waited[0]


async def time_new(data: bytes) -> float:
    read_fd, write_fd = os.pipe()
    start = time.perf_counter()
    writer = feed(write_fd, data)
    lines = StdinLines(read_fd, 128 * MiB)
    waited = None
    async for line in lines:
        if not isinstance(line, OversizedLine) and line == PING:
            waited = time.perf_counter() - start
            break
    lines.close()
    writer.join()
    os.close(read_fd)
    assert waited is not None
    return waited


def time_server(big: bytes) -> float:
    """Through `switchboard serve`: from the long line's first byte to the ping's answer."""
    with tempfile.TemporaryDirectory() as data_dir:
        env = {**os.environ, "SWITCHBOARD_DATA_DIR": data_dir, "SWITCHBOARD_LOG_LEVEL": "WARNING"}
        server = subprocess.Popen([sys.executable, "-m", "server.cli", "serve"], cwd=REPO, env=env,
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert server.stdin is not None and server.stdout is not None
        initialize = {"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "bench", "version": "0"}}}
        server.stdin.write(json.dumps(initialize).encode() + b"\n")
        server.stdin.flush()
        server.stdout.readline()
        stdin, stdout = server.stdin, server.stdout

        def send() -> None:
            stdin.write(big + b"\n" + PING + b"\n")
            stdin.flush()

        start = time.perf_counter()
        writer = threading.Thread(target=send)
        writer.start()
        while json.loads(stdout.readline()).get("id") != 2:  # the long line's answer comes first
            pass
        waited = time.perf_counter() - start
        writer.join()
        server.stdin.close()
        server.wait(60)
        return waited


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=50)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    big = long_line(args.megabytes)
    data = big + b"\n" + PING + b"\n"
    old = [time_old(data) for _ in range(args.runs)]
    new = [asyncio.run(time_new(data)) for _ in range(args.runs)]
    served = [time_server(big) for _ in range(args.runs)]
    old_s, new_s, served_s = statistics.median(old), statistics.median(new), statistics.median(served)
    print(f"A ping behind one {len(big) / 1e6:.0f} MB line, median of {args.runs} runs")
    print(f"{'':44}{'old reader':>12}{'StdinLines':>14}{'ratio':>10}")
    print(f"  {'line reader: wait for the ping':42}{old_s:>11.3f}s{new_s:>13.3f}s{old_s / new_s:>9.0f}x "
          "(old/new; higher is better)")
    print(f"  {'switchboard serve: wait for its answer':42}{'':>12}{served_s:>13.3f}s")
    print(f"  runs: old {', '.join(f'{t:.3f}' for t in old)}; new {', '.join(f'{t:.4f}' for t in new)}; "
          f"server {', '.join(f'{t:.3f}' for t in served)}")


if __name__ == "__main__":
    main()
