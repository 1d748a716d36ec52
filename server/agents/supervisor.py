"""`Supervisor`: owns every agent process group, from spawn to exit, and never leaves one behind.

It starts agents (a Claude Code session, or nothing until an exec agent's first task), runs
their tasks, ends them on request and at shutdown (SIGTERM, then SIGKILL after a grace
period), and registers each group with a watchdog process that ends them if this server dies
without a shutdown (SIGKILL, OOM). At start it ends whatever an earlier, crashed server left
running (identified by pid *and* start time) and marks those agents `lost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import IO, Any

from tenacity import AsyncRetrying, retry_if_exception, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from server.agents.activity import ActivityLog
from server.agents.capacity import RunningCap, default_max_running
from server.agents.changes import ChangeFeed
from server.agents.claude_launch import ClaudeLaunches
from server.agents.claude_runtime import ClaudeLaunch, ClaudeSession, PermissionDecider
from server.agents.exec_runtime import ExecLaunch, ExecProcess, prepare_files
from server.agents.ids import new_id
from server.agents.launch import (
    SpawnFailed,
    remove_mcp_config,
)
from server.agents.live import ActiveQuery, Agent
from server.agents.memory_access import AgentMemoryAccess
from server.agents.outcome import OutputTail, TaskOutcome
from server.agents.permissions import decide as decide_permission
from server.agents.pool import PooledWorker, WarmPool
from server.agents.process_groups import (
    ProcessIdentity,
    boot_id,
    end_group,
    identify,
    is_same_process,
    kill_leftover,
    signal_processes,
    tagged_processes,
)
from server.agents.records import (
    AgentRecord,
    AgentRecords,
    AgentStatus,
    QueryEvent,
    QueryRecord,
    QueryStatus,
    agent_added,
    agent_changed,
    agent_usage_added,
    query_added,
    query_changed,
    query_event_added,
)
from server.agents.sampling import sample_agents_forever
from server.agents.slots import RunningSlots
from server.agents.tagged_scan import SharedTaggedScan
from server.agents.types import AgentType, AgentTypes, render_command, type_environment
from server.agents.watchdog import Watchdog
from server.clock import Clock
from server.config import Settings
from server.errors import NotFound, SwitchboardError
from server.memory import MemoryStore

logger = logging.getLogger(__name__)

# A stop that cannot confirm the agent's processes ended (EMFILE reading /proc, a process stuck in
# the kernel) is tried this many times in the call, then again in the background at this interval.
STOP_ATTEMPTS = 4
STOP_RETRY_INTERVAL_S = 5.0


class StopFailed(SwitchboardError):
    """An agent's processes could not be confirmed gone; it stays live and the stop is retried."""

    code = "unavailable"


