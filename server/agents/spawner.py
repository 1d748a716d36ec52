"""`Spawner.spawn_many`: many agents, in batches, in parallel, in dependency order.

The whole request is checked before anything starts (names, types, dependencies, cycles,
working directories, ad-hoc commands, the per-call limit); any error refuses the call and
nothing is spawned. Then agents start in priority order, ``batch_size`` at a time (a batch
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol

from server.agents.capacity import AtCapacity, Ticket
from server.agents.ids import new_id
from server.agents.launch import SpawnFailed
from server.agents.live import Agent
from server.agents.outcome import TaskOutcome
from server.agents.pool import PooledWorker
from server.agents.records import AgentStatus, QueryRecord
from server.agents.supervisor import StopFailed, Supervisor
from server.agents.types import AgentType
from server.config.agent_type import PERMISSION_MODES
from server.errors import Forbidden, InvalidArgument, SwitchboardError, TooLarge

logger = logging.getLogger(__name__)

EntryStatus = Literal["queued", "spawning", "ready", "running", "waiting", "completed", "failed", "skipped",
                      "terminated"]
Progress = Callable[[int, int, str], Awaitable[None]]


class Report(Protocol):
    """Tells the caller about one entry (see `Spawner.spawn_many`)."""

    async def __call__(self, entry: SpawnEntry, message: str, final: bool = False) -> None: ...

# A dependency cycle is named by this many of its agents at most (its start and its end).
CYCLE_NAMES_SHOWN = 10
# Longest cwd accepted, in bytes: Linux's PATH_MAX (the kernel refuses longer paths anyway).
CWD_MAX_BYTES = 4096


@dataclass(frozen=True, slots=True)
class AgentSpec:
    """One agent of a request, as the caller asked for it."""

    type: str
    name: str
    task: str | None = None
    depends_on: tuple[str, ...] = ()
    model: str | None = None
    permission_mode: str | None = None
    cwd: str | None = None
    capabilities: tuple[str, ...] = ()
    priority: int = 0
    command: tuple[str, ...] | None = None


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    agents: tuple[AgentSpec, ...]
    max_concurrency: int = 5
    batch_size: int = 3
    wait: bool = False
    timeout_s: float | None = None
    queue: bool = True  # at SWITCHBOARD_AGENT_MAX_RUNNING: wait queued (True) or refuse the call (False)


@dataclass(slots=True)
class SpawnEntry:
    """What became of one requested agent."""

    name: str
    type: str
    agent_id: str
    status: EntryStatus = "queued"
    query_id: str | None = None
    error: str | None = None
    spawn_ms: float | None = None
    result: str | None = None
    turns: int | None = None
    cost_usd: float | None = None
    # Set once the agent is up (or queued, waiting, failed to come up); once the caller was told so
    # (a progress notification); and once its task (if any) ended and the caller was told that too.
    spawned: asyncio.Event = field(default_factory=asyncio.Event)
    announced: asyncio.Event = field(default_factory=asyncio.Event)
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    succeeded: bool = False
    progress_owed: int = 1  # notifications promised: its coming up, and with ``wait`` its task's end
    progress_sent: int = 0


@dataclass(slots=True)
class SpawnReport:
    entries: list[SpawnEntry]
    wall_ms: float
    timed_out: bool

    def count(self, *statuses: EntryStatus) -> int:
        return sum(1 for entry in self.entries if entry.status in statuses)

    @property
    def spawned(self) -> int:
        """Up, working or done: every status but the ones that have their own count."""
        return self.count("ready", "running", "completed")

    @property
    def spawn_ms_total(self) -> float:
        return sum(entry.spawn_ms or 0.0 for entry in self.entries)

    @property
    def spawns_in_flight(self) -> float | None:
        """Sum of spawn times over wall time: how many agents were starting at once, on average."""
        return self.spawn_ms_total / self.wall_ms if self.wall_ms > 0 and self.spawn_ms_total else None


@dataclass(slots=True)
class _Planned:
    spec: AgentSpec
    agent_type: AgentType
    cwd: Path | None
    command: tuple[str, ...] | None
    entry: SpawnEntry
    depends_on_new: list[int]        # indices into the request
    depends_on_existing: list[str]   # ids of agents from earlier calls
    worker: PooledWorker | None = None  # a warm pool's idle session, taken for this agent
    query: QueryRecord | None = None    # its task, once recorded


class Spawner:
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._settings = supervisor.settings

    # -- checking ------------------------------------------------------------------------------

    async def _plan(self, request: SpawnRequest) -> list[_Planned]:
        specs = request.agents
        limit = self._settings.agent_max_per_call
        if not specs:
            raise InvalidArgument("agents must list at least one agent to spawn")
        if len(specs) > limit:
            raise TooLarge(f"{len(specs)} agents in one call; at most {limit} (SWITCHBOARD_AGENT_MAX_PER_CALL)")
        index_of: dict[str, int] = {}
        for position, spec in enumerate(specs):
            if spec.name in index_of:
                raise InvalidArgument(f"agent name {spec.name!r} appears twice; names must be unique within a call")
            index_of[spec.name] = position
        problems: list[str] = []
        planned: list[_Planned] = []
        for spec in specs:
            try:
                planned.append(await self._plan_one(spec, index_of))
            except SwitchboardError as error:
                if isinstance(error, Forbidden):
                    raise
                problems.append(f"{spec.name}: {error.message}")
        if problems:
            raise InvalidArgument("; ".join(problems))
        cycle = _find_cycle([item.depends_on_new for item in planned])
        if cycle:
            raise InvalidArgument("dependency cycle: " + _cycle_text([specs[i].name for i in cycle]))
        return planned

    async def _plan_one(self, spec: AgentSpec, index_of: dict[str, int]) -> _Planned:
        agent_type = self._supervisor.types.get(spec.type)
        command = agent_type.command if agent_type.runtime == "exec" else None
        if spec.command is not None:
            if not self._settings.agent_allow_adhoc_commands:
                raise Forbidden(f"agent {spec.name!r} carries its own command, which this server does not allow "
                                "(set SWITCHBOARD_AGENT_ALLOW_ADHOC_COMMANDS=true, or configure an exec agent type)")
            if agent_type.runtime != "exec":
                raise InvalidArgument(f"a command needs an exec type; {spec.type!r} is a {agent_type.runtime} type")
            if not spec.command or not spec.command[0]:
                raise InvalidArgument("command needs an executable as its first element")
            command = spec.command
        if spec.permission_mode is not None and spec.permission_mode not in PERMISSION_MODES:
            raise InvalidArgument(f"permission_mode {spec.permission_mode!r} is not one of {', '.join(PERMISSION_MODES)}")
        if spec.permission_mode == "bypassPermissions" and not agent_type.allows_bypass:
            raise Forbidden(f"permission_mode bypassPermissions is not allowed for agent type {spec.type!r}: set "
                            f"allow_bypass_permissions = true in its [agent_types.{spec.type}] table to allow it")
        new: list[int] = []
        existing: list[str] = []
        for dependency in spec.depends_on:
            if dependency == spec.name:
                raise InvalidArgument("an agent cannot depend on itself")
            if dependency in index_of:
                new.append(index_of[dependency])
            elif self._supervisor.live(dependency) is not None or await self._supervisor.records.agent(dependency):
                existing.append(dependency)
            else:
                raise InvalidArgument(f"depends_on {dependency!r} is neither an agent of this call nor an agent id")
        cwd = self._allowed_cwd(spec.cwd) if spec.cwd else None
        entry = SpawnEntry(name=spec.name, type=spec.type, agent_id=new_id("agent"))
        return _Planned(spec, agent_type, cwd, command, entry, new, existing)

    def _allowed_cwd(self, cwd: str) -> Path:
        roots = self._settings.agent_roots
        if "\x00" in cwd:
            raise InvalidArgument(f"cwd must not contain a NUL character; got {cwd[:60]!r}")
        size = len(cwd.encode("utf-8", "surrogateescape"))
        if size > CWD_MAX_BYTES:
            raise InvalidArgument(f"cwd is {size} bytes long; at most {CWD_MAX_BYTES} bytes")
        try:
            path = Path(cwd).expanduser()
            resolved = (path if path.is_absolute() else roots[0] / path).resolve()
            inside = any(resolved == root.resolve() or resolved.is_relative_to(root.resolve()) for root in roots)
            is_dir = inside and resolved.is_dir()
        except (OSError, RuntimeError) as error:  # a name over 255 bytes, a symlink loop, an unknown ~user
            reason = getattr(error, "strerror", None) or str(error)
            raise InvalidArgument(f"cwd {cwd[:60]!r} is not a usable path ({reason})") from None
        if not inside:
            raise InvalidArgument(f"cwd {cwd!r} is outside the agent roots ({', '.join(map(str, roots))}; "
                                  "SWITCHBOARD_AGENT_ROOTS)")
        if not is_dir:
            raise InvalidArgument(f"cwd {cwd!r} is not a directory")
        return resolved

    # -- running -------------------------------------------------------------------------------

    async def spawn_many(self, request: SpawnRequest, progress: Progress | None = None) -> SpawnReport:
        """Checks the request, starts every agent and its task, and answers when all are up (or,
        with ``wait``, when every task has ended), or when ``timeout_s`` has passed."""
        planned = await self._plan(request)
        reserved = [] if request.queue else self._reserve_running_slots(planned)
        for item in planned:
            if item.agent_type.pool_size and item.cwd is None and (worker := self._supervisor.pool.take(item.spec.type)):
                item.worker = worker
                item.entry.agent_id = worker.agent_id
            item.entry.progress_owed = 2 if request.wait and item.spec.task else 1
        loop = asyncio.get_running_loop()
        began = loop.time()
        try:
            agents = await asyncio.gather(*(self._record(item) for item in planned))  # committed together
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
        waiting_for = [item.entry.finished if request.wait else item.entry.announced for item in planned]
        timed_out = False
        try:
            async with asyncio.timeout(request.timeout_s):
                await asyncio.gather(*(event.wait() for event in waiting_for))
        except TimeoutError:
            timed_out = True
        answered = True
        return SpawnReport([item.entry for item in planned], (loop.time() - began) * 1000, timed_out)

    def _reserve_running_slots(self, planned: list[_Planned]) -> list[Ticket]:
        """For a call that may not queue: a slot under SWITCHBOARD_AGENT_MAX_RUNNING for each agent that
        runs a process in it (a claude session, an exec task), all now, or `AtCapacity` and none."""
        pooled: dict[str, int] = {}
        needed = 0
        for item in planned:
            if item.agent_type.runtime != "claude" and not item.spec.task:
                continue
            if item.agent_type.pool_size and item.cwd is None:
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

    async def _record(self, item: _Planned) -> Agent:
        spec, agent_type = item.spec, item.agent_type
        agent, query = await self._supervisor.create(
            agent_id=item.entry.agent_id, name=spec.name, type_name=spec.type, agent_type=agent_type,
            command=item.command, model=spec.model or agent_type.model,
            permission_mode=spec.permission_mode or agent_type.permission_mode, cwd=item.cwd,
            capabilities=spec.capabilities, priority=spec.priority, status="queued", task=spec.task or None,
            task_status="waiting" if item.depends_on_new or item.depends_on_existing else "queued",
        )
        if query is not None:
            item.query, item.entry.query_id = query, query.id
        return agent

    @staticmethod
    async def _release_batches(batches: list[list[int]], released: list[asyncio.Event],
                               planned: list[_Planned]) -> None:
        for number in range(1, len(batches)):
            await asyncio.gather(*(planned[index].entry.spawned.wait() for index in batches[number - 1]))
            released[number].set()

    async def _bring_up_and_run(self, item: _Planned, agent: Agent, planned: list[_Planned],
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

    async def _run_task(self, item: _Planned, agent: Agent, planned: list[_Planned], in_flight: asyncio.Semaphore,
                        report: Report, queued: Callable[[], Awaitable[None]]) -> None:
        entry, spec = item.entry, item.spec
        supervisor = self._supervisor
        inputs = await self._await_dependencies(item, planned)
        reason = self._failed_dependency(item, planned)
        if reason is not None:
            await self._skip(item, agent, reason, report)
            return
        query = item.query
        assert spec.task is not None and query is not None
        prompt = _prompt_with_inputs(spec.task, inputs) if agent.agent_type.runtime == "claude" else spec.task
        entry.status = "running"

        if agent.agent_type.runtime == "claude":
            outcome = await supervisor.run_task(agent, query, prompt, inputs)
        else:
            # An exec agent is up when its task's process has started; the concurrency limit bounds
            # those starts, so its slot is given back as soon as the process runs. Its place under the
            # server's cap comes first: one waiting queued must not hold a start slot meanwhile.
            if agent.ticket is None:
                agent.ticket = await supervisor.slots.admit(agent, queued)
                if agent.ticket is None:
                    self._take_outcome(entry, TaskOutcome("terminated", error="terminated while it was queued"), agent)
                    await supervisor.close_query(query.id, "terminated", "terminated while it was queued")
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

            running = asyncio.ensure_future(supervisor.run_task(agent, query, prompt, inputs, started, queued))
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
        self._take_outcome(entry, outcome, agent)
        await report(entry, f"{entry.name} task {entry.status}", final=True)

    def _take_outcome(self, entry: SpawnEntry, outcome: TaskOutcome, agent: Agent) -> None:
        entry.status = "terminated" if agent.terminating else outcome.status
        entry.result = outcome.result
        entry.error = outcome.error
        entry.turns = outcome.usage.turns
        entry.cost_usd = outcome.usage.cost_usd
        entry.succeeded = outcome.status == "completed"

    async def _await_dependencies(self, item: _Planned, planned: list[_Planned]) -> dict[str, Any] | None:
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

    def _failed_dependency(self, item: _Planned, planned: list[_Planned]) -> str | None:
        for index in item.depends_on_new:
            dependency = planned[index].entry
            if dependency.finished.is_set() and not dependency.succeeded:
                return f"dependency {dependency.name!r} {dependency.status}" + (
                    f": {dependency.error}" if dependency.error else "")
        for agent_id in item.depends_on_existing:
            if self._supervisor.live(agent_id) is None:
                return f"dependency {agent_id!r} is not running"
        return None

    async def _give_back_worker(self, item: _Planned, agent: Agent) -> None:
        if item.worker is not None and agent.session is None:  # taken from the pool but never adopted
            await self._supervisor.pool.discard(item.worker)

    async def _skip(self, item: _Planned, agent: Agent, reason: str, report: Report) -> None:
        await self._give_back_worker(item, agent)
        entry = item.entry
        entry.status, entry.error = "skipped", f"skipped: {reason}"
        if entry.query_id is not None:
            await self._supervisor.close_query(entry.query_id, "skipped", entry.error)
        await self._end_quietly(agent, "skipped", self._settings.agent_terminate_grace_s, entry.error)
        await report(entry, f"{entry.name} skipped", final=True)

    async def _fail(self, item: _Planned, agent: Agent, error: str, report: Report) -> None:
        await self._give_back_worker(item, agent)
        entry = item.entry
        entry.status, entry.error = "failed", error
        if entry.query_id is not None:
            await self._supervisor.close_query(entry.query_id, "failed", error)
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


def _find_cycle(edges: Sequence[Sequence[int]]) -> list[int] | None:
    """A dependency cycle as a path of indices (first repeated at the end), or None.

    A depth-first search with its own stack, not Python's: a chain as long as the per-call limit
    allows (1,000) would exceed the interpreter's recursion limit."""
    state = [0] * len(edges)  # 0 unvisited, 1 on the path, 2 done
    for root in range(len(edges)):
        if state[root]:
            continue
        state[root] = 1
        path, next_edge = [root], [0]  # the nodes being visited, and which of its edges each follows next
        while path:
            node, position = path[-1], next_edge[-1]
            if position == len(edges[node]):
                state[node] = 2
                path.pop()
                next_edge.pop()
                continue
            next_edge[-1] += 1
            target = edges[node][position]
            if state[target] == 1:
                return [*path[path.index(target):], target]
            if state[target] == 0:
                state[target] = 1
                path.append(target)
                next_edge.append(0)
    return None


def _cycle_text(names: Sequence[str]) -> str:
    """``a -> b -> a``; a long cycle by its start and end, with its length."""
    if len(names) <= CYCLE_NAMES_SHOWN:
        return " -> ".join(names)
    head, tail = names[:CYCLE_NAMES_SHOWN // 2], names[-(CYCLE_NAMES_SHOWN // 2):]
    return f"{' -> '.join(head)} -> ... -> {' -> '.join(tail)} ({len(names) - 1} agents)"
