"""The live agent: what the supervisor keeps in memory while an agent has not ended.

Its record is its row in the agents database; this holds what only a running server has besides:
runtime handles (a Claude Code session, an exec task's process), the events that say the agent is
idle or ended, its place in the running slots, and the lock that keeps one task at a time.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from server.agents.capacity import Ticket
from server.agents.claude_runtime import ClaudeSession
from server.agents.exec_runtime import ExecProcess
from server.agents.file_scope import FileScope
from server.agents.outcome import OutputTail, Usage
from server.agents.records import AgentRecord
from server.agents.resume import ResumedAgent
from server.agents.tasks import Task
from server.agents.types import AgentType
from server.agents.workspaces import WorkspaceRecord
from server.workspaces.sandbox import Sandbox


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
    running: Task | None = None
    running_prompt: str | None = None  # what its running task was asked (its work's commit message says it)
    remembered: list[str] = field(default_factory=list)  # tool patterns a person allowed for its whole life
    workspace: WorkspaceRecord | None = None  # its git worktree, when it has one
    sandboxed: bool = False
    sandbox: Sandbox | None = None  # exec: how its commands are wrapped (made once its workspace exists)
    file_scope: FileScope | None = None  # claude, sandboxed: where its file tools may read and write
    resumed: ResumedAgent | None = None  # what it took over from the agent it resumes

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def terminating(self) -> bool:
        """Being ended (or ended): its stop was asked for, whether or not it is confirmed yet."""
        return self.stop_requested.is_set()

    @property
    def live_usage(self) -> Usage | None:
        """What its running task has used so far, as its runtime reports it while the task runs."""
        if self.session is not None:
            return self.session.live
        return self.process.live_usage if self.process is not None else None

    @property
    def leader_pid(self) -> int | None:
        """The process leading its group: the Claude Code CLI, or the running exec task."""
        if self.session is not None:
            return self.session.pid
        return self.process.pid if self.process is not None else None
