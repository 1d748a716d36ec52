"""`TaskRunner`: runs one task on a live agent, after its earlier ones, and reports it to the ledger.

A claude task is a turn of the agent's running session (with the task's own model or permission
mode set live first, when it asks for one). An exec task is a new process from the agent's argv
template, started once the server's running cap admits it, registered with the watchdog, and
ended with its whole group (its tools' strays too) when it exits. The task's start and end are
reported to the `TaskLedger` together with the agent's own row changes, one commit each.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

from server.agents.budgets import Budgets
from server.agents.changes import ChangeFeed
from server.agents.exec_runtime import ExecLaunch, ExecProcess, prepare_files
from server.agents.launch import spawn_retries
from server.agents.live import Agent
from server.agents.outcome import TaskOutcome
from server.agents.process_groups import end_group, identify, signal_processes
from server.agents.records import AgentRecords, RowChange, agent_changed, agent_usage_added
from server.agents.slots import RunningSlots
from server.agents.tagged_scan import SharedTaggedScan
from server.agents.tasks import Task, TaskLedger
from server.agents.transcript import TranscriptWriter, transcript_path
from server.agents.types import render_command, type_environment
from server.agents.watchdog import Watchdog
from server.clock import Clock
from server.config import Settings

logger = logging.getLogger(__name__)


class TaskRunner:
    def __init__(self, settings: Settings, records: AgentRecords, tasks: TaskLedger, slots: RunningSlots,
                 changes: ChangeFeed, stray_scan: SharedTaggedScan, clock: Clock,
                 watchdog: Callable[[], Awaitable[Watchdog]], state_dir: Callable[[str], Path],
                 commit_work: Callable[[Agent, str], Awaitable[str | None]], budgets: Budgets) -> None:
        self._settings = settings
        self._records = records
        self._tasks = tasks
        self._slots = slots
        self._changes = changes
        self._stray_scan = stray_scan
        self._clock = clock
        self._watchdog = watchdog
        self._state_dir = state_dir
        self._commit_work = commit_work  # a worktree agent's work, committed at each task's end
        self._budgets = budgets

    async def run(self, agent: Agent, task: Task, prompt: str, inputs: dict[str, Any] | None,
                  on_started: Callable[[float], None] | None = None,
                  on_queued: Callable[[], Awaitable[None]] | None = None) -> TaskOutcome:
        """Runs ``task`` to its end, after the agent's earlier ones, and records it. ``on_started``
        gets the spawn time (ms) once its process is up (an exec agent's process start; a claude
        agent's session is already up); ``on_queued`` is told when an exec task waits for a slot
        under SWITCHBOARD_AGENT_MAX_RUNNING."""
        async with agent.query_lock:
            if task.ended.is_set():  # terminated while it waited its turn (already recorded)
                return TaskOutcome("terminated", error="terminated before it started")
            if agent.terminating or task.stopped_by is not None:
                who = task.stopped_by or "the agent's end"
                outcome = TaskOutcome("terminated", error=f"terminated by {who} before it started")
                await self._finish(agent, task, outcome, tail_mark=None)
                return outcome
            agent.idle.clear()
            agent.running, agent.running_prompt = task, prompt
            try:
                return await self._run(agent, task, prompt, inputs, on_started, on_queued)
            finally:
                agent.running, agent.running_prompt = None, None
                agent.idle.set()

    async def _run(self, agent: Agent, task: Task, prompt: str, inputs: dict[str, Any] | None,
                   on_started: Callable[[float], None] | None,
                   on_queued: Callable[[], Awaitable[None]] | None) -> TaskOutcome:
        tail_mark = agent.tail.total_bytes
        if agent.agent_type.runtime != "claude":
            # An exec task's process counts toward the server's cap while it runs; until a slot is
            # free the task stays queued (and is ended, never started, if the agent ends meanwhile).
            ticket = agent.ticket or await self._slots.admit(agent, on_queued)
            if ticket is None:
                outcome = TaskOutcome("terminated", error="terminated while it waited for a running slot")
                await self._finish(agent, task, outcome, tail_mark=None)
                return outcome
            agent.ticket = ticket
            try:
                await self._mark_running(agent, task, tail_mark)
                outcome = await self._run_exec(agent, task, prompt, inputs, on_started)
            finally:
                if agent.ticket is ticket and agent.process is None:  # its process is gone: the slot is free
                    ticket.release()
                    agent.ticket = None
            await self._finish(agent, task, outcome, tail_mark, prompt)
            return outcome
        await self._mark_running(agent, task, tail_mark)
        assert agent.session is not None
        failure = await self._apply_task_settings(agent, task)
        if on_started is not None:
            on_started(0.0)
        outcome = failure or await self._run_claude(agent, task, prompt)
        await self._finish(agent, task, outcome, tail_mark, prompt)
        return outcome

    async def _run_claude(self, agent: Agent, task: Task, prompt: str) -> TaskOutcome:
        assert agent.session is not None
        transcript = await self._open_transcript(agent, task)
        try:
            return await agent.session.run(
                prompt, on_model=lambda model: self._model_in_use(agent, task, model),
                on_usage=lambda: self._tasks.spending(task.id),
                on_session=lambda session_id: self._session_named(agent, session_id), transcript=transcript)
        finally:
            if transcript is not None:
                transcript.close()

    async def _open_transcript(self, agent: Agent, task: Task) -> TranscriptWriter | None:
        """The query's transcript, in the agent's state directory; without one (the disk refuses) the task runs."""
        writer = TranscriptWriter(transcript_path(self._state_dir(agent.id), task.id),
                                  self._settings.transcript_tool_result_bytes, self._clock.now_ms)
        try:
            await asyncio.to_thread(writer.open)
        except OSError:
            logger.warning("agent %s: no transcript for query %s", agent.id, task.id, exc_info=True)
            return None
        return writer

    async def _mark_running(self, agent: Agent, task: Task, tail_mark: int) -> None:
        agent.record.status, agent.record.current_query = "running", task.id
        try:
            await self._tasks.running(task.id, tail_mark, agent_changed(agent.id, status="running",
                                                                        current_query=task.id))
        finally:
            self._changes.changed("agent", agent.id)

    async def _apply_task_settings(self, agent: Agent, task: Task) -> TaskOutcome | None:
        """A claude task started with its own model or permission mode: set live on the session,
        where they stay for the agent's next tasks. A refusal fails the task with the CLI's reason."""
        assert agent.session is not None
        record = agent.record
        try:
            if task.model is not None and task.model != record.model:
                await agent.session.set_model(task.model)
                record.model = task.model
            if task.permission_mode is not None and task.permission_mode != record.permission_mode:
                await agent.session.set_permission_mode(task.permission_mode)
                record.permission_mode = task.permission_mode
        except Exception as error:  # the SDK raises a bare Exception carrying the CLI's answer
            return TaskOutcome("failed", error=f"Claude Code refused the query's settings: {error}")
        await self._records.update_agent(agent.id, model=record.model, permission_mode=record.permission_mode)
        return None

    async def _run_exec(self, agent: Agent, task: Task, prompt: str, inputs: dict[str, Any] | None,
                        on_started: Callable[[float], None] | None) -> TaskOutcome:
        assert agent.command is not None
        record = agent.record
        state_dir = self._state_dir(agent.id)
        workdir = Path(record.workdir)
        values = {"task": prompt, "model": task.model or record.model or "",
                  "permission_mode": task.permission_mode or record.permission_mode or "",
                  "agent_id": agent.id, "workdir": str(workdir)}
        env = type_environment(agent.agent_type, agent.id)
        inputs_path = state_dir / f"inputs-{task.id}.json" if inputs is not None else None
        argv = render_command(agent.command, values)
        if agent.sandbox is not None:
            argv = agent.sandbox.wrap(argv, workdir)
        launch = ExecLaunch(argv, workdir, env, state_dir / "output.log")
        # Creating directories and files takes about a millisecond each on a VM's disk: in a thread,
        # so that a swarm's agents prepare side by side and the event loop keeps answering.
        log = await asyncio.to_thread(prepare_files, launch, inputs_path, inputs)
        if inputs_path is not None:
            env["SWITCHBOARD_INPUTS"] = str(inputs_path)
        slot = self._slots.of_type(record.type, agent.agent_type)
        async with slot if slot is not None else contextlib.nullcontext():
            watchdog = await self._watchdog()
            began = asyncio.get_running_loop().time()
            try:
                process = await self._start_exec(launch, agent, log)
            except BaseException:
                log.close()
                raise
            agent.process = process
            process.on_usage = lambda: self._tasks.spending(task.id)
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
                record.ready_ms, record.spawn_ms = self._clock.now_ms(), spawn_ms
                started.update(ready_ms=record.ready_ms, spawn_ms=spawn_ms)
            if on_started is not None:
                on_started(spawn_ms)
            try:
                # Recorded while the task runs: a quick task need not wait for that commit first.
                recorded = self._records.update_agent(agent.id, **started) if started else asyncio.sleep(0)
                _, outcome = await asyncio.gather(recorded, process.wait())
            finally:
                # The task's tools may have left children in its group: they go with it.
                ending = await end_group(process.pid, 0.5, tag=agent.id, scan=self._stray_scan)
                if ending != "survived":
                    agent.process = None
                    record.pid = None
                    watchdog.forget(process.pid)
        return outcome

    async def _start_exec(self, launch: ExecLaunch, agent: Agent, log: IO[bytes]) -> ExecProcess:
        async for attempt in spawn_retries(self._settings.agent_spawn_attempts):
            with attempt:
                return await ExecProcess.start(launch, agent.tail, log)
        raise AssertionError("unreachable: tenacity re-raises the last failure")

    async def _session_named(self, agent: Agent, session_id: str) -> None:
        """The CLI named its session: kept on the agent's row at once, so that a crash of this server
        leaves what `resume` needs to continue the conversation."""
        agent.record.session_id = session_id
        await self._records.update_agent(agent.id, session_id=session_id)

    async def _model_in_use(self, agent: Agent, task: Task, model: str) -> None:
        """The CLI named the model it runs: on the agent and the task at once (listings show the
        model in use, not only the one asked for, which is None when the type sets none)."""
        changed = []
        if agent.record.model != model:
            agent.record.model = model
            changed.append(agent_changed(agent.id, model=model))
        await self._tasks.model_in_use(task.id, model, changed)
        if changed:
            self._changes.changed("agent", agent.id)

    async def _finish(self, agent: Agent, task: Task, outcome: TaskOutcome, tail_mark: int | None,
                      prompt: str = "") -> None:
        """Records the task's end; a task that ran (``tail_mark`` given) also adds its usage to the
        agent's totals and (unless the agent is being ended) returns it to ready, in the same commit.
        A worktree agent's work is committed on its branch first, so that whoever waits on the
        task's end (a dependent starting from its work) finds it there."""
        record, usage = agent.record, outcome.usage
        if tail_mark is not None and agent.workspace is not None:
            await self._commit_work(agent, prompt)
        if outcome.status == "completed":
            agent.last_result = outcome.result
        changes: list[RowChange] = []
        if tail_mark is not None:
            record.tasks_run += 1
            record.input_tokens += usage.input_tokens or 0
            record.output_tokens += usage.output_tokens or 0
            record.cost_usd += usage.cost_usd or 0.0
            changes.append(agent_usage_added(agent.id, usage.input_tokens or 0, usage.output_tokens or 0,
                                             usage.cost_usd or 0.0))
            self._budgets.task_ended(usage.cost_usd, record, usage)
            if not agent.terminating:
                record.status, record.current_query = "ready", None
                changes.append(agent_changed(agent.id, status="ready", current_query=None))
        try:
            await self._tasks.finished(record, task.id, outcome, changes, agent_ending=agent.terminating,
                                       output_tail=agent.tail.since(tail_mark) if tail_mark is not None else None)
        finally:
            self._changes.changed("agent", agent.id)
