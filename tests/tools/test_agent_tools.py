"""The agent tools through a real MCP session: claude-flow's call shapes, answers, errors, progress,
and claude agents sharing this server's memory over the loopback endpoint."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
from mcp import Client

from server.agents.types import AgentType
from server.app import build_server
from server.config import Settings
from tests.agents.groups import eventually, running_in_group
from tests.agents.swarm import agent_settings
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return agent_settings(tmp_path, {"solo": AgentType(runtime="exec", command=("/bin/true",), max_running=1)},
                          memory_max_value_bytes=64 * 1024)


async def test_spawn_with_claude_flow_spelling_answers_per_agent_and_totals(connect: Connect) -> None:
    async with connect() as client:
        answer = structured_of(await client.call_tool("agents_spawn_parallel", {
            "agents": [{"type": "worker", "name": "one", "task": "ok first", "priority": "high"},
                       {"type": "worker", "name": "two", "task": "ok second", "dependsOn": ["one"]},
                       {"type": "worker", "name": "idle", "capabilities": ["code"]}],
            "maxConcurrency": 2, "batchSize": 2, "wait": True, "timeoutS": 60}))
        one, two, idle = answer["agents"]
        assert (one["name"], one["status"], one["result"]) == ("one", "completed", "first\n")
        assert (two["status"], two["result"]) == ("completed", "second\n")
        assert idle["status"] == "ready" and "query_id" not in idle
        assert one["agent_id"].startswith("agent-") and one["query_id"].startswith("query-")
        totals = answer["totals"]
        assert (totals["requested"], totals["spawned"], totals["failed"], totals["skipped"]) == (3, 3, 0, 0)
        assert totals["timed_out"] is False and totals["wall_ms"] > 0


async def test_a_bad_request_is_a_tool_error_and_spawns_nothing(connect: Connect) -> None:
    async with connect() as client:
        cycle = await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "a", "task": "ok", "depends_on": ["b"]},
            {"type": "worker", "name": "b", "task": "ok", "depends_on": ["a"]}]})
        assert cycle.is_error and error_text(cycle) == "invalid_argument: dependency cycle: a -> b -> a"
        unknown = await client.call_tool("agents_spawn_parallel", {"agents": [{"type": "wizard", "name": "w"}]})
        assert unknown.is_error and "unknown agent type 'wizard'; known types: analyst, architect" in error_text(unknown)
        misspelt = await client.call_tool("agents_spawn_parallel", {"agents": [{"type": "worker", "name": "x"}],
                                                                    "maxConcurency": 3})
        assert misspelt.is_error and "maxConcurency" in error_text(misspelt)
        listed = structured_of(await client.call_tool("agent_list", {}))
        assert listed["agents"] == [] and listed["counts"] == {}


async def test_list_filters_and_pages_and_terminate_is_idempotent(connect: Connect, tmp_path: Path) -> None:
    async with connect() as client:
        spawned = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": f"w{i}"} for i in range(3)] + [{"type": "solo", "name": "s"}]}))
        ids = [agent["agent_id"] for agent in spawned["agents"]]
        first = structured_of(await client.call_tool("agent_list", {"limit": 2}))
        second = structured_of(await client.call_tool("agent_list", {"limit": 2, "cursor": first["next_cursor"]}))
        assert [agent["agent_id"] for agent in first["agents"] + second["agents"]] == ids
        assert "next_cursor" not in second and first["counts"] == {"ready": 4}
        solo = structured_of(await client.call_tool("agent_list", {"type": "solo"}))
        assert [agent["name"] for agent in solo["agents"]] == ["s"]
        ended = structured_of(await client.call_tool("agent_terminate", {"type": "worker", "grace_s": 1}))
        assert sorted(agent["agent_id"] for agent in ended["agents"]) == sorted(ids[:3])
        assert {agent["status"] for agent in ended["agents"]} == {"terminated"}
        again = structured_of(await client.call_tool("agent_terminate", {"agentId": ids[0]}))
        assert again["agents"][0]["status"] == "terminated"
        active = structured_of(await client.call_tool("agent_list", {"status": "active"}))
        assert [agent["agent_id"] for agent in active["agents"]] == [ids[3]]
        both = await client.call_tool("agent_terminate", {"agent_id": ids[3], "all": True})
        assert both.is_error and error_text(both) == ("invalid_argument: give exactly one of agent_id, type or all: "
                                                      "true (got agent_id, all)")
        missing = await client.call_tool("agent_terminate", {"agent_id": "agent-nope"})
        assert missing.is_error and error_text(missing).startswith("not_found: no agent 'agent-nope'")
        everyone = structured_of(await client.call_tool("agent_terminate", {"all": True}))
        assert [agent["agent_id"] for agent in everyone["agents"]] == [ids[3]]


async def test_progress_comes_as_agents_become_ready_and_tasks_end(connect: Connect) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    async with connect() as client:
        await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "a", "task": "ok a"}, {"type": "worker", "name": "idle"}], "wait": True},
            progress_callback=on_progress)
    assert [progress for progress, _, _ in updates] == [1, 2, 3]
    assert {total for _, total, _ in updates} == {3}
    assert {message for _, _, message in updates} >= {"idle ready", "a started", "a task completed"}


async def test_claude_agents_share_this_servers_memory(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    helper = AgentType(runtime="claude", model="claude-sonnet-4-5", env=messages_api.cli_env(tmp_path / "home"))
    settings = agent_settings(tmp_path, {"helper": helper})
    store = ('tool: mcp__switchboard__memory_usage {"action": "store", "namespace": "swarm", "key": "finding", '
             '"value": "the bug is in parse_header"}')
    async with Client(build_server(settings)) as client:
        answer = structured_of(await client.call_tool("agents_spawn_parallel", {
            "agents": [{"type": "helper", "name": "finder", "task": store}], "wait": True, "timeout_s": 120}))
        (finder,) = answer["agents"]
        assert finder["status"] == "completed", finder
        assert finder["result"].startswith("done:"), finder["result"]
        got = structured_of(await client.call_tool("memory_usage", {"action": "retrieve", "namespace": "swarm",
                                                                    "key": "finding"}))
        assert got["entry"]["value"] == "the bug is in parse_header"
        listed = structured_of(await client.call_tool("agent_list", {}))
        assert listed["agents"][0]["memory_calls"] == 1
        pid = listed["agents"][0]["pid"]
    await eventually(lambda: running_in_group(pid) == [], "the agent ended with the server")


async def test_without_wait_every_agent_is_announced_before_the_answer(connect: Connect, tmp_path: Path) -> None:
    updates: list[tuple[float, float | None, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        updates.append((progress, total, message))

    gate = tmp_path / "gate"
    async with connect() as client:
        answer = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "a", "task": f"wait {gate}"}, {"type": "worker", "name": "b", "task": f"wait {gate}"},
            {"type": "worker", "name": "c", "task": "ok later", "depends_on": ["a"]}]}, progress_callback=on_progress))
        seen_at_answer = list(updates)
        assert [agent["status"] for agent in answer["agents"]] == ["running", "running", "waiting"]
        assert sorted(message or "" for _, _, message in seen_at_answer) == [
            "a started", "b started", "c waiting for its dependencies"]
        assert [progress for progress, _, _ in seen_at_answer] == [1, 2, 3]
        assert {total for _, total, _ in seen_at_answer} == {3}
        totals = answer["totals"]
        assert (totals["requested"], totals["spawned"], totals["waiting"]) == (3, 2, 1)
        gate.write_text("go")
        waited = structured_of(await client.call_tool("query_start", {
            "agent_id": answer["agents"][2]["agent_id"], "task": "ok again", "wait": True, "timeout_s": 60},
            progress_callback=on_progress))
        assert waited["query"]["status"] == "completed"
    # Nothing after the spawn's answer (its progress token had expired) but the query's own end.
    assert updates[len(seen_at_answer):] == [(1, 1, "1 of 1 queries ended")]
