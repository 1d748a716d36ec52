"""`AgentRecords`: agents and their queries (tasks) as rows in ``<data_dir>/agents.sqlite3``.

Kept across restarts: ``agent_list`` shows agents of earlier runs, and the next start finds the
processes a crashed server left behind from the pid and start time recorded here. Writes go
through a group-commit writer, so a swarm spawned at once costs a few transactions, not one
fsync per state change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import aiosqlite

from server.memory.sql import fetch_all
from server.memory.writer import GroupCommitWriter
from server.sqlite_migrations import apply_migrations

AgentStatus = Literal["queued", "spawning", "ready", "running", "waiting", "terminated", "failed", "lost", "skipped"]
QueryStatus = Literal[
    "waiting", "queued", "running", "paused", "completed", "failed", "terminated", "skipped", "lost"
]

# An agent in one of these states has (or is about to have) processes.
LIVE_AGENT_STATUSES: tuple[AgentStatus, ...] = ("queued", "spawning", "ready", "running", "waiting")
ENDED_QUERY_STATUSES: tuple[QueryStatus, ...] = ("completed", "failed", "terminated", "skipped", "lost")
# Not ended: what `query_list` shows without history.
ACTIVE_QUERY_STATUSES: tuple[QueryStatus, ...] = ("waiting", "queued", "running", "paused")

MIGRATIONS: tuple[str, ...] = (
    # 1: agents and their queries. `seq` orders listings and makes cursors stable.
    """
    CREATE TABLE agents (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE,
        name             TEXT    NOT NULL,
        type             TEXT    NOT NULL,
        runtime          TEXT    NOT NULL,
        status           TEXT    NOT NULL,
        model            TEXT,
        permission_mode  TEXT,
        workdir          TEXT    NOT NULL,
        capabilities     TEXT    NOT NULL DEFAULT '[]',
        priority         INTEGER NOT NULL DEFAULT 0,
        pid              INTEGER,
        pid_start_time   INTEGER,
        server_pid       INTEGER NOT NULL,
        server_start_time INTEGER NOT NULL,
        boot_id          TEXT    NOT NULL,           -- pids and start times mean something only within one boot
        error            TEXT,
        created_ms       INTEGER NOT NULL,
        ready_ms         INTEGER,
        ended_ms         INTEGER,
        spawn_ms         REAL,
        tasks_run        INTEGER NOT NULL DEFAULT 0,
        input_tokens     INTEGER NOT NULL DEFAULT 0,
        output_tokens    INTEGER NOT NULL DEFAULT 0,
        cost_usd         REAL    NOT NULL DEFAULT 0,
        memory_calls     INTEGER NOT NULL DEFAULT 0,
        current_query    TEXT
    );
    CREATE INDEX agents_by_status ON agents (status);
    CREATE TABLE queries (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE,
        agent_id         TEXT    NOT NULL REFERENCES agents (id),
        task             TEXT    NOT NULL,
        model            TEXT,
        permission_mode  TEXT,
        status           TEXT    NOT NULL,
        created_ms       INTEGER NOT NULL,
        started_ms       INTEGER,
        ended_ms         INTEGER,
        turns            INTEGER,
        input_tokens     INTEGER,
        output_tokens    INTEGER,
        cost_usd         REAL,
        usage            TEXT,
        result           TEXT,
        error            TEXT,
        session_id       TEXT,
        exit_code        INTEGER
    );
    CREATE INDEX queries_by_agent ON queries (agent_id);
    CREATE INDEX queries_by_status ON queries (status);
    """,
    # 2: live control of queries: time spent paused, the output tail at the end, and every control
    # action and permission decision (what, by whom, when, with what outcome).
    """
    ALTER TABLE queries ADD COLUMN paused_total_ms INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE queries ADD COLUMN paused_at_ms INTEGER;
    ALTER TABLE queries ADD COLUMN output_tail TEXT;
    CREATE TABLE query_events (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        query_id         TEXT    NOT NULL REFERENCES queries (id),
        at_ms            INTEGER NOT NULL,
        action           TEXT    NOT NULL,   -- pause, resume, terminate, change_model, ..., permission
        actor            TEXT    NOT NULL,   -- "client", "rule:<name>", "agent"
        outcome          TEXT    NOT NULL,   -- "now", "next_query", "allowed", "denied", "failed", ...
        detail           TEXT                -- JSON: the action's arguments and what it found
    );
    CREATE INDEX query_events_by_query ON query_events (query_id, seq);
    """,
)


@dataclass(slots=True)
class AgentRecord:
    """One agent, as stored. Timestamps are Unix milliseconds."""

    id: str
    name: str
    type: str
    runtime: str
    status: AgentStatus
    workdir: str
    server_pid: int
    server_start_time: int
    boot_id: str
    created_ms: int
    model: str | None = None
    permission_mode: str | None = None
    capabilities: list[str] = field(default_factory=list)
    priority: int = 0
    pid: int | None = None
    pid_start_time: int | None = None
    error: str | None = None
    ready_ms: int | None = None
    ended_ms: int | None = None
    spawn_ms: float | None = None
    tasks_run: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    cost_usd: float = 0.0
    memory_calls: int = 0
    current_query: str | None = None


@dataclass(slots=True)
class QueryRecord:
    """One task run by one agent."""

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
class ModelUsage:
    model: str
    input_tokens: int
    output_tokens: int
    cost_usd: float


@dataclass(frozen=True, slots=True)
class QueryEvent:
    """One entry of a query's log: a control action or a permission decision."""

    query_id: str
    at_ms: int
    action: str
    actor: str
    outcome: str
    detail: dict[str, Any] | None = None


