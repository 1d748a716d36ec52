"""`AgentWorkspaces`: each worktree agent's git workspace, from its plan to its removal.

A worktree agent works in ``<data_dir>/workspaces/<agent_id>``, a `git worktree` of the user's
repository on a branch of its own (``switchboard/<name>-<short id>``), in the same sub-directory
its cwd was of the repository. Its work is committed on that branch at each task's end (and
when it ends), so it never lives only in a directory; it is reviewed (`changes`) and merged
(`merge`) from there. An ended agent's worktree is removed after ``SWITCHBOARD_WORKSPACE_TTL_H``
once its branch is merged or discarded; an unmerged branch keeps its worktree, and a branch
outlives its worktree unless it was discarded. The rows are the ``workspaces`` table of the
agents database; the git work is `server.workspaces.git`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from server.agents.records import AGENTS, LIVE_AGENT_STATUSES, AgentRecord, AgentRecords, RowChange, Table
from server.clock import Clock
from server.config import Settings
from server.config.agent_type import AgentType, WorkspaceMode
from server.errors import Conflict, InvalidArgument, NotFound
from server.workspaces.git import Changes, GitFailed, GitRepository, MergeOutcome, MergeStrategy, git
from server.workspaces.sandbox import Sandbox, require_bwrap

logger = logging.getLogger(__name__)

# How long a worktree's measured size on disk is reused (measuring walks every file of it).
SIZE_CACHE_S = 30.0
# What of a failed setup's output its agent's error carries.
SETUP_TAIL_CHARS = 2_000
# A commit's subject: the agent's name and the task's first line, cut to this many characters.
SUBJECT_CHARS = 72
_BRANCH_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(slots=True)
class WorkspaceRecord:
    """One agent's workspace, as stored (its id is the agent's)."""

    id: str
    repo: str
    path: str
    subdir: str
    branch: str
    base_commit: str
    created_ms: int
    base_branch: str | None = None
    base_agent: str | None = None
    sandbox: bool = False
    ready_ms: int | None = None
    head: str | None = None
    merged_into: str | None = None
    merged_commit: str | None = None
    merged_strategy: str | None = None
    merged_ms: int | None = None
    discarded_ms: int | None = None
    removed_ms: int | None = None

    @property
    def workdir(self) -> Path:
        """Where the agent works: its sub-directory of the worktree."""
        return Path(self.path) / self.subdir if self.subdir else Path(self.path)

    @property
    def merged(self) -> bool:
        return self.merged_ms is not None


WORKSPACES = Table("workspaces", WorkspaceRecord)


@dataclass(frozen=True, slots=True)
class WorkspacePlan:
    """A spawn's workspace for one agent, checked before anything is recorded."""

    repository: GitRepository
    subdir: str
    base_commit: str
    base_branch: str | None
    sandbox: bool
    base_agent: str | None = None  # the name of the agent of the same call whose finished work it starts from


@dataclass(frozen=True, slots=True)
class DiskUse:
    """The worktrees not yet removed, together."""

    worktrees: int
    unmerged: int
    bytes: int


@dataclass(frozen=True, slots=True)
class WorkspaceListing:
    """A workspace with what `switchboard workspaces` and the status show of it."""

    workspace: WorkspaceRecord
    agent: AgentRecord | None
    size_bytes: int


