"""``agent_list``: the agents this server started (now and in earlier runs), newest state first-hand.

``{"status": "running"}`` lists the agents working right now; ``{"type": "coder", "limit": 10}``
pages through every coder, with ``cursor`` from the previous answer.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from server.agents.budgets import BudgetState
from server.agents.records import LIVE_AGENT_STATUSES, AgentRecord
from server.agents.workspaces import WorkspaceRecord
from server.services import Services
from tools.support.arguments import seq_cursor
from tools.support.budget_views import ShownBudget
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.results import structured
from tools.support.timestamps import iso_utc

Status = Literal["queued", "spawning", "ready", "running", "waiting", "terminated", "failed", "lost", "skipped",
                 "active"]


class ListedAgent(CompactModel):
    agent_id: str
    name: str
    type: str
    runtime: str
    status: str
    model: str | None = None
    permission_mode: str | None = None
    pid: int | None = Field(default=None, description="While alive.")
    workdir: str
    current_query: str | None = Field(default=None, description="The query (task) it is running.")
    tasks_run: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    memory_calls: int | None = None
    error: str | None = None
    spawn_ms: float | None = None
    created_at: str
    ready_at: str | None = None
    ended_at: str | None = None
    branch: str | None = Field(default=None, description="A worktree agent's branch (agent_changes, agent_merge).")
    merged_into: str | None = None
    budget: ShownBudget | None = Field(default=None, description="Its own, over all its tasks.")
    call_id: str | None = Field(default=None, description="The spawn call whose budget it shares.")
    call_budget: ShownBudget | None = None
    resumed_from: str | None = None
    session_id: str | None = Field(default=None, description="claude: its Claude Code session (resume).")

    @classmethod
    def from_record(cls, record: AgentRecord, memory_calls: int | None, workspace: WorkspaceRecord | None = None,
                    budget: BudgetState | None = None, call_budget: BudgetState | None = None) -> ListedAgent:
        listed = cls(
            agent_id=record.id, name=record.name, type=record.type, runtime=record.runtime, status=record.status,
            model=record.model, permission_mode=record.permission_mode, workdir=record.workdir,
            tasks_run=record.tasks_run, input_tokens=record.input_tokens, output_tokens=record.output_tokens,
            cost_usd=round(record.cost_usd, 6), created_at=iso_utc(record.created_ms),
        )
        optional: dict[str, Any] = {
            "pid": record.pid, "current_query": record.current_query, "error": record.error,
            "spawn_ms": round(record.spawn_ms, 1) if record.spawn_ms is not None else None,
            "ready_at": iso_utc(record.ready_ms) if record.ready_ms else None,
            "ended_at": iso_utc(record.ended_ms) if record.ended_ms else None,
            "memory_calls": memory_calls or record.memory_calls or None,
            "branch": workspace.branch if workspace is not None and workspace.discarded_ms is None else None,
            "merged_into": workspace.merged_into if workspace is not None else None,
            "budget": ShownBudget.from_engine(budget) if budget is not None and budget.limit.set else None,
            "call_id": record.call_id,
            "call_budget": ShownBudget.from_engine(call_budget) if call_budget is not None else None,
            "resumed_from": record.resumed_from, "session_id": record.session_id,
        }
        for name, value in optional.items():
            if value is not None:
                setattr(listed, name, value)
        return listed


class AgentListResult(CompactModel):
    agents: list[ListedAgent]
    counts: dict[str, int] = Field(description="Every agent on record, by status.")
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page.")


async def agent_list(
    ctx: Context[Services, Any],
    status: Annotated[Status | None, Field(description="Only this status; 'active' = queued..waiting.")] = None,
    type: Annotated[str, Field(description="Only this agent type.")] = "",
    limit: Annotated[int, Field(ge=1, le=500, description="Most agents per page.")] = 50,
    cursor: Annotated[str, Field(description="next_cursor of the previous page.")] = "",
) -> Annotated[CallToolResult, AgentListResult]:
    """List agents: type, status, model, permission mode, pid while alive, current query, tasks
    run, tokens and cost so far, budgets and what is left, timestamps, a worktree agent's branch.
    Oldest first, paged. Agents of earlier server runs are listed too (lost when that server
    crashed). Errors start with a code: invalid_argument.
    """
    services: Services = ctx.request_context.lifespan_context
    supervisor = services.supervisor
    after = seq_cursor(cursor)
    statuses = LIVE_AGENT_STATUSES if status == "active" else (status,) if status else ()
    records, next_seq = await supervisor.records.agents_page(statuses=statuses, agent_type=type or None,
                                                             after_seq=after, limit=limit)
    calls = supervisor.memory_access.calls_by_agent() if supervisor.memory_access is not None else {}
    workspaces = await supervisor.workspaces.of_agents([record.id for record in records])
    budgets = supervisor.budgets
    listed = []
    for record in records:
        live = supervisor.live(record.id)
        current = live.record if live is not None else record  # the live copy is never behind the database
        running = live.live_usage if live is not None and live.running is not None else None
        call = budgets.call_state(await budgets.call(record.call_id)) if record.call_id is not None else None
        listed.append(ListedAgent.from_record(current, calls.get(record.id), workspaces.get(record.id),
                                              budgets.agent_state(current, running), call))
    result = AgentListResult(agents=listed, counts=await supervisor.records.counts_by_status())
    if next_seq is not None:
        result.next_cursor = str(next_seq)
    return structured(result)


def tool() -> Tool:
    return CheckedTool.from_function(
        agent_list,
        title="List agents",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                    open_world_hint=False),
    )
