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
import dataclasses
import logging
import os
import signal
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential_jitter

from server.agents.activity import ActivityLog
from server.agents.budgets import AgentBudget, Budgets
from server.agents.capacity import RunningCap, default_max_running
from server.agents.changes import ChangeFeed
from server.agents.claude_launch import ClaudeLaunches
from server.agents.claude_runtime import ClaudeLaunch, ClaudeSession, PermissionDecider
from server.agents.file_scope import FileScope
from server.agents.launch import SpawnFailed, make_dirs, remove_mcp_config, spawn_retries
from server.agents.live import Agent
from server.agents.memory_access import AgentMemoryAccess
from server.agents.outcome import OutputTail, TaskOutcome
from server.agents.permission_gate import PermissionGate
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
from server.agents.records import AgentRecord, AgentRecords, AgentStatus, RowChange, agent_added, agent_changed
from server.agents.resume import ResumedAgent
from server.agents.sampling import sample_agents_forever
from server.agents.slots import RunningSlots
from server.agents.spend import Limit
from server.agents.tagged_scan import SharedTaggedScan
from server.agents.task_runner import TaskRunner
from server.agents.tasks import Task, TaskLedger
from server.agents.types import AgentType, AgentTypes, type_environment
from server.agents.watchdog import Watchdog
from server.agents.workspaces import AgentWorkspaces, WorkspacePlan
from server.clock import Clock
from server.config import Settings
from server.errors import NotFound, SwitchboardError
from server.workspaces.git import GitFailed
from server.workspaces.sandbox import Sandbox

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

    def __init__(self, settings: Settings, records: AgentRecords, tasks: TaskLedger, activity: ActivityLog,
                 changes: ChangeFeed, clock: Clock) -> None:
        self.settings = settings
        self.records = records
        self.tasks = tasks
        self.clock = clock
        self.types = AgentTypes(settings.agent_types)
        self.activity = activity
        self.memory_access: AgentMemoryAccess | None = None
        self.stray_scan = SharedTaggedScan()  # one /proc scan for the tools of agents ending together
        self.changes = changes
        self._agents: dict[str, Agent] = {}
        self._watchdog: Watchdog | None = None
        self._watchdog_lock = asyncio.Lock()
        self._background: set[asyncio.Task[Any]] = set()
        self.launches = ClaudeLaunches(settings)
        self._closed = False
        self.identity = identify(os.getpid())
        self.boot_id = boot_id()
        self.slots = RunningSlots(RunningCap(settings.agent_max_running or default_max_running()))
        self.pool = WarmPool(self)
        self.workspaces = AgentWorkspaces(settings, records, clock, lambda agent_id: changes.changed("agent", agent_id))
        self.budgets = Budgets(settings.budget_usd_per_day, records, clock, self.live_agents)
        self.runner = TaskRunner(settings, records, tasks, self.slots, changes, self.stray_scan, clock,
                                 self.watchdog, self.workdir_for, self.commit_work, self.budgets)
        self._sampler = asyncio.create_task(
            sample_agents_forever(self.live_agents, self.activity, clock, settings.agent_metrics_interval_s),
            name="agent-metrics")
        self._workspace_sweeper: asyncio.Task[None] | None = None
        self.lost_at_start: list[str] = []  # the agents the previous run left, marked lost at this start

    @classmethod
    async def open(cls, settings: Settings, records: AgentRecords, tasks: TaskLedger, activity: ActivityLog,
                   changes: ChangeFeed, clock: Clock) -> Supervisor:
        """A supervisor over ``records`` (the caller closes them after `close`) that has ended what
        an earlier, crashed server left running."""
        supervisor = cls(settings, records, tasks, activity, changes, clock)
        try:
            await supervisor.budgets.open()
            supervisor.lost_at_start = await supervisor.reap_leftovers()
            await supervisor.workspaces.prune_at_start()
            supervisor._workspace_sweeper = asyncio.create_task(supervisor.workspaces.sweep_forever(),
                                                                name="workspace-sweep")
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
            now, reason = self.clock.now_ms(), "lost: the server running it exited; its processes were ended at the next start"
            await self.records.mark_lost(orphans, now, reason, *self.tasks.lost_with(orphans, now, reason))
            logger.info("marked %d agent(s) of an earlier server run lost", len(orphans))
            await self._commit_lost_work(orphans)
        return orphans

    async def _commit_lost_work(self, agent_ids: list[str]) -> None:
        """What lost worktree agents left uncommitted goes on their branches (their processes are gone)."""
        for agent_id, workspace in (await self.workspaces.of_agents(agent_ids)).items():
            record = await self.records.agent(agent_id)
            try:
                await self.workspaces.commit(workspace, record.name if record else agent_id,
                                             "work left when its server exited")
            except (GitFailed, OSError) as error:
                logger.warning("agent %s: its work could not be committed: %s", agent_id, error)

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
        status: AgentStatus, task: str | None = None, task_waits: bool = False,
        workspace: WorkspacePlan | None = None, base_agent_id: str | None = None, sandboxed: bool = False,
        budget: AgentBudget | None = None, task_limit: Limit | None = None, resumed: ResumedAgent | None = None,
    ) -> tuple[Agent, Task | None]:
        """Records a new agent (not yet started) and, in the same commit, its first task when it has
        one (``task_waits`` for its dependencies, else queued) and its workspace when it gets one
        (made by `prepare_workspace`), or the workspace of the agent it resumes; tracks the agent."""
        changes: list[RowChange] = []
        budget = budget or AgentBudget()
        workspace_record = None
        if resumed is not None:
            workdir = Path(resumed.record.workdir)
            if resumed.workspace is not None:  # the worktree, its branch and its work go on with it
                workspace_record = dataclasses.replace(resumed.workspace, id=agent_id)
                changes.append(self.workspaces.handed_over(resumed.workspace, agent_id))
        elif workspace is not None:
            workspace_record, recorded_workspace = self.workspaces.recorded(agent_id, name, workspace, base_agent_id)
            workdir = workspace_record.workdir
        else:
            workdir = cwd if cwd is not None else self.workdir_for(agent_id)
        assert self.identity is not None
        record = AgentRecord(
            id=agent_id, name=name, type=type_name, runtime=agent_type.runtime, status=status, workdir=str(workdir),
            server_pid=self.identity.pid, server_start_time=self.identity.start_time, boot_id=self.boot_id,
            created_ms=self.clock.now_ms(),
            model=model, permission_mode=permission_mode, capabilities=list(capabilities), priority=priority,
            budget_usd=budget.usd, budget_tokens=budget.tokens, on_budget=budget.on_budget, call_id=budget.call_id,
            resumed_from=resumed.record.id if resumed is not None else None,
        )
        changes.append(agent_added(record))
        if workspace_record is not None:
            changes.append(recorded_workspace)
        first: Task | None = None
        if task is not None:
            first, recorded = self.tasks.first_task(record, task, waiting=task_waits, limit=task_limit or Limit())
            changes.append(recorded)
        await self.records.commit(*changes)
        agent = Agent(record, agent_type, command, OutputTail(self.settings.agent_output_tail_bytes),
                      workspace=workspace_record, sandboxed=sandboxed, resumed=resumed)
        agent.idle.set()
        self._agents[agent_id] = agent
        return agent, first

    async def prepare_workspace(self, agent: Agent) -> None:
        """Makes the agent's worktree and its sandbox, and runs its type's setup (unless it starts
        from another agent's finished work: then `start_from_dependency` does, once that is done).
        Raises `SpawnFailed` with git's, bubblewrap's or the setup's words."""
        workspace, state_dir = agent.workspace, self.state_dir(agent)
        taken_over = agent.resumed is not None  # a resumed agent's worktree exists, its setup ran
        try:
            if workspace is not None and not taken_over:
                await self.workspaces.prepare(workspace)
            if agent.sandboxed:
                workdir = Path(agent.record.workdir)
                await asyncio.to_thread(make_dirs, workdir)
                agent.sandbox = await self.workspaces.sandbox_for(
                    workdir, workspace, state_dir if agent.agent_type.runtime == "exec" else None, agent.agent_type)
                agent.file_scope = FileScope(workdir, agent.sandbox.writable, agent.sandbox.read_roots,
                                             agent.sandbox.hidden)
        except SwitchboardError as error:  # GitFailed, Conflict (its branch exists), SandboxUnavailable
            raise SpawnFailed(f"its workspace could not be made: {error.message}", transient=False) from error
        if workspace is not None and workspace.base_agent is None and not taken_over:
            await self._set_up(agent)

    async def start_from_dependency(self, agent: Agent) -> None:
        """Moves the agent's worktree onto its base agent's finished work, then runs its setup."""
        workspace = agent.workspace
        assert workspace is not None and workspace.base_agent is not None
        try:
            await self.workspaces.start_from(workspace, await self.workspaces.get(workspace.base_agent))
        except SwitchboardError as error:
            raise SpawnFailed(f"its workspace could not start from {workspace.base_agent}'s work: {error.message}",
                              transient=False) from error
        await self._set_up(agent)

    async def _set_up(self, agent: Agent) -> None:
        assert agent.workspace is not None
        failure = await self.workspaces.setup(agent.workspace, agent.agent_type,
                                              type_environment(agent.agent_type, agent.id), agent.sandbox,
                                              self.state_dir(agent) / "setup.log")
        if failure is not None:
            raise SpawnFailed(failure, transient=False)

    async def commit_work(self, agent: Agent, what: str) -> str | None:
        """Commits the agent's uncommitted work on its branch (see `AgentWorkspaces.commit`); a
        failure is logged and answered as None: it never fails the task whose end it follows."""
        if agent.workspace is None:
            return None
        try:
            return await self.workspaces.commit(agent.workspace, agent.record.name, what)
        except (GitFailed, OSError) as error:
            logger.warning("agent %s: its work could not be committed: %s", agent.id, error)
            return None

    def state_dir(self, agent: Agent) -> Path:
        """Logs, the pid file and task inputs: always under the data directory, whatever the workdir."""
        return self.workdir_for(agent.id)

    async def set_status(self, agent: Agent, status: AgentStatus, **changes: object) -> None:
        agent.record.status = status
        for name, value in changes.items():
            setattr(agent.record, name, value)
        await self.records.update_agent(agent.id, status=status, **changes)
        self.changes.changed("agent", agent.id)

    def apply_change(self, agent: Agent, **changes: object) -> RowChange:
        """Applies ``changes`` to the live agent and answers the row change that records them, for
        the caller to commit with its own (a query's setting and its agent's, in one commit)."""
        for name, value in changes.items():
            setattr(agent.record, name, value)
        return agent_changed(agent.id, **changes)

    async def run_task(self, agent: Agent, task: Task, prompt: str, inputs: dict[str, Any] | None,
                       on_started: Callable[[float], None] | None = None,
                       on_queued: Callable[[], Awaitable[None]] | None = None) -> TaskOutcome:
        """Runs one task on the agent, after its earlier ones (`TaskRunner.run`)."""
        return await self.runner.run(agent, task, prompt, inputs, on_started, on_queued)

    async def start(self, agent: Agent) -> float:
        """Starts a claude agent's session (retrying transient failures); answers the spawn time in
        ms. An exec agent has nothing to start until its first task. Raises `SpawnFailed`."""
        if agent.agent_type.runtime != "claude":
            return 0.0
        began = asyncio.get_running_loop().time()
        async for attempt in spawn_retries(self.settings.agent_spawn_attempts):
            with attempt:
                if agent.terminating:
                    raise SpawnFailed("terminated before it was ready", transient=False)
                decider = self.permission_decider(agent.id, agent.record.type, agent.agent_type)
                launch = await self.claude_launch_for(agent.id, agent.agent_type, agent.record.model,
                                                      agent.record.permission_mode or "default",
                                                      Path(agent.record.workdir), agent.sandbox)
                launch.max_budget_usd = self.budgets.backstop_usd(agent.record)
                if agent.resumed is not None:
                    launch.resume, launch.fork_session = agent.resumed.session_id, agent.resumed.fork
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
                                permission_mode: str, workdir: Path, sandbox: Sandbox | None = None) -> ClaudeLaunch:
        """How a claude session for ``agent_id`` starts (also used by the warm pool, never sandboxed)."""
        return await self.launches.for_agent(agent_id, agent_type, model=model, permission_mode=permission_mode,
                                             workdir=workdir, state_dir=self.workdir_for(agent_id),
                                             memory=self.memory_access, sandbox=sandbox)

    def permission_decider(self, agent_id: str, type_name: str, agent_type: AgentType) -> PermissionDecider:
        """How the agent's permission requests and questions are answered (`PermissionGate`)."""
        return PermissionGate(agent_id, type_name, agent_type, self.live, self.tasks, self.settings.approval_timeout_s)

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
            await self.commit_work(agent, agent.running_prompt or f"work left when it ended ({status})")
            if self.memory_access is not None:
                agent.record.memory_calls = self.memory_access.calls_by_agent().get(agent.id, 0)
                self.memory_access.revoke(agent.id)
            await self.tasks.agent_ended(agent.id, status)
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
        """Ends every agent, then the watchdog (the records and the activity log stay open)."""
        self._closed = True
        for loop in (self._sampler, self._workspace_sweeper):
            if loop is not None:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
        await self.end_all()
        if self._watchdog is not None:
            await self._watchdog.close()
