"""How Switchboard answers a claude agent's tool-permission requests, under its current mode.

Claude Code asks (through the SDK's ``can_use_tool``) before a tool that its mode and the type's
``allowed_tools`` do not already allow. Nobody is there to click "allow", so Switchboard answers
at once, from the agent type's tool lists and the mode the agent runs in now (which
``query_control change_permissions`` may have changed):

- ``bypassPermissions``: anything not in ``disallowed_tools``;
- ``plan``: only tools that read (the plan is the output; nothing changes);
- ``acceptEdits``: the type's tools, plus the file-editing tools;
- ``default`` (and ``dontAsk``, ``auto``): the type's tools and the shared memory tools.

A refusal is a message the model reads, naming what it may use instead.

A type's ``on_permission_request`` may hand a request to a person instead (`asks`): under ``ask``
every request these rules do not allow, or with a list of tool patterns the ones that match,
wait for an answer (`PermissionAsk` -> `PermissionAnswer`). A refusal that is the type's own
policy (``disallowed_tools``, plan mode) is never asked: it stays a refusal. Claude Code's
question tool (``AskUserQuestion``) is a request too: under ``ask`` its questions wait for an
answer; otherwise the model is told that no one can answer.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from server.agents.types import MEMORY_TOOLS, AgentType
from server.config.agent_type import ApprovalPolicy

READ_TOOLS = frozenset({"Read", "Glob", "Grep", "LS", "TodoWrite", "WebSearch", "WebFetch", *MEMORY_TOOLS})
EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
QUESTION_TOOL = "AskUserQuestion"
NO_ONE_TO_ASK = ("No one can answer questions for this agent: it runs unattended. Proceed on your own judgement "
                 "and say in your answer what you assumed.")
# The input field a pattern's parenthesised part is matched against, by tool (others: the first of these present).
_PATTERN_FIELDS = ("command", "file_path", "notebook_path", "path", "url", "pattern")
_PATTERN = re.compile(r"(?P<tool>[^()]+)(\((?P<spec>.+)\))?")

# What a person answers a permission request with, on every surface: allow (this once), always
# (and Claude Code's suggestion, for the rest of the agent's life), or deny.
Decision = Literal["allow", "always", "deny"]
DECISIONS: tuple[Decision, ...] = ("allow", "always", "deny")


@dataclass(frozen=True, slots=True)
class PermissionDecision:
    allowed: bool
    reason: str  # for the query's log; also the model's message when refused
    final: bool = False  # a refusal by the type's own policy (disallowed, plan mode): never handed to a person


@dataclass(frozen=True, slots=True)
class PermissionAsk:
    """A request handed to a person: the tool, its input, what Claude Code suggests remembering."""

    tool: str
    tool_input: dict[str, Any]
    timeout_s: float  # the type's approval_timeout_s, else the server's
    suggestions: list[dict[str, Any]] = field(default_factory=list)  # the CLI's permission updates, as sent

    @property
    def is_question(self) -> bool:
        return self.tool == QUESTION_TOOL


@dataclass(frozen=True, slots=True)
class PermissionAnswer:
    """What the person (or the timeout) decided; ``message`` reaches the model with a refusal."""

    allowed: bool
    message: str | None = None
    remember: bool = False                 # apply the CLI's suggestion for the rest of the agent's life
    answers: dict[str, str] | None = None  # a question's answers: {question text: chosen label}

    @classmethod
    def of(cls, decision: Decision, message: str | None = None, answers: dict[str, str] | None = None
           ) -> PermissionAnswer:
        return cls(decision != "deny", message, decision == "always", answers)


def asks(policy: ApprovalPolicy, tool_name: str, tool_input: dict[str, Any]) -> bool:
    """Whether ``policy`` hands a request for this tool (with this input) to a person."""
    if policy == "ask":
        return True
    if policy == "decide":
        return False
    return any(matches(pattern, tool_name, tool_input) for pattern in policy)


def matches(pattern: str, tool_name: str, tool_input: dict[str, Any]) -> bool:
    """``Bash`` matches every Bash request; ``Bash(npm *)`` those whose command matches the glob;
    ``Write(/etc/**)`` writes under /etc (``*`` matches any characters, ``/`` included)."""
    parsed = _PATTERN.fullmatch(pattern)
    if parsed is None or parsed["tool"] != tool_name:
        return False
    spec = parsed["spec"]
    if spec is None:
        return True
    subject = next((tool_input[name] for name in _PATTERN_FIELDS if isinstance(tool_input.get(name), str)), None)
    return subject is not None and fnmatch.fnmatchcase(subject, spec)


def decide(type_name: str, agent_type: AgentType, mode: str, tool_name: str) -> PermissionDecision:
    """The answer to one permission request for ``tool_name`` by an agent of ``agent_type`` in ``mode``."""
    if tool_name in agent_type.disallowed_tools:
        return PermissionDecision(False, f"Switchboard denied {tool_name}: agent type {type_name!r} disallows it.",
                                  final=True)
    if mode == "bypassPermissions":
        return PermissionDecision(True, "bypassPermissions")
    if mode == "plan":
        if tool_name in READ_TOOLS:
            return PermissionDecision(True, "plan mode allows reading")
        return PermissionDecision(False, f"Switchboard denied {tool_name}: the agent is in plan mode, which only "
                                         f"reads. Describe the change in your plan instead of making it.", final=True)
    if tool_name in agent_type.allowed_tools or tool_name in MEMORY_TOOLS:
        return PermissionDecision(True, f"in type {type_name!r}'s allowed_tools")
    if mode == "acceptEdits" and tool_name in EDIT_TOOLS:
        return PermissionDecision(True, "acceptEdits allows editing")
    listed = ", ".join(sorted(agent_type.allowed_tools)) or "none"
    return PermissionDecision(False, f"Switchboard denied {tool_name}: agent type {type_name!r} allows only these "
                                     f"tools: {listed}. Do the task with those, or say in your answer that it needs "
                                     f"{tool_name}.")
