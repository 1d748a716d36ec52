"""`Spawner.spawn_many`: many agents, in batches, in parallel, in dependency order.

The whole request is checked before anything starts (`spawn_plan.SpawnPlanner`); any error
refuses the call and nothing is spawned. Then agents start in priority order, ``batch_size`` at a time (a batch
starts when the one before it is up), at most ``max_concurrency`` at once. Dependencies order
the *tasks*: a task starts only after every dependency's task completed (a dependency without a
task only needs to be up), with their results handed on. When a dependency fails, its
dependents are ``skipped``, with the reason; one agent's failure never stops the others.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from server.agents.budgets import AgentBudget
from server.agents.capacity import AtCapacity, Ticket
from server.agents.ids import new_id
from server.agents.launch import SpawnFailed
from server.agents.live import Agent
from server.agents.outcome import TaskOutcome
from server.agents.records import AgentStatus
from server.agents.resume import RESTART_NOTE, interrupted_task, resumable
from server.agents.spawn_plan import AgentSpec, PlannedAgent, SpawnEntry, SpawnPlanner, SpawnReport, SpawnRequest
from server.agents.spend import Limit
from server.agents.supervisor import StopFailed, Supervisor
from server.errors import NotFound, SwitchboardError

logger = logging.getLogger(__name__)

Progress = Callable[[int, int, str], Awaitable[None]]


# Interrupted calls kept for their callers to wait on; beyond this many the oldest is forgotten.
MAX_INTERRUPTED_CALLS = 100


class Report(Protocol):
    """Tells the caller about one entry (see `Spawner.spawn_many`)."""

    async def __call__(self, entry: SpawnEntry, message: str, final: bool = False) -> None: ...

@dataclass(eq=False, slots=True)
class _SpawnCall:
    """One call's entries, kept while its caller may come back to wait on (see `Spawner.resume_wait`)."""

    id: str
    entries: list[SpawnEntry]
    wait: bool
    began: float


