"""``query_control``: steer a query while it runs.

``{"action": "pause", "query_id": "query-9c1e..."}`` freezes the agent's processes (its tools
too) until ``resume``; ``terminate`` stops the query (a claude agent stays up for its next one);
``change_model`` and ``change_permissions`` apply live to a claude session (effect ``now``) or from
an exec agent's next query (``next_query``); ``execute_command`` runs an allowlisted argv in the
agent's directory and environment; ``approve`` and ``deny`` answer a permission request or a
question the query waits on (``needs_input``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field

from server.agents.spend import Limit
from server.config.agent_type import PermissionMode
from server.queries.registry import ControlOutcome
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.results import structured


class CommandOutput(BaseModel):
    argv: list[str]
    exit_code: int | None = Field(description="None when it was ended for running past its timeout.")
    stdout: str = Field(description="The end of it, at most query_command_output_bytes.")
    stderr: str
    timed_out: bool
    duration_ms: float


class QueryControlResult(CompactModel):
    query_id: str
    action: str
    status: str = Field(description="The query's state after the action.")
    effect: Literal["now", "next_query"] = Field(
        description="now: the running work already obeys it; next_query: it applies from the agent's next query.")
    detail: dict[str, Any] | None = None
    command: CommandOutput | None = None
    request_id: str | None = None
    request_status: str | None = Field(default=None, description="approve / deny: allowed | denied.")

    @classmethod
    def from_engine(cls, action: str, outcome: ControlOutcome) -> QueryControlResult:
        result = cls(query_id=outcome.query.id, action=action, status=outcome.query.status, effect=outcome.effect)
        if outcome.detail:
            result.detail = outcome.detail
        if outcome.request is not None:
            result.request_id, result.request_status = outcome.request.id, outcome.request.status
        if outcome.command is not None:
            ran = outcome.command
            result.command = CommandOutput(argv=ran.argv, exit_code=ran.exit_code, stdout=ran.stdout,
                                           stderr=ran.stderr, timed_out=ran.timed_out,
                                           duration_ms=round(ran.duration_ms, 1))
        return result


async def query_control(
    ctx: Context[Services, Any],
    action: Annotated[Literal["pause", "resume", "terminate", "change_model", "change_permissions",
                              "change_budget", "execute_command", "approve", "deny"], Field(description="What to do.")],
    query_id: Annotated[str, Field(min_length=1, validation_alias=aliases("query_id", "queryId"),
                                   description="A query that has not ended.")],
    model: Annotated[str | None, Field(description="change_model: the model to switch to.")] = None,
    permission_mode: Annotated[PermissionMode | None, Field(
        validation_alias=aliases("permission_mode", "permissionMode"),
        description="change_permissions: the new mode.")] = None,
    command: Annotated[list[str] | str | None, Field(
        description="execute_command: an argv list, or a string split by shell quoting rules (never run by a "
        "shell); its executable on the allowlist.")] = None,
    grace_s: Annotated[float, Field(ge=0, le=300, validation_alias=aliases("grace_s", "graceS"),
                                    description="terminate: how long an interrupt (then SIGTERM) may take.")] = 5.0,
    request_id: Annotated[str | None, Field(validation_alias=aliases("request_id", "requestId"), description=(
        "approve/deny: the pending request; omit when there is one."))] = None,
    message: Annotated[str | None, Field(max_length=4000, description="deny: why, for the model.")] = None,
    remember: Annotated[bool, Field(description="approve: allow such requests for the agent's life.")] = False,
    answers: Annotated[dict[str, str] | None, Field(description="approve a question: {question: label}.")] = None,
    budget_usd: Annotated[float | None, Field(gt=0, validation_alias=aliases("budget_usd", "budgetUsd"),
                                              description="change_budget: the new limit.")] = None,
    budget_tokens: Annotated[int | None, Field(gt=0, validation_alias=aliases("budget_tokens", "budgetTokens"))
                             ] = None,
    budget_scope: Annotated[Literal["query", "agent", "call"], Field(
        validation_alias=aliases("budget_scope", "budgetScope"), description="change_budget: whose.")] = "query",
) -> Annotated[CallToolResult, QueryControlResult]:
    """Act on a running (or queued, or paused) query. pause: SIGSTOP to the agent's processes and
    tools, nothing happens until resume. resume: SIGCONT, the same query goes on. terminate:
    interrupt (claude; agent stays ready), else SIGTERM, SIGKILL.
    change_model / change_permissions: live for claude (effect now), next query for exec.
    execute_command: argv in the agent's directory and environment, if allowlisted (not in plan
    mode). approve / deny: answer a permission request or question (status needs_input).
    change_budget: a new limit; a query a budget paused (budget_reached) then resumes.
    Every action is logged on the query (query_list include_output).
    Errors start with a code: invalid_argument (e.g. a model the CLI refuses, with why),
    not_found, conflict (the query's state does not allow it; nothing changed), forbidden.
    """
    services: Services = ctx.request_context.lifespan_context
    outcome = await services.queries.control(action, query_id, model=model, permission_mode=permission_mode,
                                             command=command, grace_s=grace_s, request_id=request_id,
                                             message=message, remember=remember, answers=answers,
                                             budget=Limit(budget_usd, budget_tokens), budget_scope=budget_scope)
    return structured(QueryControlResult.from_engine(action, outcome))


def tool() -> Tool:
    return CheckedTool.from_function(
        query_control,
        title="Control a query",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=True, idempotent_hint=False,
                                    open_world_hint=True),
    )
