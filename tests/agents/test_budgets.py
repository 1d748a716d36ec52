"""Budgets with the real Claude Code CLI against the scripted Messages API: a query's, a spawn call's
and the day's limits act on the live estimate within the turn that reaches them."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from server.agents.spend import Limit
from server.errors import BudgetExhausted, Conflict
from server.queries.records import QueryRecord
from server.services import Services, open_services
from tests.agents.groups import eventually_async
from tests.agents.swarm import agent_settings, claude_type, request, spec
from tests.fixtures.messages_api import Answer, RecordedRequest, Reply, ScriptedMessagesApi, Usage, default_script

# A model turn of 100,000 input tokens at claude-sonnet-4-5's list price ($3 / M): $0.30 (and a little output).
EXPENSIVE = Usage(input_tokens=100_000, output_tokens=10)
TURN_USD = 0.30015
# A Bash call the CLI is still running (its sleep) when the turn that asked for it is priced.
SLOW_BASH = "bash: sleep 2; echo slept"


def expensive(request: RecordedRequest) -> Answer:
    answer = default_script(request)
    return dataclasses.replace(answer, usage=EXPENSIVE) if isinstance(answer, Reply) and request.is_turn else answer


async def query_of(services: Services, query_id: str) -> QueryRecord:
    return await services.queries.get(query_id)


async def until_status(services: Services, query_id: str, *statuses: str) -> QueryRecord:
    async def there() -> bool:
        return (await query_of(services, query_id)).status in statuses
    await eventually_async(there, f"query {query_id} is {' or '.join(statuses)}", timeout_s=60)
    return await query_of(services, query_id)


async def logged(services: Services, query_id: str, action: str) -> bool:
    """Whether the query's log has ``action`` by rule:budget (written once the action is carried out)."""
    async def there() -> bool:
        events = (await services.queries.records.events_of([query_id])).get(query_id, [])
        return (action, "rule:budget") in [(event.action, event.actor) for event in events]
    await eventually_async(there, f"{action} by rule:budget is in query {query_id}'s log", timeout_s=30)
    return True


async def test_a_query_budget_below_one_turn_pauses_it_mid_task_and_a_raised_budget_lets_it_finish(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    settings = agent_settings(tmp_path, {"helper": claude_type(messages_api, tmp_path / "home")})
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(spec("c", type="helper")))
        agent_id = report.entries[0].agent_id
        query = await services.queries.start(agent_id, SLOW_BASH, budget=Limit(usd=0.0001))
        paused = await until_status(services, query.id, "paused", "completed", "failed")
        assert paused.status == "paused", "paused within its first turn, before the task could end"
        assert paused.budget_reached is not None and "query budget reached" in paused.budget_reached
        assert await logged(services, query.id, "pause")
        with pytest.raises(Conflict, match="change_budget"):
            await services.queries.control("resume", query.id)
        changed = await services.queries.control("change_budget", query.id, budget=Limit(usd=5.0))
        assert changed.detail["was"] == {"budget_usd": 0.0001, "budget_tokens": None}
        assert changed.query.budget_usd == 5.0 and changed.query.budget_reached is None
        await services.queries.control("resume", query.id)
        done = await until_status(services, query.id, "completed", "failed", "terminated")
        assert done.status == "completed" and "slept" in (done.result or "")
        assert done.cost_usd is not None and 0.0001 < done.cost_usd < 5.0
        stored = await services.queries.records.query(query.id)
        assert stored is not None and stored.budget_usd == 5.0


async def test_on_budget_terminate_ends_the_query_and_the_agent_stays_up(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    settings = agent_settings(tmp_path, {"helper": claude_type(messages_api, tmp_path / "home")})
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(
            spec("c", type="helper", agent_budget_usd=5.0, on_budget="terminate"), budget_usd=3.0))
        agent_id = report.entries[0].agent_id
        live = services.supervisor.live(agent_id)
        assert live is not None and live.record.pid is not None
        argv = Path(f"/proc/{live.record.pid}/cmdline").read_bytes().split(b"\0")
        assert b"--max-budget-usd=3.0" in argv, "the CLI's own stop: the smaller of the agent's and the call's"
        query = await services.queries.start(agent_id, SLOW_BASH, budget=Limit(tokens=10))
        ended = await until_status(services, query.id, "terminated", "completed", "failed")
        assert ended.status == "terminated" and ended.error == "terminated by rule:budget"
        assert ended.budget_reached is not None and "budget_tokens 10" in ended.budget_reached
        assert await logged(services, query.id, "terminate")
        live = services.supervisor.live(agent_id)
        assert live is not None and live.record.status == "ready"


