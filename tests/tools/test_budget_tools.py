"""Budgets and resume through a real MCP session, on exec agents whose output reports a cost while
they run (tests/fixtures/exec_agent.py ``spend``): the arguments, what the listings and /metrics show,
and the refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from server.app import build_server
from server.services import open_services
from server.status import render_text, status_of
from tests.agents.groups import eventually_async
from tests.agents.swarm import agent_settings
from tests.tools.answers import error_text, structured_of
from tests.tools.test_metrics import sample


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool(tool, arguments))


async def test_budgets_are_set_shown_changed_and_counted_through_the_tools(tmp_path: Path) -> None:
    go = tmp_path / "go"
    settings = agent_settings(tmp_path, budget_usd_per_day=10.0)
    async with open_services(settings) as services, Client(build_server(settings, services=services)) as client:
        spawned = await call(client, "agents_spawn_parallel", agents=[
            {"type": "worker", "name": "a", "agentBudgetUsd": 0.05, "onBudget": "pause"}], budgetUsd=1.0)
        agent_id = spawned["agents"][0]["agent_id"]
        started = await call(client, "query_start", agent_id=agent_id, task=f"spend 0.015 {go}", budgetUsd=0.01)
        query_id = started["query"]["query_id"]
        assert started["query"]["budget"] == {"budget_usd": 0.01, "remaining_usd": 0.01}

        async def paused() -> bool:  # the log entry is written once the pause is carried out
            (listed,) = (await call(client, "query_list", query_ids=[query_id], include_output=True))["queries"]
            return listed["status"] == "paused" and bool(listed["log"])
        await eventually_async(paused, "the query budget pauses it, in its log", timeout_s=30)
        (query,) = (await call(client, "query_list", query_ids=[query_id], include_output=True))["queries"]
        assert query["budget"] == {"budget_usd": 0.01, "remaining_usd": 0.0}
        assert query["budget_reached"] == "query budget reached: $0.0150 of budget_usd $0.0100"
        assert [(entry["action"], entry["by"]) for entry in query["log"]] == [("pause", "rule:budget")]
        (agent,) = (await call(client, "agent_list"))["agents"]
        assert agent["budget"] == {"budget_usd": 0.05, "remaining_usd": 0.035}
        assert agent["call_budget"] == {"budget_usd": 1.0, "remaining_usd": 0.985} and agent["call_id"]
        status = await status_of(services)
        assert [(row.level, row.budget_usd) for row in status.budgets] == [("day", 10.0), ("call", 1.0)]
        assert "budget   today: $0.0150 of $10.00 spent, $9.9850 left" in render_text(status)
        assert "query budget reached" in render_text(status)
        text = services.metrics.render(await services.state_figures()).decode()
        assert sample(text, "switchboard_budget_spent_usd", level="day", call_id="") == 0.015
        assert sample(text, "switchboard_budget_remaining_usd", level="call", call_id=agent["call_id"]) == 0.985
        assert sample(text, "switchboard_budget_reached_queries") == 1

        resumed = await client.call_tool("query_control", {"action": "resume", "query_id": query_id})
        assert error_text(resumed).startswith("conflict: ") and "change_budget (budget_scope 'query')" in \
            error_text(resumed)
        empty = await client.call_tool("query_control", {"action": "change_budget", "query_id": query_id})
        assert error_text(empty) == "invalid_argument: change_budget needs budget_usd or budget_tokens (the new limit)"
        tokens = await client.call_tool("query_control", {"action": "change_budget", "query_id": query_id,
                                                          "budget_tokens": 5, "budget_scope": "call"})
        assert error_text(tokens) == "invalid_argument: a spawn call's budget is in USD only: give budget_usd"
        changed = await call(client, "query_control", action="change_budget", query_id=query_id, budgetUsd=0.02)
        assert changed["detail"] == {"budget_scope": "query", "budget_usd": 0.02,
                                     "was": {"budget_usd": 0.01, "budget_tokens": None}}
        go.touch()
        await call(client, "query_control", action="resume", query_id=query_id)
        waited = await call(client, "query_wait", query_ids=[query_id], timeout_s=60)
        (ended,) = (await call(client, "query_list", query_ids=[query_id], include_history=True,
                               include_output=True))["queries"]
        assert waited["queries"][0]["status"] == "completed", str(ended)[:3000]
        assert "budget_reached" not in waited["queries"][0]


async def test_resume_and_budget_arguments_are_checked_before_anything_is_spawned(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path)
    async with open_services(settings) as services, Client(build_server(settings, services=services)) as client:
        nameless = await client.call_tool("agents_spawn_parallel", {"agents": [{"task": "ok x"}]})
        assert "type and name are required (unless resume names an ended agent)" in error_text(nameless)
        unknown = await client.call_tool("agents_spawn_parallel", {"agents": [{"resume": "agent-nope"}]})
        assert error_text(unknown).startswith("not_found: resume: no agent 'agent-nope'")
        negative = await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "w", "budget_usd": -1}]})
        assert error_text(negative).startswith("invalid_argument: agents[0].budget_usd")
        wrong = await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "w", "on_budget": "explode"}]})
        assert error_text(wrong).startswith("invalid_argument: agents[0].on_budget")
        assert await services.supervisor.records.counts_by_status() == {}
