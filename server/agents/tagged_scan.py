"""One /proc scan for many callers: finding the processes tagged with agent ids, shared.

Every task an agent ends is followed by a look for its tools that left its process group
(`process_groups.tagged_processes`), which reads the environment of every process on the machine.
When a swarm's tasks end together, a scan each would cost hundreds of scans in a row; instead the
callers that arrive while one scan runs all share the next one, whose result is split by tag. A
caller never gets a scan that began before it asked, so a process tagged before the call is seen.
"""

from __future__ import annotations

import asyncio
from collections.abc import Collection

from server.agents.process_groups import tagged_processes_by_tag


class SharedTaggedScan:
    """Coalesces concurrent `find` calls into as few scans of /proc as their timing allows."""

    def __init__(self) -> None:
        self._next_tags: set[str] = set()
        self._next_result: asyncio.Future[dict[str, list[int]]] | None = None
        self._runner: asyncio.Task[None] | None = None
        self.scans = 0  # how many scans ran: the sharing, observable

    async def find(self, tags: Collection[str]) -> list[int]:
        """Running processes carrying one of ``tags``, from a scan that began after this call."""
        if not tags:
            return []
        if self._next_result is None:
            self._next_result = asyncio.get_running_loop().create_future()
        result = self._next_result
        self._next_tags.update(tags)
        if self._runner is None or self._runner.done():
            self._runner = asyncio.create_task(self._run(), name="tagged-process-scan")
        # Shielded: one caller giving up must not cancel the scan the others wait for.
        found = await asyncio.shield(result)
        return sorted({pid for tag in tags for pid in found.get(tag, ())})

    async def _run(self) -> None:
        while self._next_result is not None:
            await asyncio.sleep(0)  # callers made ready by the same event join this scan
            tags, result = self._next_tags, self._next_result
            self._next_tags, self._next_result = set(), None
            self.scans += 1
            try:
                found = await asyncio.to_thread(tagged_processes_by_tag, tags)
            except Exception as error:  # an unreadable /proc: every waiter hears it
                result.set_exception(error)
            else:
                result.set_result(found)
