"""memory_usage through a real MCP client session (in-memory transport), modern and legacy handshakes."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from tests.manual_clock import ManualClock
from tests.tools.answers import MODEL_VISIBLE_BUDGET, OUTPUT_SCHEMAS_BUDGET, error_text, listing_sizes, structured_of, text_of
from tools.schemas import render, tool_schemas

Connect = Callable[[], Client]
SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"


async def call(client: Client, **arguments: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool("memory_usage", arguments))


async def call_error(client: Client, **arguments: Any) -> str:
    return error_text(await client.call_tool("memory_usage", arguments))


async def everything(client: Client) -> list[dict[str, Any]]:
    """All live entries with values: the state "nothing changed" is checked against."""
    entries: list[dict[str, Any]] = (await call(client, action="search", pattern="*", limit=1000))["entries"]
    return entries


async def test_claude_flow_store_call_works_unchanged_and_string_comes_back_identical(connect: Connect) -> None:
    async with connect() as client:
        text = '{"agentId": "agent-7", "type": "coder", "spawnedAt": "2026-11-21T10:00:00Z"}'
        stored = await call(
            client, action="store", namespace="agent-activities", key="agent-7-spawn", value=text, ttl=604800
        )
        entry = stored["entry"]
        assert (entry["namespace"], entry["key"], entry["version"]) == ("agent-activities", "agent-7-spawn", 1)
        assert entry["size"] == len(json.dumps(text).encode())
        assert entry["expires_at"].endswith("Z") and entry["created_at"] == entry["updated_at"]
        got = await call(client, action="retrieve", namespace="agent-activities", key="agent-7-spawn")
        assert got["found"] is True
        assert got["entry"]["value"] == text and isinstance(got["entry"]["value"], str)


async def test_json_values_round_trip_and_namespace_defaults(connect: Connect) -> None:
    async with connect() as client:
        value = {"plan": ["a", "b"], "done": False, "score": 0.5, "owner": None}
        await call(client, action="store", key="plan", value=value, tags=["planning"])
        got = await call(client, action="retrieve", key="plan")
        assert got["entry"]["namespace"] == "default"
        assert got["entry"]["value"] == value and got["entry"]["tags"] == ["planning"]
        await call(client, action="store", key="nothing", value=None)
        assert (await call(client, action="retrieve", key="nothing"))["entry"]["value"] is None


async def test_retrieve_of_missing_or_expired_says_not_found(connect: Connect, clock: ManualClock) -> None:
    async with connect() as client:
        never = await call(client, action="retrieve", key="never")
        assert never == {"action": "retrieve", "success": True, "found": False}
        await call(client, action="store", key="brief", value="x", ttl=30)
        clock.advance(30)
        assert (await call(client, action="retrieve", key="brief"))["found"] is False
        assert (await call(client, action="search", pattern="*"))["entries"] == []


async def test_compare_and_set_conflict_names_the_current_version(connect: Connect) -> None:
    async with connect() as client:
        await call(client, action="store", key="k", value=1)
        await call(client, action="store", key="k", value=2, if_version=1)
        text = await call_error(client, action="store", key="k", value=3, if_version=1)
        assert "conflict: key 'k' in namespace 'default' is at version 2" in text
        assert (await call(client, action="retrieve", key="k"))["entry"]["value"] == 2


async def test_list_pages_with_cursor_and_omits_values(connect: Connect) -> None:
    async with connect() as client:
        for i in range(5):
            await call(client, action="store", namespace="jobs", key=f"job-{i}", value={"i": i})
        first = await call(client, action="list", namespace="jobs", prefix="job-", limit=3)
        assert [e["key"] for e in first["entries"]] == ["job-0", "job-1", "job-2"]
        assert all("value" not in e for e in first["entries"])
        second = await call(client, action="list", namespace="jobs", limit=3, cursor=first["next_cursor"])
        assert [e["key"] for e in second["entries"]] == ["job-3", "job-4"] and "next_cursor" not in second


async def test_delete_key_then_namespace_with_confirmation(connect: Connect) -> None:
    async with connect() as client:
        for key in ("a", "b", "c"):
            await call(client, action="store", namespace="scratch", key=key, value=key)
        assert (await call(client, action="delete", namespace="scratch", key="a"))["deleted"] == 1
        text = await call_error(client, action="delete", namespace="scratch")
        assert "confirm: true" in text
        assert len(await everything(client)) == 2
        assert (await call(client, action="delete", namespace="scratch", confirm=True))["deleted"] == 2
        assert await everything(client) == []


async def test_search_by_glob_and_text_in_all_namespaces(connect: Connect) -> None:
    async with connect() as client:
        await call(client, action="store", namespace="n1", key="agent-1", value="fixed the login bug")
        await call(client, action="store", namespace="n2", key="agent-2", value={"text": "Login page redesign"})
        await call(client, action="store", namespace="n2", key="notes", value="unrelated")
        found = await call(client, action="search", query="login")
        assert [(e["namespace"], e["key"]) for e in found["entries"]] == [("n1", "agent-1"), ("n2", "agent-2")]
        assert found["entries"][0]["value"] == "fixed the login bug"
        agents = await call(client, action="search", pattern="agent-*", namespace="n2")
        assert [e["key"] for e in agents["entries"]] == ["agent-2"]


async def test_stats_reports_namespaces_and_totals(connect: Connect) -> None:
    async with connect() as client:
        await call(client, action="store", namespace="a", key="k", value="xx", ttl=60)
        await call(client, action="store", namespace="b", key="k", value=[1, 2])
        stats = (await call(client, action="stats"))["stats"]
        assert [(ns["namespace"], ns["entries"], ns["bytes"], ns["expiring_within_hour"])
                for ns in stats["namespaces"]] == [("a", 1, 4, 1), ("b", 1, 5, 0)]
        assert (stats["total_entries"], stats["total_bytes"], stats["expired_total"]) == (2, 9, 0)
        assert stats["database_bytes"] > 0


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({"action": "explode", "key": "k"},
         "invalid_argument: action must be one of 'store', 'store_batch', 'retrieve', 'list', 'delete', 'search', "
         "'stats'; got 'explode'"),
        ({"action": "store", "value": "v"}, "store needs a key"),
        ({"action": "store", "key": "k"}, "store needs a value"),
        ({"action": "retrieve"}, "retrieve needs a key"),
        ({"action": "store", "key": "k", "value": "v", "ttl": -5}, "ttl must be an integer >= 0; got -5"),
        ({"action": "store", "key": "k", "value": "v", "ttl": "soon"}, "ttl must be an integer >= 0; got 'soon'"),
        ({"action": "store", "key": "", "value": "v"}, "invalid_argument: store needs a key"),
        ({"action": "store", "key": "k" * 300, "value": "v"}, "key must be 1..256 characters long; got 300"),
        ({"action": "store", "namespace": "a\nb", "key": "k", "value": "v"}, "non-printable"),
        ({"action": "store", "key": "k", "value": "x" * 70000}, "too_large: value is 70002 bytes"),
        ({"action": "store", "key": "k", "value": "v", "tags": "not-a-list"},
         "tags must be a list of strings; got 'not-a-list'"),
        ({"action": "list", "limit": 5000}, "limit must be an integer from 1 to 1000; got 5000"),
        ({"action": "list", "cursor": "garbage"}, "not one this server issued"),
        ({"action": "search"}, "pattern"),
        ({"action": "delete", "key": "k", "if_version": 7}, "at version 1, not if_version 7"),
    ],
)
async def test_bad_input_is_a_tool_error_that_changes_nothing(
    connect: Connect, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        await call(client, action="store", key="k", value="original")
        before = await everything(client)
        assert expected in await call_error(client, **arguments)
        assert await everything(client) == before


async def test_tool_list_is_small_and_declares_schemas(connect: Connect) -> None:
    async with connect() as client:
        tools = (await client.list_tools()).tools
        [tool] = [t for t in tools if t.name == "memory_usage"]
        assert tool.output_schema is not None and tool.input_schema["required"] == ["action"]
        assert tool.annotations is not None and tool.annotations.destructive_hint is True
        model_visible, output_schemas = listing_sizes(tools)
        assert model_visible < MODEL_VISIBLE_BUDGET and output_schemas < OUTPUT_SCHEMAS_BUDGET


async def test_checked_in_schemas_match_the_models() -> None:
    generated = await tool_schemas()
    on_disk = {path.name: path.read_text(encoding="utf-8") for path in SCHEMAS_DIR.glob("*.json")}
    assert set(on_disk) == set(generated), "run `switchboard schemas` and commit schemas/"
    for name, schema in generated.items():
        assert on_disk[name] == render(schema), f"schemas/{name} is stale: run `switchboard schemas`"


async def test_hundreds_of_concurrent_compare_and_set_calls_lose_no_update(connect: Connect) -> None:
    import anyio

    counters, tasks_per_counter = 20, 10  # 200 read-modify-write loops in flight at once
    async with connect() as client:
        for c in range(counters):
            await call(client, action="store", namespace="counters", key=f"c{c}", value=0)

        async def increment(key: str) -> None:
            while True:
                entry = (await call(client, action="retrieve", namespace="counters", key=key))["entry"]
                result = await client.call_tool("memory_usage", {
                    "action": "store", "namespace": "counters", "key": key,
                    "value": entry["value"] + 1, "if_version": entry["version"]})
                if not result.is_error:
                    return
                assert "conflict:" in text_of(result)

        async with anyio.create_task_group() as tasks:
            for i in range(counters * tasks_per_counter):
                tasks.start_soon(increment, f"c{i % counters}")
        found = await call(client, action="search", namespace="counters", pattern="c*", limit=1000)
        assert {e["key"]: e["value"] for e in found["entries"]} == {f"c{c}": tasks_per_counter for c in range(counters)}


async def test_text_content_is_the_structured_result_as_compact_json(connect: Connect) -> None:
    async with connect() as client:
        result = await client.call_tool("memory_usage", {"action": "store", "key": "k", "value": {"a": [1, 2]}})
        text = text_of(result)
        assert json.loads(text) == result.structured_content
        assert "\n" not in text and ", " not in text


async def test_text_arguments_that_look_like_json_stay_text(connect: Connect) -> None:
    async with connect() as client:
        await call(client, action="store", namespace="[1]", key="null", value="[1, 2] and more")
        got = await call(client, action="retrieve", namespace="[1]", key="null")
        assert got["entry"]["key"] == "null" and got["entry"]["value"] == "[1, 2] and more"
        found = await call(client, action="search", query="[1, 2]")
        assert [e["key"] for e in found["entries"]] == ["null"]


async def test_store_batch_honours_per_entry_if_version_and_call_level_defaults(connect: Connect) -> None:
    async with connect() as client:
        await call(client, action="store", key="counter", value=1)
        await call(client, action="store", key="counter", value=2)
        text = await call_error(client, action="store_batch",
                                entries=[{"key": "counter", "value": 99, "if_version": 1}, {"key": "new", "value": 0}])
        assert "conflict: " in text and "at version 2" in text
        assert (await call(client, action="retrieve", key="counter"))["entry"]["value"] == 2
        assert (await call(client, action="retrieve", key="new"))["found"] is False
        misspelt = await call_error(client, action="store_batch", entries=[{"key": "x", "value": 1, "ifversion": 1}])
        assert misspelt == "invalid_argument: unknown field 'ifversion' in entries[0]; did you mean if_version?"
        stored = await call(client, action="store_batch", ttl=60, tags=["run-1"], entries=[
            {"key": "a", "value": 1}, {"key": "b", "value": 2, "ttl": 0, "tags": []}])
        assert (stored["stored"], stored["versions"]) == (2, [1, 1]) and "entries" not in stored
        a = (await call(client, action="retrieve", key="a"))["entry"]
        b = (await call(client, action="retrieve", key="b"))["entry"]
        assert a["expires_at"] is not None and a["tags"] == ["run-1"]
        assert b["expires_at"] is None and b["tags"] == []
        assert "goes on each entry" in await call_error(
            client, action="store_batch", if_version=1, entries=[{"key": "a", "value": 1}])


async def test_a_search_over_many_large_values_stays_within_the_answer_budget(connect: Connect) -> None:
    # 40 values of 60 KB: in full, the answer (text and structured) would be ~4.8 MB, all of it
    # landing in the caller's context; the answer budget carries what fits and previews the rest.
    entries = [{"key": f"doc-{i:02d}", "value": f"document {i} " + "z" * 60_000} for i in range(40)]
    async with connect() as client:
        await call(client, action="store_batch", namespace="docs", index=False, entries=entries)
        hits = (await call(client, action="search", namespace="docs", pattern="doc-*", limit=100))["entries"]
    assert [hit["key"] for hit in hits] == [entry["key"] for entry in entries]
    whole = [hit for hit in hits if "value" in hit]
    assert whole and sum(hit["size"] for hit in whole) <= 256 * 1024 < sum(hit["size"] for hit in hits)
    assert all(hit["preview"].startswith("document ") and len(hit["preview"]) == 200
               for hit in hits if "value" not in hit)