_AGENT_COLUMNS = tuple(f.name for f in fields(AgentRecord))
_QUERY_COLUMNS = tuple(f.name for f in fields(QueryRecord))
_EVENT_COLUMNS = tuple(f.name for f in fields(QueryEvent))
_COLUMNS: dict[type[Any], tuple[str, ...]] = {AgentRecord: _AGENT_COLUMNS, QueryRecord: _QUERY_COLUMNS,
                                              QueryEvent: _EVENT_COLUMNS}
_JSON_COLUMNS = frozenset({"capabilities", "usage", "detail"})


def _to_sql(name: str, value: object) -> object:
    return json.dumps(value) if name in _JSON_COLUMNS and value is not None else value


def _from_row(kind: type[Any], columns: Sequence[str], row: Sequence[object]) -> Any:
    values = {name: (json.loads(str(value)) if name in _JSON_COLUMNS and value is not None else value)
              for name, value in zip(columns, row)}
    return kind(**values)


def _where(**columns: Sequence[object]) -> tuple[str, list[object]]:
    """``column IN (...)`` for each column given values (a column given none is not filtered), ANDed."""
    clauses, params = ["1"], list[object]()
    for column, values in columns.items():
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    return " AND ".join(clauses), params


@dataclass(frozen=True, slots=True)
class RowChange:
    """One SQL statement on the agents database, ready for `AgentRecords.commit`."""

    sql: str
    params: tuple[object, ...]


def agent_added(agent: AgentRecord) -> RowChange:
    return _inserted("agents", _AGENT_COLUMNS, agent)


def query_added(query: QueryRecord) -> RowChange:
    return _inserted("queries", _QUERY_COLUMNS, query)


def agent_changed(agent_id: str, **changes: object) -> RowChange:
    return _updated("agents", _AGENT_COLUMNS, agent_id, changes)


def query_changed(query_id: str, **changes: object) -> RowChange:
    return _updated("queries", _QUERY_COLUMNS, query_id, changes)


def query_event_added(event: QueryEvent) -> RowChange:
    return _inserted("query_events", _EVENT_COLUMNS, event)


def agent_usage_added(agent_id: str, input_tokens: int, output_tokens: int, cost_usd: float) -> RowChange:
    """One task's usage added to the agent's totals (in SQL, so concurrent tasks never lose one)."""
    return RowChange("UPDATE agents SET tasks_run = tasks_run + 1, input_tokens = input_tokens + ?, "
                     "output_tokens = output_tokens + ?, cost_usd = cost_usd + ? WHERE id = ?",
                     (input_tokens, output_tokens, cost_usd, agent_id))


