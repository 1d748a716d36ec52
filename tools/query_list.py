"""``query_list``: the queries agents run now (and, with ``include_history``, ran before).

``{}`` lists the active queries (queued, running, paused) with counts by state;
``{"include_history": true, "agent_id": "agent-3f2a..."}`` pages through all of one agent's
queries, earlier server runs included; ``include_output`` adds each query's output tail and log;
``{"query_ids": [...], "include_transcript": true, "since_turn": 3}`` pages through a claude query's
turns (an exec query's transcript is its output tail).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from server.errors import InvalidArgument
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
                                           description="Also ended ones, earlier runs too.")] = False,
    status: Annotated[QueryStatus | None, Field(description="Only this state.")] = None,
    agent_id: Annotated[str | None, Field(validation_alias=aliases("agent_id", "agentId"),
                                          description="Only this agent's.")] = None,
    query_ids: Annotated[list[str] | None, Field(min_length=1, max_length=500,
                                                 validation_alias=aliases("query_ids", "queryIds"),
                                                 description="Only these queries.")] = None,
    include_output: Annotated[bool, Field(validation_alias=aliases("include_output", "includeOutput"),
                                          description="Add output tail and control log.")] = False,
    include_transcript: Annotated[bool, Field(description="Add its turns (exec: output tail).")] = False,
    since_turn: Annotated[int, Field(ge=0, description="Transcript from this turn (page by next_turn).")] = 0,
    limit: Annotated[int, Field(ge=1, le=500, description="Page size.")] = 50,
    cursor: Annotated[str, Field(description="A page's next_cursor.")] = "",
) -> Annotated[CallToolResult, QueryListResult]:
    """List queries (oldest first, paged; counts by state): state, agent, task, model, mode, times, turns,
    tokens, cost, result or error. Without include_history only active ones. Errors start with a code:
    invalid_argument."""
    services: Services = ctx.request_context.lifespan_context
    after = seq_cursor(cursor)
    if since_turn and not include_transcript:
        raise InvalidArgument("since_turn pages a transcript: pass include_transcript: true with it")
    views, next_seq, counts = await services.queries.page(
        include_history=include_history, statuses=(status,) if status else (), agent_id=agent_id,
        query_ids=query_ids or (), include_output=include_output, include_transcript=include_transcript,
        since_turn=since_turn, limit=limit, after_seq=after)
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
