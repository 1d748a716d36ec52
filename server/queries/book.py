"""`QueryBook`: every query of this server, recorded, with the active ones kept in memory.

The supervisor reports here each task it runs (this is its `server.agents.tasks.TaskLedger`), the
registry records here what control does to a query, and both log here. Each change is written
to the agents database (with the agent's matching change in the same commit, when there is one),
announced on the change feed, and its activity copied into shared memory: ``agent-activities``
and ``agent-results`` when a task ends, ``query-events`` for each log entry.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from server.agents.activity import ActivityLog
from server.agents.changes import ChangeFeed
from server.agents.ids import new_id
from server.agents.outcome import TaskOutcome
from server.agents.permissions import PermissionAnswer, PermissionAsk
from server.agents.records import AgentRecord, AgentRecords, RowChange
from server.agents.spend import Limit
from server.clock import Clock
from server.config import Settings
from server.queries.approvals import ApprovalDesk, RequestHooks, requests_cancelled
from server.queries.records import (
    QueryEvent,
    QueryRecord,
    QueryRecords,
    QueryStatus,
    queries_lost,
    query_added,
    query_changed,
    query_event_added,
)

logger = logging.getLogger(__name__)

# The result text kept in an activity record; agent-results keeps it whole (up to the value limit).
_SUMMARY_CHARS = 500


@dataclass(eq=False)
class ActiveQuery:
    """A query that has not ended: its record (kept current in memory) and who waits for its end."""

    record: QueryRecord
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tail_mark: int = 0                # the agent's output count when it started: its tail is what came after
    stopped_by: str | None = None     # who terminated it ("client", "rule:<name>"), for its error
    control_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one control action at a time
    needs_input: asyncio.Event = field(default_factory=asyncio.Event)  # set while a request of it waits
    budget_acting: bool = False       # a budget it reached is being acted on (pause, terminate)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def model(self) -> str | None:
        return self.record.model

    @property
    def permission_mode(self) -> str | None:
        return self.record.permission_mode

    @property
    def started(self) -> bool:
        return self.record.started_ms is not None

    @property
    def over(self) -> bool:
        """Its end is recorded, or being recorded (`finished` sets the record's end before its commit)."""
        return self.ended.is_set() or self.record.ended_ms is not None


class QueryBook:
    """The queries of this server's agents: their records and the active ones."""

    def __init__(self, database: AgentRecords, activity: ActivityLog, changes: ChangeFeed, settings: Settings,
                 clock: Clock, request_hooks: RequestHooks | None = None) -> None:
        self.records = QueryRecords(database)
        self.approvals = ApprovalDesk(database, changes, clock, request_hooks)
        self._database = database
        self._activity = activity
        self._changes = changes
        self._settings = settings
        self._clock = clock
        self._active: dict[str, ActiveQuery] = {}
        # Told each time a running query's live usage grew (the registry checks its budgets).
        self.on_spending: Callable[[ActiveQuery], None] | None = None
        self._event_numbers = itertools.count(1)  # two events of one query in one millisecond keep apart

    # -- the active ones -----------------------------------------------------------------------

    def active(self, query_id: str) -> ActiveQuery | None:
        return self._active.get(query_id)

    def active_queries(self) -> list[ActiveQuery]:
        return list(self._active.values())

    # -- new queries ---------------------------------------------------------------------------

    def first_task(self, agent: AgentRecord, prompt: str, *, waiting: bool, limit: Limit) -> tuple[ActiveQuery, RowChange]:
        active = self._track(self._new(agent, prompt, "waiting" if waiting else "queued", None, None, limit, None))
        return active, query_added(active.record)

    async def add(self, agent: AgentRecord, task: str, *, model: str | None = None,
                  permission_mode: str | None = None, limit: Limit | None = None,
                  on_budget: str | None = None) -> ActiveQuery:
        """Records a new query of a live agent, ``queued`` until it runs (after the agent's earlier
        queries). ``model`` and ``permission_mode`` apply from this query on; ``limit`` is its own budget."""
        record = self._new(agent, task, "queued", model, permission_mode, limit or Limit(), on_budget)
        await self._database.commit(query_added(record))
        return self._track(record)

    def _new(self, agent: AgentRecord, task: str, status: QueryStatus, model: str | None,
             permission_mode: str | None, limit: Limit, on_budget: str | None) -> QueryRecord:
        return QueryRecord(id=new_id("query"), agent_id=agent.id, task=task, status=status,
                           created_ms=self._clock.now_ms(), model=model or agent.model,
                           permission_mode=permission_mode or agent.permission_mode,
                           budget_usd=limit.usd, budget_tokens=limit.tokens, on_budget=on_budget)

    def _track(self, record: QueryRecord) -> ActiveQuery:
        active = ActiveQuery(record)
        self._active[record.id] = active
        return active

    # -- changes -------------------------------------------------------------------------------

    async def change(self, active: ActiveQuery, *agent_changes: RowChange, **fields: object) -> None:
        """Sets ``fields`` of an active query and records them (with ``agent_changes``, in one commit)."""
        for name, value in fields.items():
            setattr(active.record, name, value)
        await self._database.commit(query_changed(active.id, **fields), *agent_changes)
        self._changes.changed("query", active.id)

    async def running(self, task_id: str, tail_mark: int, agent_change: RowChange) -> None:
        active = self._active[task_id]
        active.tail_mark = tail_mark
        await self.change(active, agent_change, status="running", started_ms=self._clock.now_ms())

    async def model_in_use(self, task_id: str, model: str, agent_changes: Sequence[RowChange]) -> None:
        active = self._active.get(task_id)
        if active is not None and active.record.model != model:
            await self.change(active, *agent_changes, model=model)
        elif agent_changes:
            await self._database.commit(*agent_changes)

    def spending(self, task_id: str) -> None:
        active = self._active.get(task_id)
        if active is not None and self.on_spending is not None:
            self.on_spending(active)

    async def finished(self, agent: AgentRecord, task_id: str, outcome: TaskOutcome,
                       agent_changes: Sequence[RowChange], *, agent_ending: bool, output_tail: str | None) -> None:
        active = self._active.get(task_id)
        if active is None:  # closed already (it never ran): only the agent's side is left to record
            if agent_changes:
                await self._database.commit(*agent_changes)
            return
        query, now, usage = active.record, self._clock.now_ms(), outcome.usage
        status, error = outcome.status, outcome.error
        if outcome.status != "completed" and (agent_ending or active.stopped_by is not None):
            status = "terminated"
            error = f"terminated by {active.stopped_by}" if active.stopped_by is not None \
                else f"terminated: {outcome.error}"
        if query.paused_at_ms is not None:  # ended while paused (a terminate): the pause ends too
            query.paused_total_ms += now - query.paused_at_ms
        fields = {"status": status, "ended_ms": now, "result": outcome.result, "error": error,
                  "turns": usage.turns, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                  "cost_usd": usage.cost_usd, "usage": usage.raw, "session_id": outcome.session_id,
                  "exit_code": outcome.exit_code, "paused_at_ms": None, "paused_total_ms": query.paused_total_ms,
                  "output_tail": output_tail}
        for name, value in fields.items():
            setattr(query, name, value)
        try:  # the query's end and its agent's totals: one commit
            await self._database.commit(query_changed(query.id, **fields), *agent_changes)
        finally:
            self._ended(active)
        self._record_task_end(agent, query)

    async def close(self, task_id: str, status: QueryStatus, error: str) -> None:
        active = self._active.pop(task_id, None)  # at once: no control action finds it meanwhile
        now = self._clock.now_ms()
        await self._database.commit(query_changed(task_id, status=status, error=error, ended_ms=now))
        if active is not None:
            active.record.status, active.record.error, active.record.ended_ms = status, error, now
            active.ended.set()
        self._changes.changed("query", task_id)

    async def agent_ended(self, agent_id: str, status: str) -> None:
        for active in [active for active in self._active.values() if active.record.agent_id == agent_id]:
            if active.started:  # its own end follows as its run returns; recorded now in case it does not
                await self._database.commit(query_changed(active.id, status="terminated", ended_ms=self._clock.now_ms(),
                                                          error=f"terminated: the agent was {status}"))
            else:
                await self.close(active.id, "terminated", f"terminated: the agent was {status} before it ran")

    def lost_with(self, agent_ids: Sequence[str], ended_ms: int, reason: str) -> list[RowChange]:
        return [queries_lost(agent_ids, ended_ms, reason), requests_cancelled(agent_ids, ended_ms, reason)]

    # -- requests waiting for a person ---------------------------------------------------------

    async def ask(self, task_id: str, request: PermissionAsk) -> PermissionAnswer:
        active = self._active.get(task_id)
        if active is None:  # ended meanwhile: nothing to wait for
            return PermissionAnswer(False, "the query ended before anyone could answer")
        raised = await self.approvals.raise_request(task_id, active.record.agent_id, request)
        await self._input_needed(active)
        await self.log(task_id, "permission", "agent", "asked",
                       {"request_id": raised.id, "tool": raised.tool, **({"question": True} if raised.is_question else {})})
        try:
            decided = await self.approvals.wait(raised)
        finally:
            await asyncio.shield(self.input_given(active))
        await self.log(task_id, "permission", decided.decided_by or "nobody", decided.status,
                       {"request_id": decided.id, "tool": decided.tool,
                        **({"message": decided.message} if decided.message else {}),
                        **({"remember": True} if decided.remember else {})})
        return decided.as_answer()

    async def _input_needed(self, active: ActiveQuery) -> None:
        active.needs_input.set()
        if active.record.status == "running":
            await self.change(active, status="needs_input")

    async def input_given(self, active: ActiveQuery) -> None:
        """Back to running once no request of the query waits (idempotent)."""
        if self.approvals.has_pending(active.id):
            return
        active.needs_input.clear()
        if active.record.status == "needs_input" and not active.ended.is_set():
            await self.change(active, status="running")

    def _ended(self, active: ActiveQuery) -> None:
        self._active.pop(active.id, None)
        active.ended.set()
        self._changes.changed("query", active.id)

    # -- the log -------------------------------------------------------------------------------

    async def log(self, task_id: str, action: str, actor: str, outcome: str,
                  detail: dict[str, Any] | None = None) -> QueryEvent:
        """Writes one entry of a query's log (the database, and the query-events memory namespace)."""
        event = QueryEvent(task_id, self._clock.now_ms(), action, actor, outcome, detail)
        await self._database.commit(query_event_added(event))
        settings = self._settings
        self._activity.put(
            settings.query_events_namespace, f"query-{event.query_id}-{event.at_ms}-{next(self._event_numbers)}",
            {"query_id": event.query_id, "at_ms": event.at_ms, "action": event.action, "actor": event.actor,
             "outcome": event.outcome, "detail": event.detail},
            settings.query_events_ttl_s, tags=["query-event", event.action],
        )
        self._changes.changed("query", task_id)
        return event

    def _record_task_end(self, agent: AgentRecord, query: QueryRecord) -> None:
        settings = self._settings
        summary = {"agent_id": agent.id, "name": agent.name, "type": agent.type, "query_id": query.id,
                   "model": query.model, "status": query.status, "turns": query.turns, "input_tokens": query.input_tokens,
                   "output_tokens": query.output_tokens, "cost_usd": query.cost_usd, "error": query.error,
                   "at_ms": query.ended_ms}
        self._activity.put(
            settings.agent_activity_namespace, f"{agent.id}-complete",
            {**summary, "result": (query.result or "")[:_SUMMARY_CHARS]},
            settings.agent_activity_ttl_s, tags=["complete", agent.type, query.status],
        )
        self._activity.put(
            settings.agent_results_namespace, f"{agent.id}-{query.id}",
            {**summary, "task": query.task, "result": self._activity.bounded(query.result)},
            settings.agent_results_ttl_s, tags=[agent.name, agent.type, query.status],
        )
