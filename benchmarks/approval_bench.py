"""How long does a permission request take to reach a person, and the answer to reach the agent?

The real Claude Code CLI against the scripted Messages API on loopback asks to Write a file, once
per round. Two figures, each beside the floor from the same run:

- raised -> visible: from the model turn that asks for the tool (its request arriving at the API)
  to the request showing in ``query_list`` (``pending_requests``) of an MCP session polling it.
  Floor: from the same kind of turn to the SDK's ``can_use_tool`` callback being called, in a bare
  claude-agent-sdk session without Switchboard.
- answer -> the CLI proceeds: from the ``query_control approve`` call to the CLI's next request
  (the tool's result) arriving at the API. Floor: from the bare SDK callback answering allow at
  once to that next request.

    .venv/bin/python benchmarks/approval_bench.py [--rounds 20]
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
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from claude_agent_sdk import ClaudeAgentOptions, ClaudeSDKClient, PermissionResultAllow, ResultMessage
from mcp import Client

from server.agents.types import AgentType
from server.app import agents_wired, build_server
from server.config import Settings
from server.services import open_services
from tests.fixtures.messages_api import ScriptedMessagesApi

MODEL = "claude-sonnet-4-5"


def percentiles(samples_ms: list[float]) -> tuple[float, float]:
    ordered = sorted(samples_ms)
    return ordered[len(ordered) // 2], ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]


def row(label: str, floor: list[float], contender: list[float]) -> None:
    (f50, f99), (c50, c99) = percentiles(floor), percentiles(contender)
    print(f"  {label:<30} {f50:8.2f} / {f99:8.2f} ms {c50:8.2f} / {c99:8.2f} ms   {c50 - f50:+8.2f} ms over")


def write_task(workdir: Path, marker: str) -> str:
    return f"tool: Write {json.dumps({'file_path': str(workdir / f'{marker}.txt'), 'content': marker})}"


def asking_turn(api: ScriptedMessagesApi, marker: str) -> float | None:
    """When the turn that asks for the tool arrived (None before it has)."""
    turns = [request for request in api.requests_for(marker) if not request.tool_results]
    return turns[0].arrived if turns else None


def result_turn(api: ScriptedMessagesApi, marker: str) -> float | None:
    """When the turn carrying the tool's result arrived (None before it has)."""
    turns = [request for request in api.requests_for(marker) if request.tool_results]
    return turns[0].arrived if turns else None


async def until(read: Any, timeout_s: float = 30.0) -> float:
    deadline = time.monotonic() + timeout_s
    while (value := read()) is None:
        if time.monotonic() > deadline:
            raise TimeoutError("the scripted API did not see the expected turn")
        await asyncio.sleep(0.0005)
    return float(value)


async def bare_sdk(api: ScriptedMessagesApi, workdir: Path, rounds: int) -> tuple[list[float], list[float]]:
    """The floor: the SDK's callback, answered allow at once."""
    called: dict[str, float] = {}

    async def allow(_tool: str, tool_input: dict[str, Any], _context: Any) -> PermissionResultAllow:
        called[Path(str(tool_input.get("file_path"))).stem] = time.monotonic()
        return PermissionResultAllow()

    # As Switchboard starts its agents: Claude Code's own system prompt, no settings files read.
    options = ClaudeAgentOptions(model=MODEL, cwd=str(workdir), env=api.cli_env(workdir / "home-bare"),
                                 allowed_tools=["Bash"], can_use_tool=allow, setting_sources=[],
                                 system_prompt={"type": "preset", "preset": "claude_code"})
    raised, proceeded = [], []
    async with ClaudeSDKClient(options) as client:
        for number in range(rounds + 1):
            marker = f"bare{number}"
            await client.query(write_task(workdir, marker))
            async for message in client.receive_response():
                if isinstance(message, ResultMessage):
                    break
            if number == 0:
                continue  # the first round warms the CLI up
            asked, answered = asking_turn(api, marker), called[marker]
            result = result_turn(api, marker)
            assert asked is not None and result is not None
            raised.append((answered - asked) * 1000)
            proceeded.append((result - answered) * 1000)
    return raised, proceeded


async def switchboard(api: ScriptedMessagesApi, workdir: Path, rounds: int) -> tuple[list[float], list[float]]:
    asker = AgentType(runtime="claude", model=MODEL, allowed_tools=("Bash",), on_permission_request="ask",
                      env=api.cli_env(workdir / "home"))
    settings = Settings(data_dir=workdir / "data", agent_types={"asker": asker}, agent_roots=[workdir])
    raised, proceeded = [], []
    async with open_services(settings) as services, agents_wired(services), \
            Client(build_server(settings, services=services)) as client:
        spawned = await client.call_tool("agents_spawn_parallel", {"agents": [{"type": "asker", "name": "a"}]})
        agent_id = spawned.structured_content["agents"][0]["agent_id"]  # type: ignore[index]
        for number in range(rounds + 1):
            marker = f"sb{number}"
            started = await client.call_tool("query_start", {"agent_id": agent_id, "task": write_task(workdir, marker)})
            query_id = started.structured_content["query"]["query_id"]  # type: ignore[index]
            while True:
                listed = await client.call_tool("query_list", {"query_ids": [query_id]})
                queries = listed.structured_content["queries"]  # type: ignore[index]
                if queries and queries[0].get("pending_requests"):
                    visible = time.monotonic()
                    break
            asked = asking_turn(api, marker)
            answering = time.monotonic()
            await client.call_tool("query_control", {"action": "approve", "query_id": query_id})
            result = await until(lambda marker=marker: result_turn(api, marker))
            await client.call_tool("query_wait", {"query_ids": [query_id], "timeout_s": 30})
            if number == 0:
                continue
            assert asked is not None
            raised.append((visible - asked) * 1000)
            proceeded.append((result - answering) * 1000)
    return raised, proceeded


async def main(rounds: int) -> None:
    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp, ScriptedMessagesApi() as api:
        workdir = Path(tmp)
        floor_raised, floor_proceeded = await bare_sdk(api, workdir, rounds)
        raised, proceeded = await switchboard(api, workdir, rounds)
    print(f"\npermission requests of the real Claude Code CLI, {rounds} rounds")
    print(f"  {'p50 / p99':<30} {'bare SDK callback':>22} {'Switchboard':>22}")
    row("raised -> visible", floor_raised, raised)
    row("answer -> the CLI proceeds", floor_proceeded, proceeded)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20)
    asyncio.run(main(parser.parse_args().rounds))
