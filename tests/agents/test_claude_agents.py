"""claude agents: the real Claude Code CLI (bundled with claude-agent-sdk), driven by the supervisor,
answering to a scripted Messages API on a loopback port. Nothing reaches the network."""

from __future__ import annotations

import stat
import threading
from collections.abc import Awaitable
from pathlib import Path

from server.agents.transcript import TranscriptPage, transcript_path
from server.config import Settings
from server.services import open_services
from tests.agents.conftest import MODEL
from tests.agents.groups import eventually, eventually_async, file_size, running_in_group
from tests.agents.swarm import agent_settings, claude_type, held_after_tool_results, request, spec
from tests.fixtures.messages_api import ScriptedMessagesApi


def claude_settings(tmp_path: Path, api: ScriptedMessagesApi, **type_fields: object) -> Settings:
    return agent_settings(tmp_path, {"helper": claude_type(api, tmp_path / "home", **type_fields)})


async def test_ten_claude_agents_spawn_in_parallel_and_answer(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with open_services(claude_settings(tmp_path, messages_api)) as services:
        report = await services.spawner.spawn_many(request(
            *(spec(f"c{i}", f"reply: answer number {i}", type="helper") for i in range(10)),
            max_concurrency=10, batch_size=10, wait=True,
        ))
        assert [entry.status for entry in report.entries] == ["completed"] * 10
        assert [entry.result for entry in report.entries] == [f"answer number {i}" for i in range(10)]
        assert all(entry.spawn_ms and entry.spawn_ms > 0 for entry in report.entries)
        pids = set()
        for entry in report.entries:
            agent = services.supervisor.live(entry.agent_id)
            assert agent is not None and agent.record.status == "ready" and agent.record.pid is not None
            pids.add(agent.record.pid)
            query = await services.queries.records.query(entry.query_id or "")
            assert query is not None and query.status == "completed" and query.turns == 1
            assert query.session_id and query.input_tokens and query.output_tokens
        assert len(pids) == 10
        assert {request.model for request in messages_api.turns()} == {MODEL}
    for pid in pids:
        assert running_in_group(pid) == []


async def test_a_dependency_result_is_in_the_dependent_prompt(tmp_path: Path,
                                                              messages_api: ScriptedMessagesApi) -> None:
    async with open_services(claude_settings(tmp_path, messages_api)) as services:
        report = await services.spawner.spawn_many(request(
            spec("writer", "reply: the secret word is marmalade", type="helper"),
            spec("reader", "reply: read it", type="helper", depends_on=["writer"]),
            wait=True,
        ))
        writer, reader = report.entries
        assert (writer.status, reader.status) == ("completed", "completed")
        (reader_turn,) = messages_api.requests_for("reply: read it")
        (writer_turn,) = messages_api.requests_for("reply: the secret word")
        assert "the secret word is marmalade" in reader_turn.user_text
        assert writer_turn.arrived < reader_turn.arrived


async def test_a_bash_tool_runs_in_the_agent_workdir(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with open_services(claude_settings(tmp_path, messages_api)) as services:
        report = await services.spawner.spawn_many(request(
            spec("maker", "bash: echo made-by-agent > made.txt", type="helper"), wait=True))
        (entry,) = report.entries
        assert entry.status == "completed" and (entry.result or "").startswith("done")
        made = services.settings.data_dir / "agents" / entry.agent_id / "made.txt"
        assert made.read_text() == "made-by-agent\n"


async def test_a_tool_outside_the_type_is_denied_with_a_message_the_model_sees(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with open_services(claude_settings(tmp_path, messages_api, allowed_tools=("Read",))) as services:
        report = await services.spawner.spawn_many(request(
            spec("limited", "bash: echo nope > denied.txt", type="helper"), wait=True, timeout_s=60))
        (entry,) = report.entries
        assert entry.status == "completed", entry.error
        assert not (services.settings.data_dir / "agents" / entry.agent_id / "denied.txt").exists()
        (denied,) = [request for request in messages_api.turns() if request.tool_results]
        assert denied.tool_results[0].is_error
        assert "Switchboard denied Bash: agent type 'helper' allows only these tools: Read" in denied.tool_results[0].text


async def test_without_credentials_a_task_fails_with_the_cli_message(tmp_path: Path,
                                                                     messages_api: ScriptedMessagesApi) -> None:
    env = messages_api.cli_env(tmp_path / "home")
    env["ANTHROPIC_API_KEY"] = ""
    async with open_services(claude_settings(tmp_path, messages_api, env=env)) as services:
        report = await services.spawner.spawn_many(request(spec("anon", "reply: hello", type="helper"), wait=True,
                                                           timeout_s=60))
        (entry,) = report.entries
        assert entry.status == "failed"
        assert "Not logged in" in (entry.error or ""), entry.error
        assert messages_api.turns() == []


async def test_terminate_mid_tool_ends_the_cli_and_its_bash_loop(tmp_path: Path,
                                                                 messages_api: ScriptedMessagesApi) -> None:
    counter = tmp_path / "counter.txt"
    loop = f"bash: for i in $(seq 1 2000); do echo $i >> {counter}; sleep 0.05; done"
    async with open_services(claude_settings(tmp_path, messages_api)) as services:
        report = await services.spawner.spawn_many(request(spec("looper", loop, type="helper")))
        (entry,) = report.entries
        agent = services.supervisor.live(entry.agent_id)
        assert agent is not None and agent.record.pid is not None
        pgid = agent.record.pid
        await eventually(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
        record = await services.supervisor.terminate(entry.agent_id, grace_s=2.0)
        assert record.status == "terminated"
        assert running_in_group(pgid) == []
        size = file_size(counter)
        query = await services.queries.records.query(entry.query_id or "")
        assert query is not None and query.status == "terminated"
    assert file_size(counter) == size


async def test_a_warm_pool_hands_over_sessions_started_before_the_call(tmp_path: Path,
                                                                       messages_api: ScriptedMessagesApi) -> None:
    async with open_services(claude_settings(tmp_path, messages_api, pool_size=2)) as services:
        services.supervisor.pool.start()
        await services.supervisor.pool.wait_full("helper")
        assert services.supervisor.pool.idle_count("helper") == 2
        pooled = {worker.agent_id: worker.session.pid for worker in services.supervisor.pool._idle["helper"]}
        report = await services.spawner.spawn_many(request(
            spec("w1", "reply: warm one", type="helper"), spec("w2", "reply: warm two", type="helper",
                                                               model="claude-haiku-4-5"),
            wait=True))
        assert [entry.status for entry in report.entries] == ["completed", "completed"]
        # The agents are the pooled sessions: same ids, same processes, started before the call.
        assert {entry.agent_id for entry in report.entries} == set(pooled)
        for entry in report.entries:
            agent = services.supervisor.live(entry.agent_id)
            assert agent is not None and agent.record.pid == pooled[entry.agent_id]
        # The model asked for was set live on the taken session.
        (second,) = messages_api.requests_for("reply: warm two")
        assert second.model == "claude-haiku-4-5"
        await services.supervisor.pool.wait_full("helper")
        assert services.supervisor.pool.idle_count("helper") == 2


async def test_an_agent_whose_type_names_no_model_shows_the_model_it_will_use_before_its_first_task(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with open_services(claude_settings(tmp_path, messages_api, model=None)) as services:
        report = await services.spawner.spawn_many(request(spec("idle", type="helper")))
        (entry,) = report.entries
        agent = services.supervisor.live(entry.agent_id)
        assert agent is not None and entry.status == "ready"
        shown = agent.record.model
        stored = await services.supervisor.records.agent(entry.agent_id)
        assert shown is not None and stored is not None and stored.model == shown  # resolved from initialize
        query = await services.queries.start(entry.agent_id, "reply: which model")
        waited = await services.queries.wait([query.id], mode="all", timeout_s=60)
        assert waited.queries[0].record.status == "completed"
        (turn,) = messages_api.requests_for("reply: which model")
        assert turn.model == shown  # what it showed is what the CLI then asked the API for


async def test_the_transcript_of_a_two_turn_bash_task_grows_while_it_runs(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    release = threading.Event()
    messages_api.script = held_after_tool_results(release)
    try:
        async with open_services(claude_settings(tmp_path, messages_api)) as services:
            report = await services.spawner.spawn_many(request(
                spec("teller", "bash: echo first-output; echo second-output", type="helper")))
            (entry,) = report.entries
            query_id = entry.query_id or ""
            read = services.queries.transcript
            # Turn one is over (its tool call ran, its result is in) and turn two is held at the API.
            await eventually_async(
                lambda: _has(read(query_id), "tool_result"), "the tool result is in the transcript", timeout_s=60)
            _, during = await read(query_id)
            assert during is not None
            assert [line["type"] for line in during.entries] == ["turn", "tool_use", "usage", "tool_result"]
            turn, call, usage, result = during.entries
            assert (turn["turn"], turn["model"]) == (1, MODEL)
            assert (call["name"], call["input"]["command"]) == ("Bash", "echo first-output; echo second-output")
            assert usage["usage"]["input_tokens"] > 0
            assert result["tool_use_id"] == call["id"] and result["is_error"] is False
            assert result["content"] == "first-output\nsecond-output"
            assert during.next_turn == 1  # still running: turn one is read again, it may not be over

            release.set()
            waited = await services.queries.wait([query_id], mode="all", timeout_s=60)
            assert waited.queries[0].record.status == "completed"
            _, after = await read(query_id)
            assert after is not None and after.next_turn is None  # it has ended: nothing follows
            assert after.entries[:4] == during.entries  # it grew: what was there stays as it was
            assert [(line["type"], line["turn"]) for line in after.entries[4:]] == [
                ("turn", 2), ("text", 2), ("usage", 2), ("result", 2)]
            assert after.entries[5]["text"] == "done: first-output\nsecond-output"
            assert after.entries[-1]["turns"] == 2 and after.entries[-1]["is_error"] is False
            path = transcript_path(services.supervisor.workdir_for(entry.agent_id), query_id)
            assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    finally:
        release.set()


async def _has(reading: Awaitable[tuple[object, TranscriptPage | None]], kind: str) -> bool:
    _, page = await reading
    return page is not None and any(line["type"] == kind for line in page.entries)
