"""Live control of claude queries: the real Claude Code CLI against the scripted Messages API.

What each test checks is seen from outside the code under test: the counter file a scripted Bash
loop appends to, the requests the scripted API recorded (with their model), the process table.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from server.agents.pricing import cost_usd
from server.agents.process_groups import tagged_processes
from server.app import build_server
from server.config import Settings
from server.config.query_rule import QueryRule
from server.errors import Conflict, InvalidArgument
from server.queries.records import QueryRecord
from server.services import Services, open_services
from tests.agents.conftest import MODEL
from tests.agents.groups import eventually, eventually_async, file_size, is_running, running_in_group
from tests.agents.swarm import agent_settings, claude_type, request, spec
from tests.fixtures.messages_api import (
    Answer,
    ApiError,
    RecordedRequest,
    Reply,
    ScriptedMessagesApi,
    Usage,
    default_script,
)
from tests.tools.answers import structured_of

CHEAPER = "claude-haiku-4-5"
# Not synchronisation: a window of 10 of the loop's 50 ms write periods in which a paused loop's
# file would grow, and a paused CLI would have sent its next request, if anything still ran.
QUIET_WINDOW_S = 0.5


def settings_for(tmp_path: Path, api: ScriptedMessagesApi, **overrides: object) -> Settings:
    return agent_settings(tmp_path, {"helper": claude_type(api, tmp_path / "home")}, **overrides)


def loop(counter: Path, count: int) -> str:
    return f"for i in $(seq 1 {count}); do echo $i >> {counter}; sleep 0.05; done"


def stepped(marker: str, steps: Sequence[Answer]) -> ScriptedMessagesApi:
    """An API answering the n-th model turn of the task containing ``marker`` with ``steps[n]``."""
    turns = itertools.count()

    def script(request: RecordedRequest) -> Answer:
        if request.kind == "turn" and marker in request.user_text:
            return steps[min(next(turns), len(steps) - 1)]
        return default_script(request)

    return ScriptedMessagesApi(script)


async def ready_agent(services: Services) -> str:
    return await ready_agent_of(services, "helper")


async def ready_agent_of(services: Services, type_name: str) -> str:
    (entry,) = (await services.spawner.spawn_many(request(spec(type_name, type=type_name)))).entries
    assert entry.status == "ready", entry
    return entry.agent_id


async def looping(services: Services, counter: Path) -> tuple[str, int, QueryRecord]:
    """A ready agent running a long Bash loop that appends to ``counter``: its id, its CLI's pid
    (the leader of its group) and the query, once the loop writes."""
    agent_id = await ready_agent(services)
    agent = services.supervisor.live(agent_id)
    assert agent is not None and agent.record.pid is not None
    query = await services.queries.start(agent_id, f"bash: {loop(counter, 2000)}")
    await eventually(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
    return agent_id, agent.record.pid, query


async def status_of(services: Services, query_id: str) -> str:
    return (await services.queries.get(query_id)).status


async def test_pause_stops_the_loop_and_the_model_requests_and_resume_finishes(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    counter = tmp_path / "counter.txt"
    async with open_services(settings_for(tmp_path, messages_api)) as services:
        agent_id = await ready_agent(services)
        query = await services.queries.start(agent_id, f"bash: {loop(counter, 40)} # pausing")
        await eventually(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
        paused = await services.queries.control("pause", query.id)
        assert paused.effect == "now" and paused.detail["processes"] >= 3  # the CLI, bash, its sleep
        requests, size = len(messages_api.requests), file_size(counter)
        await asyncio.sleep(QUIET_WINDOW_S)
        assert file_size(counter) == size, "the paused loop went on writing"
        assert len(messages_api.requests) == requests, "a paused agent sent a model request"
        assert await status_of(services, query.id) == "paused"
        resumed_at = time.monotonic()
        await services.queries.control("resume", query.id)
        (done,) = (await services.queries.wait([query.id], mode="all", timeout_s=60)).queries
        assert done.record.status == "completed" and (done.record.result or "").startswith("done:")
        assert counter.read_text().split() == [str(i) for i in range(1, 41)]
        last_turn = messages_api.requests_for("# pausing")[-1]
        assert last_turn.arrived > resumed_at and last_turn.tool_results
        assert done.record.paused_total_ms >= QUIET_WINDOW_S * 1000
        assert done.active_ms is not None and done.wall_ms is not None
        assert done.active_ms <= done.wall_ms - done.record.paused_total_ms + 1


async def test_change_model_mid_query_reaches_the_next_request(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"

    def script(request: RecordedRequest) -> Answer:
        if request.model == "claude-refused-1":
            return ApiError(404, "model: claude-refused-1", type="not_found_error")
        return default_script(request)

    with ScriptedMessagesApi(script) as api:
        async with open_services(settings_for(tmp_path, api)) as services:
            agent_id = await ready_agent(services)
            query = await services.queries.start(agent_id, f"bash: {loop(counter, 20)} # switching")
            await eventually(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
            with pytest.raises(InvalidArgument, match=r"refused model 'claude-refused-1'.*not found"):
                await services.queries.control("change_model", query.id, model="claude-refused-1")
            assert (await services.queries.get(query.id)).model == MODEL
            changed = await services.queries.control("change_model", query.id, model=CHEAPER)
            assert changed.effect == "now" and changed.query.model == CHEAPER
            (done,) = (await services.queries.wait([query.id], mode="all", timeout_s=60)).queries
            assert done.record.status == "completed"
            turns = api.requests_for("# switching")
            assert [turn.model for turn in turns] == [MODEL, CHEAPER]
            agent = services.supervisor.live(agent_id)
            assert agent is not None and agent.record.model == CHEAPER


async def test_change_permissions_applies_to_the_next_permission_request(tmp_path: Path) -> None:
    counter, denied_file, allowed_file = tmp_path / "counter.txt", tmp_path / "first.txt", tmp_path / "second.txt"
    steps = [
        Reply.tool("Write", {"file_path": str(denied_file), "content": "one"}),
        Reply.tool("Bash", {"command": loop(counter, 30), "description": "wait a little"}),
        Reply.tool("Write", {"file_path": str(allowed_file), "content": "two"}),
        Reply.text("wrote what I was allowed to"),
    ]
    with stepped("[modes]", steps) as api:
        async with open_services(settings_for(tmp_path, api)) as services:
            agent_id = await ready_agent(services)
            query = await services.queries.start(agent_id, "write two files [modes]")
            await eventually(lambda: file_size(counter) > 0, "the Bash step runs", timeout_s=30)
            changed = await services.queries.control("change_permissions", query.id, permission_mode="acceptEdits")
            assert changed.effect == "now" and changed.query.permission_mode == "acceptEdits"
            (done,) = (await services.queries.wait([query.id], mode="all", timeout_s=60)).queries
            assert done.record.status == "completed"
            assert not denied_file.exists() and allowed_file.read_text() == "two"
            views, _, _ = await services.queries.page(include_history=True, query_ids=[query.id], include_output=True)
            log = views[0].log
            assert log is not None
            decisions = [(event.action, event.outcome, (event.detail or {}).get("tool")) for event in log]
            assert decisions[0] == ("permission", "denied", "Write")
            assert ("change_permissions", "now", None) in decisions
            assert decisions.index(("change_permissions", "now", None)) > 0


async def test_terminate_interrupts_and_the_agent_takes_its_next_query(tmp_path: Path,
                                                                       messages_api: ScriptedMessagesApi) -> None:
    counter = tmp_path / "counter.txt"
    async with open_services(settings_for(tmp_path, messages_api)) as services:
        agent_id, pid, query = await looping(services, counter)
        ended = await services.queries.control("terminate", query.id, grace_s=5.0)
        assert (ended.detail["by"], ended.detail["agent"]) == ("interrupt", "ready")
        assert await status_of(services, query.id) == "terminated"
        size = file_size(counter)
        await asyncio.sleep(QUIET_WINDOW_S)
        assert file_size(counter) == size, "the interrupted loop went on"
        with pytest.raises(Conflict, match="is terminated"):
            await services.queries.control("resume", query.id)
        again = await services.queries.start(agent_id, "reply: still here")
        (done,) = (await services.queries.wait([again.id], mode="all", timeout_s=30)).queries
        assert done.record.result == "still here"
        agent = services.supervisor.live(agent_id)
        assert agent is not None and agent.record.pid == pid and is_running(pid)


async def test_terminate_unacknowledged_ends_the_work_by_signals(tmp_path: Path,
                                                                messages_api: ScriptedMessagesApi) -> None:
    counter = tmp_path / "counter.txt"
    async with open_services(settings_for(tmp_path, messages_api)) as services:
        agent_id, pgid, query = await looping(services, counter)
        tools = [pid for pid in tagged_processes([agent_id]) if pid not in running_in_group(pgid)]
        assert tools, "the Bash loop runs outside the CLI's group"
        # A grace far shorter than any answer: the interrupt cannot be acknowledged in time.
        ended = await services.queries.control("terminate", query.id, grace_s=0.001)
        assert ended.detail == {"by": "signals", "agent": "terminated"}
        assert running_in_group(pgid) == [] and [pid for pid in tools if is_running(pid)] == []
        assert tagged_processes([agent_id]) == []
        assert await status_of(services, query.id) == "terminated"
        size = file_size(counter)
        await asyncio.sleep(QUIET_WINDOW_S)
        assert file_size(counter) == size


async def test_rules_switch_the_model_and_stop_a_costly_query_once_each(tmp_path: Path) -> None:
    counter, spent = tmp_path / "counter.txt", tmp_path / "spent.txt"
    rules = [QueryRule(name="cheaper", action="change_model", model=CHEAPER, min_turns=2),
             QueryRule(name="budget", action="terminate", max_tokens=200_000)]
    steps_cheap = [
        Reply.tool("Bash", {"command": loop(counter, 10), "description": "first"}),
        Reply.tool("Bash", {"command": loop(counter, 10), "description": "second"}),
        Reply.text("finished"),
    ]
    costly = Usage(input_tokens=500_000, output_tokens=10)  # a plain turn here is ~15,000
    turns = itertools.count()

    def script(request: RecordedRequest) -> Answer:
        if request.kind == "turn" and "[cheap]" in request.user_text:
            return steps_cheap[min(next(turns), 2)]
        if request.kind == "turn" and "[costly]" in request.user_text and not request.tool_results:
            return Reply.tool("Bash", {"command": loop(spent, 2000), "description": "spend"}, usage=costly)
        return default_script(request)

    with ScriptedMessagesApi(script) as api:
        settings = settings_for(tmp_path, api, query_rules=rules, query_rules_interval_s=0.05)
        async with open_services(settings) as services:
            cheap_agent, costly_agent = await ready_agent(services), await ready_agent(services)
            cheap = await services.queries.start(cheap_agent, "two steps [cheap]")
            costly_query = await services.queries.start(costly_agent, "spend [costly]")
            waited = await services.queries.wait([cheap.id, costly_query.id], mode="all", timeout_s=90)
            by_id = {view.record.id: view.record for view in waited.queries}
            assert by_id[cheap.id].status == "completed"
            assert [turn.model for turn in api.requests_for("[cheap]")] == [MODEL, MODEL, CHEAPER]
            assert by_id[costly_query.id].status == "terminated"
            assert by_id[costly_query.id].error == "terminated by rule:budget"
            views, _, _ = await services.queries.page(include_history=True, include_output=True)
            logs = {view.record.id: [(e.action, e.actor) for e in view.log or [] if e.action != "permission"]
                    for view in views}
            assert logs[cheap.id] == [("change_model", "rule:cheaper")]
            assert logs[costly_query.id] == [("terminate", "rule:budget")]


async def test_cost_and_latency_rules_fire_once_each(tmp_path: Path) -> None:
    counter = tmp_path / "counter.txt"
    slow_steps = [
        Reply.tool("Bash", {"command": loop(counter, 4), "description": "after a slow turn"}, delay=0.6),
        Reply.text("done after a slow start"),
    ]
    slow_turns = itertools.count()

    def script(request: RecordedRequest) -> Answer:
        if request.kind == "turn" and "[lag]" in request.user_text:
            return slow_steps[min(next(slow_turns), 1)]
        return default_script(request)

    with ScriptedMessagesApi(script) as api:
        home = tmp_path / "home"
        types = {"spender": claude_type(api, home, allowed_tools=("Bash",)),
                 "laggard": claude_type(api, home, allowed_tools=("Bash",))}
        rules = [QueryRule(name="pricey", action="pause", max_cost_usd=0.001, agent_type="spender"),
                 QueryRule(name="slow-model", action="change_model", model=CHEAPER, max_turn_latency_s=0.3,
                           agent_type="laggard")]
        settings = agent_settings(tmp_path, types, query_rules=rules, query_rules_interval_s=0.05)
        async with open_services(settings) as services:
            # Its first task: priced from the turn's streamed usage, with no earlier task to learn from.
            spender = (await services.spawner.spawn_many(request(spec("s", type="spender")))).entries[0]
            laggard = (await services.spawner.spawn_many(request(spec("l", type="laggard")))).entries[0]
            spending = await services.queries.start(spender.agent_id, f"bash: {loop(tmp_path / 'spent.txt', 2000)}")
            lagging = await services.queries.start(laggard.agent_id, "slow start [lag]")
            await eventually(lambda: services.queries.book.active(spending.id) is not None
                             and services.queries.book.active(spending.id).record.status == "paused",  # type: ignore[union-attr]
                             "the cost rule pauses the query", timeout_s=30)
            (lagged,) = (await services.queries.wait([lagging.id], mode="all", timeout_s=60)).queries
            assert lagged.record.status == "completed"
            assert [turn.model for turn in api.requests_for("[lag]")] == [MODEL, CHEAPER]
            await services.queries.control("terminate", spending.id, grace_s=5.0)
            views, _, _ = await services.queries.page(include_history=True, include_output=True,
                                                      query_ids=[spending.id, lagging.id])
            logs = {view.record.id: [(e.action, e.actor) for e in view.log or [] if e.action != "permission"]
                    for view in views}
            assert logs[spending.id] == [("pause", "rule:pricey"), ("terminate", "client")]
            assert logs[lagging.id] == [("change_model", "rule:slow-model")]


def looping_with_usage(marker: str, output: Path, usage: Usage) -> Callable[[RecordedRequest], Answer]:
    """A script whose task marked ``marker`` answers one model turn with ``usage`` and a Bash loop
    appending to ``output`` (so the query stays running); everything else as the default script."""

    def script(request: RecordedRequest) -> Answer:
        if request.kind == "turn" and marker in request.user_text and not request.tool_results:
            return Reply.tool("Bash", {"command": loop(output, 2000), "description": "loop"}, usage=usage)
        return default_script(request)

    return script


async def test_a_first_task_shows_the_model_in_use_and_a_cost_rule_fires_on_its_streamed_usage(
        tmp_path: Path) -> None:
    """A type that names no model runs the CLI's default: agent_list and query_list show that model
    while the query runs, and its cost is estimated from the turn's usage at that model's price, so a
    max_cost_usd rule acts within the agent's first task. The CLI's own cost replaces the estimate."""
    turn = Usage(input_tokens=2_000, output_tokens=20_000, cache_creation_input_tokens=100_000,
                 cache_read_input_tokens=40_000)

    with ScriptedMessagesApi(looping_with_usage("[first]", tmp_path / "spent.txt", turn)) as api:
        types = {"fresh": claude_type(api, tmp_path / "home", model=None)}
        rules = [QueryRule(name="budget", action="pause", max_cost_usd=0.25, agent_type="fresh")]
        settings = agent_settings(tmp_path, types, query_rules=rules, query_rules_interval_s=0.05)
        async with Client(build_server(settings)) as client:
            spawned = structured_of(await client.call_tool(
                "agents_spawn_parallel", {"agents": [{"type": "fresh", "name": "f"}]}))
            agent_id = spawned["agents"][0]["agent_id"]
            started = structured_of(await client.call_tool("query_start", {"agent_id": agent_id,
                                                                           "task": "spend [first]"}))
            query_id = started["query"]["query_id"]
            listed: dict[str, Any] = {}

            async def paused() -> bool:
                nonlocal listed
                (listed,) = structured_of(await client.call_tool("query_list", {}))["queries"]
                return bool(listed["status"] == "paused")

            await eventually_async(paused, "the cost rule pauses the first task", timeout_s=60)
            (asked,) = api.requests_for("[first]")
            model = asked.model
            assert model is not None and cost_usd(model, {}) is not None, f"{model} has a price"
            # The model the CLI used, on the query and on the agent, while the query is still active.
            assert listed["model"] == model
            (agent,) = structured_of(await client.call_tool("agent_list", {}))["agents"]
            assert (agent["model"], agent["current_query"]) == (model, query_id)
            # Estimated from the turn's usage as streamed (its output counted as the stream reports it),
            # at the model's price: over the limit, and short of the turn's final price.
            full = cost_usd(model, dataclasses.asdict(turn))
            streamed = cost_usd(model, {**dataclasses.asdict(turn), "output_tokens": 1})
            assert full is not None and streamed is not None
            assert streamed > 0.25 and streamed - 1e-6 <= listed["cost_usd"] <= full + 1e-6
            assert listed["input_tokens"] == 142_000
            await client.call_tool("query_control", {"action": "terminate", "query_id": query_id, "grace_s": 5})
            history = structured_of(await client.call_tool("query_list", {"include_history": True,
                                                                          "include_output": True}))
            (ended,) = history["queries"]
            assert ended["status"] == "terminated" and ended["model"] == model
            assert [(event["action"], event["by"]) for event in ended["log"] if event["action"] != "permission"] == [
                ("pause", "rule:budget"), ("terminate", "client")]
            # The CLI's figure for the task (the whole turn, output included) replaced the estimate.
            assert ended["cost_usd"] == pytest.approx(full, abs=1e-6)


async def test_a_model_without_a_price_shows_its_tokens_and_no_cost_while_it_runs(tmp_path: Path) -> None:
    unpriced = "claude-unpriced-1"
    turn = Usage(input_tokens=3_000, output_tokens=10, cache_read_input_tokens=7_000)

    with ScriptedMessagesApi(looping_with_usage("[unpriced]", tmp_path / "counter.txt", turn)) as api:
        types = {"unpriced": claude_type(api, tmp_path / "home", model=unpriced)}
        async with open_services(agent_settings(tmp_path, types)) as services:
            agent_id = await ready_agent_of(services, "unpriced")
            # The CLI prices its tasks all the same (at a default of its own): that figure is its answer
            # at a task's end, never a price per token for the next task's estimate.
            first = await services.queries.start(agent_id, "reply: a first task")
            (done,) = (await services.queries.wait([first.id], mode="all", timeout_s=60)).queries
            assert done.record.status == "completed" and (done.record.cost_usd or 0) > 0
            query = await services.queries.start(agent_id, "work [unpriced]")
            await eventually(lambda: file_size(tmp_path / "counter.txt") > 0, "the Bash loop writes", timeout_s=30)
            (view,) = await services.queries.views([query], include_output=False)
            assert [request.model for request in api.requests_for("[unpriced]")] == [unpriced]
            assert (view.record.model, view.record.turns, view.record.input_tokens) == (unpriced, 1, 10_000)
            assert view.record.cost_usd is None  # unknown, not free, and not guessed from the first task
            await services.queries.control("terminate", query.id, grace_s=5.0)