async def test_a_call_budget_stops_the_second_agent_and_the_daily_budget_refuses_the_next_spawn(
        tmp_path: Path) -> None:
    with ScriptedMessagesApi(expensive) as api:
        settings = agent_settings(tmp_path, {"helper": claude_type(api, tmp_path / "home", on_budget="terminate")},
                                  budget_usd_per_day=0.55)
        async with open_services(settings) as services:
            report = await services.spawner.spawn_many(request(
                spec("first", "reply: one", type="helper"),
                spec("second", SLOW_BASH, type="helper", depends_on=["first"]),
                wait=True, budget_usd=0.5))
            first, second = report.entries
            assert first.status == "completed" and first.cost_usd == pytest.approx(TURN_USD, rel=0.01)
            assert second.status == "terminated"
            stopped = await query_of(services, second.query_id or "")
            assert stopped.budget_reached is not None and stopped.budget_reached.startswith("call budget reached")
            assert await logged(services, stopped.id, "terminate")
            day = services.supervisor.budgets.day()
            assert day.spent.usd > TURN_USD  # the first task, and what the second's first turn cost
            with pytest.raises(BudgetExhausted) as refused:
                await services.spawner.spawn_many(request(spec("third", "reply: three", type="helper")))
            assert refused.value.code == "budget_exhausted"
            assert "SWITCHBOARD_BUDGET_USD_PER_DAY" in refused.value.message and "left" in refused.value.message
            with pytest.raises(BudgetExhausted):
                await services.queries.start(first.agent_id, "reply: again")
        assert sum(1 for seen in api.requests_for("reply: three")) == 0, "nothing of the refused spawn ran"


async def test_exec_budgets_pause_on_the_live_estimate_and_spent_ones_refuse_new_work(tmp_path: Path) -> None:
    """exec agents whose output reports a cost while they run (tests/fixtures/exec_agent.py ``spend``)."""
    go = tmp_path / "go"
    async with open_services(agent_settings(tmp_path, budget_usd_per_day=0.05)) as services:
        report = await services.spawner.spawn_many(request(spec("a", agent_budget_usd=0.01), spec("b")))
        a, b = report.entries
        over = await services.queries.start(a.agent_id, f"spend 0.015 {go}")
        paused = await until_status(services, over.id, "paused")
        assert paused.budget_reached == "agent budget reached: $0.0150 of budget_usd $0.0100"
        assert await logged(services, over.id, "pause")
        go.touch()
        await services.queries.control("change_budget", over.id, budget=Limit(usd=0.02), budget_scope="agent")
        await services.queries.control("resume", over.id)
        assert (await until_status(services, over.id, "completed")).cost_usd == pytest.approx(0.015)
        go.unlink()
        spent = await services.queries.start(a.agent_id, f"spend 0.01 {go}")
        await until_status(services, spent.id, "paused")
        await services.queries.control("terminate", spent.id)
        with pytest.raises(BudgetExhausted, match=f"agent {a.agent_id}'s budget is spent"):
            await services.queries.start(a.agent_id, "ok more")
        day = services.supervisor.budgets.day()
        assert day.spent.usd == pytest.approx(0.025) and day.remaining_usd == pytest.approx(0.025)
        last = await services.queries.start(b.agent_id, f"spend 0.03 {go}")
        stopped = await until_status(services, last.id, "paused")
        assert stopped.budget_reached == "day budget reached: $0.0550 of budget_usd $0.0500"
        await services.queries.control("terminate", last.id)
        with pytest.raises(BudgetExhausted, match=r"\$0\.0550 of \$0\.05 today, \$0\.00 left until 00:00 UTC"):
            await services.queries.start(b.agent_id, "ok more")
        with pytest.raises(BudgetExhausted, match="SWITCHBOARD_BUDGET_USD_PER_DAY"):
            await services.spawner.spawn_many(request(spec("c", "ok c")))
    # A restart counts what today's tasks cost already.
    async with open_services(agent_settings(tmp_path, budget_usd_per_day=0.05)) as services:
        assert services.supervisor.budgets.day().spent.usd == pytest.approx(0.055)
        with pytest.raises(BudgetExhausted):
            await services.spawner.spawn_many(request(spec("d", "ok d")))
