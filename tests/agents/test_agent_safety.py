"""Agent safety through the real tools: a stop that cannot be confirmed keeps the agent, a
server-wide cap queues what it cannot run, agents see an allowlisted environment, and no memory
token is ever on a command line. Real processes, real /proc, the real Claude Code CLI."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import resource
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from mcp import Client

from server.agents.capacity import FILES_PER_AGENT, FILES_RESERVED, RunningCap, default_max_running
from server.agents.launch import MCP_CONFIG_FILE, write_mcp_config
from server.agents.types import AgentType
from server.app import build_server
from tests.agents.groups import eventually
from tests.agents.swarm import agent_settings, claude_type
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.tools.answers import error_text, structured_of


def processes_tagged(agent_ids: set[str]) -> dict[str, list[int]]:
    """Running processes whose environment carries one of the agent ids (read here, not by the code under test)."""
    found: dict[str, list[int]] = {}
    wanted = {f"SWITCHBOARD_AGENT_ID={agent_id}".encode(): agent_id for agent_id in agent_ids}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            environ = Path(f"/proc/{name}/environ").read_bytes()
            state = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
        except OSError:
            continue
        if state in (b"Z", b"X"):
            continue
        for variable in environ.split(b"\0"):
            if variable in wanted:
                found.setdefault(wanted[variable], []).append(int(name))
    return found


@contextlib.contextmanager
def no_new_files() -> Iterator[None]:
    """Until the block ends, this process cannot open a file: the soft RLIMIT_NOFILE is set to the
    lowest free descriptor number (what a server at its open-file limit lives through)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    probe = os.open("/dev/null", os.O_RDONLY)  # the lowest free number
    os.close(probe)
    resource.setrlimit(resource.RLIMIT_NOFILE, (probe, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


async def test_a_stop_that_cannot_read_proc_keeps_the_agent_listed_and_is_retried(tmp_path: Path) -> None:
    settings = agent_settings(tmp_path)
    async with Client(build_server(settings)) as client:
        spawned = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": f"loop{i}", "task": f"loop {tmp_path / f'out{i}'}"} for i in range(3)]}))
        ids = {agent["agent_id"] for agent in spawned["agents"]}
        assert {agent["status"] for agent in spawned["agents"]} == {"running"}
        await eventually(lambda: set(processes_tagged(ids)) == ids, "every agent's process runs")

        with no_new_files():
            answer = await client.call_tool("agent_terminate", {"all": True, "grace_s": 0.2})
        # Answered per agent, not `internal`: each is still running, and says why.
        ended = structured_of(answer)["agents"]
        assert {agent["agent_id"] for agent in ended} == ids
        for agent in ended:
            assert agent["status"] == "running", agent
            assert agent["error"].startswith("unavailable: could not confirm that agent"), agent
            assert "Too many open files" in agent["error"], agent
        # Still alive, still listed running, still reachable by the tools.
        assert set(processes_tagged(ids)) == ids
        listed = structured_of(await client.call_tool("agent_list", {"status": "running"}))["agents"]
        assert {agent["agent_id"] for agent in listed} == ids

        # With files to open again, the background retry ends every one of them.
        await eventually(lambda: not processes_tagged(ids), "the retried stop ended every process", timeout_s=30)
        for agent_id in ids:
            again = structured_of(await client.call_tool("agent_terminate", {"agent_id": agent_id}))
            assert again["agents"][0]["status"] == "terminated", again
        listed = structured_of(await client.call_tool("agent_list", {}))["agents"]
        assert {agent["status"] for agent in listed} == {"terminated"}


async def test_beyond_the_running_cap_agents_wait_queued_and_the_counts_add_up(tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    settings = agent_settings(tmp_path, agent_max_running=2)
    async with Client(build_server(settings)) as client:
        answer = structured_of(await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": f"w{i}", "task": f"wait {gate}"} for i in range(4)]}))
        statuses = sorted(agent["status"] for agent in answer["agents"])
        assert statuses == ["queued", "queued", "running", "running"], answer
        totals = answer["totals"]
        assert (totals["requested"], totals["spawned"], totals["queued"]) == (4, 2, 2), totals
        parts = ("spawned", "queued", "spawning", "waiting", "failed", "skipped", "terminated")
        assert sum(totals[name] for name in parts) == totals["requested"]
        ids = {agent["agent_id"] for agent in answer["agents"]}
        assert len(processes_tagged(ids)) == 2  # the queued ones have no process

        refused = await client.call_tool("agents_spawn_parallel", {
            "agents": [{"type": "worker", "name": "eager", "task": "ok now"}], "queue": False})
        assert error_text(refused).startswith("at_capacity: 1 agent(s) of this call would run now, but 0 of the "
                                              "server's 2 running slots are free")
        listed = structured_of(await client.call_tool("agent_list", {}))
        assert len(listed["agents"]) == 4  # the refused call recorded nothing

        queued = [agent for agent in answer["agents"] if agent["status"] == "queued"]
        dropped = structured_of(await client.call_tool("agent_terminate", {"agent_id": queued[0]["agent_id"]}))
        assert dropped["agents"][0]["status"] == "terminated"

        gate.write_text("open")
        ended = structured_of(await client.call_tool("query_wait", {
            "query_ids": [agent["query_id"] for agent in answer["agents"]], "mode": "all", "timeout_s": 60}))
        by_status = sorted(query["status"] for query in ended["queries"])
        assert by_status == ["completed", "completed", "completed", "terminated"], ended
    worklog_agents = {agent["agent_id"] for agent in answer["agents"]} - {queued[0]["agent_id"]}
    assert not processes_tagged(worklog_agents)


def test_the_default_cap_follows_the_open_file_limit() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FILES_RESERVED + 10 * FILES_PER_AGENT, hard))
    try:
        assert default_max_running() <= 10
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert default_max_running() >= 1


async def test_a_cancelled_wait_for_a_slot_passes_the_slot_on() -> None:
    cap = RunningCap(1)
    held = cap.try_take()
    assert held is not None and cap.try_take() is None


    first = asyncio.ensure_future(cap.take())
    second = asyncio.ensure_future(cap.take())
    await asyncio.sleep(0)
    first.cancel()
    held.release()
    ticket = await second
    assert ticket.held and cap.running == 1
    ticket.release()
    assert cap.running == 0 and cap.free == 1


async def test_an_exec_agent_gets_an_allowlisted_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:secret@db/prod")
    monkeypatch.setenv("SWITCHBOARD_HTTP_TOKEN", "server-token")
    monkeypatch.setenv("WANTED_BY_TYPE", "passed")
    monkeypatch.setenv("LC_TIME", "C")
    printer = AgentType(runtime="exec", command=(sys.executable, "-c", "import os, json; print(json.dumps(dict(os.environ)))"),
                        env={"SET_BY_TYPE": "set"}, env_passthrough=("WANTED_BY_TYPE",))
    async with Client(build_server(agent_settings(tmp_path, {"printer": printer}))) as client:
        answer = structured_of(await client.call_tool("agents_spawn_parallel", {
            "agents": [{"type": "printer", "name": "p", "task": "x"}], "wait": True}))
    (agent,) = answer["agents"]

    env = json.loads(agent["result"])
    assert env["SWITCHBOARD_AGENT_ID"] == agent["agent_id"]
    assert (env["WANTED_BY_TYPE"], env["SET_BY_TYPE"], env["LC_TIME"]) == ("passed", "set", "C")
    assert env["PATH"] == os.environ["PATH"] and env["HOME"] == os.environ["HOME"]
    for withheld in ("AWS_SECRET_ACCESS_KEY", "DATABASE_URL", "SWITCHBOARD_HTTP_TOKEN"):
        assert withheld not in env
    assert not [name for name in env if name.startswith("ANTHROPIC_")]  # an exec agent is not Claude Code


def test_env_passthrough_cannot_name_the_servers_own_settings() -> None:
    with pytest.raises(ValueError, match="the server's own settings never reach an agent"):
        AgentType(runtime="exec", command=("true",), env_passthrough=("SWITCHBOARD_HTTP_TOKEN",))


def test_the_mcp_config_file_is_the_owners_only(tmp_path: Path) -> None:
    path = write_mcp_config(tmp_path, {"switchboard": {"type": "http", "headers": {"Authorization": "Bearer x"}}})
    assert path == tmp_path / MCP_CONFIG_FILE
    assert path.stat().st_mode & 0o777 == 0o600


async def test_no_memory_token_on_any_command_line_and_claude_sees_no_server_secret(
        tmp_path: Path, messages_api: ScriptedMessagesApi, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "do-not-leak")
    helper = claude_type(messages_api, tmp_path / "home")
    settings = agent_settings(tmp_path, {"helper": helper})
    dump = tmp_path / "claude-env.txt"
    store = ('tool: mcp__switchboard__memory_usage {"action": "store", "namespace": "swarm", "key": "k", '
             '"value": "stored through the token"}')
    async with Client(build_server(settings)) as client:
        spawned = structured_of(await client.call_tool("agents_spawn_parallel", {
            "agents": [{"type": "helper", "name": "h"}], "wait": True, "timeout_s": 120}))
        (agent,) = spawned["agents"]
        assert agent["status"] == "ready", agent
        # While its session is up: no process's command line carries a bearer token.
        lines = []
        for name in os.listdir("/proc"):
            if name.isdigit():
                with contextlib.suppress(OSError):
                    lines.append(Path(f"/proc/{name}/cmdline").read_bytes())
        assert len(lines) > 3
        assert not [line for line in lines if b"Bearer" in line or b"Authorization" in line]
        state_dir = settings.data_dir / "agents" / agent["agent_id"]
        assert not (state_dir / MCP_CONFIG_FILE).exists()  # read by the CLI as it started, then removed
        # The token still works: the CLI kept the config it read.
        for task in (store, f"bash: env > {dump}"):
            started = structured_of(await client.call_tool("query_start", {
                "agent_id": agent["agent_id"], "task": task, "wait": True, "timeout_s": 120}))
            assert started["query"]["status"] == "completed", started
        got = structured_of(await client.call_tool("memory_usage", {"action": "retrieve", "namespace": "swarm",
                                                                    "key": "k"}))
        assert got["entry"]["value"] == "stored through the token"
    seen = dict(line.split("=", 1) for line in dump.read_text().splitlines() if "=" in line)
    assert "AWS_SECRET_ACCESS_KEY" not in seen
    assert not [name for name in seen if name.startswith("SWITCHBOARD_") and name != "SWITCHBOARD_AGENT_ID"]
    assert seen["ANTHROPIC_BASE_URL"] == messages_api.url


def test_five_hundred_sleepers_under_ulimit_1024_are_queued_not_emfile_and_all_end(tmp_path: Path) -> None:
    """The attack that left 111 processes nothing could stop: `ulimit -n 1024`, ten calls of 50 exec
    agents each, then agent_terminate all. Beyond the default cap they wait queued; all of them end."""
    from tests.e2e.stdio_peer import StdioPeer

    types = {"sleeper": {"runtime": "exec", "command": ["sleep", "{task}"]}}
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, hard))  # what the server is started with
    try:
        server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log", SWITCHBOARD_AGENT_TYPES=json.dumps(types),
                           SWITCHBOARD_AGENT_ROOTS=str(tmp_path))
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    try:
        server.initialize()
        ids: set[str] = set()
        statuses: list[str] = []
        for call in range(10):
            answer = server.call_tool("agents_spawn_parallel", {"agents": [
                {"type": "sleeper", "name": f"s{call}-{i}", "task": "60"} for i in range(50)]})
            assert not answer.get("isError"), answer
            ids |= {agent["agent_id"] for agent in answer["structuredContent"]["agents"]}
            statuses += [agent["status"] for agent in answer["structuredContent"]["agents"]]
        assert len(ids) == 500
        assert set(statuses) == {"running", "queued"} and statuses.count("running") < 1024 // 6
        running = processes_tagged(ids)
        assert 0 < len(running) == statuses.count("running") and all(len(pids) == 1 for pids in running.values())

        ended = server.call_tool("agent_terminate", {"all": True, "grace_s": 1})
        assert not ended.get("isError"), ended
        answered = ended["structuredContent"]["agents"]
        assert {agent["agent_id"] for agent in answered} == ids
        assert {agent["status"] for agent in answered} == {"terminated"}, [a for a in answered if "error" in a][:3]
        assert not processes_tagged(ids)
        listed = server.call_tool("agent_list", {"limit": 500})["structuredContent"]
        assert listed["counts"] == {"terminated": 500}
        stderr = (tmp_path / "stderr.log").read_text()
        assert "Too many open files" not in stderr and "Traceback" not in stderr
    finally:
        server.close_stdin()
        server.wait()
