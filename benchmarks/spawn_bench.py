"""How fast do agents start? One run, baseline and contender side by side.

claude agents (the real Claude Code CLI bundled with claude-agent-sdk, answering to the
scripted Messages API of the tests on loopback; no network): 1, 5 and 10 agents spawned
sequentially (max_concurrency 1: the baseline), in parallel, and from a warm pool; time to
ready p50 / p99 per agent, and the wall time of the call.

exec agents (a trivial process, /bin/true): 10, 50 and 200 spawned through Switchboard
(records, watchdog, logs, activity records; wait for every task) against bare asyncio
subprocesses of the same command started and awaited together; the difference per agent is
Switchboard's overhead.

    .venv/bin/python benchmarks/spawn_bench.py [--claude 1,5,10] [--exec 10,50,200]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.agents.spawn_plan import AgentSpec, SpawnReport, SpawnRequest
from server.agents.types import AgentType
from server.config import Settings
from server.services import Services, open_services
from tests.fixtures.messages_api import ScriptedMessagesApi

TRUE = "/bin/true"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settings_for(workdir: Path, api: ScriptedMessagesApi, pool_size: int) -> Settings:
    # Two claude types: "cold" never has a pool, so the sequential and parallel runs always start
    # the CLI; "warm" keeps ``pool_size`` sessions ready.
    cold = AgentType(runtime="claude", model="claude-sonnet-4-5", env=api.cli_env(workdir / "home"))
    warm = cold.model_copy(update={"pool_size": pool_size})
    trivial = AgentType(runtime="exec", command=(TRUE,))
    return Settings(data_dir=workdir / "data", agent_types={"cold": cold, "warm": warm, "trivial": trivial},
                    agent_roots=[workdir], agent_max_per_call=1000, memory_sqlite_synchronous="full")


async def end_all(services: Services) -> None:
    await asyncio.gather(*(services.supervisor.terminate(agent.id, 2.0) for agent in services.supervisor.live_agents()))


async def spawn(services: Services, count: int, concurrency: int, type_name: str = "cold",
                task: str | None = None) -> SpawnReport:
    agents = tuple(AgentSpec(type=type_name, name=f"a{i}", task=task) for i in range(count))
    return await services.spawner.spawn_many(SpawnRequest(agents=agents, max_concurrency=concurrency,
                                                          batch_size=concurrency, wait=task is not None))


def line(label: str, report: SpawnReport) -> str:
    ready = [entry.spawn_ms or 0.0 for entry in report.entries]
    failed = sum(1 for entry in report.entries if entry.status == "failed")
    return (f"  {label:<12} ready p50 {percentile(ready, 0.5):8.1f} ms  p99 {percentile(ready, 0.99):8.1f} ms  "
            f"wall {report.wall_ms:8.1f} ms" + (f"  FAILED {failed}" if failed else ""))


async def claude_bench(counts: list[int]) -> None:
    print("claude agents (Claude Code CLI, scripted API on loopback): time to ready")
    with tempfile.TemporaryDirectory() as tmp, ScriptedMessagesApi() as api:
        workdir = Path(tmp)
        cold: dict[int, tuple[SpawnReport, SpawnReport, float]] = {}
        async with open_services(settings_for(workdir, api, pool_size=0)) as services:
            await spawn(services, 1, 1)  # warm the page cache: the first CLI start reads ~200 MB from disk
            await end_all(services)
            for count in counts:
                cpu_before = children_cpu_s()
                sequential = await spawn(services, count, 1)
                await end_all(services)
                cpu_per_start = (children_cpu_s() - cpu_before) / count
                parallel = await spawn(services, count, count)
                await end_all(services)
                cold[count] = (sequential, parallel, cpu_per_start)
        for count in counts:
            # A server of its own per size, so that no idle pool shares the machine with the cold
            # runs above, and this pool is full (and idle) before the call.
            async with open_services(settings_for(workdir, api, pool_size=count)) as services:
                services.supervisor.pool.start()
                await services.supervisor.pool.wait_full("warm")
                warm = await spawn(services, count, count, "warm")
                await end_all(services)
            sequential, parallel, cpu_per_start = cold[count]
            print(f" {count} agent(s)")
            print(line("sequential", sequential))
            print(line("parallel", parallel))
            print(line("warm pool", warm))
            bound = min(count, os.cpu_count() or 1) * sequential.wall_ms / count / (cpu_per_start * 1000)
            print(f"  parallel vs sequential wall: {sequential.wall_ms / parallel.wall_ms:5.2f}x "
                  f"(CPU per CLI start {cpu_per_start * 1000:.0f} ms: {os.cpu_count()} cores bound it to ~{bound:.1f}x);  "
                  f"warm pool vs sequential: {sequential.wall_ms / warm.wall_ms:6.1f}x")


def children_cpu_s() -> float:
    """User + system CPU of every reaped child so far (the CLIs, once ended, are reaped)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


async def bare_processes(count: int) -> float:
    began = time.perf_counter()
    processes = await asyncio.gather(*(asyncio.create_subprocess_exec(TRUE) for _ in range(count)))
    await asyncio.gather(*(process.wait() for process in processes))
    return (time.perf_counter() - began) * 1000


async def exec_bench(counts: list[int]) -> None:
    print("exec agents (/bin/true, wait for the task): Switchboard vs bare asyncio subprocesses")
    with tempfile.TemporaryDirectory() as tmp, ScriptedMessagesApi() as api:
        workdir = Path(tmp)
        async with open_services(settings_for(workdir, api, pool_size=0)) as services:
            await spawn(services, 2, 2, "trivial", "x")  # starts the watchdog, opens the databases
            for count in counts:
                bare = min([await bare_processes(count) for _ in range(3)])
                runs = [await spawn(services, count, count, "trivial", "x") for _ in range(3)]
                best = min(runs, key=lambda report: report.wall_ms)
                failed = sum(1 for entry in best.entries if entry.status != "completed")
                overhead = (best.wall_ms - bare) / count
                print(f" {count:4d} agents: switchboard {best.wall_ms:8.1f} ms  bare {bare:8.1f} ms  "
                      f"ratio {best.wall_ms / bare:5.2f}x  overhead {overhead:5.2f} ms/agent"
                      + (f"  NOT COMPLETED {failed}" if failed else ""))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claude", default="1,5,10", help="claude agent counts (empty: skip)")
    parser.add_argument("--exec", default="10,50,200", help="exec agent counts (empty: skip)")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    if arguments.claude:
        asyncio.run(claude_bench([int(n) for n in arguments.claude.split(",")]))
    if arguments.exec:
        asyncio.run(exec_bench([int(n) for n in arguments.exec.split(",")]))


if __name__ == "__main__":
    main()
