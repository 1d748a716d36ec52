"""A spawn request, checked whole before anything starts: `SpawnPlanner.plan`.

Names unique, types known, dependencies in the call or existing agents, no cycle (found without
recursion, so a chain of a thousand is fine), working directories under the agent roots and within
the path limit, ad-hoc commands only where allowed, the per-call limit: any problem refuses the
call, naming each one, and nothing is recorded. What a request asks for and what became of each
agent (`AgentSpec`, `SpawnRequest`, `SpawnEntry`, `SpawnReport`) are here too.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from server.agents.ids import new_id
from server.agents.pool import PooledWorker
from server.agents.resume import ResumedAgent, resumable
from server.agents.supervisor import Supervisor
from server.agents.tasks import Task
from server.agents.types import AgentType
from server.agents.workspaces import WorkspacePlan
from server.config.agent_type import (
    ON_BUDGET_ACTIONS,
    PERMISSION_MODES,
    WORKSPACE_MODES,
    WorkspaceMode,
    check_approval_policy,
)
from server.errors import Forbidden, InvalidArgument, SwitchboardError, TooLarge
from server.workspaces.sandbox import SandboxUnavailable, require_bwrap

EntryStatus = Literal["queued", "spawning", "ready", "running", "waiting", "completed", "failed", "skipped",
                      "terminated"]

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
    on_permission_request: str | Sequence[str] | None = None  # claude: its approval policy instead of its type's
    workspace: str | None = None  # shared | worktree | auto, instead of its type's
    base_ref: str | None = None  # a worktree's start: a branch, a commit, or an agent of the same call
    budget_usd: float | None = None  # its task's (query's) budget
    budget_tokens: int | None = None
    agent_budget_usd: float | None = None  # the agent's, over all its tasks, instead of its type's
    agent_budget_tokens: int | None = None
    on_budget: str | None = None  # pause | terminate, instead of its type's
    resume: str | None = None  # an ended agent to bring back: its type, workspace and conversation
    fork: bool = False  # with resume: a new conversation branched from the old one


@dataclass(frozen=True, slots=True)
class SpawnRequest:
    agents: tuple[AgentSpec, ...]
    max_concurrency: int = 5
    batch_size: int = 3
    wait: bool = False
    timeout_s: float | None = None
    queue: bool = True  # at SWITCHBOARD_AGENT_MAX_RUNNING: wait queued (True) or refuse the call (False)
    budget_usd: float | None = None  # shared by the call's agents


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
    # Set when an interrupt cut the wait short: `Spawner.resume_wait` waits on for the rest.
    call_id: str | None = None

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
class PlannedAgent:
    """One agent of a checked request: its type, directory and command resolved, its dependencies as indices."""

    spec: AgentSpec
    agent_type: AgentType
    cwd: Path | None
    command: tuple[str, ...] | None
    entry: SpawnEntry
    depends_on_new: list[int]        # indices into the request
    depends_on_existing: list[str]   # ids of agents from earlier calls
    workspace: WorkspacePlan | None = None  # its git worktree, when it gets one
    sandboxed: bool = False
    worker: PooledWorker | None = None  # a warm pool's idle session, taken for this agent
    task: Task | None = None            # its task, once recorded
    resumed: ResumedAgent | None = None  # the ended agent it brings back


class SpawnPlanner:
    def __init__(self, supervisor: Supervisor) -> None:
        self._supervisor = supervisor
        self._settings = supervisor.settings

    async def plan(self, request: SpawnRequest) -> list[PlannedAgent]:
        """Every agent of ``request`` checked and planned, or an error naming each problem (nothing is recorded)."""
        limit = self._settings.agent_max_per_call
        if not request.agents:
            raise InvalidArgument("agents must list at least one agent to spawn")
        if len(request.agents) > limit:
            raise TooLarge(f"{len(request.agents)} agents in one call; at most {limit} (SWITCHBOARD_AGENT_MAX_PER_CALL)")
        self._supervisor.budgets.refuse_when_day_spent("agents_spawn_parallel")
        resumed = await self._resumed(request.agents)
        specs = tuple(_resuming(spec, resumed[spec.resume]) if spec.resume else spec for spec in request.agents)
        index_of: dict[str, int] = {}
        for position, spec in enumerate(specs):
            if spec.name in index_of:
                raise InvalidArgument(f"agent name {spec.name!r} appears twice; names must be unique within a call")
            index_of[spec.name] = position
        problems: list[str] = []
        planned: list[PlannedAgent] = []
        lookups: dict[tuple[Path, str | None], Any] = {}  # git's answers, shared by the call's worktree agents
        for spec in specs:
            try:
                item = await self._plan_one(spec, index_of, lookups, resumed.get(spec.resume or ""))
                planned.append(item)
            except SwitchboardError as error:
                if isinstance(error, (Forbidden, SandboxUnavailable)):
                    raise
                problems.append(f"{spec.name}: {error.message}")
        if problems:
            raise InvalidArgument("; ".join(problems))
        problems = [f"{item.spec.name}: {problem}" for item in planned
                    if (problem := self._base_agent_problem(item, planned, index_of)) is not None]
        if problems:
            raise InvalidArgument("; ".join(problems))
        cycle = _find_cycle([item.depends_on_new for item in planned])
        if cycle:
            raise InvalidArgument("dependency cycle: " + _cycle_text([specs[i].name for i in cycle]))
        return planned

    async def _resumed(self, specs: Sequence[AgentSpec]) -> dict[str, ResumedAgent]:
        """The ended agents the request resumes, each checked (`resumable`), each at most once."""
        found: dict[str, ResumedAgent] = {}
        for spec in specs:
            if spec.resume is None:
                if spec.fork:
                    raise InvalidArgument(f"agent {spec.name!r}: fork applies to resume (name the agent to fork)")
                continue
            if spec.resume in found:
                raise InvalidArgument(f"resume {spec.resume!r} appears twice; an agent is resumed once")
            found[spec.resume] = await resumable(self._supervisor.records, self._supervisor.workspaces, spec.resume,
                                                 fork=spec.fork, live=self._supervisor.live(spec.resume) is not None)
        return found

    async def _plan_one(self, spec: AgentSpec, index_of: dict[str, int],
                        lookups: dict[tuple[Path, str | None], Any], resumed: ResumedAgent | None = None
                        ) -> PlannedAgent:
        if spec.on_budget is not None and spec.on_budget not in ON_BUDGET_ACTIONS:
            raise InvalidArgument(f"on_budget {spec.on_budget!r} is not one of {', '.join(ON_BUDGET_ACTIONS)}")
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
        if spec.on_permission_request is not None:
            agent_type = self._with_approval_policy(spec, agent_type)
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
        if resumed is not None:
            if spec.cwd is not None or spec.workspace is not None or spec.base_ref is not None:
                raise InvalidArgument("a resumed agent works where the agent it resumes did: leave out cwd, "
                                      "workspace and base_ref")
            sandboxed = resumed.workspace.sandbox if resumed.workspace is not None else bool(agent_type.sandbox)
            if sandboxed:
                require_bwrap()
            entry = SpawnEntry(name=spec.name, type=spec.type, agent_id=new_id("agent"))
            return PlannedAgent(spec, agent_type, None, command, entry, new, existing, None, sandboxed,
                                resumed=resumed)
        cwd = self._allowed_cwd(spec.cwd) if spec.cwd else None
        if spec.workspace is not None and spec.workspace not in WORKSPACE_MODES:
            raise InvalidArgument(f"workspace {spec.workspace!r} is not one of {', '.join(WORKSPACE_MODES)}")
        mode: WorkspaceMode = spec.workspace or agent_type.workspace  # type: ignore[assignment]
        workspace = await self._supervisor.workspaces.plan(mode, cwd, spec.base_ref, agent_type, set(index_of), lookups)
        if workspace is not None and workspace.base_agent is not None:
            if workspace.base_agent == spec.name:
                raise InvalidArgument("base_ref cannot name the agent itself")
            if index_of[workspace.base_agent] not in new:  # starting from its work means waiting for it
                new.append(index_of[workspace.base_agent])
        sandboxed = workspace.sandbox if workspace is not None else bool(agent_type.sandbox)
        if sandboxed:
            require_bwrap()
        entry = SpawnEntry(name=spec.name, type=spec.type, agent_id=new_id("agent"))
        return PlannedAgent(spec, agent_type, cwd, command, entry, new, existing, workspace, sandboxed)

    @staticmethod
    def _base_agent_problem(item: PlannedAgent, planned: list[PlannedAgent], index_of: dict[str, int]) -> str | None:
        """What is wrong with a base_ref naming an agent of the call, or None."""
        if item.workspace is None or item.workspace.base_agent is None:
            return None
        base = planned[index_of[item.workspace.base_agent]]
        if not item.spec.task:
            return (f"base_ref {base.spec.name!r} means starting from its finished work, which needs a task to wait "
                    f"with; give a task, or base_ref its branch")
        if base.workspace is None:
            return f"base_ref {base.spec.name!r} works in its cwd (workspace 'shared'), not on a branch to start from"
        if not base.spec.task:
            return f"base_ref {base.spec.name!r} has no task, so no finished work to start from"
        if base.workspace.repository.top != item.workspace.repository.top:
            return f"base_ref {base.spec.name!r} works in another repository ({base.workspace.repository.top})"
        return None

    @staticmethod
    def _with_approval_policy(spec: AgentSpec, agent_type: AgentType) -> AgentType:
        """The agent's own copy of its type, with the policy its spec asks for."""
        if agent_type.runtime != "claude":
            raise InvalidArgument(f"on_permission_request applies to claude agents; {spec.type!r} is an "
                                  f"{agent_type.runtime} type (its commands ask for no permission)")
        try:
            policy = check_approval_policy(spec.on_permission_request)
        except ValueError as error:
            raise InvalidArgument(f"agent {spec.name!r}: {error}") from None
        return agent_type.model_copy(update={"on_permission_request": policy})

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


def _resuming(spec: AgentSpec, resumed: ResumedAgent) -> AgentSpec:
    """The spec of an agent that resumes another: its type, and unless given its name, model and
    permission mode and budgets, are the old agent's."""
    old = resumed.record
    if spec.type and spec.type != old.type:
        raise InvalidArgument(f"resume {old.id!r}: that agent is of type {old.type!r}, not {spec.type!r} "
                              "(leave type out)")
    return dataclasses.replace(
        spec, type=old.type, name=spec.name or old.name, model=spec.model or old.model,
        permission_mode=spec.permission_mode or old.permission_mode,
        agent_budget_usd=spec.agent_budget_usd if spec.agent_budget_usd is not None else old.budget_usd,
        agent_budget_tokens=spec.agent_budget_tokens if spec.agent_budget_tokens is not None else old.budget_tokens,
        on_budget=spec.on_budget or old.on_budget)


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
