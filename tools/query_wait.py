"""``query_wait``: block until queries end, instead of polling.

``{"query_ids": ["query-9c1e...", "query-02ab..."], "mode": "any", "timeout_s": 120}`` answers as
soon as one of them has ended (``all``: every one), with each query's state and result.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field

from server.queries.registry import WaitOutcome
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.client_asking import ClientAsking, wait_or_ask
from tools.support.query_views import ListedQuery
from tools.support.results import structured


class QueryWaitResult(BaseModel):
    queries: list[ListedQuery] = Field(description="In the order asked, each as it is now.")
    timed_out: bool
    pending: list[str] = Field(description="Those that had not ended when it answered.")


async def query_wait(
    ctx: Context[Services, Any],
    query_ids: Annotated[list[str], Field(min_length=1, max_length=500,
                                          validation_alias=aliases("query_ids", "queryIds"),
                                          description="The queries to wait for.")],
    mode: Annotated[Literal["all", "any"], Field(description="all: until every one ended; any: the first.")] = "all",
    timeout_s: Annotated[float, Field(gt=0, le=86_400, validation_alias=aliases("timeout_s", "timeoutS"),
                                      description="The longest to wait.")] = 300.0,
) -> Annotated[CallToolResult, QueryWaitResult] | InputRequiredResult:
    """Wait until all (or any) of the queries have ended, or timeout_s passed; answers each
    query's state and result, and which are still pending. Progress notifications as they end.
    any: also on needs_input (a client taking elicitation is asked instead).
    Errors start with a code: invalid_argument, not_found.
    """
    services: Services = ctx.request_context.lifespan_context
    asking = await ClientAsking.begin(ctx)
    deadline_ms = asking.resumed["deadline_ms"] if asking.resumed else services.clock.now_ms() + int(timeout_s * 1000)

    async def progress(ended: int, of: int, message: str) -> None:
        await ctx.report_progress(ended, of, message)

    async def wait(remaining_s: float | None) -> WaitOutcome:
        return await services.queries.wait(query_ids, mode=mode, timeout_s=remaining_s or 0.0, progress=progress,
                                           interrupt=interrupt, wake_on_input=asking.way == "none")

    async with asking.watching(query_ids) as interrupt:
        waited = await wait_or_ask(asking, wait, deadline_ms=deadline_ms, done=lambda outcome: not outcome.pending,
                                   call_state=lambda _: {"deadline_ms": deadline_ms})
    if isinstance(waited, InputRequiredResult):
        return waited
    return structured(QueryWaitResult(queries=[ListedQuery.from_engine(view) for view in waited.queries],
                                      timed_out=waited.timed_out, pending=waited.pending))


def tool() -> Tool:
    return CheckedTool.from_function(
        query_wait,
        title="Wait for queries",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                    open_world_hint=False),
    )