class AgentWorkspaces:
    def __init__(self, settings: Settings, records: AgentRecords, clock: Clock,
                 on_change: Callable[[str], None] = lambda agent_id: None) -> None:
        self._settings = settings
        self._on_change = on_change  # told the agent's id when its workspace was merged or discarded
        self._records = records
        self._clock = clock
        self._repository_locks: dict[str, asyncio.Lock] = {}  # git worktree add/remove: one at a time per repository
        self._sizes: dict[str, tuple[float, int]] = {}  # path -> (measured at, monotonic; bytes)
        self._commit_locks: dict[str, asyncio.Lock] = {}  # a task's end and its agent's end may commit at once

    def path_for(self, agent_id: str) -> Path:
        return (self._settings.data_dir / "workspaces" / agent_id).absolute()

    # -- planning --------------------------------------------------------------------------------

    async def plan(self, mode: WorkspaceMode, cwd: Path | None, base_ref: str | None, agent_type: AgentType,
                   call_names: set[str], lookups: dict[tuple[Path, str | None], _Start] | None = None
                   ) -> WorkspacePlan | None:
        """The workspace an agent gets (None: it works in its cwd), or an error naming the problem.
        ``call_names`` are the names of the agents of the same call (a ``base_ref`` may name one);
        ``lookups`` keeps what git answered for the call's other agents (one repository, many agents)."""
        if mode == "shared" or (mode == "auto" and cwd is None):
            if base_ref is not None:
                raise InvalidArgument("base_ref applies to worktree agents; this agent works in its cwd "
                                      "(workspace 'shared')")
            return None
        if cwd is None:
            raise InvalidArgument("workspace 'worktree' needs a cwd inside a git repository")
        base_agent = base_ref if base_ref in call_names else None
        ref = None if base_agent is not None else base_ref
        start = (lookups or {}).get((cwd, ref))
        if start is None:
            try:
                start = await _start_of(cwd, ref)
            except _NoStart as missing:
                if mode == "auto":
                    return None
                raise missing.error from None
            if lookups is not None:
                lookups[(cwd, ref)] = start
        sandbox = agent_type.sandbox if agent_type.sandbox is not None else True
        if sandbox:
            require_bwrap()
        return WorkspacePlan(start.repository, start.subdir, start.commit, start.branch, sandbox, base_agent)

    def recorded(self, agent_id: str, name: str, plan: WorkspacePlan, base_agent_id: str | None
                 ) -> tuple[WorkspaceRecord, RowChange]:
        """The agent's workspace row (committed with the agent's own), before its worktree exists."""
        record = WorkspaceRecord(
            id=agent_id, repo=str(plan.repository.top), path=str(self.path_for(agent_id)), subdir=plan.subdir,
            branch=branch_name(name, agent_id), base_commit=plan.base_commit, created_ms=self._clock.now_ms(),
            base_branch=plan.base_branch, base_agent=base_agent_id, sandbox=plan.sandbox)
        return record, WORKSPACES.inserted(record)

    async def sandbox_for(self, workdir: Path, workspace: WorkspaceRecord | None, state_dir: Path | None,
                          agent_type: AgentType) -> Sandbox:
        """The sandbox of an agent working in ``workdir``: that (a worktree: the whole worktree, and
        git's directory of it, so that git status and diff work) writable, the data directory hidden
        but for ``state_dir`` (an exec agent's task inputs), the repository's .git and the type's
        ``read_roots`` readable, the network as the type says."""
        writable: list[Path] = [workdir]
        readable: list[Path] = [state_dir] if state_dir is not None else []
        if workspace is not None:
            _, git_dir, _ = await git(Path(workspace.path), "rev-parse", "--absolute-git-dir")
            _, common, _ = await git(Path(workspace.path), "rev-parse", "--path-format=absolute", "--git-common-dir")
            writable = [Path(workspace.path), Path(git_dir.strip())]
            readable.append(Path(common.strip()))
        return Sandbox(writable=tuple(writable), hidden=(self._settings.data_dir.absolute(),),
                       readable=tuple(readable), read_roots=tuple(Path(root) for root in agent_type.read_roots),
                       network=agent_type.sandbox_network)

    # -- the agent's life ------------------------------------------------------------------------

    @staticmethod
    def handed_over(workspace: WorkspaceRecord, agent_id: str) -> RowChange:
        """The workspace becomes ``agent_id``'s (an agent resuming the one it belonged to): its worktree,
        branch and work stay where they are."""
        return RowChange("UPDATE workspaces SET id = ? WHERE id = ?", (agent_id, workspace.id))

    async def prepare(self, workspace: WorkspaceRecord) -> None:
        """Adds the worktree on its new branch (an agent that starts from another's work is moved
        there by `start_from` once that work is finished)."""
        repository = GitRepository(Path(workspace.repo))
        async with self._lock(workspace.repo):
            await repository.add_worktree(Path(workspace.path), workspace.branch, workspace.base_commit)
        workspace.workdir.mkdir(parents=True, exist_ok=True)  # a cwd git does not track (empty, ignored)

    async def start_from(self, workspace: WorkspaceRecord, dependency: WorkspaceRecord) -> None:
        """Moves a workspace that has no work yet to where the dependency's branch is now (its
        finished work): "results handed on" includes the code."""
        head = await GitRepository(Path(dependency.repo)).commit_of(f"refs/heads/{dependency.branch}")
        await git(Path(workspace.path), "reset", "--quiet", "--hard", head)
        workspace.base_commit = head
        await self._records.commit(WORKSPACES.updated(workspace.id, {"base_commit": head}))
        workspace.workdir.mkdir(parents=True, exist_ok=True)

    async def setup(self, workspace: WorkspaceRecord, agent_type: AgentType, env: dict[str, str],
                    sandbox: Sandbox | None, log_path: Path) -> str | None:
        """Runs the type's ``setup`` argv in the new worktree; answers None, or why it failed (with
        its output's tail). Marks the workspace ready either way."""
        failure = None
        if agent_type.setup is not None:
            argv = list(agent_type.setup)
            run = sandbox.wrap(argv, workspace.workdir) if sandbox is not None else argv
            failure = await _run_setup(run, " ".join(argv)[:200], workspace.workdir, env, agent_type.setup_timeout_s,
                                       log_path)
        workspace.ready_ms = self._clock.now_ms()
        await self._records.commit(WORKSPACES.updated(workspace.id, {"ready_ms": workspace.ready_ms}))
        return failure

    async def commit(self, workspace: WorkspaceRecord, name: str, what: str) -> str | None:
        """Commits what is uncommitted in the worktree on the agent's branch (message: the agent's
        name and ``what``, a task's first line); answers the new commit, or None when there was
        nothing to commit or the worktree was never made."""
        if not await _exists(Path(workspace.path) / ".git"):
            return None
        subject = f"{name}: {what.strip().splitlines()[0] if what.strip() else 'work'}"
        if len(subject) > SUBJECT_CHARS:
            subject = subject[:SUBJECT_CHARS - 3] + "..."
        message = f"{subject}\n\n{what.strip()}\n\nSwitchboard agent {workspace.id}" if what.strip() else subject
        async with self._commit_locks.setdefault(workspace.id, asyncio.Lock()):
            made = await GitRepository(Path(workspace.repo)).commit_all(Path(workspace.path), message,
                                                                       self._settings.workspace_identity)
        if made is not None:
            workspace.head = made
            await self._records.commit(WORKSPACES.updated(workspace.id, {"head": made}))
        return made

    # -- review and merge ------------------------------------------------------------------------

    async def get(self, agent_id: str) -> WorkspaceRecord:
        """The agent's workspace; `NotFound` for an unknown agent, `InvalidArgument` for one that works in its cwd."""
        found = await self._records.select(WORKSPACES, "id = ?", [agent_id])
        if found:
            return found[0]
        if await self._records.agent(agent_id) is None:
            raise NotFound(f"no agent {agent_id!r} (agent_list shows the known ones)")
        raise InvalidArgument(f"agent {agent_id} works in its cwd (workspace 'shared'): it has no branch to review "
                              "or merge")

    async def of_agents(self, agent_ids: list[str]) -> dict[str, WorkspaceRecord]:
        """The workspaces of those of ``agent_ids`` that have one."""
        if not agent_ids:
            return {}
        found = await self._records.select(WORKSPACES, f"id IN ({','.join('?' * len(agent_ids))})", agent_ids)
        return {workspace.id: workspace for workspace in found}

    async def changes(self, agent_id: str, *, include_diff: bool = False, max_diff_bytes: int = 64 * 1024) -> Changes:
        """What the agent's branch holds beyond where it started, and whether it merges cleanly into its base now."""
        workspace = await self.get(agent_id)
        repository = GitRepository(Path(workspace.repo))
        into = f"refs/heads/{workspace.base_branch}" if workspace.base_branch else None
        if into is not None and not await repository.is_branch(workspace.base_branch or ""):
            into = None
        return await repository.changes(workspace.branch, workspace.base_commit, into=into, include_diff=include_diff,
                                        max_diff_bytes=max_diff_bytes)

    async def merge(self, agent_id: str, *, into: str | None = None, strategy: MergeStrategy = "merge",
                    dry_run: bool = False) -> MergeOutcome:
        """Merges the agent's branch into ``into`` (default: the branch it started from) in a
        temporary worktree; the target moves only when that succeeded. Recorded on the workspace."""
        workspace = await self.get(agent_id)
        if workspace.discarded_ms is not None:
            raise Conflict(f"agent {agent_id}'s workspace was discarded; there is nothing to merge")
        target = into or workspace.base_branch
        if target is None:
            raise InvalidArgument(f"agent {agent_id} started from a detached HEAD: give into, the branch to merge into")
        repository = GitRepository(Path(workspace.repo))
        if not await repository.is_branch(target):
            raise InvalidArgument(f"into {target!r} is not a branch of {workspace.repo}")
        agent = await self._records.agent(agent_id)
        live = agent is not None and agent.status in LIVE_AGENT_STATUSES
        if live and agent is not None and agent.status == "running" and not dry_run:
            raise Conflict(f"agent {agent_id} is running a task; merge once it is done (its work is committed at the "
                           "task's end), or terminate it")
        if not dry_run and await _exists(Path(workspace.path) / ".git"):
            await self.commit(workspace, agent.name if agent else agent_id, "work not yet committed at the merge")
        name = agent.name if agent is not None else agent_id
        message = f"Merge {workspace.branch} ({name})"
        async with self._lock(workspace.repo):
            outcome = await repository.merge(workspace.branch, target, strategy=strategy, message=message,
                                             dry_run=dry_run, author=self._settings.workspace_identity)
        if not dry_run:
            changes = {"merged_into": target, "merged_commit": outcome.after, "merged_strategy": strategy,
                       "merged_ms": self._clock.now_ms()}
            await self._records.commit(WORKSPACES.updated(agent_id, changes))
            self._on_change(agent_id)
        return outcome

    async def discard(self, agent_id: str) -> WorkspaceRecord | None:
        """Removes an ended agent's worktree and deletes its branch (asked for explicitly:
        ``discard_workspace``). The branch's last commit is in the answer, to recover it from."""
        found = await self._records.select(WORKSPACES, "id = ?", [agent_id])
        if not found:
            return None
        workspace = found[0]
        repository = GitRepository(Path(workspace.repo))
        await self._remove_worktree(workspace)
        with contextlib.suppress(GitFailed, InvalidArgument):
            workspace.head = await repository.commit_of(f"refs/heads/{workspace.branch}")
        await git(Path(workspace.repo), "branch", "--quiet", "-D", workspace.branch, check=False)
        workspace.discarded_ms = workspace.removed_ms = self._clock.now_ms()
        await self._records.commit(WORKSPACES.updated(agent_id, {"discarded_ms": workspace.discarded_ms,
                                                                 "removed_ms": workspace.removed_ms,
                                                                 "head": workspace.head}))
        self._on_change(agent_id)
        return workspace

    # -- cleanup ---------------------------------------------------------------------------------

    async def sweep(self) -> list[str]:
        """Removes the worktrees of agents that ended more than the TTL ago and whose branch was
        merged; answers their agent ids. Unmerged ones are kept, worktree and branch."""
        cutoff = self._clock.now_ms() - int(self._settings.workspace_ttl_h * 3600 * 1000)
        rows = await self._records.rows(
            f"SELECT {', '.join('w.' + column for column in WORKSPACES.columns)} FROM workspaces w "
            "JOIN agents a ON a.id = w.id WHERE w.removed_ms IS NULL AND w.merged_ms IS NOT NULL "
            "AND a.ended_ms IS NOT NULL AND a.ended_ms <= ?", (cutoff,))
        removed = []
        for row in rows:
            workspace = WORKSPACES.decoded(row)
            try:
                await self._remove_worktree(workspace)
            except GitFailed as error:
                logger.warning("workspace of agent %s not removed: %s", workspace.id, error.message)
                continue
            await self._records.commit(WORKSPACES.updated(workspace.id, {"removed_ms": self._clock.now_ms()}))
            removed.append(workspace.id)
        if removed:
            logger.info("removed %d merged worktree(s) older than %g h", len(removed), self._settings.workspace_ttl_h)
        return removed

    async def sweep_forever(self) -> None:
        while True:
            try:
                await self.sweep()
            except Exception:
                logger.exception("workspace sweep failed; retried at the next interval")
            await asyncio.sleep(self._settings.workspace_sweep_interval_s)

    async def prune_at_start(self) -> None:
        """``git worktree prune`` in every repository with workspaces (a worktree deleted by hand
        leaves git's record of it behind), and a worktree gone from disk is recorded removed."""
        repos = [str(row[0]) for row in await self._records.rows("SELECT DISTINCT repo FROM workspaces")]
        for repo in repos:
            if await _exists(Path(repo)):
                with contextlib.suppress(GitFailed, OSError):
                    await GitRepository(Path(repo)).prune_worktrees()
        for workspace in await self._records.select(WORKSPACES, "removed_ms IS NULL AND ready_ms IS NOT NULL", []):
            if not await _exists(Path(workspace.path)):
                await self._records.commit(WORKSPACES.updated(workspace.id, {"removed_ms": self._clock.now_ms()}))

    async def listing(self, *, fresh: bool = True) -> list[WorkspaceListing]:
        """Every workspace not yet removed, with its agent and its size on disk (measured now, or
        without ``fresh`` as measured within the last `SIZE_CACHE_S`)."""
        workspaces = await self._records.select(WORKSPACES, "removed_ms IS NULL", [])
        agents = {agent.id: agent for agent in await self._records.select(
            AGENTS, "id IN (SELECT id FROM workspaces WHERE removed_ms IS NULL)", [])}
        sizes = await asyncio.to_thread(lambda: [self._size(Path(w.path), fresh) for w in workspaces])
        return [WorkspaceListing(w, agents.get(w.id), size) for w, size in zip(workspaces, sizes, strict=True)]

    async def disk_use(self) -> DiskUse:
        """What the worktrees take on disk together (for the status; sizes at most `SIZE_CACHE_S` old)."""
        listed = await self.listing(fresh=False)
        return DiskUse(len(listed), sum(1 for item in listed if not item.workspace.merged),
                       sum(item.size_bytes for item in listed))

    def _size(self, path: Path, fresh: bool) -> int:
        now = time.monotonic()
        cached = self._sizes.get(str(path))
        if not fresh and cached is not None and now - cached[0] < SIZE_CACHE_S:
            return cached[1]
        size = disk_usage(path)
        self._sizes[str(path)] = (now, size)
        return size

    async def _remove_worktree(self, workspace: WorkspaceRecord) -> None:
        self._commit_locks.pop(workspace.id, None)
        self._sizes.pop(workspace.path, None)
        path = Path(workspace.path)
        if await _exists(Path(workspace.repo)):
            async with self._lock(workspace.repo):
                if await _exists(path):
                    await GitRepository(Path(workspace.repo)).remove_worktree(path)
                else:
                    await GitRepository(Path(workspace.repo)).prune_worktrees()
        shutil.rmtree(path, ignore_errors=True)

    def _lock(self, repo: str) -> asyncio.Lock:
        return self._repository_locks.setdefault(repo, asyncio.Lock())


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(os.path.lexists, path)


