"""Queries of exec agents on real processes: queueing, pause/resume/terminate of a worker with a
grandchild, checked transitions, execute_command, history across a restart, rules, waiting."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from server.config.query_rule import QueryRule
from server.errors import Conflict, Forbidden, InvalidArgument, NotFound
from server.queries.records import QueryRecord
from server.services import Services, open_services
from tests.agents.groups import eventually, file_size, running_in_group, stat_fields
from tests.agents.swarm import EXEC_AGENT, agent_settings, exec_type, request, spec

# Not synchronisation: a window of 10 of the loop's 20 ms write periods in which a paused file would
# grow if anything still wrote to it.
QUIET_WINDOW_S = 0.2


async def ready_agent(services: Services, name: str = "worker", type: str = "worker") -> str:
    (entry,) = (await services.spawner.spawn_many(request(spec(name, type=type)))).entries
    assert entry.status == "ready", entry
    return entry.agent_id


async def looping(services: Services, output: Path) -> tuple[str, QueryRecord, int]:
    """A ready agent whose query runs a worker and its grandchild appending to ``output``: the agent's
    id, the query and the worker's process group, once both write."""
    agent_id = await ready_agent(services)
    query = await services.queries.start(agent_id, f"loop {output}")
    agent = services.supervisor.live(agent_id)
    assert agent is not None
    await eventually(lambda: agent.process is not None, "the loop's process starts")
    assert agent.process is not None
    pgid = agent.process.pid
    await eventually(lambda: len(running_in_group(pgid)) == 2 and file_size(output) > 0, "worker and grandchild write")
    return agent_id, query, pgid


def states(pids: list[int]) -> set[str]:
    return {fields[0] for pid in pids if (fields := stat_fields(pid)) is not None}


