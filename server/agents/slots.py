"""`RunningSlots`: the two bounds on agents whose processes run, and an agent's place under them.

A type's ``max_running`` bounds its own agents (a claude agent holds its type's slot from start
to end); `capacity.RunningCap` bounds every agent of the server together
(SWITCHBOARD_AGENT_MAX_RUNNING). An agent waiting for either is ``queued``; one ended while it
waits stops waiting and takes nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from server.agents.capacity import RunningCap, Ticket
from server.agents.live import Agent
from server.agents.types import AgentType


class RunningSlots:
    def __init__(self, cap: RunningCap) -> None:
        self.cap = cap
        self._by_type: dict[str, asyncio.Semaphore] = {}

    def of_type(self, type_name: str, agent_type: AgentType) -> asyncio.Semaphore | None:
        """The type's own bound (None when it sets no ``max_running``)."""
        if agent_type.max_running is None:
            return None
        if type_name not in self._by_type:
            self._by_type[type_name] = asyncio.Semaphore(agent_type.max_running)
        return self._by_type[type_name]

    async def hold_type_slot(self, agent: Agent) -> None:
        """A claude agent's place under its type's bound, held until `release` (at its end)."""
        slot = self.of_type(agent.record.type, agent.agent_type)
        if slot is not None:
            await slot.acquire()
            agent.holds_slot = True

    async def admit(self, agent: Agent, on_queued: Callable[[], Awaitable[None]] | None = None) -> Ticket | None:
        """A place under the server's cap for the agent's processes, waiting ``queued`` in line when
        all are taken (``on_queued`` is told once); None when the agent is ended meanwhile."""
        ticket = self.cap.try_take()
        if ticket is None:
            if on_queued is not None:
                await on_queued()
            taking = asyncio.ensure_future(self.cap.take())
            stopping = asyncio.ensure_future(agent.stop_requested.wait())
            try:
                await asyncio.wait((taking, stopping), return_when=asyncio.FIRST_COMPLETED)
            finally:
                stopping.cancel()
                if not taking.done():
                    taking.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await taking
            ticket = taking.result() if taking.done() and not taking.cancelled() else None
        if ticket is not None and agent.terminating:
            ticket.release()
            return None
        return ticket

    def release(self, agent: Agent) -> None:
        """Gives back the agent's places (its type's and the server's) once its processes are gone."""
        if agent.holds_slot:
            agent.holds_slot = False
            slot = self._by_type.get(agent.record.type)
            if slot is not None:
                slot.release()
        if agent.ticket is not None:
            agent.ticket.release()
            agent.ticket = None
