"""Group commit: every write goes through one connection, and whatever is queued commits together.

One transaction (and one fsync) per group instead of per call is what lets hundreds of
concurrent stores finish quickly without "database is locked". Each operation must
raise its domain errors *before* it writes anything, so a refused operation never
leaves a partial change in the shared transaction.

An operation may name a `CommitStep` (the vector index's synchronisation does): once per
group it is *sealed* inside the transaction, after the group's operations and before the
commit, then told the group has *committed*, with the results of every operation of the
group that named it, before their callers are answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import aiosqlite

from server.errors import SwitchboardError, Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
T_contra = TypeVar("T_contra", contravariant=True)
WriteOp = Callable[[aiosqlite.Connection], Awaitable[T]]


class CommitStep(Protocol[T_contra]):
    """Work that follows a group's writes, once per group for all the operations that named it."""

    async def seal(self, conn: aiosqlite.Connection, results: Sequence[T_contra]) -> object:
        """Inside the group's transaction, after its operations: read what only the writer can see
        (the step's result goes to `committed`). Raising rolls the whole group back."""
        ...

    async def committed(self, results: Sequence[T_contra], sealed: object) -> None:
        """After the commit, before the callers are answered. Must not raise for a committed group."""
        ...


_Queued = tuple[WriteOp[Any], "asyncio.Future[Any]", "CommitStep[Any] | None"]


class GroupCommitWriter:
    """Serialises write operations on one connection and commits them in groups."""

    def __init__(self, conn: aiosqlite.Connection, max_group: int) -> None:
        self._conn = conn
        self._max_group = max_group
        self._queue: deque[_Queued] = deque()
        self._work = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="memory-group-commit")

    async def submit(self, op: WriteOp[T], step: CommitStep[T] | None = None) -> T:
        """Run ``op`` in the next group; return once its group has committed (and, if given,
        ``step`` has been sealed and told). The step sees the results of every op of the group
        that named it, in commit order, so their effects can be applied together."""
        if self._closing:
            raise Unavailable("the memory store is shutting down; retry against the restarted server")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future, step))
        self._work.set()
        return await future

    async def close(self) -> None:
        """Commit everything already queued, then stop."""
        self._closing = True
        self._work.set()
        if self._task is not None:
            await self._task

    async def _run(self) -> None:
        while True:
            await self._work.wait()
            self._work.clear()
            while self._queue:
                group = [self._queue.popleft() for _ in range(min(self._max_group, len(self._queue)))]
                await self._commit_group(group)
            if self._closing:
                return

    async def _commit_group(self, group: list[_Queued]) -> None:
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None]] = []
        stepped: dict[CommitStep[Any], list[Any]] = {}
        sealed: dict[CommitStep[Any], object] = {}
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            for op, future, step in group:
                if future.cancelled():  # the caller gave up before we started: do not write on its behalf
                    continue
                try:
                    result = await op(self._conn)
                except SwitchboardError as error:
                    outcomes.append((future, None, error))
                    continue
                outcomes.append((future, result, None))
                if step is not None:
                    stepped.setdefault(step, []).append(result)
            for step, results in stepped.items():
                sealed[step] = await step.seal(self._conn, results)
            await self._conn.commit()
        except Exception as failed:  # the database failed under us: nothing in this group is acknowledged
            logger.error("memory write group of %d failed and was rolled back: %r", len(group), failed)
            try:
                await self._conn.rollback()
            except Exception as rollback_error:
                logger.error("rollback after failed write group also failed: %r", rollback_error)
            failure = Unavailable(f"the memory database refused the write ({failed}); nothing was changed")
            for _, future, _ in group:
                if not future.done():
                    future.set_exception(failure)
            return
        for step, results in stepped.items():
            try:
                await step.committed(results, sealed[step])
            except Exception:  # committed is committed: report it, answer the callers anyway
                logger.exception("a step after a committed memory write failed")
        for future, result, refusal in outcomes:
            if future.done():
                continue
            if refusal is not None:
                future.set_exception(refusal)
            else:
                future.set_result(result)
