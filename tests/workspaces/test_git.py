"""`GitRepository` against real git: worktrees on branches of their own, work committed, read back
and merged without ever leaving the user's repository conflicted or their checkout touched."""

from __future__ import annotations

from pathlib import Path

import pytest

from server.errors import Conflict, InvalidArgument
from server.workspaces.git import GitRepository
from tests.fixtures.git_repo import run_git


async def two_coders(repo: Path, tmp_path: Path) -> tuple[GitRepository, str, Path, Path]:
    """Two worktrees from main's commit, each changing line two of src/app.py its own way."""
    git = await GitRepository.containing(repo / "src")
    base = await git.commit_of("main")
    first, second = tmp_path / "ws" / "first", tmp_path / "ws" / "second"
    await git.add_worktree(first, "switchboard/first", base)
    await git.add_worktree(second, "switchboard/second", base)
    (first / "src" / "app.py").write_text("line one\nline two, by first\nline three\n")
    (first / "src" / "new.py").write_text("new\n")
    (second / "src" / "app.py").write_text("line one\nline two, by second\nline three\n")
    assert await git.commit_all(first, "first: edit") is not None
    assert await git.commit_all(second, "second: edit") is not None
    return git, base, first, second


async def test_a_directory_outside_any_repository_is_refused(tmp_path: Path, repo: Path) -> None:
    with pytest.raises(InvalidArgument, match="not in a git repository"):
        await GitRepository.containing(tmp_path)
    assert (await GitRepository.containing(repo / "src")).top == repo
    with pytest.raises(InvalidArgument, match="names no commit"):
        await (await GitRepository.containing(repo)).commit_of("no-such-branch")


async def test_two_coders_on_one_file_the_first_merges_the_second_conflicts_and_nothing_moves(
        tmp_path: Path, repo: Path) -> None:
    git, base, _, _ = await two_coders(repo, tmp_path)
    first = await git.changes("switchboard/first", base, include_diff=True)
    assert first.merges_cleanly and len(first.commits) == 1 and first.commits[0].endswith("first: edit")
    assert {(f.path, f.status, f.added, f.removed) for f in first.files} == \
        {("src/app.py", "M", 1, 1), ("src/new.py", "A", 1, 0)}
    assert first.diff is not None and "+line two, by first" in first.diff
    assert (await git.merge("switchboard/first", "main", dry_run=True)).after == base  # predicted, not done
    assert await git.commit_of("main") == base

    merged = await git.merge("switchboard/first", "main")
    assert merged.before == base and merged.after == await git.commit_of("main") != base
    assert (repo / "src" / "app.py").read_text() == "line one\nline two, by first\nline three\n"
    assert run_git(repo, "status", "--porcelain") == ""  # the checkout followed its branch, clean

    second = await git.changes("switchboard/second", base, into="main")
    assert not second.merges_cleanly and second.conflicted == ["src/app.py"]
    with pytest.raises(Conflict, match=r"conflicts in src/app\.py"):
        await git.merge("switchboard/second", "main", dry_run=True)
    with pytest.raises(Conflict, match=r"conflicts in src/app\.py"):
        await git.merge("switchboard/second", "main")
    assert await git.commit_of("main") == merged.after
    assert (repo / "src" / "app.py").read_text() == "line one\nline two, by first\nline three\n"
    assert run_git(repo, "status", "--porcelain") == "" and "switchboard-merge" not in run_git(repo, "worktree", "list")


async def test_a_dirty_checkout_of_the_target_is_never_touched(tmp_path: Path, repo: Path) -> None:
    git, base, _, _ = await two_coders(repo, tmp_path)
    (repo / "README").write_text("my own unsaved edit\n")
    with pytest.raises(Conflict, match="uncommitted changes"):
        await git.merge("switchboard/first", "main")
    assert await git.commit_of("main") == base and (repo / "README").read_text() == "my own unsaved edit\n"


async def test_a_branch_not_checked_out_moves_without_the_checkout_changing(tmp_path: Path, repo: Path) -> None:
    git, base, _, _ = await two_coders(repo, tmp_path)
    run_git(repo, "branch", "release", base)
    merged = await git.merge("switchboard/first", "release", strategy="squash", message="first, squashed")
    assert await git.commit_of("release") == merged.after and await git.commit_of("main") == base
    assert run_git(repo, "log", "--format=%s|%P", "-1", "release").strip() == f"first, squashed|{base}"
    assert (repo / "src" / "app.py").read_text() == "line one\nline two\nline three\n"


async def test_rebase_puts_the_agents_commits_on_top_of_the_target(tmp_path: Path, repo: Path) -> None:
    git, base, _, _ = await two_coders(repo, tmp_path)
    (repo / "README").write_text("readme, moved on\n")
    run_git(repo, "commit", "--quiet", "-am", "main moves on")
    moved = await git.commit_of("main")
    merged = await git.merge("switchboard/first", "main", strategy="rebase")
    assert run_git(repo, "log", "--format=%s", f"{base}..main").splitlines() == ["first: edit", "main moves on"]
    assert run_git(repo, "rev-parse", f"{merged.after}~1").strip() == moved


async def test_commit_all_takes_new_changed_and_deleted_files_and_nothing_is_none(tmp_path: Path, repo: Path) -> None:
    git = await GitRepository.containing(repo)
    place = tmp_path / "ws" / "one"
    await git.add_worktree(place, "switchboard/one", await git.commit_of("HEAD"))
    assert await git.commit_all(place, "nothing") is None
    (place / "README").unlink()
    (place / "notes.txt").write_text("notes\n")
    commit = await git.commit_all(place, "one: notes instead of the readme", author=("coder", "coder@switchboard"))
    assert commit is not None
    assert run_git(repo, "show", "--name-status", "--format=%an|%s", commit).split() == \
        ["coder|one:", "notes", "instead", "of", "the", "readme", "D", "README", "A", "notes.txt"]
    with pytest.raises(Conflict, match="exists already"):
        await git.add_worktree(tmp_path / "ws" / "again", "switchboard/one", commit)
    await git.remove_worktree(place)
    assert not place.exists() and await git.commit_of("switchboard/one") == commit  # the branch keeps the work
