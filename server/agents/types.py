"""Agent types as the engine runs them: what a named kind of agent runs, with which model,
prompt, tools and limits (their settings model is `server.config.agent_type.AgentType`).

``[agent_types.<name>]`` in ``switchboard.toml`` (or ``SWITCHBOARD_AGENT_TYPES`` as JSON) adds
types or overrides the built-in ones, which carry claude-flow's type names so its prompts work.
Each built-in is a ``claude`` type with a short role prompt and a conservative tool set: tools
outside it are denied with a message the model sees (an agent never waits on a prompt nobody
answers). The four that edit and run commands (coder, tester, optimizer, debugger) work in a git
worktree of their own when their cwd is inside a git work tree (``workspace = "auto"``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from server.agents.launch import agent_environment
from server.config.agent_type import AgentType, WorkspaceMode
from server.errors import InvalidArgument

# AgentType is the settings model itself (server.config.agent_type), named here for the engine.
__all__ = ["BUILTIN_TYPES", "MEMORY_TOOLS", "PLACEHOLDERS", "AgentType", "AgentTypes", "render_command",
           "type_environment"]

# The placeholders an exec command template may use, each substituted inside one argument.
PLACEHOLDERS = ("task", "model", "permission_mode", "agent_id", "workdir")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

# Every claude agent may use the shared memory (when it is on): coordination is the point.
MEMORY_TOOLS = ("mcp__switchboard__memory_usage", "mcp__switchboard__memory_search")


def type_environment(agent_type: AgentType, agent_id: str) -> dict[str, str]:
    """The environment of ``agent_type``'s processes for ``agent_id`` (see `launch.agent_environment`)."""
    return agent_environment(agent_id, agent_type.runtime, agent_type.env, agent_type.env_passthrough)


def render_command(template: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """The argv for one task: each placeholder replaced inside its own argument, never through a
    shell, so a task full of quotes and semicolons stays one argument. Other braces are kept."""
    return [_PLACEHOLDER.sub(lambda match: values.get(match.group(1), ""), argument) for argument in template]


_READ_ONLY = ("Read", "Glob", "Grep", "LS", "TodoWrite")
_EDITING = (*_READ_ONLY, "Edit", "MultiEdit", "Write", "NotebookEdit")
_RUNNING = (*_EDITING, "Bash")


def _claude(role: str, tools: tuple[str, ...], description: str, workspace: WorkspaceMode = "shared") -> AgentType:
    prompt = (
        f"You are a {role} working as one agent of a swarm coordinated by Switchboard. "
        "Share findings and results with the other agents through the switchboard memory tools "
        "(memory_usage, memory_search) under a namespace named after the task, and finish with a short summary."
    )
    return AgentType(runtime="claude", system_prompt=prompt, allowed_tools=tools, description=description,
                     workspace=workspace)


BUILTIN_TYPES: dict[str, AgentType] = {
    "coordinator": _claude("coordinator that plans work and tracks it", _READ_ONLY, "plans and tracks; reads only"),
    "researcher": _claude("researcher who reads code and documents", _READ_ONLY, "reads and reports; no edits"),
    "coder": _claude("software engineer who implements changes", _RUNNING, "edits files and runs commands", "auto"),
    "analyst": _claude("analyst who studies code and data", _READ_ONLY, "reads and analyses; no edits"),
    "architect": _claude("software architect", _READ_ONLY, "designs; reads only"),
    "system-architect": _claude("system architect", _READ_ONLY, "designs systems; reads only"),
    "tester": _claude("test engineer who writes and runs tests", _RUNNING, "writes and runs tests", "auto"),
    "reviewer": _claude("code reviewer", _READ_ONLY, "reviews; reads only"),
    "optimizer": _claude("performance engineer", _RUNNING, "measures and edits", "auto"),
    "documenter": _claude("technical writer", _EDITING, "writes documentation; runs nothing"),
    "monitor": _claude("monitor who watches the swarm's progress", _READ_ONLY, "watches; reads only"),
    "specialist": _claude("specialist", _READ_ONLY, "answers in depth; reads only"),
    "debugger": _claude("debugger who finds and fixes faults", _RUNNING, "edits files and runs commands", "auto"),
    "planner": _claude("planner who breaks work into tasks", _READ_ONLY, "plans; reads only"),
}


class AgentTypes:
    """The built-in types overlaid with the configured ones."""

    def __init__(self, configured: Mapping[str, AgentType]) -> None:
        self._types = {**BUILTIN_TYPES, **configured}

    def __contains__(self, name: object) -> bool:
        return name in self._types

    def names(self) -> list[str]:
        return sorted(self._types)

    def items(self) -> list[tuple[str, AgentType]]:
        return sorted(self._types.items())

    def get(self, name: str) -> AgentType:
        """The type called ``name``; an unknown name is an error that lists the known ones."""
        try:
            return self._types[name]
        except KeyError:
            raise InvalidArgument(
                f"unknown agent type {name!r}; known types: {', '.join(self.names())} "
                "(add one under [agent_types.<name>] in switchboard.toml)"
            ) from None
