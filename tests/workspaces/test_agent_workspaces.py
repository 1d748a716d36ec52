"""Worktree agents end to end: exec agents on real processes in real git worktrees (no sandbox
here, see test_sandbox.py): their work committed on their own branches, handed on to dependents,
reviewed, merged without touching the user's checkout, and cleaned up without losing work."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from server.agents.spawn_plan import SpawnReport
from server.agents.types import BUILTIN_TYPES, AgentType
from server.config import Settings
from server.errors import Conflict, InvalidArgument
from server.services import Services, open_services
from server.status import status_of
from tests.agents.groups import eventually
from tests.agents.swarm import agent_settings, exec_type, request, spec
from tests.fixtures.git_repo import run_git
from tests.manual_clock import ManualClock


def settings_for(tmp_path: Path, **type_fields: object) -> Settings:
    fields: dict[str, object] = {"workspace": "worktree", "sandbox": False, **type_fields}
    return agent_settings(tmp_path, {"editor": exec_type(**fields), "plain": exec_type()},
                          workspace_author="Review Bot <bot@example.com>")


def by_name(report: SpawnReport) -> dict[str, str]:
    return {entry.name: entry.agent_id for entry in report.entries}


async def committed(services: Services, agent_id: str, path: str) -> str:
    """The file as the agent's branch holds it (not its worktree)."""
    workspace = await services.supervisor.workspaces.get(agent_id)
    return run_git(Path(workspace.repo), "show", f"{workspace.branch}:{path}")


async def test_each_agent_works_in_its_own_worktree_and_its_work_is_committed_on_its_branch(
        tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("alpha", "write app.py by alpha", type="editor", cwd=str(repo / "src")),
            spec("beta", "write app.py by beta", type="editor", cwd=str(repo / "src")),
            wait=True))
        assert [entry.status for entry in report.entries] == ["completed", "completed"], report.entries
        ids = by_name(report)
        for name, agent_id in ids.items():
            workspace = await services.supervisor.workspaces.get(agent_id)
            assert workspace.path == str(services.settings.data_dir.absolute() / "workspaces" / agent_id)
            assert workspace.branch == f"switchboard/{name}-{agent_id.removeprefix('agent-')[:8]}"
            agent = services.supervisor.live(agent_id)
            # It worked in the same sub-directory of its worktree that its cwd was of the repository.
            assert agent is not None and agent.record.workdir == str(Path(workspace.path) / "src")
            assert await committed(services, agent_id, "src/app.py") == f"by {name}"
            subject, author = run_git(repo, "log", "-1", "--format=%s|%an <%ae>", workspace.branch).strip().split("|")
            assert subject == f"{name}: write app.py by {name}"
            assert author == "Review Bot <bot@example.com>"
        # The user's checkout and branch are as they were.
        assert (repo / "src" / "app.py").read_text() == "line one\nline two\nline three\n"
        assert run_git(repo, "status", "--porcelain") == ""
        assert run_git(repo, "log", "--format=%s", "main").split() == ["start"]


async def test_two_edits_of_one_file_merge_first_and_conflict_second_without_touching_main(
        tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("first", "write app.py line two by first", type="editor", cwd=str(repo / "src")),
            spec("second", "write app.py line two by second", type="editor", cwd=str(repo / "src")),
            wait=True))
        ids = by_name(report)
        workspaces = services.supervisor.workspaces
        # The dry runs predict both: each merges cleanly into main as it is now.
        for agent_id in ids.values():
            changes = await workspaces.changes(agent_id, include_diff=True)
            assert changes.merges_cleanly and [file.path for file in changes.files] == ["src/app.py"]
            assert changes.files[0].status == "M" and changes.files[0].added == 1 and changes.files[0].removed == 3
            assert changes.diff is not None and "+line two by" in changes.diff
            dry = await workspaces.merge(agent_id, dry_run=True)
            assert dry.into == "main" and dry.after == dry.before
        main_before = run_git(repo, "rev-parse", "main").strip()
        merged = await workspaces.merge(ids["first"])
        assert merged.before == main_before and merged.after != main_before
        assert run_git(repo, "rev-parse", "main").strip() == merged.after
        assert (repo / "src" / "app.py").read_text() == "line two by first"  # the clean checkout came along
        # Now the second one conflicts: its dry run says so, and the merge changes nothing.
        second = await workspaces.changes(ids["second"])
        assert not second.merges_cleanly and second.conflicted == ["src/app.py"]
        with pytest.raises(Conflict, match=r"src/app\.py"):
            await workspaces.merge(ids["second"], dry_run=True)
        with pytest.raises(Conflict, match=r"src/app\.py"):
            await workspaces.merge(ids["second"])
        assert run_git(repo, "rev-parse", "main").strip() == merged.after
        assert run_git(repo, "status", "--porcelain") == ""
        assert (repo / "src" / "app.py").read_text() == "line two by first"
        assert (await workspaces.get(ids["first"])).merged_into == "main"
        assert (await workspaces.get(ids["second"])).merged_into is None


