"""Process groups of agents on Linux: who a pid is, whether its group still runs, and how to end it.

Every agent runs as the leader of its own session and process group (pgid == pid of its top
process), so its tool processes can be signalled together with ``killpg``. Two Linux facts carry
the safety of everything here:

- A pid is identified by the pair (pid, start time), the start time being field 22 of
  ``/proc/<pid>/stat`` in clock ticks since boot. A bare pid may have been reused; the pair may not.
- The kernel keeps a pid number allocated while any process still has it as its pgid, so a group
  with members can never be taken over by a new process with the same number: when the process at
  ``pgid`` has another start time, the old group has emptied.

Zombies (exited, not yet reaped by their parent) still count as group members for ``killpg`` but
run no code, so "the group is empty" here means it has no member that is not a zombie. That lets
`end_group` return as soon as the processes exit, even while the caller has not reaped the leader.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Collection, Iterator
from dataclasses import dataclass
from typing import Literal, Protocol

from server.errors import InvalidArgument, Unavailable

log = logging.getLogger(__name__)

GroupEnding = Literal["gone", "terminated", "killed", "survived"]

PROC = "/proc"
# A stat line is a few hundred bytes; the command name inside it is at most 64.
STAT_READ_BYTES = 4096
# Fields after the ")" that closes the command name: field 3 (state) is index 0.
STATE_INDEX = 0
PGRP_INDEX = 5 - 3
START_TIME_INDEX = 22 - 3
# "Z" zombie and "X" dead: the process has exited and runs no code any more.
EXITED_STATES = frozenset({"Z", "X"})
# A process's /proc entry that vanished, or that is another user's: skipped by a scan.
_UNREADABLE = frozenset({errno.ENOENT, errno.ESRCH, errno.EACCES, errno.EPERM})
# After SIGKILL only a process stuck in uninterruptible sleep (D) can linger; wait this long for it.
KILL_WAIT_S = 5.0


class StrayFinder(Protocol):
    """Finds the running processes tagged with agent ids (`tagged_scan.SharedTaggedScan` shares
    one /proc scan among concurrent callers)."""

    async def find(self, tags: Collection[str]) -> list[int]: ...


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process as the pair that cannot be reused: its pid and its start time (clock ticks since boot)."""

    pid: int
    start_time: int


@dataclass(frozen=True, slots=True)
class _Stat:
    state: str
    pgrp: int
    start_time: int


def identify(pid: int) -> ProcessIdentity | None:
    """The identity of the process now running as ``pid``; None when there is none or it has exited (zombie)."""
    stat = _read_stat(pid)
    if stat is None or _has_exited(pid, stat):
        return None
    return ProcessIdentity(pid, stat.start_time)


def is_same_process(identity: ProcessIdentity) -> bool:
    """True when the process ``identity`` names has not exited: its pid runs with the same start time."""
    stat = _read_stat(identity.pid)
    return stat is not None and stat.start_time == identity.start_time and not _has_exited(identity.pid, stat)


def group_exists(pgid: int) -> bool:
    """True when process group ``pgid`` has any member, zombies included (what ``killpg`` sees).

    A group whose members all belong to another user (EPERM) exists too: it is just not ours to signal.
    """
    _check_pgid(pgid)
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def group_is_running(pgid: int) -> bool:
    """True when process group ``pgid`` has a member that has not exited (zombies do not count)."""
    quick = _quick_running(pgid)
    return quick if quick is not None else _any_running_member(pgid)


def running_members(pgid: int) -> list[int]:
    """The pids in process group ``pgid`` that have not exited, found by a scan of /proc."""
    return list(_running_members(pgid))


def process_group_of(pid: int) -> int | None:
    """The process group of ``pid`` while it runs; None once it has exited."""
    stat = _read_stat(pid)
    return None if stat is None or _has_exited(pid, stat) else stat.pgrp


async def end_processes(pids: Collection[int], grace_s: float, poll_s: float = 0.05) -> None:
    """SIGTERM (and SIGCONT) to each of ``pids``, then SIGKILL to those still running after ``grace_s``."""
    import asyncio  # see _is_running_off_loop

    for sig in (signal.SIGTERM, signal.SIGCONT):
        signal_processes(pids, sig)
    deadline, delay = time.monotonic() + grace_s, min(0.001, poll_s)
    while (running := [pid for pid in pids if process_group_of(pid) is not None]) and time.monotonic() < deadline:
        await asyncio.sleep(delay)
        delay = min(delay * 2, poll_s)
    signal_processes(running, signal.SIGKILL)


