"""Agent types: what a named kind of agent runs, with which model, prompt, tools and limits.

``[agent_types.<name>]`` in ``switchboard.toml`` (or ``SWITCHBOARD_AGENT_TYPES`` as JSON) adds
types or overrides the built-in ones, which carry claude-flow's type names so its prompts work.
Each built-in is a ``claude`` type with a short role prompt and a conservative tool set: tools
outside it are denied with a message the model sees (an agent never waits on a prompt nobody
answers).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from server.agents.launch import agent_environment
from server.errors import InvalidArgument

Runtime = Literal["claude", "exec"]

# The permission modes Claude Code accepts (checked against the bundled CLI's --permission-mode).
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto")
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"]

# The placeholders an exec command template may use, each substituted inside one argument.
PLACEHOLDERS = ("task", "model", "permission_mode", "agent_id", "workdir")
_PLACEHOLDER = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")

# Every claude agent may use the shared memory (when it is on): coordination is the point.
MEMORY_TOOLS = ("mcp__switchboard__memory_usage", "mcp__switchboard__memory_search")


class AgentType(BaseModel):
    """One ``[agent_types.<name>]`` table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    runtime: Runtime = Field("claude", description="`claude`: a Claude Code session; `exec`: one command per task.")
    command: tuple[str, ...] | None = Field(
        None,
        description="exec: the argv template ({task}, {model}, {permission_mode}, {agent_id}, {workdir}); "
        "claude: the claude executable to run instead of the bundled one (one element).",
    )
    model: str | None = Field(None, description="Model for this type's agents; unset: the runtime's default.")
    permission_mode: PermissionMode = Field("default", description="Claude Code permission mode.")
    system_prompt: str | None = Field(None, description="claude: appended to Claude Code's own system prompt.")
    allowed_tools: tuple[str, ...] = Field((), description="claude: tools that run without asking.")
    disallowed_tools: tuple[str, ...] = Field((), description="claude: tools removed from the model's reach.")
    setting_sources: tuple[Literal["user", "project", "local"], ...] = Field(
        (), description="claude: Claude Code settings files to load (none by default, so a settings file's permission "
        "rules or hooks never widen what the type allows).")
    allow_bypass_permissions: bool = Field(
        False, description="claude: let a spawn or query_control switch this type's agents to bypassPermissions.")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment of this type's processes.")
    env_passthrough: tuple[str, ...] = Field(
        (), description="Names of the server's environment variables this type's processes also get (the rest are "
        "withheld: an agent gets PATH, HOME, LANG, LC_*, TERM, TZ, USER, LOGNAME, SHELL, TMPDIR, and a claude agent "
        "ANTHROPIC_*, CLAUDE_* and the proxy variables).")
    max_running: int | None = Field(None, ge=1, description="Most agents of this type alive at once; more wait.")
    pool_size: int = Field(0, ge=0, le=64, description="claude: initialised idle workers kept ready.")
    description: str = Field("", description="One line shown when types are listed.")

    @property
    def allows_bypass(self) -> bool:
        """Whether its agents may run in bypassPermissions (configured so, or allowed to switch to it)."""
        return self.allow_bypass_permissions or self.permission_mode == "bypassPermissions"

    @field_validator("command")
    @classmethod
    def _command_not_empty(cls, command: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if command is not None and (not command or not command[0].strip()):
            raise ValueError("command needs an executable as its first element")
        return command

    @field_validator("env")
    @classmethod
    def _env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name in env:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"env name {name!r} is not a valid environment variable name")
        return env

    @field_validator("env_passthrough")
    @classmethod
    def _passthrough_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"env_passthrough name {name!r} is not a valid environment variable name")
            if name.startswith("SWITCHBOARD_"):
                raise ValueError(f"env_passthrough cannot pass {name}: the server's own settings never reach an agent")
        return names

    def environment(self, agent_id: str) -> dict[str, str]:
        """The environment of this type's processes for ``agent_id`` (see `launch.agent_environment`)."""
        return agent_environment(agent_id, self.runtime, self.env, self.env_passthrough)

    @model_validator(mode="after")
    def _runtime_fits(self) -> AgentType:
        if self.runtime == "exec" and self.command is None:
            raise ValueError("an exec type needs a command (an argv list; {task} is replaced by the task)")
        if self.runtime == "claude" and self.command is not None and len(self.command) != 1:
            raise ValueError("a claude type's command names one executable (the claude CLI), no arguments")
        if self.runtime == "exec" and self.pool_size:
            raise ValueError("pool_size applies to claude types only (an exec agent starts one process per task)")
        return self


def render_command(template: tuple[str, ...], values: Mapping[str, str]) -> list[str]:
    """The argv for one task: each placeholder replaced inside its own argument, never through a
    shell, so a task full of quotes and semicolons stays one argument. Other braces are kept."""
    return [_PLACEHOLDER.sub(lambda match: values.get(match.group(1), ""), argument) for argument in template]


_READ_ONLY = ("Read", "Glob", "Grep", "LS", "TodoWrite")
_EDITING = (*_READ_ONLY, "Edit", "MultiEdit", "Write", "NotebookEdit")
_RUNNING = (*_EDITING, "Bash")


def _claude(role: str, tools: tuple[str, ...], description: str) -> AgentType:
    prompt = (
        f"You are a {role} working as one agent of a swarm coordinated by Switchboard. "
        "Share findings and results with the other agents through the switchboard memory tools "
        "(memory_usage, memory_search) under a namespace named after the task, and finish with a short summary."
    )
    return AgentType(runtime="claude", system_prompt=prompt, allowed_tools=tools, description=description)


BUILTIN_TYPES: dict[str, AgentType] = {
    "coordinator": _claude("coordinator that plans work and tracks it", _READ_ONLY, "plans and tracks; reads only"),
    "researcher": _claude("researcher who reads code and documents", _READ_ONLY, "reads and reports; no edits"),
    "coder": _claude("software engineer who implements changes", _RUNNING, "edits files and runs commands"),
    "analyst": _claude("analyst who studies code and data", _READ_ONLY, "reads and analyses; no edits"),
    "architect": _claude("software architect", _READ_ONLY, "designs; reads only"),
    "system-architect": _claude("system architect", _READ_ONLY, "designs systems; reads only"),
    "tester": _claude("test engineer who writes and runs tests", _RUNNING, "writes and runs tests"),
    "reviewer": _claude("code reviewer", _READ_ONLY, "reviews; reads only"),
    "optimizer": _claude("performance engineer", _RUNNING, "measures and edits"),
    "documenter": _claude("technical writer", _EDITING, "writes documentation; runs nothing"),
    "monitor": _claude("monitor who watches the swarm's progress", _READ_ONLY, "watches; reads only"),
    "specialist": _claude("specialist", _READ_ONLY, "answers in depth; reads only"),
    "debugger": _claude("debugger who finds and fixes faults", _RUNNING, "edits files and runs commands"),
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