async def test_a_dirty_checkout_of_the_target_is_never_touched(tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("editor", "write notes.txt from the agent", type="editor", cwd=str(repo)), wait=True))
        (agent_id,) = by_name(report).values()
        (repo / "README").write_text("the user's unsaved edit\n")
        with pytest.raises(Conflict, match="uncommitted changes"):
            await services.supervisor.workspaces.merge(agent_id)
        assert (repo / "README").read_text() == "the user's unsaved edit\n"
        assert run_git(repo, "log", "--format=%s", "main").split() == ["start"]
        # Into another branch, which nobody has checked out, it goes.
        run_git(repo, "branch", "review")
        outcome = await services.supervisor.workspaces.merge(agent_id, into="review", strategy="squash")
        assert run_git(repo, "show", "review:notes.txt") == "from the agent"
        assert outcome.after == run_git(repo, "rev-parse", "review").strip()
        assert (repo / "README").read_text() == "the user's unsaved edit\n"


async def test_a_dependent_with_base_ref_starts_from_its_dependency_finished_work(tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("maker", "write made.txt made by maker", type="editor", cwd=str(repo)),
            # base_ref alone is enough: starting from the maker's work means waiting for it.
            spec("user", "cat made.txt", type="editor", cwd=str(repo), base_ref="maker"),
            spec("fresh", "cat made.txt", type="editor", cwd=str(repo)),
            wait=True))
        results = {entry.name: (entry.status, entry.result) for entry in report.entries}
        assert results["user"] == ("completed", "made by maker\n")
        assert results["fresh"] == ("completed", "missing made.txt\n")
        ids = by_name(report)
        maker = await services.supervisor.workspaces.get(ids["maker"])
        user = await services.supervisor.workspaces.get(ids["user"])
        assert user.base_commit == maker.head and user.base_branch == "main"
        # Its own changes are what it did beyond the maker's work; merging it brings both.
        changes = await services.supervisor.workspaces.changes(ids["user"])
        assert changes.files == [] and changes.merges_cleanly


async def test_work_is_committed_when_a_running_agent_is_terminated(tmp_path: Path, repo: Path) -> None:
    release = tmp_path / "never"
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("slow", f"wait {release}", type="editor", cwd=str(repo))))
        (agent_id,) = by_name(report).values()
        agent = services.supervisor.live(agent_id)
        assert agent is not None and agent.workspace is not None
        await eventually(lambda: agent.process is not None, "its task runs")
        (Path(agent.record.workdir) / "half-done.txt").write_text("half of it\n")
        await services.supervisor.terminate(agent_id, 1.0)
        assert await committed(services, agent_id, "half-done.txt") == "half of it\n"
        workspace = await services.supervisor.workspaces.get(agent_id)
        assert run_git(repo, "log", "-1", "--format=%s", workspace.branch).startswith("slow: wait ")


async def test_terminate_with_discard_removes_the_worktree_and_branch(tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("throwaway", "write junk.txt junk", type="editor", cwd=str(repo)), wait=True))
        (agent_id,) = by_name(report).values()
        workspace = await services.supervisor.workspaces.get(agent_id)
        await services.supervisor.terminate(agent_id, 1.0)
        discarded = await services.supervisor.workspaces.discard(agent_id)
        assert discarded is not None and discarded.head is not None
        assert not Path(workspace.path).exists()
        assert run_git(repo, "branch", "--list", workspace.branch) == ""
        assert run_git(repo, "worktree", "list").count("\n") == 1
        with pytest.raises(Conflict, match="discarded"):
            await services.supervisor.workspaces.merge(agent_id)