def group_survives(leader: ProcessIdentity) -> bool:
    """True when the group that ``leader`` leads (pgid == leader.pid) still has a running member.

    The leader may have exited while members remain: that is still its group, since the kernel does
    not reuse a pid that is some group's pgid. But when a process with another start time holds the
    pid, the number was reused, so the old group emptied and the one there now is someone else's.
    """
    stat = _read_stat(leader.pid)
    if stat is not None and stat.start_time != leader.start_time:
        return False
    return group_is_running(leader.pid)


def signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to every member of process group ``pgid``; True when at least one member got it.

    False, never an exception, when the group is gone; also False (logged) when no member may be
    signalled by this user (EPERM: say only a setuid program is left in it).
    """
    _check_pgid(pgid)
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:
        log.warning("process group %d: not permitted to send signal %d to any of its members", pgid, sig)
        return False
    return True


async def end_group(pgid: int, grace_s: float, *, tag: str | None = None, scan: StrayFinder | None = None,
                    poll_s: float = 0.05, kill_wait_s: float = KILL_WAIT_S) -> GroupEnding:
    """End process group ``pgid``: SIGTERM (and SIGCONT), then SIGKILL what is left after ``grace_s``.

    With ``tag`` (an agent id), processes carrying it that left the group (see `tagged_processes`)
    get the same signals and are waited for too; ``scan`` shares the /proc scans that finds them with
    other callers (without it, each look is a scan of its own).

    Returns "gone" when nothing was running, "terminated" when everything ended within the grace
    period, "killed" when SIGKILL was needed, "survived" when something still ran ``kill_wait_s``
    after SIGKILL (only a process in uninterruptible sleep can take long; logged). Polls every
    ``poll_s`` with asyncio.sleep, so the event loop never blocks. Zombies do not count: the caller
    may reap the leader before or after this returns.
    """
    import asyncio  # see _is_running_off_loop

    tags = (tag,) if tag is not None else ()

    async def find_strays() -> list[int]:
        if not tags:
            return []
        return await scan.find(tags) if scan is not None else await asyncio.to_thread(tagged_processes, tags)

    strays = await find_strays()
    if not await _is_running_off_loop(pgid) and not strays:
        return "gone"
    # TERM before CONT: a stopped process then finds the TERM pending the moment it resumes, and a
    # handler for TERM only runs once the process runs again.
    for sig in (signal.SIGTERM, signal.SIGCONT):
        signal_group(pgid, sig)
        signal_processes(strays, sig)
    if await _wait_until_ended(pgid, find_strays, grace_s, poll_s):
        return "terminated"
    signal_group(pgid, signal.SIGKILL)
    signal_processes(await find_strays(), signal.SIGKILL)
    if not await _wait_until_ended(pgid, find_strays, kill_wait_s, poll_s):
        members = running_members(pgid)
        log.warning("process group %d still has running members %s %.1f s after SIGKILL", pgid, members, kill_wait_s)
        return "survived"
    return "killed"


def kill_leftover(identity: ProcessIdentity) -> bool:
    """SIGKILL the group led by ``identity`` if that very process is still there; True when something was killed.

    For start-up reaping of agents a previous server left behind. A pid now held by another process
    (different start time) is never signalled. A leader that has exited (zombie) still pins its pid,
    so its group's remaining members are killed too; a leader that is gone entirely is not enough to
    go on, since its pid may since have been reused for an unrelated group.

    Start times count from boot, so an identity only means something within the boot it was taken
    in: store `boot_id()` with it and do not reap identities from another boot.
    """
    _check_pgid(identity.pid)
    stat = _read_stat(identity.pid)
    if stat is None or stat.start_time != identity.start_time:
        return False
    if not group_is_running(identity.pid):
        return False
    return signal_group(identity.pid, signal.SIGKILL)


# Every agent process carries its agent's id in this variable, and so does whatever it starts.
AGENT_TAG_VARIABLE = "SWITCHBOARD_AGENT_ID"


def tagged_processes(tags: Collection[str]) -> list[int]:
    """Running processes whose environment carries ``SWITCHBOARD_AGENT_ID=<tag>`` for one of ``tags``.

    An agent's tools may leave its process group: Claude Code runs each Bash command in a session
    of its own, so ``killpg`` on the CLI's group misses them, and once the CLI is gone nothing links
    them to it by parentage. They still carry the agent's id in their environment (inherited). The
    scan reads every process's environ: about as costly as a scan of stat, so keep it off the loop
    (`tagged_scan.SharedTaggedScan` shares one scan among concurrent callers).
    """
    return sorted(pid for pids in tagged_processes_by_tag(tags).values() for pid in pids)


def tagged_processes_by_tag(tags: Collection[str]) -> dict[str, list[int]]:
    """`tagged_processes`, split by tag: each of ``tags`` that some running process carries -> its pids."""
    prefix = f"{AGENT_TAG_VARIABLE}=".encode()
    wanted = {tag.encode() for tag in tags}
    found: dict[str, list[int]] = {}
    if not wanted:
        return found
    own = os.getpid()
    with os.scandir(PROC) as entries:
        for entry in entries:
            if not entry.name.isdigit() or int(entry.name) == own:
                continue
            try:
                with open(f"{PROC}/{entry.name}/environ", "rb") as source:
                    environ = source.read()
            except OSError as error:
                if error.errno in _UNREADABLE:  # gone, or not ours to read
                    continue
                raise  # EMFILE and the like: a scan that skipped processes would say they are gone
            for variable in environ.split(b"\0"):
                if variable.startswith(prefix) and variable[len(prefix):] in wanted:
                    pid = int(entry.name)
                    stat = _read_stat(pid)
                    if stat is not None and not _has_exited(pid, stat):
                        found.setdefault(variable[len(prefix):].decode(), []).append(pid)
                    break
    return found


def signal_processes(pids: Collection[int], sig: int) -> None:
    """Send ``sig`` to each of ``pids``, ignoring the ones that are gone."""
    for pid in pids:
        if pid > 1 and pid != os.getpid():
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, sig)


def boot_id() -> str:
    """The kernel's id of the current boot: identities taken under another boot id name nothing now."""
    with open(f"{PROC}/sys/kernel/random/boot_id") as source:
        return source.read().strip()


