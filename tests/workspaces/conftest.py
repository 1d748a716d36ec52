"""Workspace tests run real git on a repository made for each test, and real agents in worktrees of it."""

from __future__ import annotations

import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

GIT_ENV = {"GIT_AUTHOR_NAME": "u", "GIT_AUTHOR_EMAIL": "u@x", "GIT_COMMITTER_NAME": "u", "GIT_COMMITTER_EMAIL": "u@x",
           "PATH": "/usr/bin:/bin"}


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True,
                          env={**GIT_ENV, "HOME": str(cwd)}).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A repository on branch main with src/app.py and README committed, its checkout clean."""
    top = tmp_path / "repo"
    (top / "src").mkdir(parents=True)
    run_git(top, "init", "--quiet", "--initial-branch=main")
    (top / "src" / "app.py").write_text("line one\nline two\nline three\n")
    (top / "README").write_text("readme\n")
    run_git(top, "add", "--all")
    run_git(top, "commit", "--quiet", "-m", "start")
    return top


def require_bwrap() -> None:
    """Sandbox tests need bubblewrap: skipped without it on a developer's machine, never in CI."""
    import os

    if shutil.which("bwrap") is None:
        if os.environ.get("CI"):
            pytest.fail("bubblewrap (bwrap) is not installed, and CI must run the sandbox tests")
        pytest.skip("bubblewrap (bwrap) is not installed (apt-get install bubblewrap)")


@pytest.fixture
def home_outside_tmp() -> Iterator[Path]:
    """A HOME for sandboxed claude agents: Claude Code's sandbox cannot start with its HOME under /tmp."""
    home = Path(__file__).resolve().parents[2] / ".test-homes" / uuid.uuid4().hex
    home.mkdir(parents=True)
    try:
        yield home
    finally:
        shutil.rmtree(home, ignore_errors=True)
