"""Nothing outlives the server: the real ``switchboard serve`` is SIGKILLed with an agent mid-work.

With its watchdog alive, the agent's whole group (a grandchild included) is gone within seconds.
With the watchdog killed too, the next start finds the leftover by pid and start time, ends it,
and marks the agent ``lost``.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from tests.agents.groups import file_size, running_in_group, stat_fields, wait_until
from tests.agents.swarm import EXEC_AGENT
from tests.e2e.stdio_peer import StdioPeer
from tests.fixtures.messages_api import ScriptedMessagesApi


def start_server(tmp_path: Path) -> StdioPeer:
    types = {"worker": {"runtime": "exec", "command": [sys.executable, str(EXEC_AGENT), "{task}"]}}
    server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log", SWITCHBOARD_AGENT_TYPES=json.dumps(types),
                       SWITCHBOARD_AGENT_ROOTS=str(tmp_path), SWITCHBOARD_AGENT_WATCHDOG_GRACE_S="0.5")
    server.initialize()
    return server


def spawn_looper(server: StdioPeer, output: Path) -> dict[str, Any]:
    answer = server.call_tool("agents_spawn_parallel", {"agents": [{"type": "worker", "name": "looper",
                                                                    "task": f"loop {output}"}]})
    (agent,) = answer["structuredContent"]["agents"]
    assert agent["status"] == "running", agent
    return agent


def agent_pid(server: StdioPeer, agent_id: str) -> int:
    listed = server.call_tool("agent_list", {})["structuredContent"]["agents"]
    (agent,) = [agent for agent in listed if agent["agent_id"] == agent_id]
    return int(agent["pid"])


def watchdog_of(server_pid: int) -> int:
    for name in os.listdir("/proc"):
        if name.isdigit() and (fields := stat_fields(int(name))) and int(fields[1]) == server_pid \
                and b"server.agents.watchdog" in Path(f"/proc/{name}/cmdline").read_bytes():
            return int(name)
    raise AssertionError("the server runs no watchdog")


def listed_status(tmp_path: Path, agent_id: str) -> dict[str, Any]:
    restarted = start_server(tmp_path)
    try:
        listed = restarted.call_tool("agent_list", {})["structuredContent"]
        (agent,) = [agent for agent in listed["agents"] if agent["agent_id"] == agent_id]
        return agent
    finally:
        restarted.close_stdin()


def test_sigkill_of_the_server_takes_the_agent_group_down(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    server = start_server(tmp_path)
    agent = spawn_looper(server, output)
    pgid = agent_pid(server, agent["agent_id"])
    wait_until(lambda: len(running_in_group(pgid)) == 2 and file_size(output) > 0, "the worker and grandchild run")
    paused = server.call_tool("query_control", {"action": "pause", "query_id": agent["query_id"]})
    assert paused["structuredContent"]["status"] == "paused"
    server.kill()
    assert server.process.returncode == -signal.SIGKILL
    wait_until(lambda: running_in_group(pgid) == [], "the agent's group is gone")
    after = listed_status(tmp_path, agent["agent_id"])
    assert after["status"] == "lost" and "pid" not in after
    assert "the server running it exited" in after["error"]
    # Its query, paused when the server died, is lost too, and kept in the history.
    restarted = start_server(tmp_path)
    try:
        history = restarted.call_tool("query_list", {"include_history": True})["structuredContent"]
        assert [(query["query_id"], query["status"]) for query in history["queries"]] == [(agent["query_id"], "lost")]
    finally:
        restarted.close_stdin()


def test_the_next_start_reaps_what_a_dead_watchdog_left(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    server = start_server(tmp_path)
    agent = spawn_looper(server, output)
    pgid = agent_pid(server, agent["agent_id"])
    wait_until(lambda: len(running_in_group(pgid)) == 2 and file_size(output) > 0, "the worker and grandchild run")
    watchdog = watchdog_of(server.process.pid)
    os.kill(watchdog, signal.SIGKILL)
    server.kill()
    try:
        assert len(running_in_group(pgid)) == 2, "with no watchdog the group outlives the server"
        after = listed_status(tmp_path, agent["agent_id"])
        assert running_in_group(pgid) == []
        assert after["status"] == "lost"
        assert "ended agent" in (tmp_path / "stderr.log").read_text()
    finally:
        for pid in running_in_group(pgid):
            os.kill(pid, signal.SIGKILL)


def tagged(agent_id: str) -> list[int]:
    """Processes carrying the agent's id in their environment, read from /proc independently of the server."""
    marker = f"SWITCHBOARD_AGENT_ID={agent_id}".encode()
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                environ = Path(f"/proc/{name}/environ").read_bytes()
            except OSError:
                continue
            fields = stat_fields(int(name))
            if marker in environ.split(b"\0") and fields is not None and fields[0] not in ("Z", "X"):
                found.append(int(name))
    return found


