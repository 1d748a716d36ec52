"""``query_list``: the queries agents run now (and, with ``include_history``, ran before).

``{}`` lists the active queries (queued, running, paused) with counts by state;
``{"include_history": true, "agent_id": "agent-3f2a..."}`` pages through all of one agent's
queries, earlier server runs included; ``include_output`` adds each query's output tail and log.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from server.services import Services
from tools.support.arguments import aliases, seq_cursor
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.query_views import ListedQuery
from tools.support.results import structured

QueryStatus = Literal["waiting", "queued", "running", "needs_input", "paused", "completed", "failed", "terminated",
                      "skipped", "lost"]


class QueryListResult(CompactModel):
    queries: list[ListedQuery]
    counts: dict[str, int] = Field(description="Queries on record by state (of agent_id / query_ids when given).")
    next_cursor: str | None = Field(default=None, description="Pass as cursor for the next page.")


async def query_list(
    ctx: Context[Services, Any],
    include_history: Annotated[bool, Field(validation_alias=aliases("include_history", "includeHistory"),
                                           description="Also ended queries, of this and earlier runs.")] = False,
    status: Annotated[QueryStatus | None, Field(description="Only this state.")] = None,
    agent_id: Annotated[str | None, Field(validation_alias=aliases("agent_id", "agentId"),
                                          description="Only this agent's queries.")] = None,
    query_ids: Annotated[list[str] | None, Field(min_length=1, max_length=500,
                                                 validation_alias=aliases("query_ids", "queryIds"),
                                                 description="Only these queries.")] = None,
    include_output: Annotated[bool, Field(validation_alias=aliases("include_output", "includeOutput"),
                                          description="Add each query's output tail and control log.")] = False,
    limit: Annotated[int, Field(ge=1, le=500, description="Most queries per page.")] = 50,
    cursor: Annotated[str, Field(description="next_cursor of the previous page.")] = "",
) -> Annotated[CallToolResult, QueryListResult]:
    """List queries: state, agent, task, model, permission mode, timestamps, wall and active time
    (pauses excluded), turns, tokens, cost, result or error; with include_output the output tail
    and the log of control actions and permission decisions. Without include_history only the
    active ones (waiting, queued, running, paused). Oldest first, paged; counts by state.
    Errors start with a code: invalid_argument.
    """
    services: Services = ctx.request_context.lifespan_context
    after = seq_cursor(cursor)
    views, next_seq, counts = await services.queries.page(
        include_history=include_history, statuses=(status,) if status else (), agent_id=agent_id,
        query_ids=query_ids or (), include_output=include_output, limit=limit, after_seq=after)
    result = QueryListResult(queries=[ListedQuery.from_engine(view) for view in views], counts=counts)
    if next_seq is not None:
        result.next_cursor = str(next_seq)
    return structured(result)


def tool() -> Tool:
    return CheckedTool.from_function(
        query_list,
        title="List queries",
        annotations=ToolAnnotations(read_only_hint=True, destructive_hint=False, idempotent_hint=True,
                                    open_world_hint=False),
    )
