"""The settings model of an agent type: what a named kind of agent runs, with which model,
prompt, tools and limits, checked when the settings are read.

``[agent_types.<name>]`` in ``switchboard.toml`` (or ``SWITCHBOARD_AGENT_TYPES`` as JSON) adds
types or overrides the built-in ones (`server.agents.types`, where the engine runs them).
"""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Runtime = Literal["claude", "exec"]
# Where an agent works: in its cwd (`shared`), in a git worktree of its own (`worktree`), or in a
# worktree when its cwd is inside a git work tree and in its cwd otherwise (`auto`).
WorkspaceMode = Literal["shared", "worktree", "auto"]
WORKSPACE_MODES = ("shared", "worktree", "auto")

# The permission modes Claude Code accepts (checked against the bundled CLI's --permission-mode).
PERMISSION_MODES = ("default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto")
PermissionMode = Literal["default", "acceptEdits", "plan", "bypassPermissions", "dontAsk", "auto"]

# What reaching a budget does to the query that reached it: pause it (a person may raise the budget
# with query_control change_budget and resume it) or end it.
OnBudget = Literal["pause", "terminate"]
ON_BUDGET_ACTIONS = ("pause", "terminate")

# A tool pattern of on_permission_request: a tool's name, or a name with what its input must match
# in parentheses (`Bash(npm *)`, `Write(/etc/**)`; `*` matches any characters, `/` included).
_TOOL_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*(\(.+\))?")
ApprovalPolicy = Literal["decide", "ask"] | tuple[str, ...]


def check_approval_policy(policy: object) -> ApprovalPolicy:
    """``decide``, ``ask`` or a non-empty list of tool patterns; raises ValueError naming what is wrong."""
    if policy in ("decide", "ask"):
        return policy
    if isinstance(policy, str):
        raise ValueError(f"on_permission_request {policy!r} is not \"decide\", \"ask\" or a list of tool patterns")
    if not isinstance(policy, (list, tuple)) or not policy:
        raise ValueError("on_permission_request is \"decide\", \"ask\" or a non-empty list of tool patterns "
                         "(e.g. [\"Bash\", \"Write(/etc/**)\"])")
    for pattern in policy:
        if not isinstance(pattern, str) or not _TOOL_PATTERN.fullmatch(pattern):
            raise ValueError(f"on_permission_request pattern {pattern!r} is not a tool name or Tool(pattern)")
    return tuple(policy)


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
    on_permission_request: ApprovalPolicy = Field(
        "decide", description="claude: `decide` (answer each permission request from the tool lists and mode at "
        "once), `ask` (a request they do not allow, and every AskUserQuestion, waits for a person's answer), or a "
        "list of tool patterns that ask while the rest are decided ([\"Bash\", \"Write(/etc/**)\"]).")
    approval_timeout_s: float | None = Field(
        None, gt=0, le=7 * 24 * 3600,
        description="claude: how long a request waits for an answer; unset: SWITCHBOARD_APPROVAL_TIMEOUT_S.")
    workspace: WorkspaceMode = Field(
        "shared", description="`shared`: agents work in their cwd; `worktree`: each in a git worktree of its own on a "
        "branch of its own (the cwd must be in a git repository); `auto`: a worktree when the cwd is in one.")
    setup: tuple[str, ...] | None = Field(
        None, description="An argv run in each new worktree before the agent's first task (e.g. [\"npm\", \"ci\"]); "
        "its failure fails the agent.")
    setup_timeout_s: float = Field(600.0, gt=0, le=24 * 3600, description="Most time `setup` may take.")
    sandbox: bool | None = Field(
        None, description="Run the agent sandboxed (bubblewrap): exec commands with the filesystem read-only but for "
        "the workspace and a private /tmp, in a PID namespace of their own, without network; claude agents with "
        "Claude Code's Bash sandbox and file tools kept to the workspace and read_roots. Unset: on for worktree agents.")
    sandbox_network: bool = Field(False, description="Let a sandboxed agent's commands reach the network.")
    read_roots: tuple[str, ...] = Field(
        (), description="Sandboxed: directories (absolute) a claude agent's file tools may read besides its workspace, "
        "and that an exec agent's commands see under the sandbox's private /tmp (a command or virtualenv kept there).")
    budget_usd: float | None = Field(
        None, gt=0, description="Most an agent of this type may spend in all, estimated live from each model turn's "
        "usage at list prices.")
    budget_tokens: int | None = Field(None, gt=0, description="Most input and output tokens an agent of this type "
                                      "may use in all.")
    on_budget: OnBudget = Field("pause", description="On reaching a budget: `pause` the query (raise the budget with "
                                "query_control change_budget, then resume) or `terminate` it.")
    description: str = Field("", description="One line shown when types are listed.")

    @property
    def allows_bypass(self) -> bool:
        """Whether its agents may run in bypassPermissions (configured so, or allowed to switch to it)."""
        return self.allow_bypass_permissions or self.permission_mode == "bypassPermissions"

    @field_validator("on_permission_request", mode="before")
    @classmethod
    def _approval_policy(cls, policy: object) -> ApprovalPolicy:
        return check_approval_policy(policy)

    @field_validator("setup")
    @classmethod
    def _setup_not_empty(cls, setup: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if setup is not None and (not setup or not setup[0].strip()):
            raise ValueError("setup needs an executable as its first element")
        return setup

    @field_validator("read_roots")
    @classmethod
    def _read_roots_absolute(cls, roots: tuple[str, ...]) -> tuple[str, ...]:
        for root in roots:
            if not root.startswith("/"):
                raise ValueError(f"read_roots entry {root!r} is not an absolute path")
        return roots

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

    @model_validator(mode="after")
    def _runtime_fits(self) -> Self:
        if self.runtime == "exec" and self.command is None:
            raise ValueError("an exec type needs a command (an argv list; {task} is replaced by the task)")
        if self.runtime == "claude" and self.command is not None and len(self.command) != 1:
            raise ValueError("a claude type's command names one executable (the claude CLI), no arguments")
        if self.runtime == "exec" and self.pool_size:
            raise ValueError("pool_size applies to claude types only (an exec agent starts one process per task)")
        return self