def test_sigkill_mid_bash_ends_the_claude_cli_and_its_tool_in_another_session(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    counter = tmp_path / "counter.txt"
    types = {"helper": {"runtime": "claude", "model": "claude-sonnet-4-5", "allowed_tools": ["Bash"],
                        "env": messages_api.cli_env(tmp_path / "home")}}
    server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log", SWITCHBOARD_AGENT_TYPES=json.dumps(types),
                       SWITCHBOARD_AGENT_ROOTS=str(tmp_path), SWITCHBOARD_AGENT_WATCHDOG_GRACE_S="1")
    server.initialize()
    task = f"bash: for i in $(seq 1 3000); do echo $i >> {counter}; sleep 0.05; done"
    answer = server.call_tool("agents_spawn_parallel", {"agents": [{"type": "helper", "name": "looper", "task": task}]})
    (agent,) = answer["structuredContent"]["agents"]
    cli = agent_pid(server, agent["agent_id"])
    wait_until(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
    processes = tagged(agent["agent_id"])
    sessions = {int(fields[6 - 3]) for pid in processes if (fields := stat_fields(pid))}
    assert cli in processes and len(sessions) >= 2, "Claude Code runs its Bash tool in a session of its own"
    server.kill()
    try:
        wait_until(lambda: tagged(agent["agent_id"]) == [], "the CLI and its Bash tool are gone")
        size = file_size(counter)
        wait_until(lambda: not any(tagged(agent["agent_id"])), "nothing restarts")
        assert file_size(counter) == size
    finally:
        for pid in tagged(agent["agent_id"]):
            os.kill(pid, signal.SIGKILL)


def test_the_next_start_ends_tools_that_outlived_their_claude_cli(tmp_path: Path,
                                                                 messages_api: ScriptedMessagesApi) -> None:
    """The worst case: server, watchdog and CLI all SIGKILLed; the Bash tool, in a session of its own,
    keeps writing. The next start finds it by the agent id in its environment and ends it."""
    counter = tmp_path / "counter.txt"
    types = {"helper": {"runtime": "claude", "model": "claude-sonnet-4-5", "allowed_tools": ["Bash"],
                        "env": messages_api.cli_env(tmp_path / "home")}}
    env = {"SWITCHBOARD_AGENT_TYPES": json.dumps(types), "SWITCHBOARD_AGENT_ROOTS": str(tmp_path)}
    server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log", **env)
    server.initialize()
    task = f"bash: for i in $(seq 1 3000); do echo $i >> {counter}; sleep 0.05; done"
    answer = server.call_tool("agents_spawn_parallel", {"agents": [{"type": "helper", "name": "looper", "task": task}]})
    agent_id = answer["structuredContent"]["agents"][0]["agent_id"]
    cli = agent_pid(server, agent_id)
    wait_until(lambda: file_size(counter) > 0, "the Bash loop writes", timeout_s=30)
    os.kill(watchdog_of(server.process.pid), signal.SIGKILL)
    server.kill()
    os.kill(cli, signal.SIGKILL)
    try:
        wait_until(lambda: cli not in tagged(agent_id), "the CLI is gone")
        grown = file_size(counter)
        wait_until(lambda: file_size(counter) > grown, "the orphaned Bash loop still writes")
        restarted = StdioPeer(tmp_path / "data", tmp_path / "stderr2.log", **env)
        restarted.initialize()
        listed = restarted.call_tool("agent_list", {})["structuredContent"]["agents"]
        assert [agent["status"] for agent in listed] == ["lost"]
        assert tagged(agent_id) == []
        assert "stray tool process(es)" in (tmp_path / "stderr2.log").read_text()
        restarted.close_stdin()
    finally:
        for pid in tagged(agent_id):
            os.kill(pid, signal.SIGKILL)
