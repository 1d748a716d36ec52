"""Do writes wait for the vector index? Store latency while the index is quiet (baseline) and
while it is being reloaded from SQLite and saved (contender), measured in the same run.

A server that falls behind SQLite's change log (the log was trimmed past it) rebuilds its
whole index; at every SWITCHBOARD_VECTOR_SAVE_EVERY writes it saves the index file. Before
issue 7 both ran where writes waited: a store issued during a reload of 110,000 vectors
took 17.6 s, and every 1,000th write stalled 357-718 ms at 100,000 vectors. Now both run
beside the writes; this prints the store latencies and their ratio.

    .venv/bin/python benchmarks/write_stall_bench.py [--vectors 50000]
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import statistics
import tempfile
import time
from contextlib import closing
from pathlib import Path

from server.clock import SystemClock
from server.memory import MemoryStore, PutRequest
from server.vectors import HashingEmbedder, HnswIndex, IndexIdentity, SemanticIndex

BATCH = 5000


async def open_store(workdir: Path, name: str, save_every: int) -> MemoryStore:
    embedder = HashingEmbedder(384)
    index = HnswIndex(workdir / f"{name}.hnsw", IndexIdentity(embedder.name, embedder.dimensions), ef_construction=100)
    vectors = SemanticIndex(embedder, index, indexed_namespaces=["*"], save_every=save_every)
    return await MemoryStore.open(workdir / "memory.sqlite3", clock=SystemClock(), max_value_bytes=1 << 20,
                                  max_ttl_seconds=10**8, synchronous="normal", vectors=vectors)


async def store_latencies(store: MemoryStore, label: str, count: int) -> list[float]:
    latencies = []
    for i in range(count):
        started = time.perf_counter()
        await store.put("probe", f"{label}-{i}", f"probe note {i} written {label}")
        latencies.append((time.perf_counter() - started) * 1000)
        await asyncio.sleep(0.005)  # a steady trickle of writes, as agents make them
    return latencies


def summary(latencies: list[float]) -> str:
    ordered = sorted(latencies)
    return (f"p50 {statistics.median(ordered):7.2f} ms  p99 {ordered[int(len(ordered) * 0.99) - 1]:7.2f} ms  "
            f"max {ordered[-1]:7.2f} ms  ({len(ordered)} stores)")


async def main(vector_count: int) -> None:
    with tempfile.TemporaryDirectory() as directory:
        workdir = Path(directory)
        writer = await open_store(workdir, "writer", save_every=10**9)
        for start in range(0, vector_count, BATCH):
            await writer.put_many([PutRequest("notes", f"k{i}", f"note {i} about topic {i % 97} and {i % 13}")
                                   for i in range(start, min(start + BATCH, vector_count))])
        behind = await open_store(workdir, "behind", save_every=200)
        await writer.put("notes", "late", "written after the second server loaded")
        await behind.sync_vectors()

        baseline = await store_latencies(behind, "quiet", 400)

        with closing(sqlite3.connect(workdir / "memory.sqlite3")) as conn, conn:
            conn.execute("DELETE FROM vector_changes")  # as a trim far past `behind` would leave it
        await writer.put("notes", "later", "one more from the other server")
        reload_started = time.perf_counter()
        reloading = asyncio.create_task(behind.sync_vectors())  # rebuilds every vector in a worker thread
        contender = await store_latencies(behind, "reloading", 400)  # and every 200 writes a save comes due
        await reloading
        reload_seconds = time.perf_counter() - reload_started
        await writer.close()
        await behind.close()

    print(f"index of {vector_count + 1} vectors (hashing-v1/384, M 16, ef_construction 100); "
          f"reload took {reload_seconds:.1f} s")
    print(f"baseline  (index quiet)              {summary(baseline)}")
    print(f"contender (reload + saves under way) {summary(contender)}")
    print(f"ratio contender/baseline: p50 {statistics.median(contender) / statistics.median(baseline):.2f}x, "
          f"max {max(contender) / max(baseline):.2f}x")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vectors", type=int, default=50_000)
    asyncio.run(main(parser.parse_args().vectors))
