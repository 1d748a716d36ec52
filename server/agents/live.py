"""The live agent and its active query: what the supervisor keeps in memory while they have not ended.

Their records are the rows in the agents database; these hold what only a running server has
besides: runtime handles (a Claude Code session, an exec task's process), the events that say
an agent is idle or ended, its place in the running slots, and the locks that keep one task and
one control action at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from server.agents.capacity import Ticket
from server.agents.claude_runtime import ClaudeSession
from server.agents.exec_runtime import ExecProcess
from server.agents.outcome import OutputTail
from server.agents.records import AgentRecord, QueryRecord
from server.agents.types import AgentType


@dataclass(eq=False)
class Agent:
    """A live agent: its record, its type, and its runtime handle."""

    record: AgentRecord
    agent_type: AgentType
    command: tuple[str, ...] | None  # exec: the argv template (the type's, or an allowed ad-hoc one)
    tail: OutputTail
    session: ClaudeSession | None = None
    process: ExecProcess | None = None
    last_result: str | None = None
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    idle: asyncio.Event = field(default_factory=asyncio.Event)  # clear while a task runs
    holds_slot: bool = False
    ticket: Ticket | None = None  # its place under SWITCHBOARD_AGENT_MAX_RUNNING while its processes run
    stop_requested: asyncio.Event = field(default_factory=asyncio.Event)  # set once, by the first end()
    stop_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one stop attempt at a time
    stop_retrying: bool = False
    # Its queries run one at a time, in the order they were started (asyncio.Lock is FIFO).
    query_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    running: ActiveQuery | None = None

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def terminating(self) -> bool:
        """Being ended (or ended): its stop was asked for, whether or not it is confirmed yet."""
        return self.stop_requested.is_set()


@dataclass(eq=False)
class ActiveQuery:
    """A query that has not ended: its record (kept current in memory) and who waits for its end."""

    record: QueryRecord
    ended: asyncio.Event = field(default_factory=asyncio.Event)
    tail_mark: int = 0                # the agent's output count when it started: its tail is what came after
    stopped_by: str | None = None     # who terminated it ("client", "rule:<name>"), for its error
    control_lock: asyncio.Lock = field(default_factory=asyncio.Lock)  # one control action at a time

    @property
    def id(self) -> str:
        return self.record.id