async def _wait_until_ended(pgid: int, find_strays: Callable[[], Awaitable[list[int]]], timeout_s: float,
                            poll_s: float) -> bool:
    import asyncio  # see _is_running_off_loop

    deadline = time.monotonic() + timeout_s
    # Most processes die within a millisecond or two of SIGTERM: look again soon, then less often.
    delay = min(0.001, poll_s)
    while await _is_running_off_loop(pgid) or await find_strays():
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return False
        await asyncio.sleep(min(delay, remaining))
        delay = min(delay * 2, poll_s)
    return True


async def _is_running_off_loop(pgid: int) -> bool:
    # Imported here, not at module level: the watchdog process imports this module and starts faster
    # without asyncio; by the time a coroutine runs, asyncio is loaded and this is a dict lookup.
    import asyncio

    quick = _quick_running(pgid)
    # A scan of /proc reads every process's stat (about 12 ms for 1,000 processes): off the loop.
    return quick if quick is not None else await asyncio.to_thread(_any_running_member, pgid)


def _quick_running(pgid: int) -> bool | None:
    """Whether group ``pgid`` runs, when that is known without a scan of /proc; else None."""
    if not group_exists(pgid):
        return False
    leader = _read_stat(pgid)
    if leader is not None and leader.pgrp == pgid and not _has_exited(pgid, leader):
        return True
    # Only the leader has exited or left: the members killpg still sees may all be zombies.
    return None


def _any_running_member(pgid: int) -> bool:
    return next(_running_members(pgid), None) is not None


def _running_members(pgid: int) -> Iterator[int]:
    with os.scandir(PROC) as entries:
        for entry in entries:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            stat = _read_stat(pid)
            if stat is not None and stat.pgrp == pgid and not _has_exited(pid, stat):
                yield pid


def _check_pgid(pgid: int) -> None:
    # killpg(0) is the caller's own group and killpg(1) init's: a bug upstream must not turn into either.
    if pgid < 2 or pgid == os.getpgrp():
        raise InvalidArgument(f"refusing to signal process group {pgid}: not an agent's group")


def _read_stat(pid: int) -> _Stat | None:
    try:
        fd = os.open(f"{PROC}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        _require_proc()
        return None
    try:
        data = os.read(fd, STAT_READ_BYTES)
    except ProcessLookupError:  # exited and was reaped between the open and the read
        return None
    finally:
        os.close(fd)
    # The command name sits in parentheses and may itself hold spaces and ")"; nothing after it can.
    fields = data[data.rindex(b")") + 2 :].split()
    return _Stat(fields[STATE_INDEX].decode(), int(fields[PGRP_INDEX]), int(fields[START_TIME_INDEX]))


def _has_exited(pid: int, stat: _Stat) -> bool:
    if stat.state not in EXITED_STATES:
        return False
    # A process whose main thread ended while other threads run shows "Z" too; it has not exited.
    try:
        return len(os.listdir(f"{PROC}/{pid}/task")) <= 1
    except OSError as error:
        if error.errno in (errno.ENOENT, errno.ESRCH):
            return True
        raise


def _require_proc() -> None:
    if not os.path.exists(f"{PROC}/self/stat"):
        raise Unavailable(f"agent process groups are tracked through {PROC}, which this system does not have (Linux only)")

