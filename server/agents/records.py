"""`AgentRecords`: the agents database, ``<data_dir>/agents.sqlite3``, and the agents' rows in it.

Kept across restarts: ``agent_list`` shows agents of earlier runs, and the next start finds the
processes a crashed server left behind from the pid and start time recorded here. The same file
holds the queries the agents run and their logs; `server.queries.records` owns those rows and
writes them through this database's `commit`, so a task's start or end (the query and its agent)
is one transaction. Writes go through a group-commit writer, so a swarm spawned at once costs a
few transactions, not one fsync per state change.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Generic, Literal, TypeVar

import aiosqlite

from server.memory.sql import fetch_all
from server.memory.writer import GroupCommitWriter
from server.sqlite_migrations import apply_migrations

AgentStatus = Literal["queued", "spawning", "ready", "running", "waiting", "terminated", "failed", "lost", "skipped"]

# An agent in one of these states has (or is about to have) processes.
LIVE_AGENT_STATUSES: tuple[AgentStatus, ...] = ("queued", "spawning", "ready", "running", "waiting")

# The whole file's schema, queries included: one migration history per database.
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
    # 3: permission requests and questions that wait for a person's answer, and who gave it.
    """
    CREATE TABLE permission_requests (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE,
        query_id         TEXT    NOT NULL REFERENCES queries (id),
        agent_id         TEXT    NOT NULL REFERENCES agents (id),
        tool             TEXT    NOT NULL,
        input            TEXT    NOT NULL,           -- JSON, bounded
        suggestions      TEXT    NOT NULL DEFAULT '[]',  -- JSON: the permission updates Claude Code offered
        questions        TEXT,                       -- JSON: AskUserQuestion's questions and options
        created_ms       INTEGER NOT NULL,
        expires_ms       INTEGER NOT NULL,
        status           TEXT    NOT NULL,           -- pending, allowed, denied, expired, cancelled
        decided_by       TEXT,                       -- client, dashboard, cli, timeout, rule:<name>, ...
        decided_ms       INTEGER,
        message          TEXT,
        remember         INTEGER NOT NULL DEFAULT 0,
        answers          TEXT                        -- JSON: {question: label}
    );
    CREATE INDEX permission_requests_by_status ON permission_requests (status);
    CREATE INDEX permission_requests_by_query ON permission_requests (query_id);
    """,
    # 4: agents' git workspaces: a worktree on a branch of its own, its work committed, merged or discarded.
    """
    CREATE TABLE workspaces (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE REFERENCES agents (id),  -- the agent's id
        repo             TEXT    NOT NULL,           -- the user's repository (its main worktree)
        path             TEXT    NOT NULL,           -- the worktree, <data_dir>/workspaces/<agent_id>
        subdir           TEXT    NOT NULL,           -- where in it the agent works, as its cwd was in repo
        branch           TEXT    NOT NULL,
        base_commit      TEXT    NOT NULL,
        base_branch      TEXT,                       -- the branch it started from: agent_merge's default target
        base_agent       TEXT,                       -- the agent whose finished work it starts from
        sandbox          INTEGER NOT NULL DEFAULT 0,
        created_ms       INTEGER NOT NULL,
        ready_ms         INTEGER,                    -- the worktree exists (and its setup ran)
        head             TEXT,                       -- the last commit made on the branch for the agent
        merged_into      TEXT,
        merged_commit    TEXT,
        merged_strategy  TEXT,
        merged_ms        INTEGER,
        discarded_ms     INTEGER,
        removed_ms       INTEGER                     -- the worktree was removed (the branch stays unless discarded)
    );
    """,
    # 5: budgets (an agent's, a query's, a spawn call's), the Claude Code session an agent runs (to
    # resume it), and the agent it was resumed from.
    """
    ALTER TABLE agents ADD COLUMN budget_usd REAL;
    ALTER TABLE agents ADD COLUMN budget_tokens INTEGER;
    ALTER TABLE agents ADD COLUMN on_budget TEXT NOT NULL DEFAULT 'pause';
    ALTER TABLE agents ADD COLUMN call_id TEXT;
    ALTER TABLE agents ADD COLUMN session_id TEXT;
    ALTER TABLE agents ADD COLUMN resumed_from TEXT;
    CREATE INDEX agents_by_call ON agents (call_id);
    ALTER TABLE queries ADD COLUMN budget_usd REAL;
    ALTER TABLE queries ADD COLUMN budget_tokens INTEGER;
    ALTER TABLE queries ADD COLUMN on_budget TEXT;
    ALTER TABLE queries ADD COLUMN budget_reached TEXT;        -- why a budget paused or ended it
    CREATE INDEX queries_by_end ON queries (ended_ms);
    CREATE TABLE spawn_calls (
        seq              INTEGER PRIMARY KEY AUTOINCREMENT,
        id               TEXT    NOT NULL UNIQUE,
        budget_usd       REAL,                       -- shared by the call's agents
        created_ms       INTEGER NOT NULL
    );
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
    budget_usd: float | None = None
    budget_tokens: int | None = None
    on_budget: str = "pause"
    call_id: str | None = None  # the spawn call that started it, when that call has a budget
    session_id: str | None = None  # claude: its Claude Code session, as soon as the CLI names it
    resumed_from: str | None = None


