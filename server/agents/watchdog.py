"""The agent watchdog: a tiny process that ends every watched agent process group once its server is gone.

A server that is SIGKILLed runs no clean-up, and an agent's own tool processes (a Claude Code CLI
keeps running its Bash tool when its host dies) do not notice. So each server starts one watchdog,
in a session of its own (a terminal's Ctrl-C does not reach it), whose stdin is a pipe whose write
end only the server holds. The server writes one line per change:

    watch <pgid> <start_time>    a group to end if the server goes away; start_time identifies its leader
    forget <pgid>                the group has ended (or is handed over); leave it alone

End of input means the server has exited, however it exited: the watchdog then sends SIGTERM and
SIGCONT to every watched group that is still its own (see `group_survives`), waits ``--grace-s``,
SIGKILLs what is left, waits briefly for that to take, and exits. SIGTERM to the watchdog itself
does the same at once, since a watchdog that just stopped would leave the groups unprotected.
SIGINT, SIGHUP and SIGPIPE are ignored. A line cut short by the server's death is not acted on.

The server side is `Watchdog`. Run as ``python -m server.agents.watchdog``, this module imports
the standard library only and not asyncio (the server side imports it where used), so it starts fast.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import select
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from server.agents.process_groups import (
    AGENT_TAG_VARIABLE,
    ProcessIdentity,
    group_survives,
    signal_group,
    signal_processes,
    tagged_processes,
)
from server.errors import InvalidArgument, Unavailable

if TYPE_CHECKING:
    import asyncio
    from types import TracebackType

# A fixed name: run with -m, __name__ is "__main__".
log = logging.getLogger("server.agents.watchdog")

DEFAULT_GRACE_S = 2.0
# Written once on stdout when the signal dispositions are in place, so `Watchdog.start` knows it runs.
READY = b"ready\n"
# How often the watchdog drops groups that have ended without a `forget`: the shorter the time it
# holds an ended group's number, the smaller the chance that the number is reused meanwhile.
SWEEP_S = 5.0
POLL_S = 0.02
# After SIGKILL only a process in uninterruptible sleep can linger; the watchdog waits this long.
KILL_WAIT_S = 2.0
READ_BYTES = 65536
# The server's lines are a few dozen bytes; more without a newline is a bug, not a line.
MAX_LINE_BYTES = 4096
# `Watchdog.close` waits this long beyond the watchdog's own grace and kill wait before killing it.
CLOSE_MARGIN_S = 5.0
START_TIMEOUT_S = 10.0


class Watchdog:
    """The server's handle on its watchdog process: start one per server, `watch` each agent group, `close` at the end.

    Made by `start`. `watch` and `forget` never block and never raise because the watchdog died: that
    is logged once, as soon as it happens. Usable as an async context manager (closes on exit).
    """

    def __init__(self, process: asyncio.subprocess.Process, exited: asyncio.Future[int], grace_s: float) -> None:
        self._process = process
        self._exited = exited
        self._grace_s = grace_s
        self._closed = False
        self._warned = False
        exited.add_done_callback(self._on_exit)

    @classmethod
    async def start(cls, *, grace_s: float, python: str = sys.executable, start_timeout_s: float = START_TIMEOUT_S) -> Watchdog:
        """Start the watchdog with interpreter ``python`` and wait until it is ready.

        ``grace_s`` is how long the watchdog lets groups act on SIGTERM before it SIGKILLs them.
        Raises `Unavailable` when the watchdog cannot be started or does not report ready within
        ``start_timeout_s``.
        """
        import asyncio

        if grace_s < 0:
            raise InvalidArgument(f"the watchdog grace period must be >= 0 s, got {grace_s}")
        try:
            process = await asyncio.create_subprocess_exec(
                python, "-m", "server.agents.watchdog", "--grace-s", repr(grace_s),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                cwd=_source_root(),
                # Its own session: a terminal's Ctrl-C or hang-up for the server's group does not reach it.
                start_new_session=True,
                # The pipe's write end is non-inheritable (PEP 446) and no other descriptor is passed on,
                # so the server stays the only holder and its exit is the watchdog's end of input.
                close_fds=True,
            )
        except OSError as error:
            raise Unavailable(f"cannot start the agent watchdog with {python}: {error}") from error
        try:
            assert process.stdout is not None
            try:
                ready = await asyncio.wait_for(process.stdout.readline(), start_timeout_s)
            except TimeoutError:
                ready = b""
            if ready != READY:
                _kill(process)
                code = await process.wait()
                raise Unavailable(f"the agent watchdog did not start (exit code {code}); its error is in the server's stderr")
        except BaseException:
            _kill(process)
            raise
        return cls(process, asyncio.ensure_future(process.wait()), grace_s)

    @property
    def pid(self) -> int:
        """The watchdog's pid."""
        return self._process.pid

    def watch(self, pgid: int, start_time: int, tag: str | None = None) -> None:
        """Have the watchdog end group ``pgid`` if the server goes away; ``start_time`` is its leader's (pid == pgid).

        Send it as soon as the group's leader is spawned: a group the watchdog was never told of is
        left for the next server start to reap.
        """
        if pgid < 2 or start_time < 0:
            raise InvalidArgument(f"not an agent group: pgid {pgid}, leader start time {start_time}")
        if tag is not None and (not tag or not tag.isprintable() or any(char.isspace() for char in tag)):
            raise InvalidArgument(f"an agent tag is one word of printable characters, got {tag!r}")
        self._send(f"watch {pgid} {start_time}{f' {tag}' if tag else ''}\n")

    def forget(self, pgid: int) -> None:
        """Have the watchdog leave group ``pgid`` alone from now on (it has ended, or someone else ends it)."""
        self._send(f"forget {pgid}\n")

    async def close(self) -> None:
        """Close the pipe, so the watchdog ends every group still watched and exits, and wait for it.

        Waits at most the grace period plus a margin; a watchdog that overstays is killed. Idempotent.
        """
        import asyncio

        if self._closed:
            return
        self._closed = True
        if self._process.stdin is not None:
            # Lines still buffered are written before the end of input.
            self._process.stdin.close()
        bound_s = self._grace_s + KILL_WAIT_S + CLOSE_MARGIN_S
        try:
            code = await asyncio.wait_for(asyncio.shield(self._exited), bound_s)
        except TimeoutError:
            log.error("the agent watchdog (pid %d) did not exit within %.1f s of close; killing it", self.pid, bound_s)
            _kill(self._process)
            code = await self._exited
        if code != 0:
            log.warning("the agent watchdog (pid %d) exited with code %d", self.pid, code)

    async def __aenter__(self) -> Watchdog:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.close()

    def _send(self, line: str) -> None:
        stdin = self._process.stdin
        if self._closed or stdin is None or stdin.is_closing() or self._process.returncode is not None:
            self._warn_once(f"the agent watchdog is not running; not sent: {line.strip()}")
            return
        # A short write to a pipe: written at once, or buffered by the transport if the pipe is full.
        stdin.write(line.encode())

    def _on_exit(self, exited: asyncio.Future[int]) -> None:
        if not self._closed and not exited.cancelled():
            self._warn_once(
                f"the agent watchdog (pid {self.pid}) exited with code {exited.result()}: "
                "agent groups are no longer ended if the server is killed"
            )

    def _warn_once(self, message: str) -> None:
        if not self._warned:
            self._warned = True
            log.error("%s", message)


