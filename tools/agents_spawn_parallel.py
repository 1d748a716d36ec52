"""``agents_spawn_parallel``: start many real worker agents at once, in dependency order.

``{"agents": [{"type": "researcher", "name": "r1", "task": "..."}, {"type": "coder", "name": "c1",
"task": "...", "depends_on": ["r1"]}], "wait": true}`` starts both, runs c1's task after r1's
with r1's result handed on, and answers per agent what happened.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, InputRequiredResult, ToolAnnotations
from pydantic import BaseModel, Field, model_validator

from server.agents.spawn_plan import AgentSpec, SpawnEntry, SpawnReport, SpawnRequest
from server.agents.spawner import Progress
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.client_asking import ClientAsking, wait_or_ask
from tools.support.compact import CompactModel
from tools.support.results import structured

# An answer carries each task's result up to this many characters (all of it is in agent-results).
RESULT_CHARS = 4000
# claude-flow's priority words.
PRIORITY_WORDS = {"low": 0, "medium": 1, "high": 2, "critical": 3}
# Priorities are stored as SQLite integers and only compared: a million either way is room enough.
PRIORITY_BOUND = 1_000_000


class SpawnSpec(BaseModel):
    type: str | None = Field(default=None, description="Agent type: coder, researcher, tester, reviewer, ... or a "
                             "configured one (with resume: the old agent's).")
    name: str | None = Field(default=None, min_length=1, max_length=64, pattern=r"^[^\x00-\x1f\x7f]+$",
                             description="Unique in this call; depends_on refers to it.")
    task: str | None = Field(default=None, min_length=1, description="Work to start once it is up.")
    depends_on: list[str] = Field(default_factory=list, validation_alias=aliases("depends_on", "dependsOn"),
                                  description="Names in this call, or ids of existing agents, whose tasks come first.")
    model: str | None = Field(default=None, min_length=1)
    permission_mode: str | None = Field(default=None, validation_alias=aliases("permission_mode", "permissionMode"))
    cwd: str | None = Field(default=None, description="Working directory under the agent roots; default: its own.")
    capabilities: list[str] = Field(default_factory=list)
    priority: Annotated[int, Field(ge=-PRIORITY_BOUND, le=PRIORITY_BOUND)] | Literal[
        "low", "medium", "high", "critical"] = Field(default=0, description="Higher starts first (low..critical = 0..3).")
    command: list[str] | None = Field(default=None, description="exec argv; only if the server allows ad-hoc commands.")
    on_permission_request: Literal["decide", "ask"] | list[str] | None = Field(
        default=None, validation_alias=aliases("on_permission_request", "onPermissionRequest"),
        description="claude: decide, ask (query_control approve/deny), or tool patterns that ask "
        "([\"Bash\"]); default: the type's.")
    workspace: Literal["shared", "worktree", "auto"] | None = Field(
        default=None, description="worktree: own git worktree and branch of cwd's repository (agent_changes, "
        "agent_merge); default: the type's (auto for coder, tester, optimizer, debugger).")
    base_ref: str | None = Field(default=None, validation_alias=aliases("base_ref", "baseRef"),
                                 description="Worktree start: branch, commit, or a name in this call (its finished work).")
    budget_usd: float | None = Field(default=None, gt=0, validation_alias=aliases("budget_usd", "budgetUsd"),
                                     description="Its task's budget (live estimate).")
    budget_tokens: int | None = Field(default=None, gt=0, validation_alias=aliases("budget_tokens", "budgetTokens"))
    agent_budget_usd: float | None = Field(default=None, gt=0, validation_alias=aliases(
        "agent_budget_usd", "agentBudgetUsd"), description="The agent's, all tasks; default: its type's.")
    agent_budget_tokens: int | None = Field(default=None, gt=0, validation_alias=aliases(
        "agent_budget_tokens", "agentBudgetTokens"))
    on_budget: Literal["pause", "terminate"] | None = Field(
        default=None, validation_alias=aliases("on_budget", "onBudget"), description="At a budget; default: type's.")
    resume: str | None = Field(default=None, min_length=1, description="An ended agent's id: a new agent in its "
                               "workspace, continuing its conversation (claude).")
    fork: bool = Field(default=False, description="resume: branch the conversation instead.")

    @model_validator(mode="after")
    def _type_or_resume(self) -> Self:
        if self.resume is None and (self.type is None or self.name is None):
            raise ValueError("type and name are required (unless resume names an ended agent)")
        return self


class SpawnedAgent(CompactModel):
    agent_id: str
    name: str
    type: str
    status: Literal["queued", "spawning", "ready", "running", "waiting", "completed", "failed", "skipped",
                    "terminated"]
    query_id: str | None = Field(default=None, description="Its task's query id.")
    error: str | None = None
    spawn_ms: float | None = None
    result: str | None = Field(default=None, description="wait: the task's result (cut at 4,000 characters).")
    turns: int | None = None
    cost_usd: float | None = None

    @classmethod
    def from_engine(cls, entry: SpawnEntry) -> SpawnedAgent:
        optional: dict[str, Any] = {
            "query_id": entry.query_id, "error": entry.error,
            "spawn_ms": round(entry.spawn_ms, 1) if entry.spawn_ms is not None else None,
        }
        if entry.status == "completed" or (entry.status == "failed" and entry.result):
            optional.update(result=(entry.result or "")[:RESULT_CHARS], turns=entry.turns, cost_usd=entry.cost_usd)
        return cls(agent_id=entry.agent_id, name=entry.name, type=entry.type, status=entry.status,
                   **{name: value for name, value in optional.items() if value is not None})


class SpawnTotals(BaseModel):
    """Each requested agent is counted once, by its status at the answer: the counts add up to requested."""

    requested: int
    spawned: int = Field(description="Up: ready, running, or its task completed.")
    queued: int = Field(description="Waiting for a running slot (SWITCHBOARD_AGENT_MAX_RUNNING).")
    spawning: int = Field(description="Still starting (only when the answer timed out).")
    waiting: int = Field(description="Waiting for its dependencies' tasks.")
    failed: int
    skipped: int
    terminated: int
    wall_ms: float
    spawn_ms_sum: float
    spawns_in_flight: float | None = Field(
        description="spawn_ms_sum / wall_ms: how many agents were starting at once, on average over the call.")
    timed_out: bool


class SpawnResult(BaseModel):
    agents: list[SpawnedAgent] = Field(description="In request order.")
    totals: SpawnTotals

    @classmethod
    def from_engine(cls, report: SpawnReport) -> SpawnResult:
        return cls(
            agents=[SpawnedAgent.from_engine(entry) for entry in report.entries],
            totals=SpawnTotals(
                requested=len(report.entries), spawned=report.spawned, queued=report.count("queued"),
                spawning=report.count("spawning"), waiting=report.count("waiting"), failed=report.count("failed"),
                skipped=report.count("skipped"), terminated=report.count("terminated"),
                wall_ms=round(report.wall_ms, 1), spawn_ms_sum=round(report.spawn_ms_total, 1),
                spawns_in_flight=round(report.spawns_in_flight, 2) if report.spawns_in_flight is not None else None,
                timed_out=report.timed_out,
            ),
        )


async def agents_spawn_parallel(
    agents: Annotated[list[SpawnSpec], Field(min_length=1)],
    ctx: Context[Services, Any],
    max_concurrency: Annotated[int, Field(ge=1, le=64, validation_alias=aliases("max_concurrency", "maxConcurrency"),
                                          description="Agents starting at once.")] = 5,
    batch_size: Annotated[int, Field(ge=1, le=64, validation_alias=aliases("batch_size", "batchSize"),
                                     description="Agents per batch; a batch starts when the previous is up.")] = 3,
    wait: Annotated[bool, Field(description="Answer when every task has ended (else when all are up).")] = False,
    timeout_s: Annotated[float | None, Field(gt=0, le=86400, validation_alias=aliases("timeout_s", "timeoutS", "timeout"),
                                             description="Answer by then with what is known.")] = None,
    queue: Annotated[bool, Field(description="When the server already runs its most agents at once: wait queued "
                                 "(true), or refuse the call with at_capacity and spawn nothing (false).")] = True,
    budget_usd: Annotated[float | None, Field(gt=0, validation_alias=aliases("budget_usd", "budgetUsd"),
                                              description="Shared by all of this call's agents.")] = None,
) -> Annotated[CallToolResult, SpawnResult] | InputRequiredResult:
    """Start real worker agents (Claude Code sessions, or configured commands) in parallel.

    The request is checked whole first (unique names, known types, dependencies exist, no cycle,
    cwd allowed); any error spawns nothing. A task starts after its dependencies' tasks completed,
    with their results handed on; dependents of a failed agent are skipped. Answers per agent:
    agent_id, status, query_id, error, spawn_ms; with wait, each task's result (requests asked by
    elicitation). Beyond the server's running cap agents wait queued (queue: false refuses).
    Agents keep running after the answer. Errors start with a code: invalid_argument, forbidden, too_large,
    at_capacity, budget_exhausted, conflict (resume of an agent that has not ended).
    """
    services: Services = ctx.request_context.lifespan_context
    request = SpawnRequest(
        agents=tuple(
            AgentSpec(type=spec.type or "", name=spec.name or "", task=spec.task, depends_on=tuple(spec.depends_on),
                      model=spec.model, permission_mode=spec.permission_mode, cwd=spec.cwd,
                      capabilities=tuple(spec.capabilities), priority=_priority(spec.priority),
                      command=tuple(spec.command) if spec.command is not None else None,
                      on_permission_request=spec.on_permission_request, workspace=spec.workspace,
                      base_ref=spec.base_ref, budget_usd=spec.budget_usd, budget_tokens=spec.budget_tokens,
                      agent_budget_usd=spec.agent_budget_usd, agent_budget_tokens=spec.agent_budget_tokens,
                      on_budget=spec.on_budget, resume=spec.resume, fork=spec.fork)
            for spec in agents
        ),
        max_concurrency=max_concurrency,
        batch_size=batch_size,
        wait=wait,
        timeout_s=timeout_s,
        queue=queue,
        budget_usd=budget_usd,
    )

    async def progress(done: int, total: int, message: str) -> None:
        await ctx.report_progress(done, total, message)

    if not wait:
        report = await services.spawner.spawn_many(request, progress)
    else:
        answered = await _spawn_and_wait_asking(ctx, request, progress)
        if isinstance(answered, InputRequiredResult):
            return answered
        report = answered
    for entry in report.entries:
        if entry.spawn_ms is not None and entry.status not in ("failed", "skipped"):
            runtime = services.supervisor.types.get(entry.type).runtime
            services.metrics.spawn_seconds.labels(runtime=runtime).observe(entry.spawn_ms / 1000)
    return structured(SpawnResult.from_engine(report))


async def _spawn_and_wait_asking(ctx: Context[Services, Any], request: SpawnRequest, progress: Progress
                                 ) -> SpawnReport | InputRequiredResult:
    """Spawns and waits for every task, the client being asked the agents' requests meanwhile; a
    retry with the answers (input_required) waits on for the same call instead of spawning again."""
    services: Services = ctx.request_context.lifespan_context
    asking = await ClientAsking.begin(ctx)
    agent_ids: set[str] = set()
    if asking.resumed:
        call_id: str | None = asking.resumed["call_id"]
        deadline_ms: int | None = asking.resumed["deadline_ms"]
        agent_ids.update(asking.resumed["agent_ids"])
    else:
        call_id = None
        deadline_ms = None if request.timeout_s is None else services.clock.now_ms() + int(request.timeout_s * 1000)

    async def spawn_or_wait_on(remaining_s: float | None) -> SpawnReport:
        nonlocal call_id
        if call_id is None:
            report = await services.spawner.spawn_many(request, progress, planned_ids=agent_ids.update,
                                                       interrupt=interrupt)
        else:
            report = await services.spawner.resume_wait(call_id, remaining_s, interrupt)
        call_id = report.call_id
        return report

    async with asking.watching(agent_ids=agent_ids) as interrupt:
        return await wait_or_ask(asking, spawn_or_wait_on, deadline_ms=deadline_ms,
                                 done=lambda report: report.call_id is None,
                                 call_state=lambda report: {"call_id": report.call_id, "agent_ids": sorted(agent_ids),
                                                            "deadline_ms": deadline_ms})


def _priority(value: int | str) -> int:
    return value if isinstance(value, int) else PRIORITY_WORDS[value]


def tool() -> Tool:
    return CheckedTool.from_function(
        agents_spawn_parallel,
        title="Spawn agents in parallel",
        annotations=ToolAnnotations(read_only_hint=False, destructive_hint=False, idempotent_hint=False,
                                    open_world_hint=True),
    )
