"""Two sandboxed claude coders (the real Claude Code CLI against the scripted Messages API) edit the
same file in parallel, each in its own worktree; the review and merge go through the MCP tools."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mcp import Client

from server.app import build_server
from tests.agents.swarm import agent_settings, claude_type
from tests.fixtures.git_repo import run_git
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.tools.answers import error_text, structured_of
from tests.workspaces.conftest import require_bwrap


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool(tool, arguments))


async def test_two_claude_coders_on_one_file_one_merges_the_other_conflicts_and_main_is_untouched(
        tmp_path: Path, repo: Path, home_outside_tmp: Path, messages_api: ScriptedMessagesApi) -> None:
    require_bwrap()
    # The built-in coder (claude, workspace auto, sandboxed), answering to the scripted API.
    coder = claude_type(messages_api, home_outside_tmp / "home", workspace="auto",
                        allowed_tools=("Read", "Edit", "Write", "Bash"))
    settings = agent_settings(tmp_path, {"coder": coder})
    checkout = (repo / "src" / "app.py").read_text()
    async with Client(build_server(settings), mode="auto") as client:
        spawned = await call(client, "agents_spawn_parallel", wait=True, timeout_s=120, agents=[
            {"type": "coder", "name": name, "cwd": str(repo / "src"),
             "task": f"bash: printf 'line one\\nline two, by {name}\\nline three\\n' > app.py"}
            for name in ("first", "second")])
        assert [agent["status"] for agent in spawned["agents"]] == ["completed", "completed"], spawned
        first, second = (agent["agent_id"] for agent in spawned["agents"])
        listed = {agent["agent_id"]: agent for agent in (await call(client, "agent_list"))["agents"]}
        assert listed[first]["branch"].startswith("switchboard/first-")
        assert listed[second]["branch"].startswith("switchboard/second-")
        for agent_id, name in ((first, "first"), (second, "second")):
            changes = await call(client, "agent_changes", agent_id=agent_id, include_diff=True)
            assert changes["merges_cleanly"] and changes["base_branch"] == "main"
            assert changes["files"] == [{"path": "src/app.py", "status": "M", "added": 1, "removed": 1}]
            assert f"+line two, by {name}" in changes["diff"] and len(changes["commits"]) == 1
            dry = await call(client, "agent_merge", agent_id=agent_id, dry_run=True)
            assert dry["dry_run"] and dry["before"] == dry["after"]
        main_before = run_git(repo, "rev-parse", "main").strip()
        merged = await call(client, "agent_merge", agent_id=first)
        assert merged["into"] == "main" and merged["before"] == main_before
        assert run_git(repo, "show", "main:src/app.py") == "line one\nline two, by first\nline three\n"
        # The second now conflicts: predicted, refused, and nothing moved.
        assert (await call(client, "agent_changes", agent_id=second))["conflicts"] == ["src/app.py"]
        for dry_run in (True, False):
            refused = error_text(await client.call_tool("agent_merge", {"agent_id": second, "dry_run": dry_run}))
            assert refused.startswith("conflict:") and "src/app.py" in refused, refused
        assert run_git(repo, "rev-parse", "main").strip() == merged["after"]
        assert run_git(repo, "status", "--porcelain") == ""
        assert (repo / "src" / "app.py").read_text() != checkout  # the clean checkout followed the first merge
        ended = await call(client, "agent_terminate", agent_id=second, discard_workspace=True)
        (answer,) = ended["agents"]
        assert answer["status"] == "terminated" and answer["discarded"].startswith(listed[second]["branch"] + " ")
        assert run_git(repo, "branch", "--list", listed[second]["branch"]) == ""
