"""`status_of`: one snapshot of the whole server, what ``switchboard status`` prints.

Agents and queries come from the records, so the snapshot also shows what other servers sharing
the data directory run (``switchboard status`` is such a process itself).

Memory by namespace, the vector index, agents (live ones in detail) and queries (active ones in
detail) by state, what they cost, how many upload batches are on record, and what the agents'
worktrees take on disk: read from the
stores at once, never cached, so it is as current as the call.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

from server import __version__
from server.agents.budgets import Budgets
from server.agents.records import AgentRecord
from server.objects.uploader import SUMMARY_NAMESPACE
from server.services import Services


class NamespaceRow(BaseModel):
    namespace: str
    entries: int
    bytes: int
    expiring_within_hour: int


class AgentRow(BaseModel):
    agent_id: str
    name: str
    type: str
    status: str
    model: str | None
    pid: int | None
    current_query: str | None
    tasks_run: int
    cost_usd: float
    uptime_s: float | None


class QueryRow(BaseModel):
    query_id: str
    agent_id: str
    status: str
    model: str | None
    active_ms: int | None
    turns: int | None
    cost_usd: float | None
    budget_reached: str | None = None
    task: str = Field(description="Its first 120 characters.")


class BudgetRow(BaseModel):
    """The day's budget, or a spawn call's: the limit (None: none set), spent, what is left."""

    level: str = Field(description="day, or call")
    call_id: str | None = None
    budget_usd: float | None
    spent_usd: float
    remaining_usd: float | None


class StatusSnapshot(BaseModel):
    version: str
    data_dir: str
    at_ms: int
    memory_entries: int
    memory_bytes: int
    database_bytes: int
    namespaces: list[NamespaceRow]
    vector_backend: str
    vectors: int
    embedder: str | None
    agents_by_status: dict[str, int]
    live_agents: list[AgentRow]
    queries_by_status: dict[str, int]
    active_queries: list[QueryRow]
    cost_usd: float
    input_tokens: int
    output_tokens: int
    budgets: list[BudgetRow] = Field(description="Today's (UTC) spend and budget, and the live spawn calls' budgets.")
    upload_batches: int
    workspaces: int = Field(description="Agents' git worktrees on disk.")
    workspaces_unmerged: int
    workspaces_bytes: int = Field(description="What those worktrees take on disk together.")


async def status_of(services: Services, *, detail: bool = True) -> StatusSnapshot:
    """The server's state now; without ``detail``, only the totals (no list of live agents and
    active queries, for a caller that lists them its own way)."""
    now = services.clock.now_ms()
    stats = await services.memory.stats()
    vectors = services.memory.vectors
    usage = await services.queries.records.usage_by_model()
    disk = await services.supervisor.workspaces.disk_use()
    if detail:
        active, _, query_counts = await services.queries.page(limit=500)
        live = [_agent_row(current_record(services, record), now)
                for record in await services.supervisor.records.live_agents()]
    else:
        active, query_counts, live = [], await services.queries.records.query_counts(), []
    return StatusSnapshot(
        version=__version__, data_dir=str(services.settings.data_dir), at_ms=now,
        memory_entries=stats.total_entries, memory_bytes=stats.total_bytes, database_bytes=stats.database_bytes,
        namespaces=[NamespaceRow(namespace=n.namespace, entries=n.entries, bytes=n.bytes,
                                 expiring_within_hour=n.expiring_within_hour) for n in stats.namespaces],
        vector_backend=services.settings.vector_backend, vectors=vectors.count() if vectors is not None else 0,
        embedder=vectors.embedder_name if vectors is not None else None,
        agents_by_status=await services.supervisor.records.counts_by_status(),
        live_agents=live,
        queries_by_status=query_counts,
        active_queries=[QueryRow(query_id=view.record.id, agent_id=view.record.agent_id, status=view.record.status,
                                 model=view.record.model, active_ms=view.active_ms, turns=view.record.turns,
                                 cost_usd=view.record.cost_usd, budget_reached=view.record.budget_reached,
                                 task=view.record.task[:120]) for view in active],
        cost_usd=round(sum(row.cost_usd for row in usage), 6),
        input_tokens=sum(row.input_tokens for row in usage),
        output_tokens=sum(row.output_tokens for row in usage),
        budgets=_budget_rows(services.supervisor.budgets),
        upload_batches=next((n.entries for n in stats.namespaces if n.namespace == SUMMARY_NAMESPACE), 0),
        workspaces=disk.worktrees, workspaces_unmerged=disk.unmerged, workspaces_bytes=disk.bytes,
    )


def _budget_rows(budgets: Budgets) -> list[BudgetRow]:
    rows = []
    for call_id, state in budgets.shown():
        rows.append(BudgetRow(level=state.level, call_id=call_id, budget_usd=state.limit.usd,
                              spent_usd=round(state.spent.usd, 6),
                              remaining_usd=round(state.remaining_usd, 6) if state.remaining_usd is not None else None))
    return rows


def current_record(services: Services, stored: AgentRecord) -> AgentRecord:
    """An agent of this process as it is in memory (never behind its row); one of another server
    sharing the data directory as its row says."""
    live = services.supervisor.live(stored.id)
    return live.record if live is not None else stored


def _agent_row(record: AgentRecord, now_ms: int) -> AgentRow:
    return AgentRow(agent_id=record.id, name=record.name, type=record.type, status=record.status, model=record.model,
                    pid=record.pid, current_query=record.current_query, tasks_run=record.tasks_run,
                    cost_usd=round(record.cost_usd, 6),
                    uptime_s=round((now_ms - record.ready_ms) / 1000, 1) if record.ready_ms else None)


def render_text(snapshot: StatusSnapshot) -> str:
    """The snapshot as a few aligned blocks for a terminal."""
    lines = [f"switchboard {snapshot.version}  data {snapshot.data_dir}",
             f"memory   {snapshot.memory_entries} entries, {size_text(snapshot.memory_bytes)} in values, "
             f"database {size_text(snapshot.database_bytes)}",
             f"vectors  {snapshot.vectors} ({snapshot.vector_backend}, {snapshot.embedder or 'no embedder'})",
             f"agents   {_counts(snapshot.agents_by_status)}",
             f"queries  {_counts(snapshot.queries_by_status)}",
             f"cost     ${snapshot.cost_usd:.4f}  tokens in {snapshot.input_tokens} out {snapshot.output_tokens}",
             *[_budget_text(row) for row in snapshot.budgets],
             f"uploads  {snapshot.upload_batches} batches on record",
             f"worktrees {snapshot.workspaces} ({snapshot.workspaces_unmerged} unmerged), "
             f"{size_text(snapshot.workspaces_bytes)} on disk"]
    if snapshot.namespaces:
        lines += ["", f"{'NAMESPACE':<32} {'ENTRIES':>9} {'BYTES':>10} {'EXPIRING 1H':>12}"]
        lines += [f"{n.namespace[:32]:<32} {n.entries:>9} {size_text(n.bytes):>10} {n.expiring_within_hour:>12}"
                  for n in snapshot.namespaces]
    if snapshot.live_agents:
        lines += ["", f"{'AGENT':<20} {'NAME':<16} {'TYPE':<12} {'STATUS':<9} {'PID':>7} {'TASKS':>5} {'COST':>9}"]
        lines += [f"{a.agent_id:<20} {a.name[:16]:<16} {a.type[:12]:<12} {a.status:<9} {a.pid or '-':>7} "
                  f"{a.tasks_run:>5} {a.cost_usd:>9.4f}" for a in snapshot.live_agents]
    if snapshot.active_queries:
        lines += ["", f"{'QUERY':<20} {'AGENT':<20} {'STATUS':<8} {'ACTIVE':>8} {'TURNS':>5}  TASK"]
        lines += [f"{q.query_id:<20} {q.agent_id:<20} {q.status:<8} {(q.active_ms or 0) / 1000:>7.1f}s "
                  f"{q.turns if q.turns is not None else '-':>5}  {q.task[:60]}"
                  + (f"\n{'':<20} {q.budget_reached}" if q.budget_reached else "") for q in snapshot.active_queries]
    return "\n".join(lines) + "\n"


def _budget_text(row: BudgetRow) -> str:
    what = "today" if row.level == "day" else f"call {row.call_id}"
    if row.budget_usd is None:
        return f"budget   {what}: ${row.spent_usd:.4f} spent, no daily budget (SWITCHBOARD_BUDGET_USD_PER_DAY)"
    return f"budget   {what}: ${row.spent_usd:.4f} of ${row.budget_usd:.2f} spent, ${row.remaining_usd or 0:.4f} left"


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{count} {status}" for status, count in sorted(counts.items())) or "none"


def size_text(count: int) -> str:
    """``512 B``, ``1.5 KiB``, ``3.2 GiB``."""
    if count < 1024:
        return f"{count} B"
    size, unit = count / 1024, "KiB"
    for larger in ("MiB", "GiB"):
        if size < 1024:
            break
        size, unit = size / 1024, larger
    return f"{size:.1f} {unit}"
