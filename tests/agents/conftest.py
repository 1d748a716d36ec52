"""Agent tests drive the real Claude Code CLI (bundled in claude-agent-sdk's wheel) against a scripted Messages
API on a loopback port: no test reaches the network or the real API."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from claude_agent_sdk import ClaudeAgentOptions

from tests.agents.groups import Workers
from tests.fixtures.messages_api import ScriptedMessagesApi

MODEL = "claude-sonnet-4-5"

_cli_log = logging.getLogger("tests.agents.cli")


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """The agent's working directory (its cwd)."""
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def agent_options(messages_api: ScriptedMessagesApi, workdir: Path, tmp_path: Path) -> Callable[..., ClaudeAgentOptions]:
    """Makes `ClaudeAgentOptions` for a CLI that works in `workdir` with its own HOME and only the scripted API;
    keyword arguments override the defaults (model, bypassPermissions, no settings files)."""

    def make(**overrides: Any) -> ClaudeAgentOptions:
        options: dict[str, Any] = {
            "cwd": workdir,
            "env": messages_api.cli_env(tmp_path / "home"),
            "model": MODEL,
            "permission_mode": "bypassPermissions",
            "setting_sources": [],  # no user or project settings: hooks or rules from the machine stay out
            "stderr": lambda line: _cli_log.warning("%s", line),  # shown with a failing test's captured log
        }
        return ClaudeAgentOptions(**(options | overrides))

    return make


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[Workers]:
    """Starts worker groups (group_worker.py); kills and reaps whatever is left of them afterwards."""
    started = Workers(tmp_path)
    try:
        yield started
    finally:
        started.cleanup()