class Supervisor:
    """Every agent of this server. Open with `Supervisor.open`, close with `close`."""

    def __init__(self, settings: Settings, records: AgentRecords, memory: MemoryStore, clock: Clock) -> None:
        self.settings = settings
        self.records = records
        self.clock = clock
        self.types = AgentTypes(settings.agent_types)
        self.activity = ActivityLog(memory, settings)
        self.memory_access: AgentMemoryAccess | None = None
        self.stray_scan = SharedTaggedScan()  # one /proc scan for the tools of agents ending together
        self.changes = ChangeFeed()
        self._agents: dict[str, Agent] = {}
        self._queries: dict[str, ActiveQuery] = {}
        self._watchdog: Watchdog | None = None
        self._watchdog_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.launches = ClaudeLaunches(settings)
        self._closed = False
        self.identity = identify(os.getpid())
        self.boot_id = boot_id()
        self.slots = RunningSlots(RunningCap(settings.agent_max_running or default_max_running()))
        self.pool = WarmPool(self)
        self._sampler = asyncio.create_task(
            sample_agents_forever(self.live_agents, self.activity, clock, settings.agent_metrics_interval_s),
            name="agent-metrics")

    @classmethod
    async def open(cls, settings: Settings, memory: MemoryStore, clock: Clock) -> Supervisor:
        records = await AgentRecords.open(settings.agents_database_path)
        supervisor = cls(settings, records, memory, clock)
        try:
            await supervisor.reap_leftovers()
        except BaseException:
            await supervisor.close()
            raise
        return supervisor

    # -- start-up ------------------------------------------------------------------------------

    async def reap_leftovers(self) -> list[str]:
        """Ends the processes of agents whose server is gone and marks those agents `lost`."""
        orphans: list[str] = []
        for record in await self.records.live_agents():
            server = ProcessIdentity(record.server_pid, record.server_start_time)
            this_boot = record.boot_id == self.boot_id
            if server == self.identity or (this_boot and is_same_process(server)):
                continue  # ours, or another live server's on this data directory
            if this_boot and record.pid is not None and record.pid_start_time is not None and \
                    kill_leftover(ProcessIdentity(record.pid, record.pid_start_time)):
                logger.warning("ended agent %s (pid %d) left running by a server that exited", record.id, record.pid)
            orphans.append(record.id)
        # Their tools may have left the group (Claude Code's Bash runs in a session of its own).
        if strays := await asyncio.to_thread(tagged_processes, orphans):
            signal_processes(strays, signal.SIGKILL)
            logger.warning("ended %d stray tool process(es) of agents of a server that exited", len(strays))
        for orphan in orphans:  # its token died with its server; the file need not outlive it either
            remove_mcp_config(self.workdir_for(orphan))
        if orphans:
            await self.records.mark_lost(orphans, self.clock.now_ms(),
                                         "lost: the server running it exited; its processes were ended at the next start")
            logger.info("marked %d agent(s) of an earlier server run lost", len(orphans))
        return orphans

    # -- agents --------------------------------------------------------------------------------

    def live(self, agent_id: str) -> Agent | None:
        return self._agents.get(agent_id)

    def live_agents(self) -> list[Agent]:
        return list(self._agents.values())

    def workdir_for(self, agent_id: str) -> Path:
        return (self.settings.data_dir / "agents" / agent_id).absolute()

    async def create(
        self, *, agent_id: str, name: str, type_name: str, agent_type: AgentType, command: tuple[str, ...] | None,
        model: str | None, permission_mode: str, cwd: Path | None, capabilities: Sequence[str], priority: int,
        status: AgentStatus, task: str | None = None, task_status: QueryStatus = "queued",
    ) -> tuple[Agent, QueryRecord | None]:
        """Records a new agent (not yet started) and, in the same commit, its first task when it has
        one (as a query in ``task_status``); tracks the agent."""
        workdir = cwd if cwd is not None else self.workdir_for(agent_id)
        assert self.identity is not None
        record = AgentRecord(
            id=agent_id, name=name, type=type_name, runtime=agent_type.runtime, status=status, workdir=str(workdir),
            server_pid=self.identity.pid, server_start_time=self.identity.start_time, boot_id=self.boot_id,
            created_ms=self.clock.now_ms(),
            model=model, permission_mode=permission_mode, capabilities=list(capabilities), priority=priority,
        )
        query = self._new_query(record, task, task_status, None, None) if task is not None else None
        await self.records.commit(agent_added(record), *([query_added(query)] if query is not None else []))
        agent = Agent(record, agent_type, command, OutputTail(self.settings.agent_output_tail_bytes))
        agent.idle.set()
        self._agents[agent_id] = agent
        if query is not None:
            self._queries[query.id] = ActiveQuery(query)
        return agent, query

    def state_dir(self, agent: Agent) -> Path:
        """Logs, the pid file and task inputs: always under the data directory, whatever the workdir."""
        return self.workdir_for(agent.id)

    async def set_status(self, agent: Agent, status: AgentStatus, **changes: object) -> None:
        agent.record.status = status
        for name, value in changes.items():
            setattr(agent.record, name, value)
        await self.records.update_agent(agent.id, status=status, **changes)
        self.changes.changed("agent", agent.id)

    async def start(self, agent: Agent) -> float:
        """Starts a claude agent's session (retrying transient failures); answers the spawn time in
        ms. An exec agent has nothing to start until its first task. Raises `SpawnFailed`."""
        if agent.agent_type.runtime != "claude":
            return 0.0
        began = asyncio.get_running_loop().time()
        async for attempt in self._spawn_retries():
            with attempt:
                if agent.terminating:
                    raise SpawnFailed("terminated before it was ready", transient=False)
                decider = self.permission_decider(agent.id, agent.record.type, agent.agent_type)
                launch = await self.claude_launch_for(agent.id, agent.agent_type, agent.record.model,
                                                      agent.record.permission_mode or "default",
                                                      Path(agent.record.workdir))
                session = ClaudeSession(launch, decider, agent.tail)
                try:
                    await session.start(self.settings.agent_spawn_timeout_s)
                finally:  # the CLI read it as it started: its token stays on disk no longer than that
                    remove_mcp_config(self.state_dir(agent))
                agent.session = session
        spawn_ms = (asyncio.get_running_loop().time() - began) * 1000
        await self._adopt(agent, agent.session.pid if agent.session else None)
        await self._model_at_start(agent)
        return spawn_ms

    def _spawn_retries(self) -> AsyncRetrying:
        """Starting a process or a session: transient failures (EAGAIN, EMFILE, an initialize
        timeout) are tried again with jittered backoff, up to SWITCHBOARD_AGENT_SPAWN_ATTEMPTS."""
        return AsyncRetrying(
            stop=stop_after_attempt(self.settings.agent_spawn_attempts),
            wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
            retry=retry_if_exception(lambda error: isinstance(error, SpawnFailed) and error.transient),
            reraise=True,
        )

    async def _model_at_start(self, agent: Agent) -> None:
        """An agent whose type names no model runs the CLI's default: listed as such from the start."""
        model = agent.session.model_at_start if agent.session is not None else None
        if agent.record.model is None and model is not None:
            agent.record.model = model
            await self.records.update_agent(agent.id, model=model)

    async def adopt(self, agent: Agent, worker: PooledWorker) -> float:
        """Gives a warm pool's idle session to the agent it was started for; sets the agent's model and
        permission mode live where they differ from the type's. Answers the time it took in ms."""
        began = asyncio.get_running_loop().time()
        agent.session, agent.tail = worker.session, worker.tail
        agent.ticket, worker.ticket = worker.ticket, None
        if agent.record.model != agent.agent_type.model:
            await worker.session.set_model(agent.record.model)
        if agent.record.permission_mode != agent.agent_type.permission_mode:
            await worker.session.set_permission_mode(agent.record.permission_mode or "default")
        pid = worker.session.pid
        identity = identify(pid) if pid is not None else None
        if identity is not None:  # the pool already gave it to the watchdog
            agent.record.pid, agent.record.pid_start_time = identity.pid, identity.start_time
            await self.records.update_agent(agent.id, pid=identity.pid, pid_start_time=identity.start_time)
        await self._model_at_start(agent)
        return (asyncio.get_running_loop().time() - began) * 1000

    async def _adopt(self, agent: Agent, pid: int | None) -> None:
        if pid is None:
            return
        identity = identify(pid)
        if identity is None:
            raise SpawnFailed("Claude Code exited right after it started; see its session.log", transient=True)
        agent.record.pid, agent.record.pid_start_time = identity.pid, identity.start_time
        await self.records.update_agent(agent.id, pid=identity.pid, pid_start_time=identity.start_time)
        (await self.watchdog()).watch(identity.pid, identity.start_time, agent.id)

    async def claude_launch_for(self, agent_id: str, agent_type: AgentType, model: str | None,
                                permission_mode: str, workdir: Path) -> ClaudeLaunch:
        """How a claude session for ``agent_id`` starts (also used by the warm pool)."""
        return await self.launches.for_agent(agent_id, agent_type, model=model, permission_mode=permission_mode,
                                             workdir=workdir, state_dir=self.workdir_for(agent_id),
                                             memory=self.memory_access)

    def permission_decider(self, agent_id: str, type_name: str, agent_type: AgentType) -> PermissionDecider:
        """Answers Claude Code's permission requests at once (`permissions.decide`, under the agent's
        mode at the time of asking), so no request waits on a person; each answer goes in the log of
        the query that asked."""

        async def decide(tool_name: str, _tool_input: dict[str, Any]) -> str | None:
            agent = self._agents.get(agent_id)
            mode = (agent.record.permission_mode if agent is not None else None) or agent_type.permission_mode
            decision = decide_permission(type_name, agent_type, mode, tool_name)
            if not decision.allowed:
                logger.info("agent %s: denied tool %s (%s)", agent_id, tool_name, mode)
            if agent is not None and agent.running is not None:
                await self.log_event(agent.running.id, "permission", f"policy:{mode}",
                                     "allowed" if decision.allowed else "denied",
                                     {"tool": tool_name, "reason": decision.reason})
            return None if decision.allowed else decision.reason

        return decide

    async def log_event(self, query_id: str, action: str, actor: str, outcome: str,
                        detail: dict[str, Any] | None = None) -> QueryEvent:
        """Writes one entry of a query's log (SQLite, and the query-events memory namespace)."""
        event = QueryEvent(query_id, self.clock.now_ms(), action, actor, outcome, detail)
        await self.records.commit(query_event_added(event))
        self.activity.query_event(event)
        self.changes.changed("query", query_id)
        return event

    # -- tasks ---------------------------------------------------------------------------------

    def _new_query(self, agent: AgentRecord, task: str, status: QueryStatus, model: str | None,
                   permission_mode: str | None) -> QueryRecord:
        return QueryRecord(id=new_id("query"), agent_id=agent.id, task=task, status=status,
                           created_ms=self.clock.now_ms(), model=model or agent.model,
                           permission_mode=permission_mode or agent.permission_mode)

    async def add_query(self, agent: Agent, task: str, *, model: str | None = None,
                        permission_mode: str | None = None) -> QueryRecord:
        """Records a new query of a live agent, ``queued`` until `run_task` runs it (after the agent's
        earlier queries). ``model`` and ``permission_mode`` apply from this query on."""
        query = self._new_query(agent.record, task, "queued", model, permission_mode)
        await self.records.add_query(query)
        self._queries[query.id] = ActiveQuery(query)
        return query

    async def close_query(self, query_id: str, status: QueryStatus, error: str) -> None:
        """Ends a query that will not run (skipped, failed to start, its agent ended) and records why."""
        active = self._queries.pop(query_id, None)
        now = self.clock.now_ms()
        await self.records.update_query(query_id, status=status, error=error, ended_ms=now)
        if active is not None:
            active.record.status, active.record.error, active.record.ended_ms = status, error, now
            active.ended.set()
        self.changes.changed("query", query_id)

    def active_query(self, query_id: str) -> ActiveQuery | None:
        return self._queries.get(query_id)

    def active_queries(self) -> list[ActiveQuery]:
        return list(self._queries.values())

    async def run_task(self, agent: Agent, query: QueryRecord, prompt: str, inputs: dict[str, Any] | None,
                       on_started: Callable[[float], None] | None = None,
                       on_queued: Callable[[], Awaitable[None]] | None = None) -> TaskOutcome:
        """Runs one task to its end, after the agent's earlier ones, and records it. ``on_started``
        gets the spawn time (ms) once its process is up (an exec agent's process start; a claude
        agent's session is already up); ``on_queued`` is told when an exec task waits for a slot
        under SWITCHBOARD_AGENT_MAX_RUNNING."""
        active = self._queries.setdefault(query.id, ActiveQuery(query))
        async with agent.query_lock:
            if active.ended.is_set():  # terminated while it waited its turn (already recorded)
                return TaskOutcome("terminated", error=query.error or "terminated before it started")
            if agent.terminating or active.stopped_by is not None:
                who = active.stopped_by or "the agent's end"
                outcome = TaskOutcome("terminated", error=f"terminated by {who} before it started")
                await self._finish_query(agent, query, outcome)
                return outcome
            agent.idle.clear()
            agent.running = active
            active.tail_mark = agent.tail.total_bytes
            try:
                return await self._run_task(agent, active, prompt, inputs, on_started, on_queued)
            finally:
                agent.running = None
                agent.idle.set()

    async def _run_task(self, agent: Agent, active: ActiveQuery, prompt: str, inputs: dict[str, Any] | None,
                        on_started: Callable[[float], None] | None,
                        on_queued: Callable[[], Awaitable[None]] | None) -> TaskOutcome:
        query = active.record
        if agent.agent_type.runtime != "claude":
            # An exec task's process counts toward the server's cap while it runs; until a slot is
            # free the query stays queued (and is ended, never started, if the agent ends meanwhile).
            ticket = agent.ticket or await self.slots.admit(agent, on_queued)
            if ticket is None:
                outcome = TaskOutcome("terminated", error="terminated while it waited for a running slot")
                await self._finish_query(agent, query, outcome)
                return outcome
            agent.ticket = ticket
            try:
                await self._mark_running(agent, query)
                outcome = await self._run_exec(agent, query, prompt, inputs, on_started)
            finally:
                if agent.ticket is ticket and agent.process is None:  # its process is gone: the slot is free
                    ticket.release()
                    agent.ticket = None
            await self._finish_query(agent, query, outcome)
            return outcome
        await self._mark_running(agent, query)
        assert agent.session is not None
        failure = await self._apply_query_settings(agent, query)
        if on_started is not None:
            on_started(0.0)
        outcome = failure or await agent.session.run(
            prompt, on_model=lambda model: self._model_in_use(agent, query, model))
        await self._finish_query(agent, query, outcome)
        return outcome

    async def _mark_running(self, agent: Agent, query: QueryRecord) -> None:
        now = self.clock.now_ms()
        query.status, query.started_ms = "running", now
        agent.record.status, agent.record.current_query = "running", query.id
        await self.records.commit(query_changed(query.id, status="running", started_ms=now),
                                  agent_changed(agent.id, status="running", current_query=query.id))
        self.changes.changed("query", query.id)
        self.changes.changed("agent", agent.id)

    async def _apply_query_settings(self, agent: Agent, query: QueryRecord) -> TaskOutcome | None:
        """A claude query started with its own model or permission mode: set live on the session,
        where they stay for the agent's next queries. A refusal fails the query with the CLI's reason."""
        assert agent.session is not None
        record = agent.record
        try:
            if query.model is not None and query.model != record.model:
                await agent.session.set_model(query.model)
                record.model = query.model
            if query.permission_mode is not None and query.permission_mode != record.permission_mode:
                await agent.session.set_permission_mode(query.permission_mode)
                record.permission_mode = query.permission_mode
        except Exception as error:  # the SDK raises a bare Exception carrying the CLI's answer
            return TaskOutcome("failed", error=f"Claude Code refused the query's settings: {error}")
        await self.records.update_agent(agent.id, model=record.model, permission_mode=record.permission_mode)
        return None

    async def _run_exec(self, agent: Agent, query: QueryRecord, task: str, inputs: dict[str, Any] | None,
                        on_started: Callable[[float], None] | None) -> TaskOutcome:
        assert agent.command is not None
        record = agent.record
        state_dir = self.state_dir(agent)
        workdir = Path(record.workdir)
        values = {"task": task, "model": query.model or record.model or "",
                  "permission_mode": query.permission_mode or record.permission_mode or "",
                  "agent_id": agent.id, "workdir": str(workdir)}
        env = type_environment(agent.agent_type, agent.id)
        inputs_path = state_dir / f"inputs-{query.id}.json" if inputs is not None else None
        launch = ExecLaunch(render_command(agent.command, values), workdir, env, state_dir / "output.log")
        # Creating directories and files takes about a millisecond each on a VM's disk: in a thread,
        # so that a swarm's agents prepare side by side and the event loop keeps answering.
        log = await asyncio.to_thread(prepare_files, launch, inputs_path, inputs)
        if inputs_path is not None:
            env["SWITCHBOARD_INPUTS"] = str(inputs_path)
        slot = self.slots.of_type(record.type, agent.agent_type)
        async with slot if slot is not None else contextlib.nullcontext():
            watchdog = await self.watchdog()
            began = asyncio.get_running_loop().time()
            try:
                process = await self._start_exec(launch, agent, log)
            except BaseException:
                log.close()
                raise
            agent.process = process
            if agent.terminating:  # ended while it started: end_group below ends it at once
                process.terminated_by = "agent_terminate"
                signal_processes([process.pid], signal.SIGKILL)
            spawn_ms = (asyncio.get_running_loop().time() - began) * 1000
            started: dict[str, object] = {}
            identity = identify(process.pid)
            if identity is not None:
                watchdog.watch(identity.pid, identity.start_time, agent.id)
                record.pid, record.pid_start_time = identity.pid, identity.start_time
                started.update(pid=identity.pid, pid_start_time=identity.start_time)
            if record.ready_ms is None:  # its first process: the agent is up
                record.ready_ms, record.spawn_ms = self.clock.now_ms(), spawn_ms
                started.update(ready_ms=record.ready_ms, spawn_ms=spawn_ms)
            if on_started is not None:
                on_started(spawn_ms)
            try:
                # Recorded while the task runs: a quick task need not wait for that commit first.
                recorded = self.records.update_agent(agent.id, **started) if started else asyncio.sleep(0)
                _, outcome = await asyncio.gather(recorded, process.wait())
            finally:
                # The task's tools may have left children in its group: they go with it.
                ending = await end_group(process.pid, 0.5, tag=agent.id, scan=self.stray_scan)
                if ending != "survived":
                    agent.process = None
                    record.pid = None
                    watchdog.forget(process.pid)
        return outcome

    async def _start_exec(self, launch: ExecLaunch, agent: Agent, log: IO[bytes]) -> ExecProcess:
        async for attempt in self._spawn_retries():
            with attempt:
                return await ExecProcess.start(launch, agent.tail, log)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _model_in_use(self, agent: Agent, query: QueryRecord, model: str) -> None:
        """The CLI named the model it runs: on the agent and the query at once (listings show the
        model in use, not only the one asked for, which is None when the type sets none)."""
        changed = []
        if agent.record.model != model:
            agent.record.model = model
            changed.append(agent_changed(agent.id, model=model))
        if query.model != model:
            query.model = model
            changed.append(query_changed(query.id, model=model))
        if changed:
            await self.records.commit(*changed)
            self.changes.changed("query", query.id)
            self.changes.changed("agent", agent.id)

    async def _finish_query(self, agent: Agent, query: QueryRecord, outcome: TaskOutcome) -> None:
        now = self.clock.now_ms()
        usage = outcome.usage
        active = self._queries.get(query.id)
        stopped_by = active.stopped_by if active is not None else None
        status, error = outcome.status, outcome.error
        if outcome.status != "completed" and (agent.terminating or stopped_by is not None):
            status = "terminated"
            error = f"terminated by {stopped_by}" if stopped_by is not None else f"terminated: {outcome.error}"
        if query.paused_at_ms is not None:  # ended while paused (a terminate): the pause ends too
            query.paused_total_ms += now - query.paused_at_ms
        started = query.started_ms is not None
        changes = {"status": status, "ended_ms": now, "result": outcome.result, "error": error,
                   "turns": usage.turns, "input_tokens": usage.input_tokens, "output_tokens": usage.output_tokens,
                   "cost_usd": usage.cost_usd, "usage": usage.raw, "session_id": outcome.session_id,
                   "exit_code": outcome.exit_code, "paused_at_ms": None, "paused_total_ms": query.paused_total_ms,
                   "output_tail": agent.tail.since(active.tail_mark) if active is not None and started else None}
        for name, value in changes.items():
            setattr(query, name, value)
        record = agent.record
        if started:
            record.tasks_run += 1
            record.input_tokens += usage.input_tokens or 0
            record.output_tokens += usage.output_tokens or 0
            record.cost_usd += usage.cost_usd or 0.0
        if outcome.status == "completed":
            agent.last_result = outcome.result
        # The query's end, the agent's totals and (unless it is being ended) its return to ready: one commit.
        ended = [query_changed(query.id, **changes)]
        if started:
            ended.append(agent_usage_added(agent.id, usage.input_tokens or 0, usage.output_tokens or 0,
                                           usage.cost_usd or 0.0))
        if not agent.terminating and started:
            record.status, record.current_query = "ready", None
            ended.append(agent_changed(agent.id, status="ready", current_query=None))
        try:
            await self.records.commit(*ended)
        finally:
            self._queries.pop(query.id, None)
            if active is not None:
                active.ended.set()
            self.changes.changed("query", query.id)
            self.changes.changed("agent", agent.id)
        self.activity.task_ended(record, query)

    # -- ending --------------------------------------------------------------------------------

    async def terminate(self, agent_id: str, grace_s: float, *, reason: str = "terminated") -> AgentRecord:
        """Ends the agent: its session, then SIGTERM and (after ``grace_s``) SIGKILL to its process
        group. Idempotent: an agent that already ended answers its final record."""
        agent = self._agents.get(agent_id)
        if agent is None:
            record = await self.records.agent(agent_id)
            if record is None:
                raise NotFound(f"no agent {agent_id!r} (agent_list shows the known ones)")
            return record
        await self.end(agent, "terminated", grace_s, error=None if reason == "terminated" else reason)
        return agent.record

    async def end(self, agent: Agent, status: AgentStatus, grace_s: float, *, error: str | None = None) -> None:
        """Ends a live agent's processes and records its final ``status``.

        The agent leaves the live set only once its processes are confirmed gone. When that cannot
        be confirmed (say EMFILE while reading /proc) it raises `StopFailed`: the agent stays live,
        listed as it is, reachable by agent_terminate, and the stop is retried in the background.
        """
        agent.stop_requested.set()
        async with agent.stop_lock:
            if agent.ended.is_set():
                return
            try:
                await self._stop_until_gone(agent, grace_s)
            except StopFailed:
                self._retry_stop_later(agent, status, error)
                self.changes.changed("agent", agent.id)
                raise
            self.slots.release(agent)
            remove_mcp_config(self.state_dir(agent))
            if self.memory_access is not None:
                agent.record.memory_calls = self.memory_access.calls_by_agent().get(agent.id, 0)
                self.memory_access.revoke(agent.id)
            if agent.record.current_query is not None:
                query_id = agent.record.current_query
                await self.records.update_query(query_id, status="terminated", ended_ms=self.clock.now_ms(),
                                                error=f"terminated: the agent was {status}")
            for waiting in [active for active in self._queries.values()
                            if active.record.agent_id == agent.id and active.record.started_ms is None]:
                await self.close_query(waiting.id, "terminated", f"terminated: the agent was {status} before it ran")
            await self.set_status(agent, status, ended_ms=self.clock.now_ms(), pid=None, current_query=None,
                                  error=error, memory_calls=agent.record.memory_calls)
            self._agents.pop(agent.id, None)
            agent.ended.set()

    async def _stop_until_gone(self, agent: Agent, grace_s: float) -> None:
        try:
            async for attempt in AsyncRetrying(
                stop=stop_after_attempt(STOP_ATTEMPTS),
                wait=wait_exponential_jitter(multiplier=0.1, max=1.0),
                retry=retry_if_exception_type((OSError, StopFailed)),
                reraise=True,
            ):
                with attempt:
                    await self._stop_processes(agent, grace_s)
        except OSError as error:
            raise StopFailed(f"could not confirm that agent {agent.id}'s processes ended ({error}); it is still "
                             f"listed as {agent.record.status} and the stop is retried every "
                             f"{STOP_RETRY_INTERVAL_S:g} s (agent_terminate again to retry now)") from error

    def _retry_stop_later(self, agent: Agent, status: AgentStatus, error: str | None) -> None:
        if agent.stop_retrying or self._closed:
            return
        agent.stop_retrying = True

        async def retry() -> None:
            try:
                while not agent.ended.is_set() and not self._closed:
                    await asyncio.sleep(STOP_RETRY_INTERVAL_S)
                    try:
                        await self.end(agent, status, self.settings.agent_terminate_grace_s, error=error)
                    except StopFailed as failure:
                        logger.warning("agent %s: stop retried, still failing: %s", agent.id, failure.message)
            finally:
                agent.stop_retrying = False

        self.spawn_background(retry(), name=f"stop-{agent.id}")

    async def _stop_processes(self, agent: Agent, grace_s: float) -> None:
        """Ends the agent's processes; raises `StopFailed` (or the OSError) unless they are gone."""
        watchdog = self._watchdog
        if agent.process is not None:
            agent.process.terminated_by = "agent_terminate"
            self._confirm(agent, await end_group(agent.process.pid, grace_s, tag=agent.id, scan=self.stray_scan))
        if agent.session is not None:
            session, leader = agent.session, agent.session.pid
            closing = asyncio.create_task(session.close())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace_s):
                    await asyncio.shield(closing)
            if leader is not None:
                self._confirm(agent, await end_group(leader, grace_s, tag=agent.id, scan=self.stray_scan))
                if watchdog is not None:
                    watchdog.forget(leader)
            await closing

    @staticmethod
    def _confirm(agent: Agent, ending: str) -> None:
        if ending == "survived":
            raise StopFailed(f"processes of agent {agent.id} still run after SIGKILL (stuck in the kernel?); "
                             f"the stop is retried every {STOP_RETRY_INTERVAL_S:g} s")

    def watchdog_if_started(self) -> Watchdog | None:
        return self._watchdog

    async def watchdog(self) -> Watchdog:
        """The watchdog process, started with the first agent."""
        async with self._watchdog_lock:
            if self._watchdog is None:
                self._watchdog = await Watchdog.start(grace_s=self.settings.agent_watchdog_grace_s)
            return self._watchdog

    def spawn_background(self, coroutine: Any, name: str) -> asyncio.Task[Any]:
        """Runs work (an agent's life) owned by the supervisor, not by the tool call that started it."""
        task = asyncio.create_task(coroutine, name=name)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    async def end_all(self) -> None:
        """Ends the warm pools and every agent (SIGTERM, then SIGKILL after the grace period)."""
        await self.pool.close()
        grace = self.settings.agent_terminate_grace_s
        agents = list(self._agents.values())
        if agents:
            logger.info("ending %d agent(s)", len(agents))
        await asyncio.gather(*(self.end(agent, "terminated", grace, error="the server shut down") for agent in agents),
                             return_exceptions=True)
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)

    async def close(self) -> None:
        """Ends every agent, then the watchdog, then closes the records."""
        self._closed = True
        self._sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._sampler
        await self.end_all()
        await self.activity.close()
        if self._watchdog is not None:
            await self._watchdog.close()
        await self.records.close()
