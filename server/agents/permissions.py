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
"""

from __future__ import annotations

from dataclasses import dataclass

from server.agents.types import MEMORY_TOOLS, AgentType

READ_TOOLS = frozenset({"Read", "Glob", "Grep", "LS", "TodoWrite", "WebSearch", "WebFetch", *MEMORY_TOOLS})
EDIT_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})


@dataclass(frozen=True, slots=True)
class PermissionDecision:
    allowed: bool
    reason: str  # for the query's log; also the model's message when refused


def decide(type_name: str, agent_type: AgentType, mode: str, tool_name: str) -> PermissionDecision:
    """The answer to one permission request for ``tool_name`` by an agent of ``agent_type`` in ``mode``."""
    if tool_name in agent_type.disallowed_tools:
        return PermissionDecision(False, f"Switchboard denied {tool_name}: agent type {type_name!r} disallows it.")
    if mode == "bypassPermissions":
        return PermissionDecision(True, "bypassPermissions")
    if mode == "plan":
        if tool_name in READ_TOOLS:
            return PermissionDecision(True, "plan mode allows reading")
        return PermissionDecision(False, f"Switchboard denied {tool_name}: the agent is in plan mode, which only "
                                         f"reads. Describe the change in your plan instead of making it.")
    if tool_name in agent_type.allowed_tools or tool_name in MEMORY_TOOLS:
        return PermissionDecision(True, f"in type {type_name!r}'s allowed_tools")
    if mode == "acceptEdits" and tool_name in EDIT_TOOLS:
        return PermissionDecision(True, "acceptEdits allows editing")
    listed = ", ".join(sorted(agent_type.allowed_tools)) or "none"
    return PermissionDecision(False, f"Switchboard denied {tool_name}: agent type {type_name!r} allows only these "
                                     f"tools: {listed}. Do the task with those, or say in your answer that it needs "
                                     f"{tool_name}.")
