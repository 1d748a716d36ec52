"""The agent memory endpoint: real open services, a real MCP client over streamable HTTP with each
agent's token, in the modern (auto) and legacy (initialize) handshakes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from server.config import Settings
from server.errors import Unavailable
from server.http.agent_memory import AgentMemoryEndpoint
from server.http.guard import calling_agent
from server.services import Services, open_services
from tests.tools.answers import structured_of

MODES = ["auto", "legacy"]
ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
STORE_CALL = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {
    "name": "memory_usage", "arguments": {"action": "store", "namespace": "intruder", "key": "k", "value": 1}}}
INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}


@contextlib.asynccontextmanager
async def running(settings: Settings, *, max_body_bytes: int = 1024 * 1024) -> AsyncIterator[
    tuple[Services, AgentMemoryEndpoint]
]:
    """Open services and an endpoint over them, in the test's own task (anyio cancel scopes)."""
    async with (open_services(settings) as services,
                AgentMemoryEndpoint(services, max_body_bytes=max_body_bytes) as endpoint):
        yield services, endpoint


@contextlib.asynccontextmanager
async def agent_client(entry: dict[str, Any], mode: str = "auto") -> AsyncIterator[Client]:
    """An MCP client configured exactly as Claude Code is from the entry: the URL and its headers."""
    assert entry["type"] == "http"
    async with (httpx2.AsyncClient(headers=entry["headers"]) as http,
                Client(streamable_http_client(entry["url"], http_client=http), mode=mode) as client):
        yield client


def token_of(entry: dict[str, Any]) -> str:
    scheme, _, token = entry["headers"]["Authorization"].partition(" ")
    assert scheme == "Bearer" and token
    return token


@pytest.mark.parametrize("mode", MODES)
async def test_a_grant_gives_an_mcp_server_with_only_the_two_memory_tools(settings: Settings, mode: str) -> None:
    async with running(settings) as (_, endpoint):
        assert endpoint.url is None  # nothing listens before the first grant
        entry = await endpoint.grant("agent-1")
        port = int(entry["url"].rsplit(":", 1)[1].removesuffix("/mcp"))
        assert entry["url"] == endpoint.url == f"http://127.0.0.1:{port}/mcp"
        assert len(token_of(entry)) >= 43  # token_urlsafe(32)
        async with agent_client(entry, mode) as client:
            tools = (await client.list_tools()).tools
        assert sorted(tool.name for tool in tools) == ["memory_search", "memory_usage"]
        assert await endpoint.grant("agent-1") == entry  # an agent keeps its token
        assert token_of(await endpoint.grant("agent-2")) != token_of(entry)


@pytest.mark.parametrize("mode", MODES)
async def test_agents_share_the_servers_own_memory(settings: Settings, mode: str) -> None:
    async with running(settings) as (services, endpoint):
        await services.memory.put("findings", "direct", "the cache layer drops writes under load")
        async with agent_client(await endpoint.grant("agent-1"), mode) as client:
            stored = await client.call_tool("memory_usage", {
                "action": "store", "namespace": "findings", "key": "from-agent", "value": '{"ok": true}'})
            assert structured_of(stored)["entry"]["version"] == 1
            got = structured_of(await client.call_tool(
                "memory_usage", {"action": "retrieve", "namespace": "findings", "key": "direct"}))
            found = structured_of(await client.call_tool(
                "memory_search", {"query": "cache drops writes", "namespace": "findings", "k": 1}))
        entry = await services.memory.get("findings", "from-agent")
        assert entry is not None and entry.value == '{"ok": true}'  # the JSON text as the agent sent it
        assert got["entry"]["value"] == "the cache layer drops writes under load"
        assert [(hit["key"], hit["value"]) for hit in found["results"]] == [
            ("direct", "the cache layer drops writes under load")]


async def test_no_token_a_wrong_token_and_a_revoked_token_get_401_and_store_nothing(settings: Settings) -> None:
    async with running(settings) as (services, endpoint):
        entry = await endpoint.grant("agent-1")
        url, token = entry["url"], token_of(entry)
        async with agent_client(entry) as client:
            assert structured_of(await client.call_tool("memory_usage", {"action": "stats"}))
            endpoint.revoke("agent-1")
            with pytest.raises(MCPError):  # the agent's very next call fails
                await client.call_tool("memory_usage", {
                    "action": "store", "namespace": "intruder", "key": "after-revoke", "value": 1})
        async with httpx2.AsyncClient() as http:
            missing = await http.post(url, json=STORE_CALL, headers=ACCEPT)
            wrong = await http.post(url, json=STORE_CALL, headers={**ACCEPT, "Authorization": "Bearer " + "x" * 43})
            revoked = await http.post(url, json=STORE_CALL, headers={**ACCEPT, "Authorization": f"Bearer {token}"})
        assert [r.status_code for r in (missing, wrong, revoked)] == [401, 401, 401]
        assert missing.headers["www-authenticate"] == 'Bearer realm="switchboard"'
        assert missing.json()["error"]["message"].startswith("Unauthorized: ")
        for refused in (wrong, revoked):
            assert refused.headers["www-authenticate"] == 'Bearer realm="switchboard", error="invalid_token"'
            assert "unknown or has been revoked" in refused.json()["error"]["message"]
        assert (await services.memory.stats()).total_entries == 0
        assert endpoint.calls_by_agent() == {"agent-1": 1}  # only the call admitted before the revoke
        # A new grant after the revoke is a new token.
        assert token_of(await endpoint.grant("agent-1")) != token