def _inserted(table: str, columns: Sequence[str], record: object) -> RowChange:
    values = tuple(_to_sql(name, getattr(record, name)) for name in columns)
    return RowChange(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})", values)


def _updated(table: str, columns: Sequence[str], row_id: str, changes: dict[str, object]) -> RowChange:
    unknown = set(changes) - set(columns) | ({"id"} & set(changes))
    if unknown or not changes:
        raise ValueError(f"cannot update {table} column(s) {sorted(unknown) or 'none given'}")
    assignments = ", ".join(f"{name} = ?" for name in changes)
    values = tuple(_to_sql(name, value) for name, value in changes.items())
    return RowChange(f"UPDATE {table} SET {assignments} WHERE id = ?", (*values, row_id))


class AgentRecords:
    """The agents database: open it with `AgentRecords.open`, close it with `close`."""

    def __init__(self, conn: aiosqlite.Connection, writer: GroupCommitWriter) -> None:
        self._conn = conn
        self._writer = writer

    @classmethod
    async def open(cls, path: Path) -> AgentRecords:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = await aiosqlite.connect(path, isolation_level=None)
        try:
            await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA busy_timeout = 10000")
            await conn.execute("PRAGMA synchronous = FULL")
            await apply_migrations(conn, MIGRATIONS, "agents")
        except BaseException:
            await conn.close()
            raise
        writer = GroupCommitWriter(conn, max_group=512)
        writer.start()
        return cls(conn, writer)

    async def close(self) -> None:
        try:
            await self._writer.close()
        finally:
            await self._conn.close()

    # -- writes ----------------------------------------------------------------------------------
    # Each state change is a `RowChange`; `commit` writes several in one transaction, so a task's
    # start or end (the query and its agent) is one commit, never half of it.

    async def commit(self, *changes: RowChange) -> None:
        """Writes ``changes`` together, in order, in the next group commit."""

        async def op(conn: aiosqlite.Connection) -> None:
            for change in changes:
                await conn.execute(change.sql, change.params)

        await self._writer.submit(op)

    async def add_query(self, query: QueryRecord) -> None:
        await self.commit(query_added(query))

    async def update_agent(self, agent_id: str, **changes: object) -> None:
        await self.commit(agent_changed(agent_id, **changes))

    async def update_query(self, query_id: str, **changes: object) -> None:
        await self.commit(query_changed(query_id, **changes))

    async def mark_lost(self, agent_ids: Sequence[str], ended_ms: int, reason: str) -> None:
        """Agents of a server that is gone, and their unfinished queries, become `lost`."""
        if not agent_ids:
            return
        marks = ",".join("?" * len(agent_ids))
        ended_queries = ",".join(f"'{status}'" for status in ENDED_QUERY_STATUSES)
        await self.commit(
            RowChange(f"UPDATE agents SET status = 'lost', error = ?, ended_ms = ?, pid = NULL, current_query = NULL "
                      f"WHERE id IN ({marks})", (reason, ended_ms, *agent_ids)),
            RowChange(f"UPDATE queries SET status = 'lost', error = ?, ended_ms = ? "
                      f"WHERE agent_id IN ({marks}) AND status NOT IN ({ended_queries})",
                      (reason, ended_ms, *agent_ids)),
        )

    # -- reads ---------------------------------------------------------------------------------

    async def agent(self, agent_id: str) -> AgentRecord | None:
        found = await self._select(AgentRecord, "agents", "id = ?", [agent_id])
        return found[0] if found else None

    async def query(self, query_id: str) -> QueryRecord | None:
        found = await self._select(QueryRecord, "queries", "id = ?", [query_id])
        return found[0] if found else None

    async def agents_page(
        self, *, statuses: Sequence[str] = (), agent_type: str | None = None, after_seq: int = 0, limit: int = 50
    ) -> tuple[list[AgentRecord], int | None]:
        """Agents in creation order after ``after_seq``; also the seq to continue from (None at the end)."""
        where, params = _where(status=statuses, type=[agent_type] if agent_type is not None else [])
        return await self._page(AgentRecord, "agents", where, params, after_seq, limit)

    async def recent_agents(self, limit: int) -> list[AgentRecord]:
        """The ``limit`` newest agents, newest first."""
        return await self._select(AgentRecord, "agents", "1", [], order="seq DESC", limit=limit)

    async def recent_ended_queries(self, limit: int) -> list[QueryRecord]:
        """The ``limit`` newest queries that have ended, newest first."""
        where, params = _where(status=ENDED_QUERY_STATUSES)
        return await self._select(QueryRecord, "queries", where, params, order="seq DESC", limit=limit)

    async def live_agents(self) -> list[AgentRecord]:
        """Agents recorded as alive (by any server run)."""
        where, params = _where(status=LIVE_AGENT_STATUSES)
        return await self._select(AgentRecord, "agents", where, params)

    async def queries_page(
        self, *, statuses: Sequence[str] = (), agent_id: str | None = None, query_ids: Sequence[str] = (),
        after_seq: int = 0, limit: int = 50,
    ) -> tuple[list[QueryRecord], int | None]:
        """Queries in creation order after ``after_seq``; also the seq to continue from (None at the end)."""
        where, params = _where(status=statuses, agent_id=[agent_id] if agent_id is not None else [], id=query_ids)
        return await self._page(QueryRecord, "queries", where, params, after_seq, limit)

    async def query_counts(self, *, agent_id: str | None = None, query_ids: Sequence[str] = ()) -> dict[str, int]:
        """How many queries are in each state (of one agent, or of ``query_ids``, when given)."""
        where, params = _where(agent_id=[agent_id] if agent_id is not None else [], id=query_ids)
        rows = await fetch_all(self._conn, f"SELECT status, COUNT(*) FROM queries WHERE {where} GROUP BY status", params)
        return {str(status): int(str(count)) for status, count in rows}

    async def _select(self, kind: type[Any], table: str, where: str, params: Sequence[object], *,
                      order: str = "seq", limit: int = -1) -> list[Any]:
        columns = _COLUMNS[kind]
        rows = await fetch_all(
            self._conn, f"SELECT {', '.join(columns)} FROM {table} WHERE {where} ORDER BY {order} LIMIT ?",
            (*params, limit))
        return [_from_row(kind, columns, row) for row in rows]

    async def _page(self, kind: type[Any], table: str, where: str, params: Sequence[object], after_seq: int,
                    limit: int) -> tuple[list[Any], int | None]:
        """One page in creation order after ``after_seq``, and the seq to continue from (None at the end)."""
        columns = _COLUMNS[kind]
        rows = await fetch_all(
            self._conn, f"SELECT seq, {', '.join(columns)} FROM {table} WHERE {where} AND seq > ? ORDER BY seq LIMIT ?",
            (*params, after_seq, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [_from_row(kind, columns, row[1:]) for row in rows], (int(str(rows[-1][0])) if more and rows else None)

    async def events_of(self, query_ids: Sequence[str]) -> dict[str, list[QueryEvent]]:
        """The logs of ``query_ids``, oldest first."""
        if not query_ids:
            return {}
        where, params = _where(query_id=query_ids)
        events: dict[str, list[QueryEvent]] = {}
        for event in await self._select(QueryEvent, "query_events", where, params):
            events.setdefault(event.query_id, []).append(event)
        return events

    async def usage_by_model(self) -> list[ModelUsage]:
        """Tokens and cost of every query on record, summed by model (unknown model: "unknown")."""
        rows = await fetch_all(
            self._conn,
            "SELECT COALESCE(model, 'unknown'), COALESCE(SUM(input_tokens), 0), COALESCE(SUM(output_tokens), 0), "
            "COALESCE(SUM(cost_usd), 0) FROM queries GROUP BY COALESCE(model, 'unknown') ORDER BY 1",
        )
        return [ModelUsage(str(model), int(str(inputs)), int(str(outputs)), float(str(cost)))
                for model, inputs, outputs, cost in rows]

    async def counts_by_status(self) -> dict[str, int]:
        rows = await fetch_all(self._conn, "SELECT status, COUNT(*) FROM agents GROUP BY status")
        return {str(status): int(str(count)) for status, count in rows}
