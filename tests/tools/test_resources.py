"""MCP resources through real sessions: reading status, an agent's log and a query; updates by
``resources/subscribe`` (legacy) and ``subscriptions/listen`` (2026-07-28) when a query changes."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types
from mcp.shared.exceptions import MCPError
from mcp.shared.subscriptions import ResourceUpdated

from server.app import build_server
from server.config import Settings
from tests.agents.swarm import agent_settings
from tests.tools.answers import structured_of


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return agent_settings(tmp_path)


def text_of(result: types.ReadResourceResult) -> str:
    (content,) = result.contents
    assert isinstance(content, types.TextResourceContents)
    return content.text


async def spawn_with_task(client: Client, task: str, *, wait: bool) -> dict[str, Any]:
    answer = structured_of(await client.call_tool("agents_spawn_parallel", {
        "agents": [{"type": "worker", "name": "w", "task": task}], "wait": wait}))
    return dict(answer["agents"][0])


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_status_agent_log_and_query_read_as_resources(settings: Settings, mode: str) -> None:
    async with Client(build_server(settings), mode=mode) as client:
        listed = {str(resource.uri) for resource in (await client.list_resources()).resources}
        assert listed == {"switchboard://status", "switchboard://approvals"}
        templates = {template.uri_template for template in (await client.list_resource_templates()).resource_templates}
        assert templates == {"switchboard://agents/{agent_id}/log", "switchboard://queries/{query_id}",
                             "switchboard://queries/{query_id}/transcript"}
        await client.call_tool("memory_usage", {"action": "store", "namespace": "notes", "key": "k", "value": "v"})
        agent = await spawn_with_task(client, "ok hello from the agent", wait=True)

        status = json.loads(text_of(await client.read_resource("switchboard://status")))
        assert status["queries_by_status"] == {"completed": 1} and status["agents_by_status"] == {"ready": 1}
        assert [row["namespace"] for row in status["namespaces"] if row["namespace"] == "notes"] == ["notes"]
        log = text_of(await client.read_resource(f"switchboard://agents/{agent['agent_id']}/log"))
        assert log == "hello from the agent\n"
        query = json.loads(text_of(await client.read_resource(f"switchboard://queries/{agent['query_id']}")))
        assert (query["status"], query["result"], query["log"]) == ("completed", "hello from the agent\n", [])
        with pytest.raises(MCPError, match="no query 'query-nope'"):
            await client.read_resource("switchboard://queries/query-nope")


async def test_resources_subscribe_announces_a_query_change(settings: Settings, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))

    async with Client(build_server(settings), mode="legacy", message_handler=on_message) as client:
        agent = await spawn_with_task(client, f"wait {gate}", wait=False)
        uri = f"switchboard://queries/{agent['query_id']}"
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # resources/subscribe is the 2025 protocol's way, deprecated since
            await client.subscribe_resource(uri)
        gate.write_text("go")
        with anyio.fail_after(10):
            while uri not in updated:
                await anyio.sleep(0.01)
        query = json.loads(text_of(await client.read_resource(uri)))
        assert query["status"] == "completed"


async def test_subscriptions_listen_announces_a_query_change(settings: Settings, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with Client(build_server(settings), mode="auto") as client:
        agent = await spawn_with_task(client, f"wait {gate}", wait=False)
        uri = f"switchboard://queries/{agent['query_id']}"
        async with client.listen(resource_subscriptions=[uri]) as subscription:
            gate.write_text("go")
            with anyio.fail_after(10):
                async for event in subscription:
                    if isinstance(event, ResourceUpdated) and event.uri == uri:
                        break
        query = json.loads(text_of(await client.read_resource(uri)))
        assert query["status"] == "completed"


async def test_an_agents_log_is_announced_when_it_grows(settings: Settings, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with Client(build_server(settings), mode="auto") as client:
        agent = await spawn_with_task(client, f"wait {gate}", wait=False)
        uri = f"switchboard://agents/{agent['agent_id']}/log"
        async with client.listen(resource_subscriptions=[uri, "switchboard://status"]) as subscription:
            gate.write_text("the gate opened")
            seen: set[str] = set()
            with anyio.fail_after(10):
                async for event in subscription:
                    if isinstance(event, ResourceUpdated):
                        seen.add(event.uri)
                    if seen >= {uri, "switchboard://status"}:
                        break
        with anyio.fail_after(10):
            while "opened" not in text_of(await client.read_resource(uri)):
                await anyio.sleep(0.05)
        assert text_of(await client.read_resource(uri)) == "waiting\nthe gate opened\n"
