"""The query tools through a real MCP session: claude-flow's spellings, answers, errors and progress,
on exec agents (real processes; the claude runtime's control is tested in tests/queries)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.config import Settings
from tests.agents.groups import eventually, file_size
from tests.agents.swarm import agent_settings
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return agent_settings(tmp_path, query_command_allowlist=["pwd"])


async def spawn_ready(client: Client, name: str = "w") -> str:
    answer = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": [{"type": "worker",
                                                                                       "name": name}]}))
    return str(answer["agents"][0]["agent_id"])


async def control(client: Client, **arguments: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool("query_control", arguments))


async def test_start_with_wait_answers_the_result(connect: Connect) -> None:
    async with connect() as client:
        agent_id = await spawn_ready(client)
        answer = structured_of(await client.call_tool("query_start", {"agentId": agent_id, "task": "ok hello",
                                                                      "wait": True, "timeoutS": 30}))
        query = answer["query"]
        assert (query["status"], query["result"], query["agent_id"]) == ("completed", "hello\n", agent_id)
        assert answer["timed_out"] is False and query["wall_ms"] >= 0 and query["active_ms"] >= 0
        ended = await client.call_tool("query_start", {"agent_id": "agent-nope", "task": "ok"})
        assert ended.is_error and error_text(ended).startswith("not_found: no agent 'agent-nope'")


async def test_pause_resume_terminate_with_claude_flow_spelling(connect: Connect, tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    async with connect() as client:
        agent_id = await spawn_ready(client)
        started = structured_of(await client.call_tool("query_start", {"agent_id": agent_id,
                                                                       "task": f"loop {output}"}))
        query_id = started["query"]["query_id"]
        await eventually(lambda: file_size(output) > 0, "the loop writes")
        paused = await control(client, action="pause", queryId=query_id)
        assert (paused["status"], paused["effect"], paused["action"]) == ("paused", "now", "pause")
        size = file_size(output)
        # Not synchronisation: 10 of the loop's 20 ms write periods, in which it would write if it ran.
        await asyncio.sleep(0.2)
        assert file_size(output) == size
        again = await client.call_tool("query_control", {"action": "pause", "query_id": query_id})
        assert again.is_error and error_text(again) == (
            f"conflict: query {query_id} is paused; only a running query can be paused")
        moved = await control(client, action="change_model", queryId=query_id, model="other-model")
        assert moved["effect"] == "next_query"
        active = structured_of(await client.call_tool("query_list", {}))
        assert [query["status"] for query in active["queries"]] == ["paused"]
        assert active["counts"] == {"paused": 1}
        await control(client, action="resume", query_id=query_id)
        ended = await control(client, action="terminate", query_id=query_id, grace_s=1)
        assert ended["status"] == "terminated" and ended["detail"]["agent"] == "ready"
        assert structured_of(await client.call_tool("query_list", {}))["queries"] == []
        history = structured_of(await client.call_tool("query_list", {"includeHistory": True,
                                                                      "includeOutput": True}))
        (listed,) = history["queries"]
        assert [(event["action"], event["by"], event["outcome"]) for event in listed["log"]] == [
            ("pause", "client", "now"), ("change_model", "client", "next_query"), ("resume", "client", "now"),
            ("terminate", "client", "now")]
        assert listed["error"] == "terminated by client" and "output_tail" not in listed  # the loop prints nothing
        assert listed["active_ms"] <= listed["wall_ms"]


async def test_execute_command_and_its_refusals(connect: Connect, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with connect() as client:
        agent_id = await spawn_ready(client)
        started = structured_of(await client.call_tool("query_start", {"agent_id": agent_id, "task": f"wait {gate}"}))
        query_id = started["query"]["query_id"]
        ran = await control(client, action="execute_command", query_id=query_id, command=["pwd"])
        assert ran["command"]["exit_code"] == 0 and ran["command"]["stdout"].strip().endswith(agent_id)
        refused = await client.call_tool("query_control", {"action": "execute_command", "query_id": query_id,
                                                           "command": ["rm", "-rf", "/"]})
        assert refused.is_error and error_text(refused).startswith(
            "forbidden: 'rm' is not on SWITCHBOARD_QUERY_COMMAND_ALLOWLIST")
        # claude-flow sends a string: split by shell quoting rules, never run by a shell.
        as_string = await control(client, action="execute_command", query_id=query_id, command="pwd -L")
        assert as_string["command"]["argv"][1:] == ["-L"] and as_string["command"]["exit_code"] == 0
        shell = await client.call_tool("query_control", {"action": "execute_command", "query_id": query_id,
                                                         "command": "pwd; rm -rf /"})
        assert error_text(shell).startswith("forbidden: 'pwd;' is not on SWITCHBOARD_QUERY_COMMAND_ALLOWLIST")
        unclosed = await client.call_tool("query_control", {"action": "execute_command", "query_id": query_id,
                                                            "command": "pwd 'unclosed"})
        assert error_text(unclosed) == ("invalid_argument: command \"pwd 'unclosed\" cannot be split into "
                                        "arguments: No closing quotation")
        bypass = await client.call_tool("query_control", {"action": "change_permissions", "query_id": query_id,
                                                          "permissionMode": "bypassPermissions"})
        assert bypass.is_error and "allow_bypass_permissions" in error_text(bypass)
        gate.write_text("go")


async def test_wait_reports_progress_and_pending(connect: Connect, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect() as client:
        first, second = await spawn_ready(client, "a"), await spawn_ready(client, "b")
        slow = structured_of(await client.call_tool("query_start", {"agent_id": first, "task": f"wait {gate}"}))
        quick = structured_of(await client.call_tool("query_start", {"agent_id": second, "task": "ok quick"}))
        ids = [slow["query"]["query_id"], quick["query"]["query_id"]]
        timed = structured_of(await client.call_tool("query_wait", {"query_ids": ids, "timeout_s": 0.5}))
        assert timed["timed_out"] is True and timed["pending"] == [ids[0]]
        gate.write_text("go")
        waited = structured_of(await client.call_tool("query_wait", {"queryIds": ids, "mode": "all", "timeout_s": 30},
                                                      progress_callback=on_progress))
        assert waited["timed_out"] is False and waited["pending"] == []
        assert [query["status"] for query in waited["queries"]] == ["completed", "completed"]
        assert updates and updates[-1] == (2, 2, "2 of 2 queries ended")
        unknown = await client.call_tool("query_wait", {"query_ids": ["query-nope"]})
        assert unknown.is_error and error_text(unknown).startswith("not_found: no query 'query-nope'")
