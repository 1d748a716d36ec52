"""Workspace tests run real git on a repository made for each test (the `repo` fixture), and real agents
in worktrees of it; sandboxed ones under real bubblewrap."""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


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