async def test_a_second_query_waits_queued_for_the_first(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with open_services(agent_settings(tmp_path)) as services:
        agent_id = await ready_agent(services)
        first = await services.queries.start(agent_id, f"wait {gate}")
        second = await services.queries.start(agent_id, "ok second")
        await eventually(lambda: services.queries.book.active(first.id) is not None
                         and services.queries.book.active(first.id).record.status == "running",  # type: ignore[union-attr]
                         "the first query runs")
        assert (await services.queries.get(second.id)).status == "queued"
        views, _, counts = await services.queries.page()
        assert [view.record.id for view in views] == [first.id, second.id]
        assert counts == {"running": 1, "queued": 1}
        gate.write_text("open")
        waited = await services.queries.wait([first.id, second.id], mode="all", timeout_s=10)
        assert not waited.timed_out and waited.pending == []
        by_id = {view.record.id: view.record for view in waited.queries}
        assert by_id[first.id].status == "completed" and by_id[second.id].result == "second\n"
        assert by_id[first.id].ended_ms is not None and by_id[second.id].started_ms is not None
        assert by_id[first.id].ended_ms <= by_id[second.id].started_ms


async def test_pause_freezes_the_worker_and_its_grandchild_and_resume_continues(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    async with open_services(agent_settings(tmp_path)) as services:
        agent_id, query, pgid = await looping(services, output)
        pids = running_in_group(pgid)

        paused = await services.queries.control("pause", query.id)
        assert paused.effect == "now" and paused.query.status == "paused" and paused.detail["processes"] == 2
        assert states(pids) == {"T"}
        size = file_size(output)
        await asyncio.sleep(QUIET_WINDOW_S)
        assert file_size(output) == size, "a paused query's processes went on writing"
        with pytest.raises(Conflict, match="paused; only a running query can be paused"):
            await services.queries.control("pause", query.id)

        resumed = await services.queries.control("resume", query.id)
        assert resumed.query.status == "running" and states(pids) <= {"S", "R"}
        assert resumed.detail["processes"] == 2  # the same two processes, counted the same way
        await eventually(lambda: file_size(output) > size, "the loop writes again")
        record = await services.queries.get(query.id)
        assert record.paused_total_ms >= QUIET_WINDOW_S * 1000
        assert (record.active_ms(services.clock.now_ms()) or 0) < (record.wall_ms(services.clock.now_ms()) or 0)

        ended = await services.queries.control("terminate", query.id, grace_s=1.0)
        assert ended.query.status == "terminated" and ended.detail["agent"] == "ready"
        assert running_in_group(pgid) == []
        assert (await services.queries.get(query.id)).error == "terminated by client"
        # The agent stays up: its next query runs.
        after = await services.queries.start(agent_id, "ok again")
        waited = await services.queries.wait([after.id], mode="all", timeout_s=10)
        assert waited.queries[0].record.result == "again\n"
        views, _, _ = await services.queries.page(include_history=True, query_ids=[query.id], include_output=True)
        log = views[0].log
        assert log is not None and [(event.action, event.actor, event.outcome) for event in log] == [
            ("pause", "client", "now"), ("resume", "client", "now"), ("terminate", "client", "now")]


async def test_a_paused_query_can_be_terminated(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    async with open_services(agent_settings(tmp_path)) as services:
        _, query, pgid = await looping(services, output)
        await services.queries.control("pause", query.id)
        ended = await services.queries.control("terminate", query.id, grace_s=1.0)
        assert ended.query.status == "terminated"
        assert running_in_group(pgid) == []
        record = await services.queries.get(query.id)
        assert record.paused_at_ms is None and record.paused_total_ms > 0


async def test_ended_queries_refuse_every_action_and_stay_as_they_were(tmp_path: Path) -> None:
    async with open_services(agent_settings(tmp_path)) as services:
        agent_id = await ready_agent(services)
        query = await services.queries.start(agent_id, "ok done")
        await services.queries.wait([query.id], mode="all", timeout_s=10)
        before = await services.queries.get(query.id)
        for action in ("pause", "resume", "terminate", "change_model"):
            with pytest.raises(Conflict, match=f"is completed; {action} needs a query that has not ended"):
                await services.queries.control(action, query.id, model="m")
        assert await services.queries.get(query.id) == before
        with pytest.raises(NotFound):
            await services.queries.control("pause", "query-unknown")
        with pytest.raises(InvalidArgument, match="is not one of"):
            await services.queries.control("freeze", query.id)
        views, _, _ = await services.queries.page(include_history=True, include_output=True)
        assert views[0].log == []


async def test_model_and_permission_changes_of_exec_agents_apply_from_the_next_query(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    echo = exec_type(command=(sys.executable, str(EXEC_AGENT), "ok model={model} mode={permission_mode} {task}"))
    holder = exec_type(command=(sys.executable, str(EXEC_AGENT), f"wait {gate}"))
    async with open_services(agent_settings(tmp_path, {"echo": echo, "holder": holder})) as services:
        agent_id = await ready_agent(services, type="echo")
        first = await services.queries.start(agent_id, "one", model="model-a")
        (done,) = (await services.queries.wait([first.id], mode="all", timeout_s=10)).queries
        assert done.record.result == "model=model-a mode=default one\n"

        holder_id = await ready_agent(services, "held", type="holder")
        held = await services.queries.start(holder_id, "x")
        await eventually(lambda: services.supervisor.live(holder_id).process is not None,  # type: ignore[union-attr]
                         "the held query runs")
        changed = await services.queries.control("change_model", held.id, model="model-b")
        assert changed.effect == "next_query"
        moded = await services.queries.control("change_permissions", held.id, permission_mode="plan")
        assert moded.effect == "next_query"
        with pytest.raises(InvalidArgument, match="is not one of"):
            await services.queries.control("change_permissions", held.id, permission_mode="yolo")
        with pytest.raises(Forbidden, match="allow_bypass_permissions"):
            await services.queries.control("change_permissions", held.id, permission_mode="bypassPermissions")
        gate.write_text("go")
        await services.queries.wait([held.id], mode="all", timeout_s=10)
        record = services.supervisor.live(holder_id)
        assert record is not None and (record.record.model, record.record.permission_mode) == ("model-b", "plan")


async def test_execute_command_runs_allowlisted_argv_in_the_agent_context(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    settings = agent_settings(tmp_path, query_command_allowlist=["pwd", "sh"], query_command_timeout_s=0.5)
    async with open_services(settings) as services:
        agent_id = await ready_agent(services)
        query = await services.queries.start(agent_id, f"wait {gate}")
        await eventually(lambda: services.supervisor.live(agent_id).process is not None,  # type: ignore[union-attr]
                         "the query runs")
        ran = await services.queries.control("execute_command", query.id, command=["pwd"])
        assert ran.command is not None and ran.command.exit_code == 0
        assert ran.command.stdout.strip() == str(services.supervisor.workdir_for(agent_id))
        env = await services.queries.control(
            "execute_command", query.id, command=["sh", "-c", 'echo "$SWITCHBOARD_AGENT_ID"; echo oops >&2; exit 3'])
        assert env.command is not None and env.command.exit_code == 3
        assert env.command.stdout == f"{agent_id}\n" and env.command.stderr == "oops\n"
        late = await services.queries.control("execute_command", query.id,
                                              command=["sh", "-c", "echo started; sleep 30; echo never"])
        assert late.command is not None and late.command.timed_out and late.command.exit_code is None
        assert late.command.stdout == "started\n"
        with pytest.raises(Forbidden, match="'ls' is not on SWITCHBOARD_QUERY_COMMAND_ALLOWLIST"):
            await services.queries.control("execute_command", query.id, command=["ls"])
        with pytest.raises(InvalidArgument, match="needs `command`"):
            await services.queries.control("execute_command", query.id, command=[])
        gate.write_text("go")
        await services.queries.wait([query.id], mode="all", timeout_s=10)
        planned = await services.queries.start(agent_id, f"wait {gate}-never", permission_mode="plan")
        await eventually(lambda: services.supervisor.live(agent_id).process is not None,  # type: ignore[union-attr]
                         "the plan-mode query runs")
        with pytest.raises(Forbidden, match="plan mode"):
            await services.queries.control("execute_command", planned.id, command=["pwd"])
        await services.queries.control("terminate", planned.id, grace_s=1.0)
        views, _, _ = await services.queries.page(include_history=True, query_ids=[query.id], include_output=True)
        assert views[0].log is not None
        assert [(event.action, (event.detail or {}).get("exit_code")) for event in views[0].log] == [
            ("execute_command", 0), ("execute_command", 3), ("execute_command", None)]


async def test_execute_command_is_refused_without_an_allowlist(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with open_services(agent_settings(tmp_path)) as services:
        agent_id = await ready_agent(services)
        query = await services.queries.start(agent_id, f"wait {gate}")
        with pytest.raises(Forbidden, match="SWITCHBOARD_QUERY_COMMAND_ALLOWLIST"):
            await services.queries.control("execute_command", query.id, command=["pwd"])
        gate.write_text("go")


async def test_history_outlives_the_server_and_unfinished_queries_are_lost(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    settings = agent_settings(tmp_path)
    async with open_services(settings) as services:
        agent_id = await ready_agent(services)
        done = await services.queries.start(agent_id, "ok kept")
        await services.queries.wait([done.id], mode="all", timeout_s=10)
        unfinished = await services.queries.start(agent_id, f"wait {gate}")
        await eventually(lambda: services.supervisor.live(agent_id).process is not None,  # type: ignore[union-attr]
                         "the query runs")
    async with open_services(settings) as services:
        active, _, _ = await services.queries.page()
        assert active == []
        history, _, counts = await services.queries.page(include_history=True)
        by_id = {view.record.id: view.record for view in history}
        assert by_id[done.id].status == "completed" and by_id[done.id].result == "kept\n"
        assert by_id[unfinished.id].status in ("terminated", "lost")
        assert counts["completed"] == 1
        with pytest.raises(Conflict, match="queries run on live agents"):
            await services.queries.start(agent_id, "ok late")


async def test_each_rule_fires_once_and_is_logged(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    rules = [QueryRule(name="long-pause", action="pause", max_runtime_s=0.2, agent_type="worker"),
             QueryRule(name="runaway", action="terminate", max_runtime_s=0.2, agent_type="runner"),
             QueryRule(name="never", action="terminate", max_tokens=10_000)]
    settings = agent_settings(tmp_path, {"runner": exec_type()}, query_rules=rules, query_rules_interval_s=0.05)
    async with open_services(settings) as services:
        agent_id, runner_id = await ready_agent(services), await ready_agent(services, "runner", type="runner")
        runaway = await services.queries.start(runner_id, f"loop {tmp_path / 'runaway.txt'}")
        (stopped,) = (await services.queries.wait([runaway.id], mode="all", timeout_s=10)).queries
        assert stopped.record.status == "terminated" and stopped.record.error == "terminated by rule:runaway"
        query = await services.queries.start(agent_id, f"loop {output}")
        await eventually(lambda: services.queries.book.active(query.id) is not None
                         and services.queries.book.active(query.id).record.status == "paused",  # type: ignore[union-attr]
                         "the rule pauses the query")
        resumed = await services.queries.control("resume", query.id)
        assert resumed.query.status == "running"
        # Running on, past the rule's limit again: a rule fires once per query, so it stays running.
        began = time.monotonic()
        while time.monotonic() - began < 0.3:
            await asyncio.sleep(0.05)
            assert (await services.queries.get(query.id)).status == "running"
        await services.queries.control("terminate", query.id, grace_s=1.0)
        views, _, _ = await services.queries.page(include_history=True, include_output=True)
        logs = {view.record.id: [(event.action, event.actor) for event in view.log or []] for view in views}
        assert logs[runaway.id] == [("terminate", "rule:runaway")]
        log = next(view.log for view in views if view.record.id == query.id)
        assert log is not None
        assert [(event.action, event.actor) for event in log] == [
            ("pause", "rule:long-pause"), ("resume", "client"), ("terminate", "client")]
        assert log[0].detail is not None and "active" in log[0].detail["reasons"][0]
        # The same events in memory, for other agents and clients, with their 7-day TTL.
        await services.supervisor.activity.flush()
        page = await services.memory.list_page("query-events", prefix=f"query-{query.id}-")
        stored = [await services.memory.get("query-events", meta.key) for meta in page.entries]
        assert sorted((entry.value["action"], entry.value["actor"]) for entry in stored if entry is not None) == [
            ("pause", "rule:long-pause"), ("resume", "client"), ("terminate", "client")]
        assert {meta.expires_ms - meta.updated_ms for meta in page.entries if meta.expires_ms} == {7 * 24 * 3600 * 1000}


async def test_wait_any_all_and_timeout(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    async with open_services(agent_settings(tmp_path)) as services:
        quick_agent, slow_agent = await ready_agent(services, "quick"), await ready_agent(services, "slow")
        slow = await services.queries.start(slow_agent, f"wait {gate}")
        quick = await services.queries.start(quick_agent, "ok fast")
        any_of = await services.queries.wait([slow.id, quick.id], mode="any", timeout_s=10)
        assert not any_of.timed_out and any_of.pending == [slow.id]
        timed = await services.queries.wait([slow.id, quick.id], mode="all", timeout_s=0.2)
        assert timed.timed_out and timed.pending == [slow.id]
        messages: list[tuple[int, int, str]] = []

        async def progress(ended: int, of: int, message: str) -> None:
            messages.append((ended, of, message))

        gate.write_text("go")
        every = await services.queries.wait([slow.id, quick.id], mode="all", timeout_s=10, progress=progress)
        assert not every.timed_out and [view.record.status for view in every.queries] == ["completed", "completed"]
        assert messages and messages[-1] == (2, 2, "2 of 2 queries ended")
        with pytest.raises(NotFound):
            await services.queries.wait(["query-nope"], mode="all", timeout_s=1)


async def test_a_query_of_another_server_on_the_same_data_dir_is_controlled_there(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    settings = agent_settings(tmp_path)
    async with open_services(settings) as owner, open_services(settings) as other:
        agent_id = await ready_agent(owner)
        query = await owner.queries.start(agent_id, f"wait {gate}")
        with pytest.raises(Conflict, match=f"is (queued|running) under another Switchboard server \\(pid {os.getpid()}\\)"):
            await other.queries.control("pause", query.id)
        assert (await other.queries.get(query.id)).status in ("queued", "running")
        gate.write_text("go")
        await owner.queries.wait([query.id], mode="all", timeout_s=10)


async def test_a_query_that_ends_as_soon_as_it_is_resumed_stays_ended(tmp_path: Path) -> None:
    """Resume sends SIGCONT and then looks for the agent's tools; a task that finishes in between
    is recorded completed, and the resume must not write it back to running. The search for tools
    here waits for that end, so the two always meet in that order."""
    release = tmp_path / "release"
    async with open_services(agent_settings(tmp_path)) as services:
        agent_id = await ready_agent(services)
        query = await services.queries.start(agent_id, f"wait {release}")
        agent = services.supervisor.live(agent_id)
        assert agent is not None
        await eventually(lambda: "waiting" in agent.tail.text(), "the task waits")
        await services.queries.control("pause", query.id)
        release.write_text("released")
        active = services.queries.book.active(query.id)
        assert active is not None
        scan = services.supervisor.stray_scan
        find = scan.find
        calls = 0

        async def find_after_the_end(tags: Any) -> list[int]:
            nonlocal calls
            calls += 1
            if calls == 1:  # the resume's (the task's own end searches for its strays too, meanwhile)
                await active.ended.wait()
            return await find(tags)

        scan.find = find_after_the_end  # type: ignore[method-assign]
        try:
            await services.queries.control("resume", query.id)
        finally:
            scan.find = find  # type: ignore[method-assign]
        ended = await services.queries.get(query.id)
        stored = await services.queries.records.query(query.id)
        assert ended.status == "completed" and ended.result == "waiting\nreleased\n"
        assert stored is not None and stored.status == "completed" and stored.paused_at_ms is None
