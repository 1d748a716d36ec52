"""Sandboxed agents under real bubblewrap: an exec agent's command, and a claude agent's Bash (Claude
Code's own sandbox) and file tools, cannot read the server's environment or data, cannot write outside
their workspace and /tmp, and have no network; the same probe unsandboxed shows each one would."""

from __future__ import annotations

import json
import os
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from server.config import Settings
from server.services import open_services
from server.workspaces.sandbox import SandboxUnavailable
from tests.agents.swarm import agent_settings, claude_type, exec_type, request, spec
from tests.fixtures.git_repo import run_git
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.workspaces.conftest import require_bwrap

# The checkout (its virtualenv, the exec agent script): under /tmp in a fresh clone, which the sandbox
# hides unless it is a read root.
PROJECT = str(Path(__file__).resolve().parents[2])


@pytest.fixture
def listener() -> Iterator[int]:
    """A loopback TCP port that accepts connections: reachable unless the network is cut off."""
    server = socket.create_server(("127.0.0.1", 0))
    server.listen(8)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


def probe_task(settings: Settings, outside: Path, port: int, tmp_name: str) -> str:
    targets = {"tmp_name": tmp_name, "environ": f"/proc/{os.getpid()}/environ",
               "data": str(settings.data_dir.absolute() / "agents.sqlite3"),
               "outside": str(outside), "inside": "inside.txt", "port": port}
    return f"probe {json.dumps(targets)}"


async def test_a_sandboxed_exec_agent_sees_only_its_workspace_and_tmp(
        tmp_path: Path, repo: Path, listener: int, home_outside_tmp: Path) -> None:
    require_bwrap()
    # The whole of tmp_path is a read root, the data directory in it included: that stays hidden.
    settings = agent_settings(tmp_path, {"boxed": exec_type(workspace="worktree", read_roots=(PROJECT, str(tmp_path))),
                                         "open": exec_type(workspace="worktree", sandbox=False)})
    outside, tmp_name = home_outside_tmp / "outside.txt", f"probe-{uuid.uuid4().hex}"
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(
            spec("boxed", probe_task(settings, outside, listener, tmp_name), type="boxed", cwd=str(repo)), wait=True))
        (entry,) = report.entries
        assert entry.status == "completed", entry.error
        seen = json.loads(entry.result or "")
        assert seen["environ"].startswith("error:") and seen["data"].startswith("error:"), seen
        assert "No such file" in seen["data"], seen  # not there at all, though its directory is a read root
        assert "Read-only file system" in seen["outside"] and not outside.exists()
        assert seen["network"].startswith("error:"), seen
        assert seen["inside"] == "ok" and seen["tmp"] == "ok"
        workspace = await services.supervisor.workspaces.get(entry.agent_id)
        assert run_git(repo, "show", f"{workspace.branch}:inside.txt") == "inside"
        assert not (Path("/tmp") / tmp_name).exists()  # its /tmp was its own
        # The same probe unsandboxed: every one of those would have worked.
        report = await services.spawner.spawn_many(request(
            spec("open", probe_task(settings, outside, listener, tmp_name), type="open", cwd=str(repo)), wait=True))
        (entry,) = report.entries
        seen = json.loads(entry.result or "")
        (Path("/tmp") / tmp_name).unlink()
        assert seen == {"environ": "ok", "data": "ok", "outside": "ok", "inside": "ok", "tmp": "ok", "network": "ok"}


async def test_a_sandboxed_agent_without_bubblewrap_is_refused_at_once_with_the_fix(
        tmp_path: Path, repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_git = tmp_path / "bin"
    only_git.mkdir()
    (only_git / "git").symlink_to("/usr/bin/git")
    monkeypatch.setenv("PATH", str(only_git))
    settings = agent_settings(tmp_path, {"boxed": exec_type(workspace="worktree")})
    async with open_services(settings) as services:
        with pytest.raises(SandboxUnavailable, match="apt-get install bubblewrap"):
            await services.spawner.spawn_many(request(spec("boxed", "ok", type="boxed", cwd=str(repo))))
        assert await services.supervisor.records.agents_page() == ([], None)


async def test_a_sandboxed_claude_agent_bash_and_file_tools_stay_in_its_workspace(
        tmp_path: Path, repo: Path, listener: int, home_outside_tmp: Path, messages_api: ScriptedMessagesApi) -> None:
    require_bwrap()
    coder = claude_type(messages_api, home_outside_tmp / "home", workspace="worktree",
                        allowed_tools=("Bash", "Read", "Write", "Edit"))
    settings = agent_settings(tmp_path, {"coder": coder})
    outside = home_outside_tmp / "outside.txt"
    data_file = settings.data_dir.absolute() / "agents.sqlite3"
    command = (f"cat /proc/{os.getpid()}/environ; head -c 16 {data_file} | od -c | head -1; "
               f"echo escaped > {outside}; "
               f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {listener}), timeout=2)' "
               "&& echo CONNECTED; echo inside > inside.txt && echo WROTE-INSIDE")
    write_outside = json.dumps({"file_path": str(outside), "content": "escaped by Write"})
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(
            spec("boxed", f"bash: {command}", type="coder", cwd=str(repo)), wait=True, timeout_s=120))
        (entry,) = report.entries
        assert entry.status == "completed", entry.error
        (ran,) = [turn for turn in messages_api.turns() if turn.tool_results]
        output = ran.tool_results[0].text
        assert "WROTE-INSIDE" in output, output
        # The server's process is not there to read (a PID namespace of its own), nor is its data.
        assert f"/proc/{os.getpid()}/environ: No such file or directory" in output, output
        assert "S   Q   L" not in output, output
        assert "CONNECTED" not in output and not outside.exists(), output
        workspace = await services.supervisor.workspaces.get(entry.agent_id)
        assert run_git(repo, "show", f"{workspace.branch}:inside.txt") == "inside\n"
        # Its file tools too: a Write outside the workspace is refused before anything is written.
        agent_id = entry.agent_id
        query = await services.queries.start(agent_id, f"tool: Write {write_outside}")
        await services.queries.wait([query.id], mode="all", timeout_s=60)
        refused = [turn for turn in messages_api.turns() if turn.tool_results][-1].tool_results[0]
        assert refused.is_error and "sandboxed" in refused.text and not outside.exists(), refused.text
