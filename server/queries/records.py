"""Queries and their logs as rows of the agents database (`server.agents.records.AgentRecords`).

A query is one task run by one agent. Its row is written through the agents database's
`commit`, so a query's start or end and its agent's matching change land in one transaction;
`QueryRecords` reads them back (listings, counts, logs, usage by model).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from server.agents.records import AgentRecords, RowChange, Table, where_in

QueryStatus = Literal[
    "waiting", "queued", "running", "needs_input", "paused", "completed", "failed", "terminated", "skipped", "lost"
]
ENDED_QUERY_STATUSES: tuple[QueryStatus, ...] = ("completed", "failed", "terminated", "skipped", "lost")
# Not ended: what `query_list` shows without history. `needs_input`: running, with a permission
# request or a question waiting for a person's answer.
ACTIVE_QUERY_STATUSES: tuple[QueryStatus, ...] = ("waiting", "queued", "running", "needs_input", "paused")


@dataclass(slots=True)
class QueryRecord:
    """One task run by one agent. Timestamps are Unix milliseconds."""

    id: str
    agent_id: str
    task: str
    status: QueryStatus
    created_ms: int
    model: str | None = None
    permission_mode: str | None = None
    started_ms: int | None = None
    ended_ms: int | None = None
    turns: int | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    usage: dict[str, Any] | None = None
    result: str | None = None
    error: str | None = None
    session_id: str | None = None
    exit_code: int | None = None
    paused_total_ms: int = 0
    paused_at_ms: int | None = None
    output_tail: str | None = None
    budget_usd: float | None = None
    budget_tokens: int | None = None
    on_budget: str | None = None  # None: its agent's
    budget_reached: str | None = None  # why a budget paused or ended it (cleared when the budget is raised)

    def active_ms(self, now_ms: int) -> int | None:
        """Time it has run, pauses excluded (None before it started)."""
        if self.started_ms is None:
            return None
        end = self.ended_ms if self.ended_ms is not None else self.paused_at_ms or now_ms
        return max(end - self.started_ms - self.paused_total_ms, 0)

    def wall_ms(self, now_ms: int) -> int | None:
        if self.started_ms is None:
            return None
        return (self.ended_ms if self.ended_ms is not None else now_ms) - self.started_ms


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """One entry of a query's log: a control action or a permission decision."""

    query_id: str
    at_ms: int
    action: str
    actor: str
    outcome: str
    detail: dict[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ModelUsage:
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


QUERIES = Table("queries", QueryRecord, frozenset({"usage"}))
EVENTS = Table("query_events", QueryEvent, frozenset({"detail"}))


def query_added(query: QueryRecord) -> RowChange:
    return QUERIES.inserted(query)


def query_changed(query_id: str, **changes: object) -> RowChange:
    return QUERIES.updated(query_id, changes)


def query_event_added(event: QueryEvent) -> RowChange:
    return EVENTS.inserted(event)


def queries_lost(agent_ids: Sequence[str], ended_ms: int, reason: str) -> RowChange:
    """The unfinished queries of ``agent_ids`` (agents of a server that is gone) become `lost`."""
    marks = ",".join("?" * len(agent_ids))
    ended = ",".join(f"'{status}'" for status in ENDED_QUERY_STATUSES)
    return RowChange(f"UPDATE queries SET status = 'lost', error = ?, ended_ms = ? "
                     f"WHERE agent_id IN ({marks}) AND status NOT IN ({ended})", (reason, ended_ms, *agent_ids))


class QueryRecords:
    """Reads the queries and their logs from the agents database."""

    def __init__(self, database: AgentRecords) -> None:
        self.database = database

    async def budget_reached_count(self) -> int:
        rows = await self.database.rows("SELECT COUNT(*) FROM queries WHERE budget_reached IS NOT NULL")
        (count,) = rows[0]
        return count if isinstance(count, int) else 0

    async def query(self, query_id: str) -> QueryRecord | None:
        found = await self.database.select(QUERIES, "id = ?", [query_id])
        return found[0] if found else None

    async def queries_page(
        self, *, statuses: Sequence[str] = (), agent_id: str | None = None, query_ids: Sequence[str] = (),
        after_seq: int = 0, limit: int = 50,
    ) -> tuple[list[QueryRecord], int | None]:
        """Queries in creation order after ``after_seq``; also the seq to continue from (None at the end)."""
        where, params = where_in(status=statuses, agent_id=[agent_id] if agent_id is not None else [], id=query_ids)
        return await self.database.page(QUERIES, where, params, after_seq, limit)

    async def recent_ended_queries(self, limit: int) -> list[QueryRecord]:
        """The ``limit`` newest queries that have ended, newest first."""
        where, params = where_in(status=ENDED_QUERY_STATUSES)
        return await self.database.select(QUERIES, where, params, order="seq DESC", limit=limit)

    async def query_counts(self, *, agent_id: str | None = None, query_ids: Sequence[str] = ()) -> dict[str, int]:
        """How many queries are in each state (of one agent, or of ``query_ids``, when given)."""
        where, params = where_in(agent_id=[agent_id] if agent_id is not None else [], id=query_ids)
        rows = await self.database.rows(f"SELECT status, COUNT(*) FROM queries WHERE {where} GROUP BY status", params)
        return {str(status): int(str(count)) for status, count in rows}

    async def events_of(self, query_ids: Sequence[str]) -> dict[str, list[QueryEvent]]:
        """The logs of ``query_ids``, oldest first."""
        if not query_ids:
            return {}
        where, params = where_in(query_id=query_ids)
        events: dict[str, list[QueryEvent]] = {}
        for event in await self.database.select(EVENTS, where, params):
            events.setdefault(event.query_id, []).append(event)
        return events

    async def usage_by_model(self) -> list[ModelUsage]:
        """Tokens and cost of every query on record, summed by model (unknown model: "unknown")."""
        rows = await self.database.rows(
            "SELECT COALESCE(model, 'unknown'), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            "COALESCE(SUM(cost_usd), 0) FROM queries GROUP BY COALESCE(model, 'unknown') ORDER BY 1",
        )
        return [ModelUsage(str(model), int(str(inputs)), int(str(outputs)), float(str(cost)))
                for model, inputs, outputs, cost in rows]
