"""`PermissionGate`: answers one claude agent's permission requests and questions.

A sandboxed agent's file tools are refused outside its `FileScope` first, whatever else allows them.
Then at once, from the agent's type and its mode at the time of asking (`permissions.decide`), unless
the type's ``on_permission_request`` hands the request to a person: then it waits, through the
`TaskLedger`, for an answer given over MCP, the dashboard or the CLI, or for the timeout. What a
person allowed with ``remember`` is allowed without asking for the rest of the agent's life
(Claude Code is also handed its own suggestion for the session). Every answer goes in the log of
the query that asked.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

from server.agents.live import Agent
from server.agents.permissions import (
    NO_ONE_TO_ASK,
    QUESTION_TOOL,
    PermissionAnswer,
    PermissionAsk,
    asks,
    decide,
    matches,
)
from server.agents.tasks import TaskLedger
from server.agents.types import AgentType

logger = logging.getLogger(__name__)

_PREFIX_RULE = re.compile(r":\*$")  # Claude Code's `npm test:*`: any command starting `npm test`


class PermissionGate:
    def __init__(self, agent_id: str, type_name: str, agent_type: AgentType, live: Callable[[str], Agent | None],
                 tasks: TaskLedger, default_timeout_s: float) -> None:
        self._agent_id = agent_id
        self._type_name = type_name
        self._agent_type = agent_type  # until the agent is live (a warm pool's session), then the agent's own
        self._live = live
        self._tasks = tasks
        self._default_timeout_s = default_timeout_s

    async def __call__(self, tool_name: str, tool_input: dict[str, Any],
                       suggestions: list[dict[str, Any]]) -> PermissionAnswer:
        agent = self._live(self._agent_id)
        agent_type = agent.agent_type if agent is not None else self._agent_type
        mode = (agent.record.permission_mode if agent is not None else None) or agent_type.permission_mode
        task_id = agent.running.id if agent is not None and agent.running is not None else None
        policy = agent_type.on_permission_request
        if tool_name == QUESTION_TOOL and not (task_id is not None and asks(policy, tool_name, tool_input)):
            await self._log(task_id, mode, False, tool_name, "no one to ask")
            return PermissionAnswer(False, NO_ONE_TO_ASK)
        if agent is not None and agent.file_scope is not None and \
                (refusal := agent.file_scope.refusal(tool_name, tool_input)) is not None:
            await self._log(task_id, mode, False, tool_name, refusal)
            return PermissionAnswer(False, refusal)
        if tool_name != QUESTION_TOOL:
            if agent is not None and any(matches(rule, tool_name, tool_input) for rule in agent.remembered):
                await self._log(task_id, mode, True, tool_name, "remembered from an earlier answer")
                return PermissionAnswer(True)
            decision = decide(self._type_name, agent_type, mode, tool_name)
            if decision.allowed or decision.final or task_id is None or not asks(policy, tool_name, tool_input):
                if not decision.allowed:
                    logger.info("agent %s: denied tool %s (%s)", self._agent_id, tool_name, mode)
                await self._log(task_id, mode, decision.allowed, tool_name, decision.reason)
                return PermissionAnswer(decision.allowed, None if decision.allowed else decision.reason)
        assert task_id is not None and agent is not None
        timeout_s = agent_type.approval_timeout_s or self._default_timeout_s
        answer = await self._tasks.ask(task_id, PermissionAsk(tool_name, tool_input, timeout_s, suggestions))
        if answer.allowed and answer.remember:
            agent.remembered.extend(remembered_rules(tool_name, suggestions))
        return answer

    async def _log(self, task_id: str | None, mode: str, allowed: bool, tool_name: str, reason: str) -> None:
        if task_id is not None:
            await self._tasks.log(task_id, "permission", f"policy:{mode}", "allowed" if allowed else "denied",
                                  {"tool": tool_name, "reason": reason})


def remembered_rules(tool_name: str, suggestions: list[dict[str, Any]]) -> list[str]:
    """The tool patterns an allow-with-remember covers: the allow rules Claude Code suggested (its
    ``npm test:*`` prefix form read as ``npm test*``), or the whole tool when it suggested none."""
    rules = []
    for suggestion in suggestions:
        if suggestion.get("type") != "addRules" or suggestion.get("behavior") not in (None, "allow"):
            continue
        for rule in suggestion.get("rules") or []:
            name, content = rule.get("toolName"), rule.get("ruleContent")
            if not isinstance(name, str):
                continue
            rules.append(f"{name}({_PREFIX_RULE.sub('*', content)})" if isinstance(content, str) and content else name)
    return rules or [tool_name]