@dataclass(frozen=True, slots=True)
class RowChange:
    """One SQL statement on the agents database, ready for `AgentRecords.commit`."""

    sql: str
    params: tuple[object, ...]


RowT = TypeVar("RowT")


class Table(Generic[RowT]):
    """A table whose rows are one dataclass: its columns are the dataclass's fields, in order, and
    ``json_columns`` are stored as JSON text."""

    def __init__(self, name: str, kind: type[RowT], json_columns: frozenset[str] = frozenset()) -> None:
        self.name = name
        self.kind = kind
        self.columns = tuple(f.name for f in fields(kind))  # type: ignore[arg-type]
        self._json_columns = json_columns

    def inserted(self, record: RowT) -> RowChange:
        values = tuple(self._to_sql(name, getattr(record, name)) for name in self.columns)
        return RowChange(f"INSERT INTO {self.name} ({', '.join(self.columns)}) "
                         f"VALUES ({', '.join('?' * len(self.columns))})", values)

    def updated(self, row_id: str, changes: dict[str, object]) -> RowChange:
        unknown = set(changes) - set(self.columns) | ({"id"} & set(changes))
        if unknown or not changes:
            raise ValueError(f"cannot update {self.name} column(s) {sorted(unknown) or 'none given'}")
        assignments = ", ".join(f"{name} = ?" for name in changes)
        values = tuple(self._to_sql(name, value) for name, value in changes.items())
        return RowChange(f"UPDATE {self.name} SET {assignments} WHERE id = ?", (*values, row_id))

    def decoded(self, row: Sequence[object]) -> RowT:
        values = {name: (json.loads(str(value)) if name in self._json_columns and value is not None else value)
                  for name, value in zip(self.columns, row)}
        return self.kind(**values)

    def _to_sql(self, name: str, value: object) -> object:
        return json.dumps(value) if name in self._json_columns and value is not None else value


AGENTS = Table("agents", AgentRecord, frozenset({"capabilities"}))


def where_in(**columns: Sequence[object]) -> tuple[str, list[object]]:
    """``column IN (...)`` for each column given values (a column given none is not filtered), ANDed."""
    clauses, params = ["1"], list[object]()
    for column, values in columns.items():
        if values:
            clauses.append(f"{column} IN ({','.join('?' * len(values))})")
            params.extend(values)
    return " AND ".join(clauses), params


def agent_added(agent: AgentRecord) -> RowChange:
    return AGENTS.inserted(agent)


def agent_changed(agent_id: str, **changes: object) -> RowChange:
    return AGENTS.updated(agent_id, changes)


