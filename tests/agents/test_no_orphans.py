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
    server.kill()
    assert server.process.returncode == -signal.SIGKILL
    wait_until(lambda: running_in_group(pgid) == [], "the agent's group is gone")
    after = listed_status(tmp_path, agent["agent_id"])
    assert after["status"] == "lost" and "pid" not in after
    assert "the server running it exited" in after["error"]


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
