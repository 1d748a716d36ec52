"""Helpers for the process-group tests: real worker groups, and /proc read independently of the code under test."""

from __future__ import annotations

import asyncio
import contextlib
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from server.agents.process_groups import ProcessIdentity, group_survives

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
WORKER = FIXTURES / "group_worker.py"
ROOT = Path(__file__).resolve().parents[2]
DEADLINE_S = 10.0


def stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/<pid>/stat after the command name (field 3 first); None when there is no such process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return data[data.rindex(b")") + 2 :].decode().split()


def start_time(pid: int) -> int:
    fields = stat_fields(pid)
    assert fields is not None, f"no process {pid}"
    return int(fields[22 - 3])


def is_running(pid: int) -> bool:
    """True when ``pid`` exists and has not exited (a zombie has)."""
    fields = stat_fields(pid)
    return fields is not None and fields[0] not in ("Z", "X")


def running_in_group(pgid: int) -> list[int]:
    """Every pid of group ``pgid`` that has not exited, by a full scan of /proc."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            fields = stat_fields(int(name))
            if fields is not None and int(fields[5 - 3]) == pgid and fields[0] not in ("Z", "X"):
                found.append(int(name))
    return found


def wait_until(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``timeout_s`` (a safety net, not a timing assert)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.01)


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = DEADLINE_S) -> None:
    """`wait_until` for async tests: polls with asyncio.sleep so the event loop keeps running."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


async def eventually_async(condition: Callable[[], Awaitable[bool]], what: str, timeout_s: float = DEADLINE_S) -> None:
    """`eventually` for a condition that must itself await (a memory read, a flush)."""
    deadline = time.monotonic() + timeout_s
    while not await condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.01)


def read_line(stream: IO[bytes], timeout_s: float = DEADLINE_S) -> bytes:
    """One line from a child's stdout, failing instead of hanging if the child never writes it."""
    readable, _, _ = select.select([stream], [], [], timeout_s)
    assert readable, "the child printed nothing"
    return stream.readline()


def file_size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def assert_group_gone(pgid: int, pids: list[int], output: Path) -> None:
    """Nothing of group ``pgid`` runs, none of ``pids`` either, and the file its grandchild wrote has stopped growing."""
    assert running_in_group(pgid) == []
    assert [pid for pid in pids if is_running(pid)] == []
    size = file_size(output)
    assert size > 0
    # Not synchronisation: an observation window (20 of the grandchild's write periods) in which
    # the file would grow if anything still wrote to it.
    time.sleep(0.2)
    assert file_size(output) == size


@dataclass
class WorkerGroup:
    """A running group_worker.py: ``leader`` (pid == pgid) and its writing ``grandchild``."""

    process: subprocess.Popen[bytes]
    leader: int
    grandchild: int
    output: Path

    @property
    def pgid(self) -> int:
        return self.leader

    @property
    def identity(self) -> ProcessIdentity:
        return ProcessIdentity(self.leader, start_time(self.leader))

    def wait_writing(self) -> None:
        """Return once the grandchild has written, so the group demonstrably runs."""
        wait_until(lambda: file_size(self.output) > 0, "the grandchild writes")

    def assert_gone(self) -> None:
        """Nothing of the group runs any more, and its file has stopped growing."""
        assert_group_gone(self.pgid, [self.leader, self.grandchild], self.output)


class Workers:
    """Starts worker groups and kills whatever is left of them at teardown."""

    def __init__(self, directory: Path) -> None:
        self._directory = directory
        self._started: list[tuple[WorkerGroup, ProcessIdentity]] = []

    def spawn(self, on_term: str = "exit") -> WorkerGroup:
        output = self._directory / f"worker-{len(self._started)}.out"
        process = subprocess.Popen(
            [sys.executable, str(WORKER), str(output), "--on-term", on_term], stdout=subprocess.PIPE, start_new_session=True
        )
        assert process.stdout is not None
        leader, grandchild = (int(pid) for pid in read_line(process.stdout).split())
        group = WorkerGroup(process, leader, grandchild, output)
        self._started.append((group, group.identity))
        group.wait_writing()
        return group

    def cleanup(self) -> None:
        for group, identity in self._started:
            kill_groups([identity])
            with contextlib.suppress(ProcessLookupError):
                group.process.kill()
            group.process.wait(timeout=DEADLINE_S)
            if group.process.stdout is not None:
                group.process.stdout.close()


def kill_groups(leaders: Iterable[ProcessIdentity]) -> None:
    """SIGKILL each group still running under the same leader identity (never a reused pid's group)."""
    for leader in leaders:
        if group_survives(leader):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(leader.pid, signal.SIGKILL)
