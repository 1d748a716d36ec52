"""Vector index benchmark: HnswIndex against exact numpy search, measured in the same run.

    .venv/bin/python benchmarks/vector_bench.py [--sizes 10000 100000] [--queries 1000] [--ef-construction 200 100]

For each N (seeded clustered data, 384 dimensions): build time, single-query p50/p99,
1,000-query batch throughput, recall@10 against exact search, the exact numpy brute-force
latency (the baseline) and the speedup; then bytes per vector (float32 vs the int8 SQLite
copy) and the end-to-end memory_search p50 through an in-memory MCP session, next to the
p50 of a trivial tool call (memory_usage retrieve) over the same session.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import anyio
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mcp import Client

from server.app import build_server
from server.config import Settings
from server.vectors import HnswIndex, IndexIdentity
from server.vectors.hnsw import available_cores
from server.vectors.quantization import blob_bytes

DIMENSIONS = 384
K = 10
SEED = 20261121
# Points scatter around one of N / 200 topic centres; with a spread this wide a topic's
# neighbourhoods overlap, as real text embeddings do, so recall is not trivially perfect.
SPREAD = 2.0
WORDS = ["agent", "cache", "login", "deploy", "billing", "queue", "worker", "retry", "timeout", "index", "vector", "memory",
         "shard", "token", "schema", "backup", "replica", "latency", "throughput", "migration", "rollback", "alert",
         "metric", "trace"]


def clustered(count: int, rng: np.random.Generator, centres: np.ndarray) -> np.ndarray:
    vectors = centres[rng.integers(0, len(centres), count)]
    vectors = vectors + SPREAD * rng.standard_normal((count, DIMENSIONS)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def percentile(samples: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(samples), q))


def exact_top_k(data: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    scores = data @ query
    best = np.argpartition(-scores, k - 1)[:k]
    return best[np.argsort(-scores[best])]


async def bench_index(size: int, query_count: int, ef_construction: int) -> None:
    rng = np.random.default_rng(SEED + size)
    centres = rng.standard_normal((max(50, size // 200), DIMENSIONS)).astype(np.float32)
    data = clustered(size, rng, centres)
    queries = clustered(query_count, rng, centres)

    with tempfile.TemporaryDirectory() as scratch:
        index = HnswIndex(Path(scratch) / "bench.hnsw", IndexIdentity("bench", DIMENSIONS),
                          ef_construction=ef_construction)
        started = time.perf_counter()
        await index.upsert(list(range(size)), data)
        build_seconds = time.perf_counter() - started

        single_ms: list[float] = []
        found: list[list[int]] = []
        for query in queries:
            started = time.perf_counter()
            hits = await index.search(query, K)
            single_ms.append((time.perf_counter() - started) * 1000)
            found.append([hit.id for hit in hits])

        started = time.perf_counter()
        await index.search_batch(queries, K)
        batch_qps = len(queries) / (time.perf_counter() - started)

    exact_ms: list[float] = []
    truth: list[np.ndarray] = []
    for query in queries:
        started = time.perf_counter()
        truth.append(exact_top_k(data, query, K))
        exact_ms.append((time.perf_counter() - started) * 1000)
    recall = statistics.fmean(len(set(row) & set(expected.tolist())) / K for row, expected in zip(found, truth))

    p50, p99, exact_p50 = percentile(single_ms, 50), percentile(single_ms, 99), percentile(exact_ms, 50)
    print(f"N={size:,}, ef_construction={ef_construction}: build {build_seconds:.2f}s "
          f"({size / build_seconds:,.0f} vectors/s)")
    print(f"  baseline  exact numpy search      p50 {exact_p50:.3f} ms  p99 {percentile(exact_ms, 99):.3f} ms")
    print(f"  contender HnswIndex.search        p50 {p50:.3f} ms  p99 {p99:.3f} ms  recall@10 {recall:.3f}")
    print(f"  ratio     speedup at p50          {exact_p50 / p50:.1f}x")
    print(f"  batch     {len(queries):,} queries on {available_cores()} cores  {batch_qps:,.0f} queries/s")


async def bench_end_to_end(entries: int, calls: int) -> None:
    rng = np.random.default_rng(SEED)
    texts = [" ".join(rng.choice(WORDS, 12)) + f" note {i}" for i in range(entries)]
    with tempfile.TemporaryDirectory() as scratch:
        settings = Settings(data_dir=Path(scratch))
        async with Client(build_server(settings)) as client:
            for start in range(0, entries, 10_000):
                batch = [{"key": f"n{i}", "value": texts[i]} for i in range(start, min(entries, start + 10_000))]
                result = await client.call_tool("memory_usage", {"action": "store_batch", "namespace": "bench",
                                                                 "entries": batch})
                assert not result.is_error, result.content
            round_trip_ms, search_ms = [], []
            for i in range(calls):
                started = time.perf_counter()
                await client.call_tool("memory_usage", {"action": "retrieve", "namespace": "bench", "key": f"n{i}"})
                round_trip_ms.append((time.perf_counter() - started) * 1000)
                started = time.perf_counter()
                result = await client.call_tool("memory_search", {"query": texts[i], "k": K})
                search_ms.append((time.perf_counter() - started) * 1000)
                assert not result.is_error and result.structured_content["results"]
    print(f"end to end over an in-memory MCP session, {entries:,} indexed entries, {calls} calls each:")
    print(f"  baseline  memory_usage retrieve   p50 {percentile(round_trip_ms, 50):.3f} ms")
    print(f"  contender memory_search k=10      p50 {percentile(search_ms, 50):.3f} ms"
          f"  p99 {percentile(search_ms, 99):.3f} ms")
    print(f"  ratio     search / round trip     {percentile(search_ms, 50) / percentile(round_trip_ms, 50):.2f}x")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--ef-construction", type=int, nargs="+", default=[200],
                        help="build-time candidate lists to compare (the engine's default is 200)")
    parser.add_argument("--e2e-entries", type=int, default=10_000)
    parser.add_argument("--e2e-calls", type=int, default=300)
    args = parser.parse_args()
    print(f"vector index benchmark: {DIMENSIONS} dimensions, k={K}, M=16, ef=64, "
          f"{available_cores()} cores, seed {SEED}")
    for ef_construction in args.ef_construction:
        for size in args.sizes:
            await bench_index(size, args.queries, ef_construction)
    float_bytes, int8_bytes = DIMENSIONS * 4, blob_bytes(DIMENSIONS)
    print(f"storage: float32 {float_bytes} bytes/vector, int8 + scale {int8_bytes} bytes/vector, "
          f"{float_bytes / int8_bytes:.2f}x smaller")
    await bench_end_to_end(args.e2e_entries, args.e2e_calls)


if __name__ == "__main__":
    anyio.run(main)
