"""Agents that survive a crash: the real ``switchboard serve`` is SIGKILLed while a claude agent works;
after the restart the lost agent is resumed (by a spawn naming it, or at start) and its Claude Code
session goes on, so the scripted Messages API receives the earlier conversation again."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from server.agents.resume import RESTART_NOTE
from tests.agents.groups import file_size, wait_until
from tests.agents.swarm import EXEC_AGENT
from tests.e2e.stdio_peer import StdioPeer
from tests.fixtures.messages_api import RecordedRequest, ScriptedMessagesApi

SECRET = "the password is swordfish"


def start(tmp_path: Path, api: ScriptedMessagesApi, log: str, **env: str) -> StdioPeer:
    types = {"helper": {"runtime": "claude", "model": "claude-sonnet-4-5", "allowed_tools": ["Bash"],
                        "env": api.cli_env(tmp_path / "home")},
             "worker": {"runtime": "exec", "command": [sys.executable, str(EXEC_AGENT), "{task}"]}}
    server = StdioPeer(tmp_path / "data", tmp_path / log, SWITCHBOARD_AGENT_TYPES=json.dumps(types),
                       SWITCHBOARD_AGENT_ROOTS=str(tmp_path), SWITCHBOARD_AGENT_WATCHDOG_GRACE_S="0.5", **env)
    server.initialize()
    return server


def structured(server: StdioPeer, tool: str, arguments: dict[str, Any]) -> dict[str, Any]:
    answer = server.call_tool(tool, arguments)
    assert not answer.get("isError"), answer
    result: dict[str, Any] = answer["structuredContent"]
    return result


def agents(server: StdioPeer) -> dict[str, dict[str, Any]]:
    return {agent["agent_id"]: agent for agent in structured(server, "agent_list", {})["agents"]}


def conversation(request: RecordedRequest) -> str:
    return json.dumps(request.body.get("messages"))


def crash_mid_task(tmp_path: Path, api: ScriptedMessagesApi, counter: Path) -> tuple[str, str]:
    """A claude agent that was told a secret, SIGKILLed with its server in the middle of a Bash loop;
    answers its id and Claude Code session id."""
    server = start(tmp_path, api, "first.log")
    spawned = structured(server, "agents_spawn_parallel", {"agents": [
        {"type": "helper", "name": "keeper", "task": f"reply: {SECRET}"}], "wait": True})
    (agent,) = spawned["agents"]
    assert agent["status"] == "completed"
    loop = f"bash: for i in $(seq 1 40); do echo $i >> {counter}; sleep 0.05; done; echo looped"
    structured(server, "query_start", {"agent_id": agent["agent_id"], "task": loop})
    wait_until(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
    session_id = agents(server)[agent["agent_id"]]["session_id"]
    server.kill()
    return agent["agent_id"], session_id


def test_a_lost_claude_agent_resumed_with_a_new_task_continues_its_conversation(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    lost_id, session_id = crash_mid_task(tmp_path, messages_api, tmp_path / "counter.txt")
    server = start(tmp_path, messages_api, "second.log")
    try:
        assert agents(server)[lost_id]["status"] == "lost"
        resumed = structured(server, "agents_spawn_parallel", {"agents": [
            {"resume": lost_id, "task": "reply: what did I tell you?"}], "wait": True})
        (agent,) = resumed["agents"]
        assert agent["status"] == "completed" and agent["agent_id"] != lost_id
        (turn,) = messages_api.requests_for("reply: what did I tell you?")
        assert SECRET in conversation(turn), "the earlier conversation is in the resumed session's request"
        assert turn.session_id == session_id, "resume continues the same Claude Code session"
        listed = agents(server)[agent["agent_id"]]
        assert listed["resumed_from"] == lost_id and listed["name"] == "keeper"
        assert listed["workdir"] == agents(server)[lost_id]["workdir"]
        refused = server.call_tool("agents_spawn_parallel", {"agents": [{"resume": lost_id}]})
        assert refused["isError"] and "already resumed" in refused["content"][0]["text"]
        live = server.call_tool("agents_spawn_parallel", {"agents": [{"resume": agent["agent_id"]}]})
        assert live["isError"] and live["content"][0]["text"].startswith("conflict:")
    finally:
        server.close_stdin()
        server.wait()


def test_resume_on_start_brings_back_the_lost_agent_and_starts_its_task_again(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    counter = tmp_path / "counter.txt"
    lost_id, _ = crash_mid_task(tmp_path, messages_api, counter)
    server = start(tmp_path, messages_api, "second.log", SWITCHBOARD_AGENT_RESUME_ON_START="true")
    try:
        def resumed() -> dict[str, Any] | None:
            return next((agent for agent in agents(server).values() if agent.get("resumed_from") == lost_id), None)
        wait_until(lambda: resumed() is not None, "the lost agent is resumed", timeout_s=60)
        agent = resumed()
        assert agent is not None
        queries = structured(server, "query_list", {"agent_id": agent["agent_id"], "include_history": True})
        (query,) = queries["queries"]
        assert query["task"].startswith(RESTART_NOTE)
        waited = structured(server, "query_wait", {"query_ids": [query["query_id"]], "timeout_s": 60})
        assert waited["queries"][0]["status"] == "completed"
        again = [turn for turn in messages_api.turns() if RESTART_NOTE.strip()[:40] in conversation(turn)]
        assert again and SECRET in conversation(again[0])
        assert "bash: for i in $(seq 1 40)" in again[0].user_text, "the interrupted task is asked again"
    finally:
        server.close_stdin()
        server.wait()
