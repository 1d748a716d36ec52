"""``agent_merge``: a worktree agent's branch merged into a branch of the user's repository.

``{"agent_id": "agent-3f2a...", "dry_run": true}`` says whether the merge would succeed; without
``dry_run`` it is made. The merge is made in a temporary worktree and the target branch moves
only once it succeeded, so the repository is never left conflicted and a checkout with
uncommitted changes is never touched; a conflict answers ``conflict`` naming the files.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.results import structured


class AgentMergeResult(BaseModel):
    agent_id: str
    branch: str
    into: str
    strategy: str
    dry_run: bool
    before: str = Field(description="into's commit before.")
    after: str = Field(description="into's commit now (before, for a dry run).")


async def agent_merge(
    agent_id: Annotated[str, Field(min_length=1, validation_alias=aliases("agent_id", "agentId"))],
    ctx: Context[Services, Any],
    into: Annotated[str, Field(description="Target branch; default: the one it started from.")] = "",
    strategy: Literal["merge", "squash", "rebase"] = "merge",
    dry_run: Annotated[bool, Field(validation_alias=aliases("dry_run", "dryRun"))] = False,
) -> Annotated[CallToolResult, AgentMergeResult]:
    """Merge a worktree agent's branch into into (merge commit, squash, or rebase then
    fast-forward). Made in a temporary worktree; into moves only on success (a clean checkout of
    it comes along), and is recorded on the agent. Errors start with a code: conflict (with the
    files; nothing changed), invalid_argument, not_found.
    """
    services: Services = ctx.request_context.lifespan_context
    workspaces = services.supervisor.workspaces
    workspace = await workspaces.get(agent_id)
    outcome = await workspaces.merge(agent_id, into=into or None, strategy=strategy, dry_run=dry_run)
    return structured(AgentMergeResult(agent_id=agent_id, branch=workspace.branch, into=outcome.into,
                                       strategy=outcome.strategy, dry_run=outcome.dry_run, before=outcome.before,
                                       after=outcome.after))


def tool() -> Tool:
    return CheckedTool.from_function(
        agent_merge,
        title="Merge an agent's branch",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                    open_world_hint=False),
    )
