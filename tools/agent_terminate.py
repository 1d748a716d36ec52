"""``agent_terminate``: end agents — one by id, every agent of a type, or all of them.

``{"agent_id": "agent-3f2a..."}`` ends that agent's session, then its process group (SIGTERM,
then SIGKILL after ``grace_s``), tools included. Asking again answers the same final state.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, StrictBool

from server.agents.supervisor import StopFailed, Supervisor
from server.errors import InvalidArgument
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.results import structured


class TerminatedAgent(CompactModel):
    agent_id: str
    name: str
    type: str
    status: str = Field(description="Its final state: terminated, or how it had already ended; its current one "
                        "when its processes could not be confirmed gone (then error says why).")
    error: str | None = None
    discarded: str | None = Field(default=None, description="discard_workspace: '<branch> <last commit>', deleted.")


class AgentTerminateResult(BaseModel):
    agents: list[TerminatedAgent]


async def agent_terminate(
    ctx: Context[Services, Any],
    agent_id: Annotated[str, Field(validation_alias=aliases("agent_id", "agentId"),
                                   description="The agent to end.")] = "",
    type: Annotated[str, Field(description="End every live agent of this type.")] = "",
    # Strict: only a JSON true ends every agent, never "true", 1 or "yes".
    all: Annotated[StrictBool, Field(description="End every live agent.")] = False,
    grace_s: Annotated[float, Field(ge=0, le=300, validation_alias=aliases("grace_s", "graceS"),
                                    description="Seconds between SIGTERM and SIGKILL.")] = 5.0,
    discard_workspace: Annotated[StrictBool, Field(
        validation_alias=aliases("discard_workspace", "discardWorkspace"),
        description="Also remove its worktree and delete its branch (else kept until merged).")] = False,
) -> Annotated[CallToolResult, AgentTerminateResult]:
    """End agents: agent_id, or every live agent of a type, or all: true (exactly one of them).
    Ends the session, then SIGTERM and, after grace_s, SIGKILL to the process group, tools
    included; a running task ends as terminated (a worktree agent's work committed on its branch).
    Idempotent. One whose processes cannot be confirmed gone answers its status and an error
    (unavailable); its stop is retried.
    Errors start with a code: invalid_argument, not_found.
    """
    services: Services = ctx.request_context.lifespan_context
    supervisor = services.supervisor
    chosen = [name for name, given in (("agent_id", agent_id), ("type", type), ("all", all)) if given]
    if len(chosen) != 1:
        raise InvalidArgument("give exactly one of agent_id, type or all: true"
                              + (f" (got {', '.join(chosen)})" if chosen else ""))
    if agent_id:
        ids = [agent_id]
    else:
        if type and type not in supervisor.types:
            supervisor.types.get(type)  # raises, listing the known types
        ids = [agent.id for agent in supervisor.live_agents() if all or agent.record.type == type]
    answers = await asyncio.gather(*(_terminate_one(supervisor, one, grace_s, discard_workspace) for one in ids))
    return structured(AgentTerminateResult(agents=list(answers)))


async def _terminate_one(supervisor: Supervisor, agent_id: str, grace_s: float, discard: bool) -> TerminatedAgent:
    """One agent's final state; or, when its processes could not be confirmed gone, its state now
    and why (it stays live and the stop is retried), so one agent's trouble never hides the others'.
    Its workspace is discarded only once its processes are gone."""
    discarded = None
    try:
        record = await supervisor.terminate(agent_id, grace_s)
        error = record.error
        if discard and (workspace := await supervisor.workspaces.discard(agent_id)) is not None:
            discarded = f"{workspace.branch} {workspace.head or workspace.base_commit}"
    except StopFailed as failure:
        live = supervisor.live(agent_id)
        if live is None:
            raise
        record, error = live.record, str(failure)
    optional = {"error": error, "discarded": discarded}
    return TerminatedAgent(agent_id=record.id, name=record.name, type=record.type, status=record.status,
                           **{name: value for name, value in optional.items() if value})


def tool() -> Tool:
    return CheckedTool.from_function(
        agent_terminate,
        title="Terminate agents",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=True,
                                    open_world_hint=False),
    )
