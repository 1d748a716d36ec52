"""Group commit: every write goes through one connection, and whatever is queued commits together.

One transaction (and one fsync) per group instead of per call is what lets hundreds of
concurrent stores finish quickly without "database is locked". Each operation must
raise its domain errors *before* it writes anything, so a refused operation never
leaves a partial change in the shared transaction.

An operation may bring an ``after_commit`` step (the vector index uses it): it runs once
per group after the group has committed, with the results of all the group's operations
that named it, before their callers are answered.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import aiosqlite

from server.errors import SwitchboardError, Unavailable

logger = logging.getLogger(__name__)

T = TypeVar("T")
WriteOp = Callable[[aiosqlite.Connection], Awaitable[T]]
AfterCommit = Callable[[list[T]], Awaitable[None]]
_Queued = tuple[WriteOp[Any], "asyncio.Future[Any]", "AfterCommit[Any] | None"]


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

    async def submit(self, op: WriteOp[T], after_commit: AfterCommit[T] | None = None) -> T:
        """Run ``op`` in the next group; return once its group has committed (and, if given,
        ``after_commit`` has run). ``after_commit`` is called once per group with the results of
        every op of the group that named it, in commit order, so their effects can be applied
        together."""
        if self._closing:
            raise Unavailable("the memory store is shutting down; retry against the restarted server")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.append((op, future, after_commit))
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
        outcomes: list[tuple[asyncio.Future[Any], Any, BaseException | None, AfterCommit[Any] | None]] = []
        try:
            await self._conn.execute("BEGIN IMMEDIATE")
            for op, future, after_commit in group:
                if future.cancelled():  # the caller gave up before we started: do not write on its behalf
                    continue
                try:
                    outcomes.append((future, await op(self._conn), None, after_commit))
                except SwitchboardError as error:
                    outcomes.append((future, None, error, None))
            await self._conn.commit()
        except Exception as error:  # the database failed under us: nothing in this group is acknowledged
            logger.error("memory write group of %d failed and was rolled back: %r", len(group), error)
            try:
                await self._conn.rollback()
            except Exception as rollback_error:  # noqa: BLE001 - keep serving; the next BEGIN will tell
                logger.error("rollback after failed write group also failed: %r", rollback_error)
            failure = Unavailable(f"the memory database refused the write ({error}); nothing was changed")
            for _, future, _ in group:
                if not future.done():
                    future.set_exception(failure)
            return
        committed: dict[AfterCommit[Any], list[Any]] = {}
        for _, result, error, after_commit in outcomes:
            if after_commit is not None and error is None:
                committed.setdefault(after_commit, []).append(result)
        for after_commit, results in committed.items():
            try:
                await after_commit(results)
            except Exception:  # committed is committed: report it, answer the callers anyway
                logger.exception("a step after a committed memory write failed")
        for future, result, error, _ in outcomes:
            if future.done():
                continue
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