def agent_usage_added(agent_id: str, input_tokens: int, output_tokens: int, cost_usd: float) -> RowChange:
    """One task's usage added to the agent's totals (in SQL, so concurrent tasks never lose one)."""
    return RowChange("UPDATE agents SET tasks_run = tasks_run + 1, input_tokens = input_tokens + ?, "
                     "output_tokens = output_tokens + ?, cost_usd = cost_usd + ? WHERE id = ?",
                     (input_tokens, output_tokens, cost_usd, agent_id))


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

    async def commit_counted(self, change: RowChange) -> int:
        """Writes one change in the next group commit; answers how many rows it changed (a
        conditional UPDATE that lost a race answers 0)."""

        async def op(conn: aiosqlite.Connection) -> int:
            cursor = await conn.execute(change.sql, change.params)
            return cursor.rowcount

        return await self._writer.submit(op)

    async def update_agent(self, agent_id: str, **changes: object) -> None:
        await self.commit(agent_changed(agent_id, **changes))

    async def mark_lost(self, agent_ids: Sequence[str], ended_ms: int, reason: str, *also: RowChange) -> None:
        """Agents of a server that is gone become `lost`; ``also`` (their unfinished queries) in the same commit."""
        if not agent_ids:
            return
        marks = ",".join("?" * len(agent_ids))
        await self.commit(
            RowChange(f"UPDATE agents SET status = 'lost', error = ?, ended_ms = ?, pid = NULL, current_query = NULL "
                      f"WHERE id IN ({marks})", (reason, ended_ms, *agent_ids)),
            *also,
        )

    # -- reads ---------------------------------------------------------------------------------

    async def agent(self, agent_id: str) -> AgentRecord | None:
        found = await self.select(AGENTS, "id = ?", [agent_id])
        return found[0] if found else None

    async def agents_page(
        self, *, statuses: Sequence[str] = (), agent_type: str | None = None, after_seq: int = 0, limit: int = 50
    ) -> tuple[list[AgentRecord], int | None]:
        """Agents in creation order after ``after_seq``; also the seq to continue from (None at the end)."""
        where, params = where_in(status=statuses, type=[agent_type] if agent_type is not None else [])
        return await self.page(AGENTS, where, params, after_seq, limit)

    async def recent_agents(self, limit: int) -> list[AgentRecord]:
        """The ``limit`` newest agents, newest first."""
        return await self.select(AGENTS, "1", [], order="seq DESC", limit=limit)

    async def live_agents(self) -> list[AgentRecord]:
        """Agents recorded as alive (by any server run)."""
        where, params = where_in(status=LIVE_AGENT_STATUSES)
        return await self.select(AGENTS, where, params)

    async def counts_by_status(self) -> dict[str, int]:
        rows = await self.rows("SELECT status, COUNT(*) FROM agents GROUP BY status")
        return {str(status): int(str(count)) for status, count in rows}

    # -- reading any table (the queries' rows too) ---------------------------------------------

    async def rows(self, sql: str, params: Sequence[object] = ()) -> list[tuple[object, ...]]:
        return await fetch_all(self._conn, sql, params)

    async def select(self, table: Table[RowT], where: str, params: Sequence[object], *,
                     order: str = "seq", limit: int = -1) -> list[RowT]:
        rows = await self.rows(
            f"SELECT {', '.join(table.columns)} FROM {table.name} WHERE {where} ORDER BY {order} LIMIT ?",
            (*params, limit))
        return [table.decoded(row) for row in rows]

    async def page(self, table: Table[RowT], where: str, params: Sequence[object], after_seq: int,
                   limit: int) -> tuple[list[RowT], int | None]:
        """One page in creation order after ``after_seq``, and the seq to continue from (None at the end)."""
        rows = await self.rows(
            f"SELECT seq, {', '.join(table.columns)} FROM {table.name} WHERE {where} AND seq > ? ORDER BY seq LIMIT ?",
            (*params, after_seq, limit + 1))
        more = len(rows) > limit
        rows = rows[:limit]
        return [table.decoded(row[1:]) for row in rows], (int(str(rows[-1][0])) if more and rows else None)
