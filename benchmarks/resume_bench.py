"""How fast does a claude agent come back with its conversation? One run, baseline and contender side by side.

An agent (the real Claude Code CLI bundled with claude-agent-sdk, answering to the scripted Messages
API of the tests on loopback; no network) runs 50 tasks, a 50-turn session, and is terminated. Then,
alternating: a cold spawn of a new agent with one task (the baseline), and a resume of the ended agent
with the same task (the contender: its CLI loads the 50-turn session and sends it with the task).
Each is timed from the spawn call to the task's end, p50 / p90 over the rounds; then their ratio.

    .venv/bin/python benchmarks/resume_bench.py [--turns 50] [--rounds 7]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from server.agents.spawn_plan import AgentSpec, SpawnRequest
from server.agents.types import AgentType
from server.config import Settings
from server.services import Services, open_services
from tests.fixtures.messages_api import ScriptedMessagesApi

TASK = "reply: the answer"


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def settings_for(workdir: Path, api: ScriptedMessagesApi) -> Settings:
    helper = AgentType(runtime="claude", model="claude-sonnet-4-5", env=api.cli_env(workdir / "home"))
    return Settings(data_dir=workdir / "data", agent_types={"helper": helper}, agent_roots=[workdir])


async def timed_spawn(services: Services, spec: AgentSpec) -> tuple[float, str]:
    began = time.perf_counter()
    report = await services.spawner.spawn_many(SpawnRequest(agents=(spec,), wait=True))
    elapsed = time.perf_counter() - began
    (entry,) = report.entries
    if entry.status != "completed":
        raise SystemExit(f"{spec.name or spec.resume}: {entry.status} {entry.error}")
    await services.supervisor.terminate(entry.agent_id, 2.0)
    return elapsed, entry.agent_id


async def run(turns: int, rounds: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as scratch, ScriptedMessagesApi() as api:
        async with open_services(settings_for(Path(scratch), api)) as services:
            report = await services.spawner.spawn_many(SpawnRequest(
                agents=(AgentSpec(type="helper", name="long", task="reply: turn 1"),), wait=True))
            long_id = report.entries[0].agent_id
            for turn in range(2, turns + 1):
                query = await services.queries.start(long_id, f"reply: turn {turn}")
                await services.queries.wait([query.id], mode="all", timeout_s=120)
            await services.supervisor.terminate(long_id, 2.0)
            (last,) = api.requests_for(f"reply: turn {turns}")
            sent = len(last.body["messages"])
            cold, resumed = [], []
            for number in range(rounds):
                elapsed, _ = await timed_spawn(services, AgentSpec(type="helper", name=f"cold{number}", task=TASK))
                cold.append(elapsed)
                elapsed, long_id = await timed_spawn(services, AgentSpec(type="", name="", task=TASK, resume=long_id))
                resumed.append(elapsed)
            (first_resumed, *_) = [request for request in api.requests_for(TASK)
                                   if len(request.body["messages"]) > sent]
    figures = {"turns": turns, "rounds": rounds, "messages_sent_on_resume": len(first_resumed.body["messages"]),
               "cold_p50_s": percentile(cold, 0.5), "cold_p90_s": percentile(cold, 0.9),
               "resume_p50_s": percentile(resumed, 0.5), "resume_p90_s": percentile(resumed, 0.9)}
    figures["ratio_p50"] = figures["resume_p50_s"] / figures["cold_p50_s"]
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--turns", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=7)
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    figures = asyncio.run(run(arguments.turns, arguments.rounds))
    print(f"session of {figures['turns']} turns; the resumed CLI sent {figures['messages_sent_on_resume']} messages "
          f"with its first task ({figures['rounds']} rounds)")
    print(f"{'':<28} {'p50 s':>8} {'p90 s':>8}")
    print(f"{'cold spawn + one task':<28} {figures['cold_p50_s']:>8.3f} {figures['cold_p90_s']:>8.3f}")
    print(f"{'resume + one task':<28} {figures['resume_p50_s']:>8.3f} {figures['resume_p90_s']:>8.3f}")
    print(f"resume / cold (p50): {figures['ratio_p50']:.2f}x (aim: at most 1.5x)")
    print(json.dumps({name: round(value, 4) for name, value in figures.items()}), file=sys.stderr)


if __name__ == "__main__":
    main()
