"""The figures /metrics serves, read from a real server's registry after real tool calls."""

from __future__ import annotations

from pathlib import Path

from mcp import Client

from server.app import build_server
from server.services import open_services
from tests.agents.swarm import agent_settings


def sample(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in the exposition text (labels in prometheus-client's sorted order)."""
    rendered = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    prefix = f"{name}{{{rendered}}} " if labels else f"{name} "
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line[len(prefix):])
    return None


async def test_tool_calls_memory_agents_queries_and_cost_are_counted(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path)
    async with open_services(settings) as services, Client(build_server(settings, services=services)) as client:
        for key in ("a", "b"):
            await client.call_tool("memory_usage", {"action": "store", "namespace": "notes", "key": key, "value": "x"})
        refused = await client.call_tool("memory_usage", {"action": "delete", "namespace": "notes", "key": "a",
                                                          "if_version": 7})
        assert refused.is_error
        spawned = await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "priced", "task": "claude-json the answer"}], "wait": True})
        assert not spawned.is_error
        await services.supervisor.activity.flush()
        text = services.metrics.render(await services.state_figures()).decode()
    assert sample(text, "switchboard_tool_calls_total", tool="memory_usage", outcome="ok") == 2
    assert sample(text, "switchboard_tool_calls_total", tool="memory_usage", outcome="conflict") == 1
    assert sample(text, "switchboard_tool_call_seconds_count", tool="memory_usage") == 3
    assert sample(text, "switchboard_memory_entries", namespace="notes") == 2
    assert sample(text, "switchboard_agents", status="ready") == 1
    assert sample(text, "switchboard_queries", status="completed") == 1
    assert sample(text, "switchboard_cost_usd", model="unknown") == 0.0125
    assert sample(text, "switchboard_tokens", model="unknown", direction="input") == 120
    assert sample(text, "switchboard_agent_spawn_seconds_count", runtime="exec") == 1