def _source_root() -> str:
    """The directory holding the `server` package.

    As the watchdog's working directory it comes first on the watchdog's sys.path (``-m``), so the
    watchdog runs this very code, not another installed copy of it.
    """
    return os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _kill(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            process.kill()


# The watchdog process.


def main(argv: Sequence[str] | None = None) -> int:
    """Run the watchdog on stdin until end of input (or SIGTERM), then end the groups still watched."""
    parser = argparse.ArgumentParser(prog="python -m server.agents.watchdog", description=main.__doc__)
    parser.add_argument("--grace-s", type=float, default=DEFAULT_GRACE_S, help="seconds between SIGTERM and SIGKILL")
    args = parser.parse_args(argv)
    if args.grace_s < 0:
        parser.error("--grace-s must be >= 0")
    logging.basicConfig(level=logging.INFO, format="switchboard watchdog[%(process)d]: %(message)s", stream=sys.stderr)
    wake_fd = _hold_signals()
    _announce_ready()
    # Owned here, not by _follow: should reading ever fail in an unforeseen way, the groups watched
    # so far are still ended, since a watchdog that just dies would leave them running.
    watched: dict[int, Watched] = {}
    try:
        reason = _follow(sys.stdin.fileno(), wake_fd, watched)
    except Exception:
        log.exception("stopped following the server")
        reason = "watchdog error"
    _end_groups(list(watched.values()), args.grace_s, reason)
    return 0


def _hold_signals() -> int:
    """Ignore the signals that would end the watchdog before its job; route SIGTERM to a descriptor select() watches."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGPIPE):
        signal.signal(sig, signal.SIG_IGN)
    wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
    # A Python-level handler is what makes the interpreter write to the wakeup descriptor; the
    # answer to SIGTERM is given in the main loop, never from inside a handler.
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
    return wake_r


def _announce_ready() -> None:
    # An error means the server is already gone: its end of input follows.
    with contextlib.suppress(OSError):
        os.write(sys.stdout.fileno(), READY)
    # Nothing else goes to stdout; /dev/null in its place so no later write can block or fail.
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)


@dataclass(frozen=True, slots=True)
class Watched:
    """A watched group: its leader, and the agent tag its stray tools carry (see `tagged_processes`)."""

    leader: ProcessIdentity
    tag: str | None


def _follow(fd: int, wake_fd: int, watched: dict[int, Watched]) -> str:
    """Apply the lines read from ``fd`` to ``watched`` (pgid -> leader) until end of input or SIGTERM; why it stopped."""
    own_group = os.getpgrp()
    pending = b""
    next_sweep = time.monotonic() + SWEEP_S
    while True:
        readable, _, _ = select.select([fd, wake_fd], [], [], max(0.0, next_sweep - time.monotonic()))
        if wake_fd in readable:
            return "SIGTERM"
        if fd in readable:
            try:
                chunk = os.read(fd, READ_BYTES)
            except OSError as error:  # not a pipe we can read any more: act as if the server were gone
                return f"stdin error ({error.strerror})"
            if not chunk:
                return "server gone"
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                _apply(line, watched, own_group)
            if len(pending) > MAX_LINE_BYTES:
                log.warning("dropped %d bytes without a newline", len(pending))
                pending = b""
        if time.monotonic() >= next_sweep:
            ended = [pgid for pgid, entry in watched.items() if not group_survives(entry.leader)]
            strays = _tags_running([watched[pgid] for pgid in ended])
            for pgid in ended:
                if watched[pgid].tag not in strays:
                    del watched[pgid]
            next_sweep = time.monotonic() + SWEEP_S


def _apply(line: bytes, watched: dict[int, Watched], own_group: int) -> None:
    try:
        match line.split():
            case [b"watch", pgid, start_time, *tag] if len(tag) <= 1:
                leader = ProcessIdentity(int(pgid), int(start_time))
                if leader.pid < 2 or leader.pid == own_group or leader.start_time < 0:
                    raise ValueError(line)
                watched[leader.pid] = Watched(leader, tag[0].decode() if tag else None)
            case [b"forget", pgid]:
                watched.pop(int(pgid), None)
            case _:
                raise ValueError(line)
    except ValueError:
        log.warning("ignored a malformed line: %r", line[:100])


def _end_groups(entries: list[Watched], grace_s: float, reason: str) -> None:
    """SIGTERM (and SIGCONT) the groups still running and their agents' stray tools, SIGKILL what is
    left after ``grace_s``, and wait for them briefly."""
    running = [entry.leader for entry in entries if group_survives(entry.leader)]
    tags = {entry.tag for entry in entries if entry.tag}
    strays = tagged_processes(tags)
    if not running and not strays:
        return
    for sig in (signal.SIGTERM, signal.SIGCONT):
        # TERM before CONT: a stopped process finds the TERM pending the moment it resumes.
        for leader in running:
            signal_group(leader.pid, sig)
        signal_processes(strays, sig)
    stubborn = _wait_for_end(running, tags, grace_s)
    for leader in stubborn:
        signal_group(leader.pid, signal.SIGKILL)
    stubborn_strays = tagged_processes(tags)
    signal_processes(stubborn_strays, signal.SIGKILL)
    stuck = _wait_for_end(stubborn, tags, KILL_WAIT_S)
    # Logged after acting: a write to a stderr nobody reads could block, and must not delay the job.
    log.info("%s: ended %d agent group(s) and %d stray tool process(es), %d group(s) and %d process(es) by SIGKILL",
             reason, len(running), len(strays), len(stubborn), len(stubborn_strays))
    if stuck:
        log.error("still running %.1f s after SIGKILL: groups %s", KILL_WAIT_S, [leader.pid for leader in stuck])


def _tags_running(entries: list[Watched]) -> set[str]:
    tags = {entry.tag for entry in entries if entry.tag}
    if not tags:
        return set()
    prefix = len(f"{AGENT_TAG_VARIABLE}=")
    running: set[str] = set()
    for pid in tagged_processes(tags):
        try:
            with open(f"/proc/{pid}/environ", "rb") as source:
                variables = source.read().split(b"\0")
        except OSError:
            continue
        running.update(variable[prefix:].decode() for variable in variables
                       if variable.startswith(f"{AGENT_TAG_VARIABLE}=".encode()))
    return running & tags


def _wait_for_end(leaders: list[ProcessIdentity], tags: set[str], timeout_s: float) -> list[ProcessIdentity]:
    """Poll until none of the groups survives and no tagged process runs, or ``timeout_s`` passes; the
    groups still running."""
    deadline = time.monotonic() + timeout_s
    remaining = [leader for leader in leaders if group_survives(leader)]
    while (remaining or (tags and tagged_processes(tags))) and time.monotonic() < deadline:
        # This process has nothing else to do: a blocking sleep is the simplest poll.
        time.sleep(POLL_S)
        remaining = [leader for leader in remaining if group_survives(leader)]
    return remaining


if __name__ == "__main__":
    sys.exit(main())
