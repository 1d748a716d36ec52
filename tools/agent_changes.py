"""``agent_changes``: what a worktree agent changed on its branch, for review before a merge.

``{"agent_id": "agent-3f2a...", "include_diff": true}`` answers the branch, where it started, its
commits, each changed file with its added and removed lines, the unified diff (bounded), and
whether the branch merges cleanly into the branch it started from as that branch is now.
"""

from __future__ import annotations

from typing import Annotated, Any

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from server.services import Services
from server.workspaces.git import Changes
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.results import structured


class ChangedFile(CompactModel):
    path: str
    status: str = Field(description="A added, M modified, D deleted, T type changed.")
    added: int | None = Field(default=None, description="Lines; absent for a binary file.")
    removed: int | None = None


class AgentChangesResult(CompactModel):
    agent_id: str
    branch: str
    base: str = Field(description="The commit it started from.")
    base_branch: str | None = Field(default=None, description="The branch it started from: agent_merge's default into.")
    head: str
    commits: list[str] = Field(description="'<sha> <subject>', oldest first.")
    files: list[ChangedFile]
    merges_cleanly: bool = Field(description="Into base_branch (else base) as it is now.")
    conflicts: list[str] | None = Field(default=None, description="Files that would conflict.")
    merged_into: str | None = None
    diff: str | None = None
    diff_truncated: bool | None = None

    @classmethod
    def from_engine(cls, agent_id: str, base_branch: str | None, merged_into: str | None,
                    changes: Changes) -> AgentChangesResult:
        result = cls(agent_id=agent_id, branch=changes.branch, base=changes.base, head=changes.head,
                     commits=changes.commits,
                     files=[ChangedFile(path=f.path, status=f.status, **_lines(f.added, f.removed))
                            for f in changes.files],
                     merges_cleanly=changes.merges_cleanly)
        optional: dict[str, Any] = {"base_branch": base_branch, "merged_into": merged_into,
                                    "conflicts": changes.conflicted or None, "diff": changes.diff,
                                    "diff_truncated": True if changes.diff_truncated else None}
        for name, value in optional.items():
            if value is not None:
                setattr(result, name, value)
        return result


def _lines(added: int | None, removed: int | None) -> dict[str, int]:
    return {"added": added, "removed": removed} if added is not None and removed is not None else {}


async def agent_changes(
    agent_id: Annotated[str, Field(min_length=1, validation_alias=aliases("agent_id", "agentId"))],
    ctx: Context[Services, Any],
    include_diff: Annotated[bool, Field(validation_alias=aliases("include_diff", "includeDiff"))] = False,
    max_diff_bytes: Annotated[int, Field(ge=1024, le=1024 * 1024,
                                         validation_alias=aliases("max_diff_bytes", "maxDiffBytes"))] = 64 * 1024,
) -> Annotated[CallToolResult, AgentChangesResult]:
    """A worktree agent's work on its branch: base, head, commits, files (status, lines added and
    removed), whether it merges cleanly into the branch it started from; include_diff adds the
    unified diff, cut at max_diff_bytes. Errors start with a code: invalid_argument, not_found.
    """
    services: Services = ctx.request_context.lifespan_context
    workspaces = services.supervisor.workspaces
    workspace = await workspaces.get(agent_id)
    changes = await workspaces.changes(agent_id, include_diff=include_diff, max_diff_bytes=max_diff_bytes)
    return structured(AgentChangesResult.from_engine(agent_id, workspace.base_branch, workspace.merged_into, changes))


def tool() -> Tool:
    return CheckedTool.from_function(
        agent_changes,
        title="Review an agent's changes",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                    open_world_hint=False),
    )
