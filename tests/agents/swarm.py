"""Helpers for agent tests: settings with test agent types, and reading what agents left behind."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

from server.agents.spawn_plan import AgentSpec, SpawnRequest
from server.agents.types import AgentType
from server.config import Settings
from tests.agents.conftest import MODEL
from tests.fixtures.messages_api import Answer, RecordedRequest, Script, ScriptedMessagesApi, default_script

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
EXEC_AGENT = FIXTURES / "exec_agent.py"


def exec_type(**overrides: Any) -> AgentType:
    """An exec type running tests/fixtures/exec_agent.py with the task as its argument; the tests'
    WORKLOG reaches it through env_passthrough (the rest of the environment is an allowlist)."""
    return AgentType(**{"runtime": "exec", "command": (sys.executable, str(EXEC_AGENT), "{task}"),
                        "env_passthrough": ("WORKLOG",), **overrides})


def claude_type(api: ScriptedMessagesApi, home: Path, **overrides: Any) -> AgentType:
    """A claude type answering to the scripted API (its own HOME), model MODEL, Bash and Read allowed."""
    fields: dict[str, Any] = {"runtime": "claude", "model": MODEL, "allowed_tools": ("Bash", "Read"),
                              "env": api.cli_env(home), **overrides}
    return AgentType.model_validate(fields)


def agent_settings(tmp_path: Path, types: dict[str, AgentType] | None = None, **overrides: Any) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        agent_types={"worker": exec_type(), **(types or {})},
        agent_roots=[tmp_path],
        agent_terminate_grace_s=2.0,
        agent_watchdog_grace_s=0.5,
        **overrides,
    )


def spec(name: str, task: str | None = None, *, type: str = "worker", **fields: Any) -> AgentSpec:
    if "depends_on" in fields:
        fields["depends_on"] = tuple(fields["depends_on"])
    return AgentSpec(type=type, name=name, task=task, **fields)


def request(*agents: AgentSpec, **options: Any) -> SpawnRequest:
    return SpawnRequest(agents=tuple(agents), **options)


def worklog_spans(path: Path) -> dict[str, tuple[float, float]]:
    """agent id -> (start, end) monotonic times, from the exec agents' WORKLOG lines."""
    starts: dict[str, float] = {}
    spans: dict[str, tuple[float, float]] = {}
    for line in path.read_text().splitlines():
        agent_id, event, at = line.split()
        if event == "start":
            starts[agent_id] = float(at)
        else:
            spans[agent_id] = (starts[agent_id], float(at))
    return spans


def held_after_tool_results(release: threading.Event, timeout_s: float = 60.0) -> Script:
    """`default_script`, but the model turn that follows a tool result is answered only once ``release``
    is set: a test reads what one turn left before the next begins (bounded, so a failing test ends)."""

    def script(request: RecordedRequest) -> Answer:
        if request.is_turn and request.tool_results and not request.new_prompt:
            release.wait(timeout_s)
        return default_script(request)

    return script
