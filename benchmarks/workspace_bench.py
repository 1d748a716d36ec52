"""What do worktrees and sandboxes cost an agent's start? One run, baseline and contender side by side.

Worktrees: 10 worktree agents on a repository of 5,000 committed files (made in a temp dir),
spawned through Switchboard (``spawn_many``: planning, durable records, the per-repository lock,
``git worktree add`` on a branch of each agent's own, the workspace marked ready) against a plain
sequential loop of ``git worktree add --quiet -b <branch> <path> <commit>`` subprocesses on the same
repository in the same run. The agents are exec agents without a task, so nothing runs in them: the
call answers once every agent is ready, which is after its worktree was made (checked after each
round). Median of several rounds, the two taking turns at going first, in the same directory; every
worktree and branch is taken out of the repository between rounds, its files deleted after the last.
Switchboard's git processes are timed as they run, to show where its time goes.

Sandbox: an exec task's process started and awaited (``asyncio.create_subprocess_exec``, then
``wait``) as ``/bin/true`` and as ``/bin/true`` wrapped by `Sandbox.wrap` (bubblewrap), the two taking
turns; then the same through the spawn path, one exec agent per call running ``/bin/true`` as its
task, of a type with ``sandbox = true`` and one with ``sandbox = false``. The difference is what
bubblewrap adds to each agent's start.

    .venv/bin/python benchmarks/workspace_bench.py [--files 5000] [--agents 10] [--rounds 5] [--starts 200] [--spawns 30]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import server.agents.workspaces as agent_workspaces
import server.workspaces.git as git_module
from server.agents.spawn_plan import AgentSpec, SpawnRequest
from server.agents.types import AgentType
from server.config import Settings
from server.services import Services, open_services
from server.workspaces.sandbox import Sandbox, find_bwrap

TRUE = "/bin/true"
# The environment Switchboard runs git in (`server.workspaces.git.git`), and a fixed identity.
GIT_ENV = {**os.environ, "GIT_TERMINAL_PROMPT": "0", "LC_ALL": "C", "GIT_AUTHOR_NAME": "bench",
           "GIT_AUTHOR_EMAIL": "bench@localhost", "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def run_git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, env=GIT_ENV, check=True, capture_output=True, text=True).stdout


def make_repo(top: Path, files: int) -> str:
    """``files`` small files in 50 directories (two levels), committed on main; answers the commit."""
    top.mkdir(parents=True)
    run_git(top, "init", "--quiet", "--initial-branch=main")
    per_directory = max(1, files // 50)
    for number in range(files):
        directory = top / f"pkg{number // per_directory // 10:02d}" / f"mod{number // per_directory % 10}"
        directory.mkdir(parents=True, exist_ok=True)
        (directory / f"file{number:05d}.py").write_text(f'"""File {number}."""\n\nVALUE = {number}\n')
    run_git(top, "add", "--all")
    run_git(top, "commit", "--quiet", "-m", "start")
    return run_git(top, "rev-parse", "HEAD").strip()


def plain_git(repo: Path, commit: str, where: Path, prefix: str, count: int) -> tuple[float, list[Path]]:
    """The baseline: ``git worktree add -b`` ``count`` times, one after the other; its ms and paths.
    ``where`` is the directory Switchboard makes its worktrees in, so that both sides allocate their
    files from the same part of the disk."""
    paths = [where / f"plain-{prefix}-{number}" for number in range(count)]
    began = time.perf_counter()
    for number, path in enumerate(paths):
        subprocess.run(["git", "worktree", "add", "--quiet", "-b", f"plain/{prefix}-{number}", str(path), commit],
                       cwd=repo, env=GIT_ENV, check=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - began) * 1000, paths


async def switchboard(services: Services, repo: Path, prefix: str, count: int) -> tuple[float, list[Path]]:
    """The contender: ``count`` worktree agents in one ``spawn_many``; its ms (the call) and worktrees."""
    agents = tuple(AgentSpec(type="worktree", name=f"{prefix}-{number}", cwd=str(repo), workspace="worktree")
                   for number in range(count))
    began = time.perf_counter()
    report = await services.spawner.spawn_many(SpawnRequest(agents=agents, max_concurrency=count, batch_size=count))
    elapsed = (time.perf_counter() - began) * 1000
    not_ready = [f"{entry.name}: {entry.status} {entry.error or ''}" for entry in report.entries
                 if entry.status != "ready"]
    if not_ready:
        raise SystemExit(f"worktree agents not ready: {'; '.join(not_ready)}")
    workspaces = await services.supervisor.workspaces.of_agents([entry.agent_id for entry in report.entries])
    return elapsed, [Path(workspaces[entry.agent_id].path) for entry in report.entries]


def check_worktrees(paths: list[Path], sample: str) -> None:
    missing = [str(path) for path in paths if not (path / ".git").is_file() or not (path / sample).is_file()]
    if missing:
        raise SystemExit(f"worktrees missing after the call: {', '.join(missing)}")


def set_aside(repo: Path, paths: list[Path], trash: Path) -> None:
    """Every worktree of the round out of git's sight (moved to ``trash``, its record pruned), and
    every branch but main deleted. The files are deleted only after the last round (`delete_all`): on
    ext4 without a journal (this VM's disk), a new inode is allocated only after a scan past every
    free inode deleted in the last half minute or so, and deleting the 100,000 files of a round
    between rounds made the next round's checkouts several times slower (measured: 1.4-2.0 s for
    plain git, 6 s for Switchboard, in the same rounds)."""
    trash.mkdir(exist_ok=True)
    for path in paths:
        path.rename(trash / path.name)
    run_git(repo, "worktree", "prune")
    branches = [name for name in run_git(repo, "branch", "--format=%(refname:short)").split() if name != "main"]
    if branches:
        run_git(repo, "branch", "--quiet", "-D", *branches)


def delete_all(trash: Path, processes: int = 8) -> float:
    """Deletes the rounds' worktrees, ``processes`` ``rm -rf`` at once (by now the files' metadata is
    mostly out of memory, and one deletion at a time mostly waits for the disk); answers the seconds."""
    began = time.perf_counter()
    entries = sorted(trash.iterdir()) if trash.exists() else []
    running = [subprocess.Popen(["rm", "-rf", "--", *map(str, entries[start::processes])])
               for start in range(min(processes, len(entries)))]
    for process in running:
        process.wait()
    return time.perf_counter() - began


PATCHED = (git_module, agent_workspaces)


class GitTimes:
    """The time Switchboard's git processes take, by subcommand (`server.workspaces.git.git` wrapped)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self.calls: dict[str, int] = {}
        self._original = git_module.git

    def __enter__(self) -> GitTimes:
        original = self._original

        async def timed(cwd: Path, *args: str, **options: Any) -> tuple[int, str, str]:
            began = time.perf_counter()
            try:
                return await original(cwd, *args, **options)
            finally:
                name = " ".join(args[:2]) if args[:1] == ("worktree",) else args[0]
                self.ms[name] = self.ms.get(name, 0.0) + (time.perf_counter() - began) * 1000
                self.calls[name] = self.calls.get(name, 0) + 1

        for module in PATCHED:  # each module calls git by its own global name
            vars(module)["git"] = timed
        return self

    def __exit__(self, *_: object) -> None:
        for module in PATCHED:
            vars(module)["git"] = self._original

    def clear(self) -> None:
        self.ms.clear()
        self.calls.clear()


