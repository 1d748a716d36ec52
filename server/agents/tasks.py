"""The agents' side of the line between agents and queries.

`server.agents` runs tasks on agents' processes; `server.queries` keeps those tasks as queries
(their rows, logs and the in-memory state of the active ones). The supervisor knows a task only
as a `Task` and tells what happens to it through a `TaskLedger`; `server.queries.book.QueryBook`
is that ledger. An agent's own row changes travel with each report, so a task's start or end
and its agent's change are one commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any, Literal, Protocol

from server.agents.outcome import TaskOutcome
from server.agents.permissions import PermissionAnswer, PermissionAsk
from server.agents.records import AgentRecord, RowChange
from server.agents.spend import Limit

# How a task that never ran (or whose start failed) ends.
TaskEnd = Literal["failed", "terminated", "skipped"]


class Task(Protocol):
    """A task the supervisor runs: what it asks for and whether it is still wanted."""

    @property
    def id(self) -> str: ...

    @property
    def model(self) -> str | None:
        """The model asked for this task (None: the agent's)."""

    @property
    def permission_mode(self) -> str | None:
        """The permission mode asked for this task (None: the agent's)."""

    @property
    def started(self) -> bool: ...

    @property
    def ended(self) -> asyncio.Event:
        """Set once its end is recorded (which may come before it ran: terminated while queued)."""

    @property
    def stopped_by(self) -> str | None:
        """Who terminated it (``client``, ``rule:<name>``), or None."""


class TaskLedger(Protocol):
    """Where the supervisor records the tasks it runs."""

    def first_task(self, agent: AgentRecord, prompt: str, *, waiting: bool, limit: Limit) -> tuple[Task, RowChange]:
        """A new agent's first task (``waiting`` for its dependencies, else queued) with its own
        budget, and the row change that records it, for the commit that records the agent."""

    async def running(self, task_id: str, tail_mark: int, agent_change: RowChange) -> None:
        """The task runs from now; ``tail_mark`` is its agent's output count at its start."""

    async def model_in_use(self, task_id: str, model: str, agent_changes: Sequence[RowChange]) -> None:
        """The CLI named the model the task runs on."""

    def spending(self, task_id: str) -> None:
        """The running task's live usage grew (a model turn streamed, an exec line reported usage):
        its budgets are checked. Called from the stream: it must not wait."""

    async def finished(self, agent: AgentRecord, task_id: str, outcome: TaskOutcome,
                       agent_changes: Sequence[RowChange], *, agent_ending: bool, output_tail: str | None) -> None:
        """The task ended with ``outcome`` (a terminated one when its agent is ending or someone stopped it)."""

    async def close(self, task_id: str, status: TaskEnd, error: str) -> None:
        """Ends a task that will not run (skipped, failed to start, its agent ended) and records why."""

    async def log(self, task_id: str, action: str, actor: str, outcome: str,
                  detail: dict[str, Any] | None = None) -> object:
        """One entry of the task's log (a permission decision, a control action)."""

    async def ask(self, task_id: str, request: PermissionAsk) -> PermissionAnswer:
        """Hands a permission request (or a question) of the running task to a person and waits for
        the answer, the timeout, or the task's end (a denial)."""

    async def agent_ended(self, agent_id: str, status: str) -> None:
        """The agent ended: its running task is recorded terminated, the ones waiting their turn end unrun."""

    def lost_with(self, agent_ids: Sequence[str], ended_ms: int, reason: str) -> list[RowChange]:
        """The row changes that mark the unfinished tasks of these agents (of a server that is gone)
        lost, and cancel what they were waiting for."""