class Spawner:
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._settings = supervisor.settings
        self._planner = SpawnPlanner(supervisor)
        self._interrupted: dict[str, _SpawnCall] = {}

    # -- running -------------------------------------------------------------------------------

    async def spawn_many(self, request: SpawnRequest, progress: Progress | None = None, *,
                         planned_ids: Callable[[Sequence[str]], None] | None = None,
                         interrupt: asyncio.Event | None = None) -> SpawnReport:
        """Checks the request, starts every agent and its task, and answers when all are up (or,
        with ``wait``, when every task has ended), or when ``timeout_s`` has passed, or (the agents
        going on regardless) when ``interrupt`` is set. ``planned_ids`` hears the agents' ids once
        the request has been checked, before any of them starts."""
        planned = await self._planner.plan(request)
        call_id = new_id("spawn")
        reserved = [] if request.queue else self._reserve_running_slots(planned)
        for item in planned:
            if item.agent_type.pool_size and item.cwd is None and not item.sandboxed and item.resumed is None and \
                    (worker := self._supervisor.pool.take(item.spec.type)):
                item.worker = worker
                item.entry.agent_id = worker.agent_id
            item.entry.progress_owed = 2 if request.wait and item.spec.task else 1
        if planned_ids is not None:
            planned_ids([item.entry.agent_id for item in planned])
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            if request.budget_usd is not None:  # recorded before its agents, which name it
                await self._supervisor.records.commit(self._supervisor.budgets.new_call(call_id, request.budget_usd))
            ids = {item.spec.name: item.entry.agent_id for item in planned}
            shared = call_id if request.budget_usd is not None else None
            agents = await asyncio.gather(*(self._record(item, ids, shared) for item in planned))  # committed together
        except BaseException:
            for ticket in reserved:
                ticket.release()
            raise
        for agent, item in zip(agents, planned, strict=True):
            if reserved and item.worker is None and (agent.agent_type.runtime == "claude" or item.spec.task):
                agent.ticket = reserved.pop()
        for ticket in reserved:  # a pool worker (with a slot of its own) was taken instead
            ticket.release()
        events_total = sum(item.entry.progress_owed for item in planned)
        events_done = 0
        answered = False

        async def report(entry: SpawnEntry, message: str, final: bool = False) -> None:
            """One progress notification about ``entry``: its coming up (queued, waiting, ready,
            started: the first only), or its end (``final``: whatever it still owes). None after the
            answer, whose progress token has expired by then."""
            nonlocal events_done
            steps = entry.progress_owed - entry.progress_sent if final else int(entry.progress_sent == 0)
            if steps > 0 and not answered:
                entry.progress_sent += steps
                events_done += steps
                if progress is not None:
                    with contextlib.suppress(Exception):
                        await progress(events_done, events_total, message)
            entry.announced.set()

        order = sorted(range(len(planned)), key=lambda i: -planned[i].spec.priority)
        batches = [order[start:start + request.batch_size] for start in range(0, len(order), request.batch_size)]
        in_flight = asyncio.Semaphore(request.max_concurrency)
        released = [asyncio.Event() for _ in batches]
        if released:
            released[0].set()
        batch_of = {index: number for number, batch in enumerate(batches) for index in batch}
        for index, item in enumerate(planned):
            self._supervisor.spawn_background(
                self._bring_up_and_run(item, agents[index], planned, released[batch_of[index]], in_flight, report),
                name=f"agent-{item.entry.agent_id}",
            )
        self._supervisor.spawn_background(self._release_batches(batches, released, planned), name="spawn-batches")

        # Up means told: the answer comes after every notification it promised.
        call = _SpawnCall(call_id, [item.entry for item in planned], request.wait, began)
        try:
            return await self._answer_when_done(call, request.timeout_s, interrupt)
        finally:
            answered = True

    async def resume_lost_at_start(self) -> SpawnReport | None:
        """SWITCHBOARD_AGENT_RESUME_ON_START: every agent the previous run lost comes back (`resume`),
        each starting again the task it was interrupted in, told so (a claude agent: in its resumed
        conversation). An agent that cannot be resumed (a claude agent that never ran a task) is skipped."""
        supervisor = self._supervisor
        specs = []
        for agent_id in supervisor.lost_at_start:
            record = await supervisor.records.agent(agent_id)
            if record is None:
                continue
            try:
                await resumable(supervisor.records, supervisor.workspaces, agent_id, fork=False, live=False)
            except SwitchboardError as error:
                logger.info("agent %s is not resumed at start: %s", agent_id, error.message)
                continue
            task = await interrupted_task(supervisor.records, agent_id)
            if task is not None and record.runtime == "claude":
                task = RESTART_NOTE + task
            specs.append(AgentSpec(type="", name=record.name, task=task, resume=agent_id))
        if not specs:
            return None
        logger.info("resuming %d agent(s) the previous run lost", len(specs))
        return await self.spawn_many(SpawnRequest(agents=tuple(specs), max_concurrency=len(specs),
                                                  batch_size=len(specs)))

    async def resume_wait(self, call_id: str, timeout_s: float | None, interrupt: asyncio.Event | None = None
                          ) -> SpawnReport:
        """Waits on for the call whose wait an ``interrupt`` cut short (its `SpawnReport.call_id`)."""
        call = self._interrupted.pop(call_id, None)
        if call is None:
            raise NotFound(f"no interrupted spawn call {call_id!r} on this server (it ended, or the server restarted)")
        return await self._answer_when_done(call, timeout_s, interrupt)

    async def _answer_when_done(self, call: _SpawnCall, timeout_s: float | None, interrupt: asyncio.Event | None
                                ) -> SpawnReport:
        waiting_for = [entry.finished if call.wait else entry.announced for entry in call.entries]
        async def every_one() -> None:
            await asyncio.gather(*(event.wait() for event in waiting_for))

        watched: list[asyncio.Future[Any]] = [asyncio.ensure_future(every_one())]
        if interrupt is not None:
            watched.append(asyncio.ensure_future(interrupt.wait()))
        timed_out = False
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
        except TimeoutError:
            timed_out = True
        finally:
            for future in watched:
                future.cancel()
        resumable = not timed_out and not all(event.is_set() for event in waiting_for)
        if resumable:
            self._interrupted[call.id] = call
            while len(self._interrupted) > MAX_INTERRUPTED_CALLS:
                self._interrupted.pop(next(iter(self._interrupted)))
        wall_ms = (asyncio.get_running_loop().time() - call.began) * 1000
        return SpawnReport(call.entries, wall_ms, timed_out, call.id if resumable else None)

    def _reserve_running_slots(self, planned: list[PlannedAgent]) -> list[Ticket]:
        """For a call that may not queue: a slot under SWITCHBOARD_AGENT_MAX_RUNNING for each agent that
        runs a process in it (a claude session, an exec task), all now, or `AtCapacity` and none."""
        pooled: dict[str, int] = {}
        needed = 0
        for item in planned:
            if item.agent_type.runtime != "claude" and not item.spec.task:
                continue
            if item.agent_type.pool_size and item.cwd is None and not item.sandboxed:
                taken = pooled.get(item.spec.type, 0)
                if taken < self._supervisor.pool.idle_count(item.spec.type):
                    pooled[item.spec.type] = taken + 1
                    continue
            needed += 1
        cap = self._supervisor.slots.cap
        tickets = cap.try_take_many(needed)
        if tickets is None:
            raise AtCapacity(
                f"{needed} agent(s) of this call would run now, but {max(cap.free, 0)} of the server's "
                f"{cap.limit} running slots are free ({cap.running} running, {cap.waiting} queued; "
                "SWITCHBOARD_AGENT_MAX_RUNNING): nothing was spawned. Retry later, end agents with agent_terminate, "
                "or pass queue: true to wait queued")
        return tickets

    async def _record(self, item: PlannedAgent, ids: dict[str, str], call_id: str | None) -> Agent:
        spec, agent_type = item.spec, item.agent_type
        base_agent = item.workspace.base_agent if item.workspace is not None else None
        on_budget: Literal["pause", "terminate"] = \
            "terminate" if (spec.on_budget or agent_type.on_budget) == "terminate" else "pause"
        budget = AgentBudget(
            usd=spec.agent_budget_usd if spec.agent_budget_usd is not None else agent_type.budget_usd,
            tokens=spec.agent_budget_tokens if spec.agent_budget_tokens is not None else agent_type.budget_tokens,
            on_budget=on_budget, call_id=call_id)
        agent, task = await self._supervisor.create(
            agent_id=item.entry.agent_id, name=spec.name, type_name=spec.type, agent_type=agent_type,
            command=item.command, model=spec.model or agent_type.model,
            permission_mode=spec.permission_mode or agent_type.permission_mode, cwd=item.cwd,
            capabilities=spec.capabilities, priority=spec.priority, status="queued", task=spec.task or None,
            task_waits=bool(item.depends_on_new or item.depends_on_existing), workspace=item.workspace,
            base_agent_id=ids[base_agent] if base_agent is not None else None, sandboxed=item.sandboxed,
            budget=budget, task_limit=Limit(spec.budget_usd, spec.budget_tokens), resumed=item.resumed,
        )
        if task is not None:
            item.task, item.entry.query_id = task, task.id
        return agent

    @staticmethod
    async def _release_batches(batches: list[list[int]], released: list[asyncio.Event],
                               planned: list[PlannedAgent]) -> None:
        for number in range(1, len(batches)):
            await asyncio.gather(*(planned[index].entry.spawned.wait() for index in batches[number - 1]))
            released[number].set()

    async def _bring_up_and_run(self, item: PlannedAgent, agent: Agent, planned: list[PlannedAgent],
                                released: asyncio.Event, in_flight: asyncio.Semaphore, report: Report) -> None:
        """One requested agent, from its batch's release to its end: skipped if a dependency failed,
        else started (a claude session, or an exec agent's first task process), then its task run."""
        entry = item.entry
        supervisor = self._supervisor

        async def queued() -> None:
            entry.status = "queued"
            entry.spawned.set()
            cap = supervisor.slots.cap
            await report(entry, f"{entry.name} queued: {cap.running} agents running, the most the server runs at "
                                f"once (SWITCHBOARD_AGENT_MAX_RUNNING={cap.limit})")

        try:
            await released.wait()
            reason = self._failed_dependency(item, planned)
            if reason is not None:
                await self._skip(item, agent, reason, report)
                return
            task, has_dependencies = item.spec.task, bool(item.depends_on_new or item.depends_on_existing)
            await supervisor.prepare_workspace(agent)
            if agent.agent_type.runtime == "claude":
                await supervisor.slots.hold_type_slot(agent)
                if item.worker is None and agent.ticket is None:
                    agent.ticket = await supervisor.slots.admit(agent, queued)
                    if agent.ticket is None:
                        raise SpawnFailed("terminated while it was queued", transient=False)
                async with in_flight:
                    await supervisor.set_status(agent, "spawning")
                    entry.status = "spawning"
                    if item.worker is not None:
                        entry.spawn_ms = await supervisor.adopt(agent, item.worker)
                    else:
                        entry.spawn_ms = await supervisor.start(agent)
                entry.status = "ready" if not task else "waiting" if has_dependencies else "running"
                await supervisor.set_status(agent, entry.status, ready_ms=supervisor.clock.now_ms(),
                                            spawn_ms=entry.spawn_ms)
                supervisor.activity.spawned(agent.record)
                entry.spawned.set()
                await report(entry, f"{entry.name} ready", final=not task)
            elif not task:  # an exec agent has no process until its first task
                entry.status, entry.spawn_ms = "ready", 0.0
                await supervisor.set_status(agent, "ready", ready_ms=supervisor.clock.now_ms(), spawn_ms=0.0)
                supervisor.activity.spawned(agent.record)
                entry.spawned.set()
                await report(entry, f"{entry.name} ready", final=True)
            elif has_dependencies:  # it is up when its task's process starts, after its dependencies
                entry.status = "waiting"
                await supervisor.set_status(agent, "waiting")
                entry.spawned.set()
                await report(entry, f"{entry.name} waiting for its dependencies")
            if item.spec.task:
                await self._run_task(item, agent, planned, in_flight, report, queued)
            else:
                entry.succeeded = True
        except SpawnFailed as error:
            await self._fail(item, agent, str(error), report)
        except asyncio.CancelledError:
            entry.status = "terminated" if agent.terminating else entry.status
            raise
        except Exception as error:
            logger.exception("agent %s (%s) failed unexpectedly", entry.agent_id, entry.name)
            await self._fail(item, agent, f"internal: {error!r}", report)
        finally:
            entry.spawned.set()
            entry.announced.set()
            entry.finished.set()

    async def _run_task(self, item: PlannedAgent, agent: Agent, planned: list[PlannedAgent], in_flight: asyncio.Semaphore,
                        report: Report, queued: Callable[[], Awaitable[None]]) -> None:
        entry, spec = item.entry, item.spec
        supervisor = self._supervisor
        inputs = await self._await_dependencies(item, planned)
        reason = self._failed_dependency(item, planned)
        if reason is not None:
            await self._skip(item, agent, reason, report)
            return
        task = item.task
        assert spec.task is not None and task is not None
        if agent.workspace is not None and agent.workspace.base_agent is not None:
            await supervisor.start_from_dependency(agent)
        prompt = _prompt_with_inputs(spec.task, inputs) if agent.agent_type.runtime == "claude" else spec.task
        entry.status = "running"

        if agent.agent_type.runtime == "claude":
            outcome = await supervisor.run_task(agent, task, prompt, inputs)
        else:
            # An exec agent is up when its task's process has started; the concurrency limit bounds
            # those starts, so its slot is given back as soon as the process runs. Its place under the
            # server's cap comes first: one waiting queued must not hold a start slot meanwhile.
            if agent.ticket is None:
                agent.ticket = await supervisor.slots.admit(agent, queued)
                if agent.ticket is None:
                    self._take_outcome(entry, TaskOutcome("terminated", error="terminated while it was queued"), agent)
                    await supervisor.tasks.close(task.id, "terminated", "terminated while it was queued")
                    await report(entry, f"{entry.name} terminated while queued", final=True)
                    return
            await in_flight.acquire()
            holding = True

            def started(spawn_ms: float) -> None:  # the supervisor records it with the pid
                nonlocal holding
                entry.spawn_ms = spawn_ms
                entry.spawned.set()
                in_flight.release()
                holding = False

            running = asyncio.ensure_future(supervisor.run_task(agent, task, prompt, inputs, started, queued))
            try:
                up = asyncio.ensure_future(entry.spawned.wait())
                await asyncio.wait((running, up), return_when=asyncio.FIRST_COMPLETED)
                up.cancel()
                if entry.spawn_ms is not None:  # its process started: the agent is up
                    supervisor.activity.spawned(agent.record)
                    await report(entry, f"{entry.name} started")
                outcome = await running
            finally:
                running.cancel()
                if holding:
                    in_flight.release()
        self._take_outcome(entry, outcome, agent, task.stopped_by)
        await report(entry, f"{entry.name} task {entry.status}", final=True)

    def _take_outcome(self, entry: SpawnEntry, outcome: TaskOutcome, agent: Agent, stopped_by: str | None = None
                      ) -> None:
        """The entry's status is its task's as recorded: ``terminated`` when someone stopped it (a
        client, a rule, a budget) or its agent was ending, whatever the runtime answered."""
        stopped = stopped_by is not None and outcome.status != "completed"
        entry.status = "terminated" if agent.terminating or stopped else outcome.status
        entry.result = outcome.result
        entry.error = f"terminated by {stopped_by}" if stopped else outcome.error
        entry.turns = outcome.usage.turns
        entry.cost_usd = outcome.usage.cost_usd
        entry.succeeded = outcome.status == "completed"

    async def _await_dependencies(self, item: PlannedAgent, planned: list[PlannedAgent]) -> dict[str, Any] | None:
        inputs: dict[str, Any] = {}
        for index in item.depends_on_new:
            dependency = planned[index]
            await dependency.entry.finished.wait()
            if dependency.spec.task and dependency.entry.succeeded:
                inputs[dependency.spec.name] = {"agent_id": dependency.entry.agent_id, "task": dependency.spec.task,
                                                "result": dependency.entry.result}
        for agent_id in item.depends_on_existing:
            live = self._supervisor.live(agent_id)
            if live is not None:  # its current task, if any, first
                idle, ended = asyncio.ensure_future(live.idle.wait()), asyncio.ensure_future(live.ended.wait())
                await asyncio.wait((idle, ended), return_when=asyncio.FIRST_COMPLETED)
                idle.cancel()
                ended.cancel()
            if live is not None and live.last_result is not None:
                inputs[live.record.name] = {"agent_id": agent_id, "result": live.last_result}
        return inputs or None

    def _failed_dependency(self, item: PlannedAgent, planned: list[PlannedAgent]) -> str | None:
        for index in item.depends_on_new:
            dependency = planned[index].entry
            if dependency.finished.is_set() and not dependency.succeeded:
                return f"dependency {dependency.name!r} {dependency.status}" + (
                    f": {dependency.error}" if dependency.error else "")
        for agent_id in item.depends_on_existing:
            if self._supervisor.live(agent_id) is None:
                return f"dependency {agent_id!r} is not running"
        return None

    async def _give_back_worker(self, item: PlannedAgent, agent: Agent) -> None:
        if item.worker is not None and agent.session is None:  # taken from the pool but never adopted
            await self._supervisor.pool.discard(item.worker)

    async def _skip(self, item: PlannedAgent, agent: Agent, reason: str, report: Report) -> None:
        await self._give_back_worker(item, agent)
        entry = item.entry
        entry.status, entry.error = "skipped", f"skipped: {reason}"
        if entry.query_id is not None:
            await self._supervisor.tasks.close(entry.query_id, "skipped", entry.error)
        await self._end_quietly(agent, "skipped", self._settings.agent_terminate_grace_s, entry.error)
        await report(entry, f"{entry.name} skipped", final=True)

    async def _fail(self, item: PlannedAgent, agent: Agent, error: str, report: Report) -> None:
        await self._give_back_worker(item, agent)
        entry = item.entry
        entry.status, entry.error = "failed", error
        if entry.query_id is not None:
            await self._supervisor.tasks.close(entry.query_id, "failed", error)
        await self._end_quietly(agent, "failed", 1.0, error)
        self._supervisor.activity.spawned(agent.record)
        await report(entry, f"{entry.name} failed", final=True)

    async def _end_quietly(self, agent: Agent, status: AgentStatus, grace_s: float, error: str | None) -> None:
        """Ends an agent that will not run; one whose processes cannot be confirmed gone stays live
        (the supervisor retries its stop), which is no reason to fail the others."""
        try:
            await self._supervisor.end(agent, status, grace_s, error=error)
        except StopFailed as failure:
            logger.warning("agent %s: %s", agent.id, failure.message)


def _prompt_with_inputs(task: str, inputs: dict[str, Any] | None) -> str:
    """A claude task with its dependencies' results in front of it."""
    if not inputs:
        return task
    parts = [task, "Results of the agents this task depends on:"]
    for name, given in inputs.items():
        parts.append(f"<result agent={name!r} agent_id={given['agent_id']!r}>\n{given.get('result') or ''}\n</result>")
    return "\n\n".join(parts)
