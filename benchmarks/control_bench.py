"""How fast does query control act? One run, through an MCP session, each figure next to its floor.

From the ``query_control`` call to the effect seen from outside the server:

- pause / resume: every process of the agent (its group and its tools) in state T / out of it,
  read from /proc; exec agents (a worker and its grandchild) and claude agents (the real Claude
  Code CLI running a scripted Bash loop). Floor: ``os.killpg`` on the same group, then the same
  /proc check, without MCP or Switchboard.
- terminate: the query's processes gone (exec: the whole group; claude: the Bash loop, the agent
  staying up). Floor (claude): the engine's session interrupt without MCP and records.
- change_model (claude): the CLI's model check for the new model arriving at the scripted API.
  Floor: the SDK's ``set_model`` on the same session, without MCP.
- ``query_list`` with 10,000 queries in history: the active set, and a page of history.
  Floor: an MCP tool that does nothing (benchmarks/empty_server.py) in the same kind of session.

    .venv/bin/python benchmarks/control_bench.py [--rounds 30] [--history 10000]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from mcp import Client

from server.agents.process_groups import tagged_processes
from server.agents.records import AgentRecord, agent_added
from server.agents.types import AgentType
from server.app import agents_wired, build_server
from server.config import Settings
from server.queries.records import QueryRecord, query_added
from server.services import Services, open_services
from tests.fixtures.messages_api import Answer, RecordedRequest, Reply, ScriptedMessagesApi, default_script

EXEC_AGENT = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "exec_agent.py"
MODELS = ("claude-sonnet-4-5", "claude-haiku-4-5")


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def row(label: str, floor: list[float] | None, contender: list[float]) -> None:
    c50, c99 = percentiles(contender)
    if floor is None:
        print(f"  {label:<34} {'':>22} {c50:9.3f} / {c99:8.3f} ms")
        return
    f50, f99 = percentiles(floor)
    print(f"  {label:<34} {f50:9.3f} / {f99:8.3f} ms {c50:9.3f} / {c99:8.3f} ms   {c50 / f50:7.2f}x")


def header(title: str, floor: str) -> None:
    print(f"\n{title}")
    print(f"  {'p50 / p99':<34} {floor:>22} {'query_control':>22}   {'ratio':>7}")


def state(pid: int) -> str | None:
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    return data[data.rindex(b")") + 2:].split()[0].decode()


def group_members(pgid: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                data = Path(f"/proc/{name}/stat").read_bytes()
            except OSError:
                continue
            fields = data[data.rindex(b")") + 2:].split()
            if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
                members.append(int(name))
    return members


async def until(condition: Callable[[], bool], timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the effect was not seen")
        await asyncio.sleep(0)


def all_in(pids: list[int], states: set[str]) -> bool:
    return all(state(pid) in states for pid in pids)


async def killpg(pgid: int, sig: int) -> None:
    """os.killpg as an awaitable, so that `timed` times the signal too."""
    os.killpg(pgid, sig)


async def timed(action: Awaitable[Any], effect: Callable[[], bool]) -> float:
    """Milliseconds from awaiting ``action`` (a coroutine: nothing runs before) to ``effect`` holding."""
    began = time.perf_counter()
    result = await action
    if hasattr(result, "is_error"):
        assert not result.is_error, result.content
    await until(effect)
    return (time.perf_counter() - began) * 1000


async def call(client: Client, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    result = await client.call_tool(tool, arguments)
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict)
    return result.structured_content


async def spawn(client: Client, agent_type: str) -> str:
    answer = await call(client, "agents_spawn_parallel", {"agents": [{"type": agent_type, "name": agent_type}]})
    return str(answer["agents"][0]["agent_id"])


async def start(client: Client, agent_id: str, task: str) -> str:
    return str((await call(client, "query_start", {"agent_id": agent_id, "task": task}))["query"]["query_id"])


async def pause_resume(client: Client, services: Services, agent_id: str, query_id: str, rounds: int,
                       label: str) -> None:
    agent = services.supervisor.live(agent_id)
    assert agent is not None
    pids = tagged_processes([agent_id])
    leader = agent.session.pid if agent.session is not None else agent.process.pid if agent.process else None
    assert leader is not None
    floor_pause: list[float] = []
    floor_resume: list[float] = []
    pause: list[float] = []
    resume: list[float] = []
    for _ in range(rounds):
        floor_pause.append(await timed(killpg(leader, signal.SIGSTOP),
                                       lambda: all_in(group_members(leader), {"T"})))
        floor_resume.append(await timed(killpg(leader, signal.SIGCONT),
                                        lambda: all_in(group_members(leader), {"S", "R", "D"})))
        pause.append(await timed(client.call_tool("query_control", {"action": "pause", "query_id": query_id}),
                                 lambda: all_in(pids, {"T"})))
        resume.append(await timed(client.call_tool("query_control", {"action": "resume", "query_id": query_id}),
                                  lambda: all_in(pids, {"S", "R", "D"})))
    row(f"{label} pause ({len(pids)} processes)", floor_pause, pause)
    row(f"{label} resume", floor_resume, resume)


async def exec_section(client: Client, services: Services, workdir: Path, rounds: int) -> None:
    header("exec agents (a worker and its grandchild): call to effect in /proc", "os.killpg")
    agent_id = await spawn(client, "worker")
    output = workdir / "exec-loop.txt"
    query_id = await start(client, agent_id, f"loop {output}")
    await until(lambda: output.exists() and len(tagged_processes([agent_id])) == 2)
    await pause_resume(client, services, agent_id, query_id, rounds, "exec")
    await call(client, "query_control", {"action": "terminate", "query_id": query_id, "grace_s": 1})
    terminate: list[float] = []
    for round_number in range(max(rounds // 3, 5)):
        loop_file = workdir / f"exec-term-{round_number}.txt"
        query_id = await start(client, agent_id, f"loop {loop_file}")
        await until(lambda file=loop_file: file.exists() and len(tagged_processes([agent_id])) == 2)
        terminate.append(await timed(
            client.call_tool("query_control", {"action": "terminate", "query_id": query_id, "grace_s": 5}),
            lambda: tagged_processes([agent_id]) == []))
    row("exec terminate (SIGTERM, group gone)", None, terminate)


async def claude_section(client: Client, services: Services, api: ScriptedMessagesApi, workdir: Path,
                         rounds: int) -> None:
    header("claude agents (Claude Code CLI running a Bash loop): call to effect", "floor")
    agent_id = await spawn(client, "helper")
    counter = workdir / "claude-loop.txt"
    query_id = await start(client, agent_id, f"bash: for i in $(seq 1 100000); do echo $i >> {counter}; "
                                             f"sleep 0.05; done")
    await until(counter.exists, 60)
    await pause_resume(client, services, agent_id, query_id, rounds, "claude")
    agent = services.supervisor.live(agent_id)
    assert agent is not None and agent.session is not None
    session = agent.session
    await call(client, "query_control", {"action": "terminate", "query_id": query_id})
    # The CLI checks a new model just before its next model request, so the effect is seen at the
    # API when the agent next asks the model: this query's turns are a Bash `true` each, forever.
    query_id = await start(client, agent_id, "spin [spin]")
    floor_model: list[float] = []
    model: list[float] = []
    for round_number in range(max(rounds // 3, 5)):
        target = MODELS[(round_number + 1) % 2]
        seen = len(api.requests)
        floor_model.append(await timed(session.set_model(target), lambda model=target, after=seen: any(
            request.model == model for request in api.requests[after:])))
        back = MODELS[round_number % 2]
        seen = len(api.requests)
        model.append(await timed(client.call_tool("query_control", {"action": "change_model", "query_id": query_id,
                                                                    "model": back}),
                                 lambda model=back, after=seen: any(
                                     request.model == model for request in api.requests[after:])))
    row("claude change_model (next request)", floor_model, model)
    await call(client, "query_control", {"action": "terminate", "query_id": query_id})
    floor_terminate: list[float] = []
    terminate: list[float] = []
    for round_number in range(max(rounds // 3, 5)):
        for samples, through_mcp in ((floor_terminate, False), (terminate, True)):
            loop_file = workdir / f"claude-term-{round_number}-{through_mcp}.txt"
            query_id = await start(client, agent_id, f"bash: for i in $(seq 1 100000); do echo $i >> {loop_file}; "
                                                     f"sleep 0.05; done")
            await until(loop_file.exists, 60)
            cli_group = set(group_members(session.pid or 0))
            tools = [pid for pid in tagged_processes([agent_id]) if pid not in cli_group]
            action = (client.call_tool("query_control", {"action": "terminate", "query_id": query_id})
                      if through_mcp else session.interrupt())
            # Gone: exited (a zombie runs no code; its parent, the CLI, reaps it in its own time).
            samples.append(await timed(action, lambda pids=tools: all(state(pid) in (None, "Z", "X") for pid in pids)))
            await services.queries.wait([query_id], mode="all", timeout_s=30)
    row("claude terminate (interrupt, tools gone)", floor_terminate, terminate)


async def list_section(client: Client, services: Services, history: int, rounds: int) -> None:
    header(f"query_list with {history:,} queries in history", "empty MCP tool")
    clock = services.clock
    agent = AgentRecord(id="agent-history", name="history", type="worker", runtime="exec", status="terminated",
                        workdir="/nonexistent", server_pid=1, server_start_time=0, boot_id="old",
                        created_ms=clock.now_ms())
    await services.supervisor.records.commit(agent_added(agent))
    for chunk in range(0, history, 1000):
        await services.supervisor.records.commit(*(
            query_added(QueryRecord(id=f"query-old-{number:06d}", agent_id=agent.id, task=f"old task {number}",
                                    status="completed", created_ms=clock.now_ms(), started_ms=clock.now_ms(),
                                    ended_ms=clock.now_ms(), result="done"))
            for number in range(chunk, min(chunk + 1000, history))))
    from empty_server import server as empty_server
    async with Client(empty_server) as empty:
        floor = [await timed(empty.call_tool("echo", {"key": "k"}), lambda: True) for _ in range(rounds * 3)]
    active = [await timed(client.call_tool("query_list", {}), lambda: True) for _ in range(rounds * 3)]
    page = [await timed(client.call_tool("query_list", {"include_history": True, "limit": 50}), lambda: True)
            for _ in range(rounds * 3)]
    row("query_list (active set)", floor, active)
    row("query_list history, 50 per page", floor, page)


def spinning(request: RecordedRequest) -> Answer:
    if request.kind == "turn" and "[spin]" in request.user_text:
        return Reply.tool("Bash", {"command": "true", "description": "spin"})
    return default_script(request)


async def main(rounds: int, history: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, ScriptedMessagesApi(spinning) as api:
        workdir = Path(tmp)
        helper = AgentType(runtime="claude", model=MODELS[0], allowed_tools=("Bash",), env=api.cli_env(workdir / "home"))
        worker = AgentType(runtime="exec", command=(sys.executable, str(EXEC_AGENT), "{task}"))
        settings = Settings(data_dir=workdir / "data", agent_types={"helper": helper, "worker": worker},
                            agent_roots=[workdir])
        async with open_services(settings) as services, agents_wired(services), \
                Client(build_server(settings, services=services)) as client:
            await exec_section(client, services, workdir, rounds)
            await claude_section(client, services, api, workdir, rounds)
            await list_section(client, services, history, rounds)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--history", type=int, default=10_000)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.rounds, arguments.history))
