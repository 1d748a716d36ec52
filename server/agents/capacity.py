"""`RunningCap`: the server-wide bound on agents whose processes run at once.

Every running agent costs the server open files (an exec task: its stdout and stderr pipes and
its log; a claude session: three pipes, its log and the CLI's connections to the memory
endpoint) and memory (a Claude Code session is about 200 MB). Past the open-file limit, reading
/proc and starting processes fail with EMFILE, and an agent whose processes cannot be looked at
cannot be stopped either. So an agent takes a `Ticket` before its processes start and gives it
back once they are gone; beyond the cap it waits, ``queued``, first come first served.
"""

from __future__ import annotations

import asyncio
import resource
from collections import deque

from server.errors import SwitchboardError

# Open files one running agent holds in this server, with room to spare (an exec task holds 3,
# a claude session 4 to 6); and what the server keeps for itself (databases, HTTP clients, /proc).
FILES_PER_AGENT = 6
FILES_RESERVED = 128
# Resident memory of one Claude Code session.
MEMORY_PER_AGENT_BYTES = 200 * 1024 * 1024
MEMINFO = "/proc/meminfo"


class AtCapacity(SwitchboardError):
    """Every running-agent slot is taken and the caller asked not to queue."""

    code = "at_capacity"


def default_max_running() -> int:
    """The cap when ``SWITCHBOARD_AGENT_MAX_RUNNING`` is unset: what the open-file limit and the
    machine's memory both allow."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    by_files = (soft - FILES_RESERVED) // FILES_PER_AGENT if soft != resource.RLIM_INFINITY else 10_000
    by_memory = _available_memory() // MEMORY_PER_AGENT_BYTES
    return max(1, min(by_files, by_memory))


def _available_memory() -> int:
    try:
        with open(MEMINFO) as source:
            for line in source:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return 8 * 1024**3  # no /proc/meminfo: assume a modest machine


class Ticket:
    """One slot, held while an agent's processes run; `release` is idempotent."""

    def __init__(self, cap: RunningCap) -> None:
        self._cap: RunningCap | None = cap

    @property
    def held(self) -> bool:
        return self._cap is not None

    def release(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap._give_back()


class RunningCap:
    """At most ``limit`` tickets out at once; `take` waits in order for one."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.running = 0
        self._waiters: deque[asyncio.Future[Ticket]] = deque()

    @property
    def waiting(self) -> int:
        return sum(1 for waiter in self._waiters if not waiter.done())

    @property
    def free(self) -> int:
        return self.limit - self.running

    def try_take(self) -> Ticket | None:
        """A ticket now, or None when every slot is taken or others wait ahead."""
        if self.running >= self.limit or self.waiting:
            return None
        self.running += 1
        return Ticket(self)

    def try_take_many(self, count: int) -> list[Ticket] | None:
        """``count`` tickets now, or none at all."""
        if count > self.free or self.waiting:
            return None
        return [ticket for ticket in (self.try_take() for _ in range(count)) if ticket is not None]

    async def take(self) -> Ticket:
        """A ticket, once one is free and everyone who asked before has theirs (cancellable)."""
        ticket = self.try_take()
        if ticket is not None:
            return ticket
        waiter: asyncio.Future[Ticket] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                waiter.result().release()  # granted as it was cancelled: pass it on
            raise
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    def _give_back(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(Ticket(self))  # the slot passes straight on: running stays the same
                return
        self.running -= 1
