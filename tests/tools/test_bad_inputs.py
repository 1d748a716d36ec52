"""Inputs an attack sent that answered ``internal`` or the wrong code: each is the caller's mistake,
``invalid_argument`` naming the field and its bound, and changes nothing. Through a real MCP session."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.app import build_server
from server.config import Settings
from server.objects import LocalObjectStore
from tests.agents.swarm import agent_settings
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return agent_settings(tmp_path, agent_max_per_call=1000)


@pytest.fixture
def connect(settings: Settings) -> Callable[[], Client]:
    # Opened in each test's own task (anyio cancel scopes), as tests/conftest.py explains.
    return lambda: Client(build_server(settings))


async def refused(client: Client, tool: str, arguments: dict[str, Any]) -> str:
    answer = await client.call_tool(tool, arguments)
    text = error_text(answer)
    assert text.startswith("invalid_argument: "), text
    return text


async def nothing_spawned(client: Client) -> None:
    listed = structured_of(await client.call_tool("agent_list", {}))
    assert (listed["agents"], listed["counts"]) == ([], {})


def chain(length: int) -> list[dict[str, Any]]:
    """``a0`` depends on ``a1``, ... on ``a<length-1>``: listed deepest first."""
    return [{"type": "worker", "name": f"a{i}", **({"depends_on": [f"a{i + 1}"]} if i + 1 < length else {})}
            for i in range(length)]


async def test_a_cycle_of_a_thousand_agents_is_named_and_spawns_nothing(connect: Connect) -> None:
    async with connect() as client:
        agents = chain(1000)
        agents[-1]["depends_on"] = ["a0"]
        text = await refused(client, "agents_spawn_parallel", {"agents": agents})
        assert text == ("invalid_argument: dependency cycle: a0 -> a1 -> a2 -> a3 -> a4 -> ... -> "
                        "a996 -> a997 -> a998 -> a999 -> a0 (1000 agents)")
        await nothing_spawned(client)


async def test_a_chain_of_a_thousand_is_spawned_within_the_per_call_limit_and_refused_beyond_it(
    connect: Connect, tmp_path: Path
) -> None:
    async with connect() as client:
        spawned = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": chain(1000)}))
        assert [agent["name"] for agent in spawned["agents"]] == [f"a{i}" for i in range(1000)]
        assert {agent["status"] for agent in spawned["agents"]} == {"ready"}
    (tmp_path / "smaller").mkdir()
    async with Client(build_server(agent_settings(tmp_path / "smaller", agent_max_per_call=999))) as smaller:
        answer = await smaller.call_tool("agents_spawn_parallel", {"agents": chain(1000)})
        assert error_text(answer) == "too_large: 1000 agents in one call; at most 999 (SWITCHBOARD_AGENT_MAX_PER_CALL)"
        await nothing_spawned(smaller)


@pytest.mark.parametrize("tool", ["agent_list", "query_list"])
@pytest.mark.parametrize("cursor", ["²", "99999999999999999999", "9" * 5000, "9223372036854775808"],
                         ids=["superscript-two", "20-digits", "5000-digits", "2**63"])
async def test_a_cursor_that_is_not_an_ascii_63_bit_number_is_refused(connect: Connect, tool: str, cursor: str) -> None:
    async with connect() as client:
        text = await refused(client, tool, {"cursor": cursor})
        assert text.startswith("invalid_argument: cursor must be a next_cursor this tool gave out (ASCII digits, at most "
                               "9223372036854775807); got ")
        largest = structured_of(await client.call_tool(tool, {"cursor": "9223372036854775807"}))
        assert largest.get("agents", largest.get("queries")) == []


@pytest.mark.parametrize(
    ("cwd", "expected"),
    [("work\x00/../etc", "invalid_argument: a: cwd must not contain a NUL character; got 'work\\x00/../etc'"),
     ("d" * 10_000, "invalid_argument: a: cwd is 10000 bytes long; at most 4096 bytes"),
     ("é" * 2100, "invalid_argument: a: cwd is 4200 bytes long; at most 4096 bytes"),
     ("x" * 300, "invalid_argument: a: cwd 'xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx' is not a usable "
                 "path (File name too long)")],
    ids=["nul", "10-kb", "4200-bytes-in-2100-characters", "a-300-byte-name"],
)
async def test_a_cwd_with_a_nul_or_beyond_the_path_limit_is_refused(connect: Connect, cwd: str, expected: str) -> None:
    async with connect() as client:
        text = await refused(client, "agents_spawn_parallel", {"agents": [{"type": "worker", "name": "a", "cwd": cwd}]})
        assert text == expected
        await nothing_spawned(client)


@pytest.mark.parametrize("priority", [2**63, -(2**63) - 1, 1_000_001])
async def test_a_priority_outside_its_bound_is_refused(connect: Connect, priority: int) -> None:
    async with connect() as client:
        text = await refused(client, "agents_spawn_parallel",
                             {"agents": [{"type": "worker", "name": "a", "priority": priority}]})
        assert text == (f"invalid_argument: agents[0].priority must be an integer from -1000000 to 1000000 or one of "
                        f"'low', 'medium', 'high', 'critical'; got {priority}")
        await nothing_spawned(client)
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        schema = tools["agents_spawn_parallel"].input_schema["$defs"]["SpawnSpec"]["properties"]["priority"]
        assert {"type": "integer", "minimum": -1_000_000, "maximum": 1_000_000} in schema["anyOf"]


@pytest.mark.parametrize("tool", ["query_list", "query_wait"])
@pytest.mark.parametrize(("count", "got"), [(0, "an empty list"), (501, "a list of 501")])
async def test_query_ids_outside_1_to_500_say_the_bound(connect: Connect, tool: str, count: int, got: str) -> None:
    async with connect() as client:
        text = await refused(client, tool, {"query_ids": [f"query-{i}" for i in range(count)]})
        assert text == f"invalid_argument: query_ids must be a list of 1 to 500 strings; got {got}"


@pytest.mark.parametrize(
    ("tool", "arguments", "expected"),
    [("query_wait", {"query_ids": ["query-1"], "timeout_s": 0},
      "invalid_argument: timeout_s must be a number > 0 and <= 86400; got 0"),
     ("agents_spawn_parallel", {"agents": [{"type": "worker", "name": "a\x01"}]},
      "invalid_argument: agents[0].name must be a string of 1 to 64 characters matching ^[^\\x00-\\x1f\\x7f]+$; "
      "got 'a\\x01'"),
     ("agents_spawn_parallel", {"agents": []},
      "invalid_argument: agents must be a non-empty list of objects {type?, name?, task?, depends_on?, model?, "
      "permission_mode?, cwd?, capabilities?, priority?, command?, on_permission_request?, workspace?, base_ref?, "
      "budget_usd?, budget_tokens?, agent_budget_usd?, agent_budget_tokens?, on_budget?, resume?, fork?}; "
      "got an empty list")],
    ids=["exclusive-minimum", "pattern", "too-short"],
)
async def test_every_constraint_error_names_the_field_and_the_bound(
    connect: Connect, tool: str, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        assert await refused(client, tool, arguments) == expected


@pytest.mark.parametrize("switch", ["true", 1, "yes"])
async def test_terminate_all_takes_only_a_json_true(connect: Connect, switch: object) -> None:
    async with connect() as client:
        spawned = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "keeps-going"}]}))
        text = await refused(client, "agent_terminate", {"all": switch})
        assert text.startswith("invalid_argument: all must be true or false; got ")
        listed = structured_of(await client.call_tool("agent_list", {}))
        assert [(agent["agent_id"], agent["status"]) for agent in listed["agents"]] == [
            (spawned["agents"][0]["agent_id"], "ready")]


@pytest.mark.parametrize("switch", ["true", 1])
async def test_deleting_a_namespace_takes_only_a_json_true(connect: Connect, switch: object) -> None:
    async with connect() as client:
        await client.call_tool("memory_usage", {"action": "store", "namespace": "keep", "key": "k", "value": "v"})
        text = await refused(client, "memory_usage", {"action": "delete", "namespace": "keep", "confirm": switch})
        assert text.startswith("invalid_argument: confirm must be true or false; got ")
        kept = structured_of(await client.call_tool("memory_usage", {"action": "retrieve", "namespace": "keep",
                                                                     "key": "k"}))
        assert kept["found"] is True


@pytest.mark.parametrize("switch", ["true", 1])
async def test_overwriting_an_object_takes_only_a_json_true(connect: Connect, settings: Settings, switch: object) -> None:
    async with connect() as client:
        first = structured_of(await client.call_tool("upload_batch", {"files": [{"content": "one", "key": "a.txt"}]}))
        assert first["status"] == "ok"
        text = await refused(client, "upload_batch", {"files": [{"content": "two", "key": "a.txt"}], "overwrite": switch})
        assert text.startswith("invalid_argument: overwrite must be true or false; got ")
        assert await LocalObjectStore(settings.local_objects_dir).read_object("local", "a.txt") == b"one"