async def test_cleanup_removes_merged_worktrees_after_the_ttl_and_keeps_unmerged_ones(
        tmp_path: Path, repo: Path, clock: ManualClock) -> None:
    settings = settings_for(tmp_path).model_copy(update={"workspace_ttl_h": 24.0})
    async with open_services(settings, clock=clock) as services:
        report = await services.spawner.spawn_many(request(
            spec("merged", "write a.txt a", type="editor", cwd=str(repo)),
            spec("unmerged", "write b.txt b", type="editor", cwd=str(repo)),
            spec("live-merged", "write c.txt c", type="editor", cwd=str(repo)), wait=True))
        ids = by_name(report)
        workspaces = services.supervisor.workspaces
        for name in ("merged", "live-merged"):
            await workspaces.merge(ids[name])
        for name in ("merged", "unmerged"):
            await services.supervisor.terminate(ids[name], 1.0)
        paths = {name: Path((await workspaces.get(agent_id)).path) for name, agent_id in ids.items()}
        clock.advance(23 * 3600)
        assert await workspaces.sweep() == []  # not yet
        clock.advance(2 * 3600)
        assert await workspaces.sweep() == [ids["merged"]]
        assert not paths["merged"].exists()
        assert paths["unmerged"].exists() and paths["live-merged"].exists()  # unmerged; still running
        for name in ids:  # every branch is still there, the removed worktree's too
            assert run_git(repo, "branch", "--list", (await workspaces.get(ids[name])).branch) != ""
        listed = {listing.workspace.id: listing for listing in await workspaces.listing()}
        assert set(listed) == {ids["unmerged"], ids["live-merged"]}
        assert all(listing.size_bytes > 0 for listing in listed.values())


async def test_worktrees_deleted_by_hand_are_pruned_at_start(tmp_path: Path, repo: Path) -> None:
    settings = settings_for(tmp_path)
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(
            spec("gone", "write x.txt x", type="editor", cwd=str(repo)), wait=True))
        (agent_id,) = by_name(report).values()
        path = Path((await services.supervisor.workspaces.get(agent_id)).path)
    await asyncio.to_thread(lambda: __import__("shutil").rmtree(path))
    assert "prunable" in run_git(repo, "worktree", "list", "--porcelain")
    async with open_services(settings) as services:
        assert "prunable" not in run_git(repo, "worktree", "list", "--porcelain")
        assert (await services.supervisor.workspaces.get(agent_id)).removed_ms is not None


async def test_setup_runs_in_the_new_worktree_before_the_first_task_and_its_failure_fails_the_agent(
        tmp_path: Path, repo: Path) -> None:
    settings = agent_settings(tmp_path, {
        "prepared": exec_type(workspace="worktree", sandbox=False, setup=("/bin/sh", "-c", "printf ready > setup.txt")),
        "broken": exec_type(workspace="worktree", sandbox=False,
                            setup=("/bin/sh", "-c", "echo npm ERR! missing lockfile; exit 3")),
    })
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(
            spec("ok", "cat setup.txt", type="prepared", cwd=str(repo)),
            spec("bad", "cat setup.txt", type="broken", cwd=str(repo)), wait=True))
        ok, bad = report.entries
        assert (ok.status, ok.result) == ("completed", "ready\n"), ok.error
        assert bad.status == "failed" and bad.error is not None
        assert "exited with code 3" in bad.error and "npm ERR! missing lockfile" in bad.error
        record = await services.supervisor.records.agent(bad.agent_id)
        assert record is not None and record.status == "failed"