async def test_a_foreign_host_or_a_body_over_the_cap_is_refused_even_with_a_valid_token(settings: Settings) -> None:
    async with running(settings, max_body_bytes=4096) as (services, endpoint):
        entry = await endpoint.grant("agent-1")
        port = entry["url"].rsplit(":", 1)[1].removesuffix("/mcp")
        authorised = {**ACCEPT, **entry["headers"]}
        async with httpx2.AsyncClient() as http:
            rebound = await http.post(entry["url"], json=INITIALIZE, headers={
                **authorised, "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
            big = {**STORE_CALL, "params": {"name": "memory_usage", "arguments": {
                "action": "store", "key": "big", "value": "x" * 5000}}}
            too_large = await http.post(entry["url"], json=big, headers=authorised)
            own = await http.post(entry["url"], json=INITIALIZE, headers=authorised)
        assert (rebound.status_code, too_large.status_code, own.status_code) == (421, 413, 200)
        assert (await services.memory.stats()).total_entries == 0


@pytest.mark.parametrize("mode", MODES)
async def test_the_engine_call_a_tool_makes_knows_the_agent(
    settings: Settings, mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with running(settings) as (services, endpoint):
        writers: list[str | None] = []
        put = services.memory.put

        async def recording_put(*args: Any, **kwargs: Any) -> Any:
            writers.append(calling_agent.get())
            return await put(*args, **kwargs)

        monkeypatch.setattr(services.memory, "put", recording_put)
        for agent in ("agent-1", "agent-2"):
            async with agent_client(await endpoint.grant(agent), mode) as client:
                await client.call_tool("memory_usage", {"action": "store", "key": agent, "value": 1})
        await services.memory.put("ns", "direct", 1)
        assert writers == ["agent-1", "agent-2", None]  # and nothing outside the endpoint's requests


@pytest.mark.parametrize("mode", MODES)
async def test_calls_are_counted_and_logged_per_agent_never_with_the_token(
    settings: Settings, mode: str, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    caplog.set_level(logging.INFO, logger="server.http.agent_memory")
    async with running(settings) as (_, endpoint):
        first, second = await endpoint.grant("agent-1"), await endpoint.grant("agent-2")
        async with agent_client(first, mode) as one, agent_client(second, mode) as two:
            await one.call_tool("memory_usage", {"action": "store", "key": "a", "value": 1})
            await two.call_tool("memory_usage", {"action": "retrieve", "key": "a"})
            await one.call_tool("memory_search", {"query": "anything"})
            await two.call_tool("memory_usage", {"action": "stats"})
            await two.call_tool("memory_usage", {"action": "no\nsuch"})  # refused by the tool, still a call
        assert endpoint.calls_by_agent() == {"agent-1": 2, "agent-2": 3}
    lines = [r.getMessage() for r in caplog.records if r.name == "server.http.agent_memory"]
    assert [line for line in lines if line.startswith("agent ")] == [
        "agent agent-1: memory_usage store",
        "agent agent-2: memory_usage retrieve",
        "agent agent-1: memory_search",
        "agent agent-2: memory_usage stats",
        "agent agent-2: memory_usage 'no\\nsuch'",
    ]
    for token in (token_of(first), token_of(second)):
        assert token not in caplog.text
    assert capfd.readouterr().out == ""  # stdout belongs to the stdio transport


async def test_concurrent_first_grants_start_one_server_and_aclose_stops_it_once_and_for_all(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="server.http.agent_memory")
    async with open_services(settings) as services:
        tasks_before = set(asyncio.all_tasks())
        endpoint = AgentMemoryEndpoint(services, max_body_bytes=1024 * 1024)
        entries = await asyncio.gather(*(endpoint.grant(f"agent-{i}") for i in range(8)))
        assert {entry["url"] for entry in entries} == {endpoint.url}
        assert len({token_of(entry) for entry in entries}) == 8
        assert sum("listening at" in r.getMessage() for r in caplog.records) == 1
        port = int(str(endpoint.url).rsplit(":", 1)[1].removesuffix("/mcp"))
        socket.create_connection(("127.0.0.1", port), timeout=5).close()

        await endpoint.aclose()
        assert [task for task in asyncio.all_tasks() - tasks_before if not task.done()] == []
        assert endpoint.url is None
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=5)
        await endpoint.aclose()  # idempotent
        with pytest.raises(Unavailable, match="closed"):
            await endpoint.grant("agent-late")
        # The services are the owner's: still open after the endpoint closed.
        await services.memory.put("ns", "after", 1)
        assert (await services.memory.get("ns", "after")) is not None
    assert sum("stopped" in r.getMessage() for r in caplog.records) == 1
