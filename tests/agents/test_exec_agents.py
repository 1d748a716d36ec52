"""exec agents end to end on real processes: spawning, dependency order, failures, limits, ending."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from server.agents.records import AgentRecords
from server.errors import Forbidden, InvalidArgument, NotFound, TooLarge
from server.services import open_services
from tests.agents.groups import eventually, eventually_async, file_size, running_in_group
from tests.agents.swarm import agent_settings, exec_type, request, spec, worklog_spans


async def test_tasks_run_and_their_results_come_back(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path)
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(
            request(spec("a", "ok alpha"), spec("b", "ok beta"), spec("idle"), wait=True))
        by_name = {entry.name: entry for entry in report.entries}
        assert by_name["a"].status == "completed" and by_name["a"].result == "alpha\n"
        assert by_name["b"].status == "completed" and by_name["b"].result == "beta\n"
        assert by_name["idle"].status == "ready" and by_name["idle"].query_id is None
        query = await services.queries.records.query(by_name["a"].query_id or "")
        assert query is not None and query.status == "completed" and query.exit_code == 0
        log = Path(settings.data_dir / "agents" / by_name["a"].agent_id / "output.log").read_text()
        assert log == "alpha\n"
        # Activity records, written by the engine (in the background) with their TTLs.
        await services.supervisor.activity.flush()
        # Keyed by the ids as they are (`agent-<hex>-spawn`), never `agent-agent-<hex>-spawn`.
        agent_id, query_id = by_name["a"].agent_id, by_name["a"].query_id
        assert agent_id.startswith("agent-") and query_id is not None and query_id.startswith("query-")
        keys = {entry.key for namespace in ("agent-activities", "agent-results")
                for entry in (await services.memory.list_page(namespace)).entries}
        assert {f"{agent_id}-spawn", f"{agent_id}-complete", f"{agent_id}-{query_id}"} <= keys
        assert not [key for key in keys if key.startswith("agent-agent-")]
        spawn = await services.memory.get("agent-activities", f"{agent_id}-spawn")
        complete = await services.memory.get("agent-activities", f"{agent_id}-complete")
        result = await services.memory.get("agent-results", f"{agent_id}-{query_id}")
        assert spawn is not None and complete is not None and result is not None
        assert complete.value["status"] == "completed" and result.value["result"] == "alpha\n"
        day = 24 * 3600 * 1000
        assert spawn.expires_ms is not None and spawn.expires_ms - spawn.updated_ms == 7 * day
        assert result.expires_ms is not None and result.expires_ms - result.updated_ms == 7 * day


async def test_usage_and_cost_are_read_from_known_json_lines(tmp_path: Path) -> None:
    async with open_services(agent_settings(tmp_path)) as services:
        report = await services.spawner.spawn_many(
            request(spec("claude-like", "claude-json the answer"), spec("codex-like", "codex-json patched"), wait=True))
        claude_like, codex_like = report.entries
        assert claude_like.result == "the answer" and claude_like.cost_usd == 0.0125 and claude_like.turns == 2
        assert codex_like.result == "patched"
        query = await services.queries.records.query(codex_like.query_id or "")
        assert query is not None and query.input_tokens == 55 and query.output_tokens == 9
        agent = services.supervisor.live(claude_like.agent_id)
        assert agent is not None and agent.record.input_tokens == 120 and agent.record.cost_usd == 0.0125


async def test_dependencies_order_tasks_and_hand_results_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worklog = tmp_path / "worklog"
    monkeypatch.setenv("WORKLOG", str(worklog))
    async with open_services(agent_settings(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("last", "inputs", depends_on=["middle"]),
            spec("middle", "ok from middle", depends_on=["first"]),
            spec("first", "ok from first"),
            wait=True, max_concurrency=3, batch_size=3,
        ))
        last, middle, first = report.entries
        assert [entry.status for entry in report.entries] == ["completed"] * 3
        spans = worklog_spans(worklog)
        assert spans[first.agent_id][1] <= spans[middle.agent_id][0]
        assert spans[middle.agent_id][1] <= spans[last.agent_id][0]
        handed = json.loads(last.result or "")
        assert handed == {"middle": {"agent_id": middle.agent_id, "task": "ok from middle", "result": "from middle\n"}}


async def test_a_failure_skips_its_dependents_and_spares_the_rest(tmp_path: Path) -> None:
    async with open_services(agent_settings(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("broken", "fail 3"),
            spec("after-broken", "ok never", depends_on=["broken"]),
            spec("after-after", "ok never", depends_on=["after-broken"]),
            spec("independent", "ok fine"),
            wait=True,
        ))
        broken, after, after_after, independent = report.entries
        assert broken.status == "failed" and broken.error is not None and "exited with code 3" in broken.error
        assert "failing on purpose with 3" in broken.error
        assert after.status == "skipped" and "dependency 'broken' failed" in (after.error or "")
        assert after_after.status == "skipped" and "after-broken" in (after_after.error or "")
        assert independent.status == "completed"
        assert (report.count("failed"), report.count("skipped"), report.spawned) == (1, 2, 1)
        skipped_query = await services.queries.records.query(after.query_id or "")
        assert skipped_query is not None and skipped_query.status == "skipped"


async def test_bad_requests_spawn_nothing(tmp_path: Path) -> None:
    async with open_services(agent_settings(tmp_path, agent_max_per_call=3)) as services:
        spawner = services.spawner
        with pytest.raises(InvalidArgument, match="dependency cycle: a -> b -> c -> a"):
            await spawner.spawn_many(request(spec("a", "ok", depends_on=["b"]), spec("b", "ok", depends_on=["c"]),
                                             spec("c", "ok", depends_on=["a"])))
        with pytest.raises(InvalidArgument, match="'ghost' is neither an agent of this call nor an agent id"):
            await spawner.spawn_many(request(spec("a", "ok", depends_on=["ghost"])))
        with pytest.raises(InvalidArgument, match=r"unknown agent type 'wizard'; known types: .*coder.*worker"):
            await spawner.spawn_many(request(spec("a", "ok", type="wizard")))
        with pytest.raises(InvalidArgument, match="name 'a' appears twice"):
            await spawner.spawn_many(request(spec("a", "ok"), spec("a", "ok")))
        with pytest.raises(InvalidArgument, match="outside the agent roots"):
            await spawner.spawn_many(request(spec("a", "ok", cwd="/")))
        with pytest.raises(TooLarge, match="SWITCHBOARD_AGENT_MAX_PER_CALL"):
            await spawner.spawn_many(request(*(spec(f"a{i}", "ok") for i in range(4))))
        with pytest.raises(Forbidden, match="SWITCHBOARD_AGENT_ALLOW_ADHOC_COMMANDS"):
            await spawner.spawn_many(request(spec("a", "ok", command=("rm", "-rf", "/tmp/x"))))
        records, _ = await services.supervisor.records.agents_page()
        assert records == []
        assert not (settings_dir := services.settings.data_dir / "agents").exists() or not any(settings_dir.iterdir())


async def test_a_missing_executable_fails_at_once_saying_what_to_fix(tmp_path: Path) -> None:
    types = {"ghost": exec_type().model_copy(update={"command": ("/nonexistent/agent-cli", "{task}")})}
    async with open_services(agent_settings(tmp_path, types)) as services:
        report = await services.spawner.spawn_many(request(spec("g", "ok", type="ghost"), spec("w", "ok fine"),
                                                           wait=True))
        ghost, fine = report.entries
        assert ghost.status == "failed"
        assert ghost.error == ("spawn_failed: executable not found: '/nonexistent/agent-cli' (install it, put it on "
                               "PATH, or fix the agent type's command)")
        assert fine.status == "completed"
        record = await services.supervisor.records.agent(ghost.agent_id)
        assert record is not None and record.status == "failed"


async def test_max_running_queues_the_rest(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    worklog = tmp_path / "worklog"
    monkeypatch.setenv("WORKLOG", str(worklog))
    types = {"single": exec_type(max_running=1)}
    async with open_services(agent_settings(tmp_path, types)) as services:
        report = await services.spawner.spawn_many(
            request(*(spec(f"s{i}", f"ok {i}", type="single") for i in range(3)), wait=True, max_concurrency=3,
                    batch_size=3))
        assert [entry.status for entry in report.entries] == ["completed"] * 3
        spans = sorted(worklog_spans(worklog).values())
        assert len(spans) == 3
        for earlier, later in zip(spans, spans[1:]):
            assert earlier[1] <= later[0], "two agents of a max_running=1 type ran at once"


async def test_running_agents_are_sampled_into_agent_metrics(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    async with open_services(agent_settings(tmp_path, agent_metrics_interval_s=0.05)) as services:
        report = await services.spawner.spawn_many(request(spec("looper", f"loop {output}")))
        (entry,) = report.entries
        key = entry.agent_id  # `agent-<hex>`, as it is
        samples: list[dict[str, object]] = []

        async def sampled_twice() -> bool:
            await services.supervisor.activity.flush()
            metric = await services.memory.get("agent-metrics", key)
            if metric is not None and (not samples or samples[-1] != metric.value):
                samples.append(metric.value)
                assert metric.expires_ms is not None and metric.expires_ms - metric.updated_ms == 3600 * 1000
            return len(samples) >= 2

        await eventually_async(sampled_twice, "two metric samples of the running agent")
        latest = samples[-1]
        # The worker and its grandchild, both counted, with memory and a CPU rate from two samples.
        assert latest["processes"] == 2 and latest["status"] == "running"
        assert isinstance(latest["rss_bytes"], int) and latest["rss_bytes"] > 1_000_000
        assert isinstance(latest["cpu_percent"], float) and latest["cpu_percent"] >= 0
        await services.supervisor.terminate(entry.agent_id, grace_s=1.0)


async def test_terminate_ends_the_whole_group_and_is_idempotent(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    async with open_services(agent_settings(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(spec("looper", f"loop {output}")))
        (entry,) = report.entries
        assert entry.status == "running"
        agent = services.supervisor.live(entry.agent_id)
        assert agent is not None and agent.record.pid is not None
        pgid = agent.record.pid
        await eventually(lambda: len(running_in_group(pgid)) == 2, "the worker and its grandchild run")
        await eventually(lambda: file_size(output) > 0, "the loop writes")
        record = await services.supervisor.terminate(entry.agent_id, grace_s=1.0)
        assert record.status == "terminated"
        assert running_in_group(pgid) == []
        size = file_size(output)
        again = await services.supervisor.terminate(entry.agent_id, grace_s=1.0)
        assert again.status == "terminated"
        query = await services.queries.records.query(entry.query_id or "")
        assert query is not None and query.status == "terminated"
        assert file_size(output) == size
        with pytest.raises(NotFound):
            await services.supervisor.terminate("agent-unknown", grace_s=1.0)


async def test_shutdown_ends_every_agent(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    settings = agent_settings(tmp_path)
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(spec("looper", f"loop {output}")))
        agent = services.supervisor.live(report.entries[0].agent_id)
        assert agent is not None and agent.record.pid is not None
        pgid = agent.record.pid
        await eventually(lambda: len(running_in_group(pgid)) == 2, "the worker and its grandchild run")
    assert running_in_group(pgid) == []
    records = await AgentRecords.open(settings.agents_database_path)
    try:
        record = await records.agent(report.entries[0].agent_id)
        assert record is not None and record.status == "terminated" and record.error == "the server shut down"
    finally:
        await records.close()


async def test_agents_get_their_own_directory_and_no_server_secrets(tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SWITCHBOARD_HTTP_TOKEN", "server-secret")
    probe = tmp_path / "probe.py"
    probe.write_text("import json, os; print(json.dumps({'cwd': os.getcwd(), 'env': dict(os.environ)}))")
    import sys

    types = {"probe": exec_type().model_copy(update={"command": (sys.executable, str(probe)),
                                                       "env": {"EXTRA": "from-type"}})}
    async with open_services(agent_settings(tmp_path, types)) as services:
        report = await services.spawner.spawn_many(request(spec("p", "go", type="probe"), wait=True))
        seen = json.loads(report.entries[0].result or "")
        agent_id = report.entries[0].agent_id
        assert seen["cwd"] == os.fspath(services.settings.data_dir.absolute() / "agents" / agent_id)
        assert seen["env"]["SWITCHBOARD_AGENT_ID"] == agent_id
        assert seen["env"]["EXTRA"] == "from-type"
        assert "SWITCHBOARD_HTTP_TOKEN" not in seen["env"]