async def test_planning_refuses_what_cannot_be_a_worktree_and_records_nothing(tmp_path: Path, repo: Path) -> None:
    outside = tmp_path / "not-a-repo"
    outside.mkdir()
    async with open_services(settings_for(tmp_path)) as services:
        with pytest.raises(InvalidArgument, match="not in a git repository"):
            await services.spawner.spawn_many(request(spec("a", "ok", type="editor", cwd=str(outside))))
        with pytest.raises(InvalidArgument, match="names no commit"):
            await services.spawner.spawn_many(request(spec("a", "ok", type="editor", cwd=str(repo), base_ref="nope")))
        with pytest.raises(InvalidArgument, match="workspace 'nowhere' is not one of"):
            await services.spawner.spawn_many(request(spec("a", "ok", type="plain", workspace="nowhere")))
        with pytest.raises(InvalidArgument, match="base_ref 'b' has no task"):
            await services.spawner.spawn_many(request(
                spec("a", "ok", type="editor", cwd=str(repo), base_ref="b"), spec("b", type="editor", cwd=str(repo))))
        assert await services.supervisor.records.agents_page() == ([], None)
        assert run_git(repo, "branch", "--list").split() == ["*", "main"]


async def test_the_built_in_editing_types_take_a_worktree_only_inside_a_repository(tmp_path: Path, repo: Path) -> None:
    outside = tmp_path / "plain-dir"
    outside.mkdir()
    coder = AgentType(runtime="exec", command=("/bin/true",), workspace="auto", sandbox=False)
    async with open_services(agent_settings(tmp_path, {"coder": coder})) as services:
        report = await services.spawner.spawn_many(request(
            spec("in", type="coder", cwd=str(repo)), spec("out", type="coder", cwd=str(outside)),
            spec("own", type="coder")))
        ids = by_name(report)
        assert (await services.supervisor.workspaces.of_agents(list(ids.values()))).keys() == {ids["in"]}
        with pytest.raises(InvalidArgument, match="works in its cwd"):
            await services.supervisor.workspaces.changes(ids["out"])
    for name, built_in in BUILTIN_TYPES.items():
        assert built_in.workspace == ("auto" if name in ("coder", "tester", "optimizer", "debugger") else "shared")


def run_cli(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", *args], capture_output=True, text=True, timeout=120,
                          env={**os.environ, **env})


async def test_workspaces_status_and_doctor_show_the_worktrees_on_disk(tmp_path: Path, repo: Path) -> None:
    settings = settings_for(tmp_path)
    async with open_services(settings) as services:
        report = await services.spawner.spawn_many(request(
            spec("kept", "write kept.txt kept", type="editor", cwd=str(repo)),
            spec("done", "write done.txt done", type="editor", cwd=str(repo)), wait=True))
        ids = by_name(report)
        await services.supervisor.workspaces.merge(ids["done"])
        snapshot = await status_of(services)
        assert (snapshot.workspaces, snapshot.workspaces_unmerged) == (2, 1) and snapshot.workspaces_bytes > 0
    data_dir = str(settings.data_dir)
    listed = run_cli("workspaces", "--data-dir", data_dir)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert any(ids["kept"] in line and " no " in line for line in lines), listed.stdout
    assert any(ids["done"] in line and " main " in line for line in lines), listed.stdout
    assert lines[-1].startswith("2 worktree(s), 1 unmerged, ")
    rows = [json.loads(line) for line in run_cli("workspaces", "--json", "--data-dir", data_dir).stdout.splitlines()]
    assert {row["agent_id"]: row["merged_into"] for row in rows} == {ids["kept"]: None, ids["done"]: "main"}
    assert all(row["size_bytes"] > 0 for row in rows)
    status = run_cli("status", "--data-dir", data_dir)
    assert "worktrees 2 (1 unmerged)" in status.stdout, status.stdout
    doctor = run_cli("doctor", "--data-dir", data_dir, SWITCHBOARD_WORKSPACE_DISK_WARN_GB="0.000001")
    (worktrees,) = [line for line in doctor.stdout.splitlines() if "worktrees" in line]
    assert worktrees.split()[0] == "warn" and "SWITCHBOARD_WORKSPACE_DISK_WARN_GB" in worktrees, doctor.stdout
    (sandbox,) = [line for line in doctor.stdout.splitlines() if line.split()[1:2] == ["sandbox"]]
    assert "bubblewrap" in sandbox