async def worktree_bench(workdir: Path, files: int, count: int, rounds: int) -> None:
    repo, trash = workdir / "repo", workdir / "trash"
    began = time.perf_counter()
    commit = await asyncio.to_thread(make_repo, repo, files)
    sample = run_git(repo, "ls-files").splitlines()[-1]
    made_s = time.perf_counter() - began
    worktree = AgentType(runtime="exec", command=(TRUE,), workspace="worktree", sandbox=False)
    settings = Settings(data_dir=workdir / "data", agent_types={"worktree": worktree}, agent_roots=[workdir],
                        agent_max_per_call=1000, memory_sqlite_synchronous="full")
    plain_ms: list[float] = []
    switchboard_ms: list[float] = []
    git_ms: list[dict[str, float]] = []
    git_calls: dict[str, int] = {}
    async with open_services(settings) as services:
        where = services.supervisor.workspaces.path_for("x").parent
        with GitTimes() as times:
            # Round 0 warms up (page cache, the databases, the server's first commits) with 2 agents; not
            # counted. Then the two sides take turns at going first.
            for number in range(rounds + 1):
                size = count if number else 2
                made: list[Path] = []
                for which in ("plain", "switchboard") if number % 2 else ("switchboard", "plain"):
                    if which == "plain":
                        elapsed, paths = await asyncio.to_thread(plain_git, repo, commit, where, f"r{number}", size)
                        if number:
                            plain_ms.append(elapsed)
                    else:
                        times.clear()
                        elapsed, paths = await switchboard(services, repo, f"r{number}", size)
                        if number:
                            switchboard_ms.append(elapsed)
                            git_ms.append(dict(times.ms))
                            git_calls = dict(times.calls)
                    check_worktrees(paths, sample)
                    made += paths
                await asyncio.gather(*(services.supervisor.terminate(agent.id, 2.0)
                                       for agent in services.supervisor.live_agents()))
                await asyncio.to_thread(set_aside, repo, made, trash)
    deleted_s = await asyncio.to_thread(delete_all, trash)

    baseline, contender = statistics.median(plain_ms), statistics.median(switchboard_ms)
    paired = statistics.median(mine / theirs for mine, theirs in zip(switchboard_ms, plain_ms, strict=True))
    middle = sorted(range(rounds), key=lambda index: switchboard_ms[index])[rounds // 2]
    in_git = sum(git_ms[middle].values())
    spent = ", ".join(f"{name} {git_calls.get(name, 0)}x {ms:.0f} ms"
                      for name, ms in sorted(git_ms[middle].items(), key=lambda item: -item[1]))
    print(f"worktrees: {count} agents on a repository of {files:,} files (made in {made_s:.1f} s), "
          f"median of {rounds} rounds")
    print(f"  {'':<48} {'plain git':>12} {'Switchboard':>14} {'ratio':>9}")
    print(f"  {f'{count} worktrees (git worktree add -b / spawn_many)':<48} {baseline:9.1f} ms "
          f"{contender:11.1f} ms {contender / baseline:8.2f}x (contender/baseline; lower is better; aim <= 1.20x)")
    print(f"  {'per agent':<48} {baseline / count:9.1f} ms {contender / count:11.1f} ms "
          f"{(contender - baseline) / count:+8.1f} ms over")
    label = "median of each round's own ratio"
    print(f"  {label:<48} {'':>12} {'':>14} {paired:8.2f}x")
    print(f"  rounds (ms): plain {', '.join(f'{ms:.0f}' for ms in plain_ms)}; "
          f"switchboard {', '.join(f'{ms:.0f}' for ms in switchboard_ms)}")
    print(f"  Switchboard's middle round, {switchboard_ms[middle]:.0f} ms: {in_git:.0f} ms in git ({spent}), "
          f"{switchboard_ms[middle] - in_git:.0f} ms outside git")
    print(f"  ({len(plain_ms + switchboard_ms) * count + 4} worktrees' files deleted after the last round in "
          f"{deleted_s:.1f} s)")


async def start_and_wait(argv: list[str], cwd: Path) -> float:
    began = time.perf_counter()
    process = await asyncio.create_subprocess_exec(*argv, cwd=cwd, stdin=asyncio.subprocess.DEVNULL,
                                                   stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
    code = await process.wait()
    if code != 0:
        raise SystemExit(f"{argv[0]} ... exited with code {code}")
    return (time.perf_counter() - began) * 1000


async def spawn_one(services: Services, type_name: str, number: int) -> float:
    report = await services.spawner.spawn_many(SpawnRequest(
        agents=(AgentSpec(type=type_name, name=f"{type_name}-{number}", task="x"),), wait=True))
    (entry,) = report.entries
    if entry.status != "completed":
        raise SystemExit(f"{type_name} agent {entry.status}: {entry.error}")
    return report.wall_ms


def row(label: str, plain: list[float], boxed: list[float]) -> None:
    p50, b50 = statistics.median(plain), statistics.median(boxed)
    print(f"  {label:<36} {p50:7.2f} / {percentile(plain, 0.9):7.2f} ms {b50:7.2f} / {percentile(boxed, 0.9):7.2f} ms "
          f"{b50 - p50:+7.2f} ms  {b50 / p50:5.2f}x")


async def sandbox_bench(workdir: Path, starts: int, spawns: int) -> None:
    # As an exec agent's sandbox (`AgentWorkspaces.sandbox_for`): its workdir writable, the data
    # directory hidden but for the agent's state directory, shown read-only again.
    data, work = workdir / "data", workdir / "work"
    state = data / "agents" / "agent-bench"
    for directory in (work, state):
        directory.mkdir(parents=True)
    sandbox = Sandbox(writable=(work,), hidden=(data,), readable=(state,))
    plain_argv, boxed_argv = [TRUE], sandbox.wrap([TRUE], work)
    for _ in range(5):  # warm-up
        await start_and_wait(plain_argv, work)
        await start_and_wait(boxed_argv, work)
    plain: list[float] = []
    boxed: list[float] = []
    for _ in range(starts):
        plain.append(await start_and_wait(plain_argv, work))
        boxed.append(await start_and_wait(boxed_argv, work))

    types = {"open": AgentType(runtime="exec", command=(TRUE,), sandbox=False),
             "boxed": AgentType(runtime="exec", command=(TRUE,), sandbox=True)}
    settings = Settings(data_dir=workdir / "spawn-data", agent_types=types, agent_roots=[workdir],
                        memory_sqlite_synchronous="full")
    open_ms: list[float] = []
    boxed_ms: list[float] = []
    async with open_services(settings) as services:
        await spawn_one(services, "open", -1)  # starts the watchdog, opens the databases
        await spawn_one(services, "boxed", -1)
        for number in range(spawns):
            open_ms.append(await spawn_one(services, "open", number))
            boxed_ms.append(await spawn_one(services, "boxed", number))
    print(f"sandbox: an exec agent's start with and without bubblewrap ({sandbox.bwrap})")
    print(f"  {'p50 / p90':<36} {'unsandboxed':>20} {'sandboxed':>20} {'difference':>10}  ratio")
    row(f"start + wait {TRUE} ({starts} runs)", plain, boxed)
    row(f"spawn_many, 1 agent, wait ({spawns} runs)", open_ms, boxed_ms)
    print("  (aim: the sandbox adds under 10 ms per agent)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=5000, help="files in the repository")
    parser.add_argument("--agents", type=int, default=10, help="worktree agents per round")
    parser.add_argument("--rounds", type=int, default=5, help="measured rounds of each (after one warm-up)")
    parser.add_argument("--starts", type=int, default=200, help="process starts of each, sandboxed and not")
    parser.add_argument("--spawns", type=int, default=30, help="spawn calls of each, sandboxed and not")
    arguments = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    print(f"machine: {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"{run_git(Path.cwd(), 'version').strip()}, load average {os.getloadavg()[0]:.2f}")
    with tempfile.TemporaryDirectory(prefix="switchboard-workspace-bench-") as tmp:
        asyncio.run(worktree_bench(Path(tmp), arguments.files, arguments.agents, arguments.rounds))
    if find_bwrap() is None:
        print("sandbox: skipped, bubblewrap (bwrap) is not installed")
        return
    with tempfile.TemporaryDirectory(prefix="switchboard-sandbox-bench-") as tmp:
        asyncio.run(sandbox_bench(Path(tmp), arguments.starts, arguments.spawns))


if __name__ == "__main__":
    main()
