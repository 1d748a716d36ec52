"""memory_search and memory_usage's semantic parts through a real MCP client session."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from mcp import Client

from tests.manual_clock import ManualClock
from tests.tools.answers import error_text, structured_of

Connect = Callable[[], Client]


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool(tool, arguments))


async def call_error(client: Client, tool: str, **arguments: Any) -> str:
    return error_text(await client.call_tool(tool, arguments))


async def store_notes(client: Client) -> None:
    await call(client, "memory_usage", action="store", namespace="agent-7", key="auth-fix",
               value="fixed the login bug in the auth service", tags=["auth"])
    await call(client, "memory_usage", action="store", namespace="agent-9", key="trip",
               value={"text": "sailing trip to the islands"})
    await call(client, "memory_usage", action="store", namespace="agent-9", key="deploy",
               value='{"summary": "deployed billing to production"}')


async def everything(client: Client) -> list[tuple[str, str]]:
    found = await call(client, "memory_usage", action="search", pattern="*", limit=1000)
    return [(e["namespace"], e["key"]) for e in found["entries"]]


async def test_claude_flow_shape_without_namespace_searches_every_namespace(connect: Connect) -> None:
    async with connect() as client:
        await store_notes(client)
        found = await call(client, "memory_search", pattern="login bug in auth", limit=2, min_score=-1)
        assert found["mode"] == "semantic" and found["embedder"] == "hashing-v1/384"
        first, second = found["results"]
        assert (first["namespace"], first["key"]) == ("agent-7", "auth-fix")
        assert first["value"] == "fixed the login bug in the auth service" and first["tags"] == ["auth"]
        assert 1 >= first["score"] > second["score"]


async def test_query_k_namespace_tags_and_min_score(connect: Connect) -> None:
    async with connect() as client:
        await store_notes(client)
        found = await call(client, "memory_search", query="sailing islands", namespace="agent-9", k=5)
        assert found["results"][0]["key"] == "trip"
        assert all(hit["namespace"] == "agent-9" for hit in found["results"])
        tagged = await call(client, "memory_search", query="sailing islands", tags=["auth"], min_score=-1)
        assert [hit["key"] for hit in tagged["results"]] == ["auth-fix"]
        unrelated = await call(client, "memory_search", query="sailing islands", tags=["auth"])
        assert unrelated["results"] == []  # the default floor leaves out what shares nothing with the query
        strict = await call(client, "memory_search", query="sailing islands", min_score=0.3)
        assert [hit["key"] for hit in strict["results"]] == ["trip"]


async def test_text_mode_matches_substrings(connect: Connect) -> None:
    async with connect() as client:
        await store_notes(client)
        found = await call(client, "memory_search", query="BILLING", mode="text")
        assert [(hit["key"], hit["score"]) for hit in found["results"]] == [("deploy", 1.0)]
        assert "embedder" not in found


async def test_a_large_value_comes_back_as_a_preview(connect: Connect) -> None:
    async with connect() as client:
        text = "design notes for the vector index " + "detail " * 1000
        await call(client, "memory_usage", action="store", key="big", value=text)
        [hit] = (await call(client, "memory_search", query="vector index design notes", k=1))["results"]
        assert "value" not in hit and hit["preview"] == text[:2000]


async def test_an_expired_or_deleted_entry_never_comes_back(connect: Connect, clock: ManualClock) -> None:
    async with connect() as client:
        await call(client, "memory_usage", action="store", key="short", value="temporary login bug note", ttl=10)
        await call(client, "memory_usage", action="store", key="gone", value="another login bug note")
        assert len((await call(client, "memory_search", query="login bug note"))["results"]) == 2
        clock.advance(10)
        await call(client, "memory_usage", action="delete", key="gone")
        assert (await call(client, "memory_search", query="login bug note"))["results"] == []


async def test_store_batch_then_semantic_search_through_memory_usage(connect: Connect) -> None:
    async with connect() as client:
        entries: list[dict[str, Any]] = [
            {"key": f"note-{i}", "value": f"observation {i} about cache eviction"} for i in range(50)
        ]
        entries.append({"key": "odd", "value": {"text": "rotating the TLS certificates"}, "namespace": "ops",
                        "tags": ["security"], "ttl": 60})
        stored = await call(client, "memory_usage", action="store_batch", namespace="research", entries=entries)
        assert stored["stored"] == 51 and stored["versions"] == [1] * 51
        found = await call(client, "memory_usage", action="search", mode="semantic", query="TLS certificate rotation",
                           limit=3)
        assert [entry["key"] for entry in found["entries"]] == ["odd"]  # cache notes score below the floor
        assert found["entries"][0]["value"] == {"text": "rotating the TLS certificates"}


async def test_store_batch_names_every_bad_entry_and_writes_nothing(connect: Connect) -> None:
    async with connect() as client:
        await call(client, "memory_usage", action="store", key="k", value="original")
        before = await everything(client)
        entries = [{"key": "fine", "value": 1}, {"key": "", "value": 2}, {"key": "x" * 300, "value": 3}]
        text = await call_error(client, "memory_usage", action="store_batch", entries=entries)
        assert "invalid_argument: 2 of 3 entries are invalid: entry 1: key must be 1..256" in text
        assert "entry 2: key must be 1..256 characters long; got 300" in text and "nothing was written" in text
        missing = await call_error(client, "memory_usage", action="store_batch", entries=[{"key": "a"}, {"value": 1}])
        assert "entries[0].value is required" in missing and "entries[1].key is required: a string" in missing
        assert "store_batch needs entries" in await call_error(client, "memory_usage", action="store_batch")
        assert await everything(client) == before


@pytest.mark.parametrize(
    ("arguments", "expected"),
    [
        ({}, "query (or pattern) must be a non-empty text"),
        ({"query": "   "}, "non-empty"),
        ({"query": "x", "k": 0}, "invalid_argument: k must be an integer from 1 to 100; got 0"),
        ({"query": "x", "k": 101}, "k must be an integer from 1 to 100; got 101"),
        ({"query": "x", "limit": 500}, "limit must be an integer from 1 to 100; got 500"),
        ({"query": "x", "min_score": 2}, "min_score must be a number from -1 to 1; got 2"),
        ({"query": "a", "pattern": "b"}, "query and pattern are the same argument"),
        ({"query": "x", "k": 3, "limit": 4}, "k and limit are the same argument"),
        ({"query": "x", "mode": "fuzzy"}, "mode must be one of 'semantic', 'text'; got 'fuzzy'"),
        ({"query": "x", "namespace": "a\nb"}, "non-printable"),
        ({"query": "x", "tags": [""]}, "tag '' is not accepted"),
    ],
)
async def test_bad_input_is_a_clear_tool_error_that_changes_nothing(
    connect: Connect, arguments: dict[str, Any], expected: str
) -> None:
    async with connect() as client:
        await store_notes(client)
        before = await everything(client)
        assert expected in await call_error(client, "memory_search", **arguments)
        assert await everything(client) == before


async def test_memory_search_is_declared_read_only(connect: Connect) -> None:
    async with connect() as client:
        [tool] = [t for t in (await client.list_tools()).tools if t.name == "memory_search"]
        assert tool.annotations is not None and tool.annotations.read_only_hint is True
        assert tool.output_schema is not None and "required" not in tool.input_schema
