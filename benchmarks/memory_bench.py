"""Memory benchmark: the engine against plain sqlite3, and memory_usage end to end.

Run: .venv/bin/python benchmarks/memory_bench.py   (or `make bench`)

Every figure is printed next to a baseline measured in the same run, with their ratio.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from mcp import Client, StdioServerParameters

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from server.app import build_server  # noqa: E402
from server.clock import SystemClock  # noqa: E402
from server.config import Settings  # noqa: E402
from server.memory import MemoryStore, PutRequest  # noqa: E402

SINGLE_OPS = 2000
BATCH_SIZE = 10_000
BATCHES = 5
E2E_CALLS = 1000
CONCURRENT = 100
CONCURRENT_ROUNDS = 10
VALUE = {"agent": "agent-7", "status": "done", "summary": "refactored the parser; 14 tests added"}


def percentiles(samples_ns: list[int]) -> tuple[float, float]:
    ordered = sorted(samples_ns)
    p50 = ordered[len(ordered) // 2] / 1e6
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] / 1e6
    return p50, p99


async def time_async(operation: Callable[[int], Awaitable[object]], count: int) -> list[int]:
    for i in range(min(100, count)):  # warm-up
        await operation(i)
    samples = []
    for i in range(count):
        start = time.perf_counter_ns()
        await operation(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def time_sync(operation: Callable[[int], object], count: int) -> list[int]:
    for i in range(min(100, count)):
        operation(i)
    samples = []
    for i in range(count):
        start = time.perf_counter_ns()
        operation(i)
        samples.append(time.perf_counter_ns() - start)
    return samples


def row(label: str, baseline: str, contender: str, ratio: float, unit: str) -> None:
    print(f"  {label:<34} {baseline:>16} {contender:>16} {ratio:>9.2f}x {unit}")


def latency_row(label: str, base_ns: list[int], cont_ns: list[int]) -> None:
    b50, b99 = percentiles(base_ns)
    c50, c99 = percentiles(cont_ns)
    row(f"{label} p50", f"{b50:.4f} ms", f"{c50:.4f} ms", c50 / b50, "(contender/baseline; lower is better)")
    row(f"{label} p99", f"{b99:.4f} ms", f"{c99:.4f} ms", c99 / b99, "")


# -- baseline: plain synchronous sqlite3, same pragmas, one commit per store -------------------

class PlainSqlite:
    def __init__(self, path: Path) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA journal_mode = WAL")
        self.conn.execute("PRAGMA synchronous = FULL")
        self.conn.execute("CREATE TABLE kv (namespace TEXT, key TEXT, value TEXT, PRIMARY KEY (namespace, key))")

    def store(self, i: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute("INSERT OR REPLACE INTO kv VALUES ('bench', ?, ?)", (f"k{i % 500}", repr(VALUE)))
        self.conn.execute("COMMIT")

    def retrieve(self, i: int) -> None:
        self.conn.execute("SELECT value FROM kv WHERE namespace = 'bench' AND key = ?", (f"k{i % 500}",)).fetchone()

    def store_batch(self, batch: int) -> None:
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.executemany(
            "INSERT OR REPLACE INTO kv VALUES ('bulk', ?, ?)", ((f"b{batch}-{i}", repr(VALUE)) for i in range(BATCH_SIZE))
        )
        self.conn.execute("COMMIT")


async def engine_section(workdir: Path) -> None:
    print("\nEngine: MemoryStore (aiosqlite, WAL, synchronous=FULL) vs plain sqlite3 (same pragmas)")
    print(f"  {'':<34} {'sqlite3':>16} {'MemoryStore':>16} {'ratio':>10}")
    plain = PlainSqlite(workdir / "plain.sqlite3")
    store = await MemoryStore.open(
        workdir / "engine.sqlite3", clock=SystemClock(), max_value_bytes=1 << 20, max_ttl_seconds=10**8
    )
    try:
        latency_row("store", time_sync(plain.store, SINGLE_OPS),
                    await time_async(lambda i: store.put("bench", f"k{i % 500}", VALUE), SINGLE_OPS))
        latency_row("retrieve", time_sync(plain.retrieve, SINGLE_OPS * 5),
                    await time_async(lambda i: store.get("bench", f"k{i % 500}"), SINGLE_OPS * 5))

        start = time.perf_counter()
        for batch in range(BATCHES):
            plain.store_batch(batch)
        plain_rate = BATCHES * BATCH_SIZE / (time.perf_counter() - start)
        batches = [[PutRequest("bulk", f"b{b}-{i}", VALUE) for i in range(BATCH_SIZE)] for b in range(BATCHES)]
        start = time.perf_counter()
        for batch in batches:
            await store.put_many(batch)
        engine_rate = BATCHES * BATCH_SIZE / (time.perf_counter() - start)
        row(f"batched store ({BATCH_SIZE}/txn)", f"{plain_rate:,.0f}/s", f"{engine_rate:,.0f}/s",
            engine_rate / plain_rate, "(contender/baseline; higher is better)")
    finally:
        await store.close()
        plain.conn.close()


# -- end to end ----------------------------------------------------------------------------

def stdio_params(command: list[str], data_dir: Path) -> StdioServerParameters:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SWITCHBOARD_")}
    env["SWITCHBOARD_DATA_DIR"] = str(data_dir)
    env["SWITCHBOARD_LOG_LEVEL"] = "WARNING"
    return StdioServerParameters(command=command[0], args=command[1:], env=env, cwd=str(REPO))


async def time_tool(client: Client, tool: str, arguments: dict, count: int) -> list[int]:
    async def call(_: int) -> None:
        result = await client.call_tool(tool, arguments)
        assert not result.is_error, result.content

    return await time_async(call, count)


async def e2e_section(workdir: Path) -> None:
    print("\nEnd to end: memory_usage retrieve vs the SDK's floor (an MCP tool that does nothing)")
    print(f"  {'':<34} {'empty tool':>16} {'memory_usage':>16} {'ratio':>10}")
    store_args = {"action": "store", "namespace": "bench", "key": "hot", "value": VALUE}
    retrieve_args = {"action": "retrieve", "namespace": "bench", "key": "hot"}

    settings = Settings(data_dir=workdir / "inmem", log_level="WARNING")
    from mcp.server.mcpserver import MCPServer

    sys.path.insert(0, str(REPO / "benchmarks"))
    from empty_server import server as empty_server

    assert isinstance(empty_server, MCPServer)
    async with Client(empty_server) as empty, Client(build_server(settings)) as switchboard:
        await switchboard.call_tool("memory_usage", store_args)
        latency_row("in-memory session retrieve", await time_tool(empty, "echo", {"key": "hot"}, E2E_CALLS),
                    await time_tool(switchboard, "memory_usage", retrieve_args, E2E_CALLS))

    empty_params = stdio_params([sys.executable, str(REPO / "benchmarks" / "empty_server.py")], workdir / "e")
    serve_params = stdio_params([sys.executable, "-m", "server.cli", "serve"], workdir / "stdio")
    async with Client(empty_params, mode="legacy") as empty, Client(serve_params, mode="legacy") as switchboard:
        await switchboard.call_tool("memory_usage", store_args)
        latency_row("stdio retrieve", await time_tool(empty, "echo", {"key": "hot"}, E2E_CALLS),
                    await time_tool(switchboard, "memory_usage", retrieve_args, E2E_CALLS))

        print(f"\n{CONCURRENT} concurrent stores through one stdio session (median of {CONCURRENT_ROUNDS} rounds)")
        print(f"  {'':<34} {'sequential':>16} {'concurrent':>16} {'ratio':>10}")

        async def store(round_: int, i: int) -> None:
            result = await switchboard.call_tool(
                "memory_usage", {"action": "store", "namespace": "burst", "key": f"r{round_}-{i}", "value": VALUE}
            )
            assert not result.is_error, result.content

        sequential, concurrent = [], []
        for round_ in range(CONCURRENT_ROUNDS):
            start = time.perf_counter()
            for i in range(CONCURRENT):
                await store(-round_ - 1, i)
            sequential.append(CONCURRENT / (time.perf_counter() - start))
            start = time.perf_counter()
            await asyncio.gather(*(store(round_, i) for i in range(CONCURRENT)))
            concurrent.append(CONCURRENT / (time.perf_counter() - start))
        seq, con = statistics.median(sequential), statistics.median(concurrent)
        row("stores/s", f"{seq:,.0f}/s", f"{con:,.0f}/s", con / seq, "(concurrent/sequential; higher is better)")


async def main() -> None:
    print(f"memory_bench: Python {sys.version.split()[0]}, SQLite {sqlite3.sqlite_version}, {os.cpu_count()} cores")
    with tempfile.TemporaryDirectory(dir=REPO) as tmp:  # the disk real data lives on
        await engine_section(Path(tmp))
        await e2e_section(Path(tmp))


if __name__ == "__main__":
    asyncio.run(main())
