"""`WarmPool`: initialised idle Claude Code sessions, kept ready for types with a ``pool_size``.

Claude Code takes about 0.35 s to start and initialise; a spawn that fits a pooled worker (the
type's default working directory) takes one and is ready in milliseconds. Each worker is
started for a future agent id (its directory, environment and memory token are that agent's),
so taking one hands the session over unchanged; the pool refills in the background.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from server.agents.capacity import Ticket
from server.agents.claude_runtime import ClaudeLaunch, ClaudeSession, PermissionDecider
from server.agents.ids import new_id
from server.agents.launch import SpawnFailed, remove_mcp_config
from server.agents.memory_access import AgentMemoryAccess
from server.agents.outcome import OutputTail
from server.agents.process_groups import StrayFinder, end_group, identify
from server.agents.slots import RunningSlots
from server.agents.types import AgentType, AgentTypes
from server.agents.watchdog import Watchdog
from server.config import Settings

logger = logging.getLogger(__name__)

# After this many failed starts in a row, a type's pool stops refilling (its spawns start cold).
_MAX_FAILURES = 3


@dataclass(slots=True)
class PooledWorker:
    agent_id: str
    session: ClaudeSession
    tail: OutputTail
    ticket: Ticket | None  # its place under SWITCHBOARD_AGENT_MAX_RUNNING, handed on to the agent that takes it


class PoolHost(Protocol):
    """What the pool needs of the supervisor that owns it: how a session starts, where it is
    watched, its slots and its background tasks (the supervisor passes itself)."""

    @property
    def settings(self) -> Settings: ...

    @property
    def types(self) -> AgentTypes: ...

    @property
    def slots(self) -> RunningSlots: ...

    @property
    def stray_scan(self) -> StrayFinder: ...

    @property
    def memory_access(self) -> AgentMemoryAccess | None: ...

    def workdir_for(self, agent_id: str) -> Path: ...

    async def claude_launch_for(self, agent_id: str, agent_type: AgentType, model: str | None,
                                permission_mode: str, workdir: Path) -> ClaudeLaunch: ...

    def permission_decider(self, agent_id: str, type_name: str, agent_type: AgentType) -> PermissionDecider: ...

    async def watchdog(self) -> Watchdog: ...

    def watchdog_if_started(self) -> Watchdog | None: ...

    def spawn_background(self, coroutine: Any, name: str) -> asyncio.Task[Any]: ...


class WarmPool:
    def __init__(self, supervisor: PoolHost) -> None:
        self._supervisor = supervisor
        self._idle: dict[str, deque[PooledWorker]] = {}
        self._refilling: dict[str, asyncio.Task[None]] = {}
        self._failures: dict[str, int] = {}
        self._closed = False

    def start(self) -> None:
        """Fills every pooled type's pool in the background."""
        for name, agent_type in self._supervisor.types.items():
            if agent_type.runtime == "claude" and agent_type.pool_size > 0:
                self._refill(name, agent_type)

    def idle_count(self, type_name: str) -> int:
        return len(self._idle.get(type_name, ()))

    def take(self, type_name: str) -> PooledWorker | None:
        """An idle worker of that type, or None; the pool refills behind it."""
        workers = self._idle.get(type_name)
        worker = None
        while workers and worker is None:
            candidate = workers.popleft()
            if candidate.session.alive:
                worker = candidate
            else:
                self._supervisor.spawn_background(self.discard(candidate), name="pool-discard")
        agent_type = self._supervisor.types.get(type_name)
        if agent_type.pool_size > 0:
            self._refill(type_name, agent_type)
        return worker

    async def wait_full(self, type_name: str) -> None:
        """Until the type's pool holds ``pool_size`` workers (or gave up refilling)."""
        task = self._refilling.get(type_name)
        if task is not None:
            await asyncio.shield(task)

    def _refill(self, type_name: str, agent_type: AgentType) -> None:
        running = self._refilling.get(type_name)
        if self._closed or (running is not None and not running.done()):
            return
        self._refilling[type_name] = self._supervisor.spawn_background(
            self._fill(type_name, agent_type), name=f"pool-{type_name}")

    async def _fill(self, type_name: str, agent_type: AgentType) -> None:
        workers = self._idle.setdefault(type_name, deque())
        while not self._closed and len(workers) < agent_type.pool_size:
            if self._failures.get(type_name, 0) >= _MAX_FAILURES:
                logger.warning("warm pool of %s: %d failed starts in a row; spawns of it start cold", type_name,
                               _MAX_FAILURES)
                return
            try:
                worker = await self._start_worker(type_name, agent_type)
            except SpawnFailed as error:
                self._failures[type_name] = self._failures.get(type_name, 0) + 1
                logger.warning("warm pool of %s: %s", type_name, error)
                continue
            self._failures[type_name] = 0
            if self._closed:
                await self.discard(worker)
                return
            workers.append(worker)

    async def _start_worker(self, type_name: str, agent_type: AgentType) -> PooledWorker:
        supervisor = self._supervisor
        agent_id = new_id("agent")
        launch = await supervisor.claude_launch_for(agent_id, agent_type, agent_type.model, agent_type.permission_mode,
                                                    supervisor.workdir_for(agent_id))
        tail = OutputTail(supervisor.settings.agent_output_tail_bytes)
        session = ClaudeSession(launch, supervisor.permission_decider(agent_id, type_name, agent_type), tail)
        ticket = await supervisor.slots.cap.take()  # an idle session holds files and memory like a busy one
        try:
            await session.start(supervisor.settings.agent_spawn_timeout_s)
        except BaseException:
            ticket.release()
            raise
        finally:  # the CLI read it as it started: its token stays on disk no longer than that
            remove_mcp_config(launch.state_dir)
        if session.pid is not None and (identity := identify(session.pid)) is not None:
            (await supervisor.watchdog()).watch(identity.pid, identity.start_time, agent_id)
        return PooledWorker(agent_id, session, tail, ticket)

    async def discard(self, worker: PooledWorker) -> None:
        """Ends an idle worker (its session, group and memory token)."""
        pid = worker.session.pid
        closing = asyncio.create_task(worker.session.close())
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                await asyncio.shield(closing)
        if pid is not None:
            await end_group(pid, 1.0, tag=worker.agent_id, scan=self._supervisor.stray_scan)
            watchdog = self._supervisor.watchdog_if_started()
            if watchdog is not None:
                watchdog.forget(pid)
        await closing
        if worker.ticket is not None:
            worker.ticket.release()
            worker.ticket = None
        if self._supervisor.memory_access is not None:
            self._supervisor.memory_access.revoke(worker.agent_id)

    async def close(self) -> None:
        self._closed = True
        for task in self._refilling.values():
            task.cancel()
        await asyncio.gather(*self._refilling.values(), return_exceptions=True)
        workers = [worker for queue in self._idle.values() for worker in queue]
        self._idle.clear()
        await asyncio.gather(*(self.discard(worker) for worker in workers), return_exceptions=True)