@dataclass(frozen=True, slots=True)
class _Start:
    """Where a worktree starts: its repository, the cwd's place in it, the base commit and branch."""

    repository: GitRepository
    subdir: str
    commit: str
    branch: str | None


class _NoStart(Exception):
    """No worktree can start there (no repository, no commit yet): ``error`` says so."""

    def __init__(self, error: InvalidArgument) -> None:
        self.error = error


async def _start_of(cwd: Path, base_ref: str | None) -> _Start:
    """Where a worktree of the repository holding ``cwd`` starts: ``base_ref``, or (None) HEAD."""
    try:
        repository = await GitRepository.containing(cwd)
    except InvalidArgument as error:
        raise _NoStart(error) from None
    if base_ref is None:
        try:
            commit = await repository.commit_of("HEAD")
        except InvalidArgument:
            raise _NoStart(InvalidArgument(f"the repository {repository.top} has no commit yet; commit once before "
                                           "spawning worktree agents in it")) from None
        branch = await repository.current_branch()
    else:
        commit = await repository.commit_of(base_ref)
        branch = base_ref if await repository.is_branch(base_ref) else await repository.current_branch()
    real_cwd, real_top = await asyncio.to_thread(lambda: (os.path.realpath(cwd), os.path.realpath(repository.top)))
    subdir = Path(real_cwd).relative_to(real_top).as_posix()
    return _Start(repository, "" if subdir == "." else subdir, commit, branch)


