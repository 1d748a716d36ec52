"""``query_start``: give a live agent its next task.

``{"agent_id": "agent-3f2a...", "task": "run the tests and fix what fails"}`` queues the task; a
claude agent runs its queries one after another in its session (a second one waits ``queued``).
``wait: true`` answers when it has ended (or ``timeout_s`` passed), with its result.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field

from server.agents.spend import Limit
from server.config.agent_type import PermissionMode
from server.queries.registry import WaitOutcome
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.client_asking import ClientAsking, wait_or_ask
from tools.support.query_views import ListedQuery
from tools.support.results import structured


class QueryStartResult(BaseModel):
    query: ListedQuery
    timed_out: bool = Field(default=False, description="wait: true and it was still going at timeout_s.")


async def query_start(
    ctx: Context[Services, Any],
    agent_id: Annotated[str, Field(min_length=1, validation_alias=aliases("agent_id", "agentId"),
                                   description="A live agent (agent_list status 'active').")],
    task: Annotated[str, Field(min_length=1, max_length=100_000, description="What the agent should do.")],
    model: Annotated[str | None, Field(description="Model from this query on (claude: set live).")] = None,
    permission_mode: Annotated[PermissionMode | None, Field(
        validation_alias=aliases("permission_mode", "permissionMode"),
        description="Permission mode from this query on.")] = None,
    budget_usd: Annotated[float | None, Field(gt=0, validation_alias=aliases("budget_usd", "budgetUsd"),
                                              description="Most this query may spend (live estimate).")] = None,
    budget_tokens: Annotated[int | None, Field(gt=0, validation_alias=aliases("budget_tokens", "budgetTokens"),
                                               description="Most tokens it may use.")] = None,
    on_budget: Annotated[Literal["pause", "terminate"] | None, Field(
        validation_alias=aliases("on_budget", "onBudget"), description="At a budget; default: the agent's.")] = None,
    wait: Annotated[bool, Field(description="Answer when the query has ended.")] = False,
    timeout_s: Annotated[float, Field(gt=0, le=86_400, validation_alias=aliases("timeout_s", "timeoutS"),
                                      description="With wait: the longest to wait.")] = 600.0,
) -> Annotated[CallToolResult, QueryStartResult] | InputRequiredResult:
    """Start a query (a task) on a live agent: queued behind its earlier queries, then run in its
    session (claude) or as a new process (exec). Answers the query (query_id for query_control and
    query_wait); with wait: true, once it has ended or timeout_s passed, with its result
    (its requests asked by elicitation).
    Errors start with a code: invalid_argument, not_found, conflict (the agent has ended),
    forbidden (bypassPermissions not allowed for its type), budget_exhausted.
    """
    services: Services = ctx.request_context.lifespan_context
    asking = await ClientAsking.begin(ctx) if wait else None
    if asking is not None and asking.resumed:  # a retry with the answers: the query runs already
        query_id, deadline_ms = asking.resumed["query_id"], asking.resumed["deadline_ms"]
    else:
        query = await services.queries.start(agent_id, task, model=model, permission_mode=permission_mode,
                                             budget=Limit(budget_usd, budget_tokens), on_budget=on_budget)
        if asking is None:
            (view,) = await services.queries.views([query], include_output=False)
            return structured(QueryStartResult(query=ListedQuery.from_engine(view)))
        query_id, deadline_ms = query.id, services.clock.now_ms() + int(timeout_s * 1000)

    async def progress(ended: int, of: int, message: str) -> None:
        await ctx.report_progress(ended, of, message)

    async def wait_for_it(remaining_s: float | None) -> WaitOutcome:
        return await services.queries.wait([query_id], mode="all", timeout_s=remaining_s or 0.0, progress=progress,
                                           interrupt=interrupt)

    async with asking.watching([query_id]) as interrupt:
        waited = await wait_or_ask(asking, wait_for_it, deadline_ms=deadline_ms, done=lambda outcome: not outcome.pending,
                                   call_state=lambda _: {"query_id": query_id, "deadline_ms": deadline_ms})
    if isinstance(waited, InputRequiredResult):
        return waited
    return structured(QueryStartResult(query=ListedQuery.from_engine(waited.queries[0]), timed_out=waited.timed_out))


def tool() -> Tool:
    return CheckedTool.from_function(
        query_start,
        title="Start a query on an agent",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                    open_world_hint=True),
    )