def branch_name(name: str, agent_id: str) -> str:
    """``switchboard/<name>-<short id>``, the name made safe for a git ref."""
    safe = _BRANCH_UNSAFE.sub("-", name).strip(".-")[:40].rstrip(".-").replace("..", ".") or "agent"
    if safe.endswith(".lock"):
        safe = safe[:-5] or "agent"
    return f"switchboard/{safe}-{agent_id.rsplit('-', 1)[-1][:8]}"


def disk_usage(path: Path) -> int:
    """Bytes a directory tree takes on disk (its blocks), not following links."""
    total = 0
    for root, dirs, files in os.walk(path):
        for entry in (*dirs, *files):
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, entry)).st_blocks * 512
    return total


async def _run_setup(argv: list[str], shown: str, cwd: Path, env: dict[str, str], timeout_s: float,
                     log_path: Path) -> str | None:
    """Runs a setup command in its own process group, its output appended to ``log_path``; answers
    None when it succeeded, else why it failed with its output's tail. Its group is ended on a
    timeout or a cancel (the agent terminated meanwhile)."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True)
    except OSError as error:
        return f"setup {shown!r} could not start: {error.strerror or error}"
    try:
        async with asyncio.timeout(timeout_s):
            output, _ = await process.communicate()
    except BaseException as error:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        if isinstance(error, TimeoutError):
            return f"setup {shown} took more than {timeout_s:g} s (setup_timeout_s) and was ended"
        raise
    with log_path.open("ab") as log:
        log.write(output)
    if process.returncode == 0:
        return None
    tail = output.decode("utf-8", errors="replace").strip()[-SETUP_TAIL_CHARS:]
    return f"setup {shown} exited with code {process.returncode}" + (f": {tail}" if tail else "")
