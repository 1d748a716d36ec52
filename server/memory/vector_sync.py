"""`VectorSync`: keeps this process's vector index in step with the vectors SQLite holds.

SQLite is the truth. Every change to a stored vector, by this server or another one sharing
the database file, appends a row to the change log (``vector_changes``, see
``vector_rows.py``) with a growing ``seq``. The index reflects that log up to ``position``,
and every update to it follows the log's order, so an older vector never lands after a
newer one:

- A write group of this server is *sealed* with the seq of its last log row, inside its
  transaction. Once committed, its change (the vectors it wrote, already in memory) joins a
  queue, and the writer moves on: writes never wait for the index (only for a bounded
  backlog, when the index falls far behind).
- A background task applies the queue. A queued change whose seq the index has already
  passed is skipped: a catch-up has read those entries' newer state from SQLite. Other
  servers' log rows before a queued change are applied along with it, from SQLite's current
  state, so this server's own writes alone never leave it behind the log.
- `catch_up` (before every semantic search) applies the queue, then every log row after
  ``position``, whoever wrote it: a search sees every committed write.
- When the log has been trimmed past ``position``, the index is rebuilt from SQLite in a
  worker thread; writes keep queueing meanwhile.
- The index file is saved in the background, a moment after enough writes (debounced),
  never on the write path; and at close.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiosqlite
import anyio
import anyio.to_thread

from server.memory import vector_rows
from server.vectors import SemanticIndex, VectorChange

logger = logging.getLogger(__name__)

# Bytes of committed vectors waiting for the index before writers wait too (float32 copies).
BACKLOG_MAX_BYTES = 64 * 1024 * 1024
# A save starts this long after the write that made it due, so a burst of writes saves once.
SAVE_DELAY_SECONDS = 1.0
# Combining more ids than this is worth a hop to a worker thread.
_INLINE_COMBINE_MAX = 4096

WriteResult = tuple[Any, VectorChange | None]


@dataclass(frozen=True, slots=True)
class _Committed:
    changes: list[VectorChange]  # combined only when applied: off the write path
    seq: int  # the log's seq of the group's last vector change
    nbytes: int


class VectorSync:
    """Applies committed vector changes to the index in change-log order, off the write path.

    Also the `CommitStep` of every vector-changing write: the writer seals and reports
    each group through `seal` and `committed`."""

    def __init__(
        self,
        vectors: SemanticIndex,
        log_reader: aiosqlite.Connection,
        *,
        writer_token: str,
        position: int,
        backlog_max_bytes: int = BACKLOG_MAX_BYTES,
        save_delay_seconds: float = SAVE_DELAY_SECONDS,
    ) -> None:
        self._vectors = vectors
        self._log = log_reader  # its own connection: catching up never queues behind a user's read
        self._token = writer_token
        self._position = position
        self._backlog_max_bytes = backlog_max_bytes
        self._save_delay_seconds = save_delay_seconds
        self._queue: deque[_Committed] = deque()
        self._queued_bytes = 0
        self._room = asyncio.Condition()
        self._work = asyncio.Event()
        self._lock = anyio.Lock(fast_acquire=True)  # one applier at a time: the queue's, or a catch-up
        self._applier: asyncio.Task[None] | None = None
        self._saver: asyncio.Task[None] | None = None
        self._closing = False

    @property
    def position(self) -> int:
        """The change-log seq the index reflects every change up to."""
        return self._position

    def start(self) -> None:
        """Start applying; the first round catches up with whatever other servers wrote while this
        one was loading (and restores, in a shared Qdrant collection, what its start-up repair missed)."""
        self._applier = asyncio.create_task(self._apply_forever(), name="vector-sync")

    async def close(self) -> None:
        """Apply what is queued and stop; a save in progress finishes, a pending one is dropped
        (the index is saved once more when it closes)."""
        self._closing = True
        self._work.set()
        async with self._room:
            self._room.notify_all()
        try:
            if self._applier is not None:
                await self._applier
            if self._saver is not None:
                self._saver.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._saver
        finally:
            await self._log.close()

    # -- the writer's side ----------------------------------------------------------------

    async def seal(self, conn: aiosqlite.Connection, results: Sequence[WriteResult]) -> object:
        if not any(change for _, change in results):
            return None
        return await vector_rows.log_position(conn)

    async def committed(self, results: Sequence[WriteResult], sealed: object) -> None:
        if not isinstance(sealed, int):
            return
        changes = [change for _, change in results if change]
        nbytes = sum(8 * (len(change.upsert_ids) + len(change.delete_ids))
                     + (change.upsert_vectors.nbytes if change.upsert_vectors is not None else 0)
                     for change in changes)
        async with self._room:  # backpressure only when the index is far behind
            await self._room.wait_for(lambda: self._queued_bytes < self._backlog_max_bytes or self._closing)
        self._queue.append(_Committed(changes, sealed, nbytes))
        self._queued_bytes += nbytes
        self._work.set()

    # -- applying -------------------------------------------------------------------------

    async def catch_up(self) -> None:
        """Bring the index up to every committed change, this server's and the others'."""
        async with self._lock:
            await self._apply_queued()
            await self._apply_log(upto=None)

    async def _apply_forever(self) -> None:
        try:
            await self.catch_up()
        except Exception:
            logger.exception("catching up with the change log at start failed; searches will retry")
        while True:
            await self._work.wait()
            self._work.clear()
            try:
                async with self._lock:
                    await self._apply_queued()
            except Exception:  # keep applying later changes; SQLite has them and searches check every hit
                logger.exception("applying committed vector changes to the index failed")
            if self._closing and not self._queue:
                return

    async def _apply_queued(self) -> None:
        """Apply every queued change the index has not passed, then the other servers' log rows up to them."""
        if not self._queue:
            return
        batch = list(self._queue)
        self._queue.clear()
        self._queued_bytes = 0
        async with self._room:
            self._room.notify_all()
        fresh = [item for item in batch if item.seq > self._position]  # the rest: a catch-up read newer state
        if not fresh:
            return
        changes = [change for item in fresh for change in item.changes]
        if len(changes) == 1:
            change = changes[0]
        elif sum(len(c.upsert_ids) + len(c.delete_ids) for c in changes) <= _INLINE_COMBINE_MAX:
            change = VectorChange.combine(changes)
        else:
            change = await anyio.to_thread.run_sync(VectorChange.combine, changes)
        # Ours first: other servers' changes are then applied from SQLite's current state, which is
        # never older than ours, whichever came first in the log.
        await self._vectors.apply(change)
        self._note_writes(change)
        await self._apply_log(upto=fresh[-1].seq, others_only=True)

    async def _apply_log(self, *, upto: int | None, others_only: bool = False) -> None:
        """Apply the log rows after ``position`` (up to ``upto``, all if None) from SQLite's current
        state; rebuild from SQLite when the log no longer reaches back to ``position``."""
        rows = await vector_rows.changes_since(self._log, self._position, upto)
        if upto is not None and (not rows or rows[-1][0] < upto):
            # Our own rows up to `upto` must be in the log; if not, it was trimmed under us.
            return await self._reload()
        if not rows:
            return None
        if rows[0][0] > self._position + 1:
            return await self._reload()
        changed = sorted({entry_id for _, entry_id, writer in rows if not (others_only and writer == self._token)})
        if changed:
            stored = await vector_rows.vectors_of(self._log, changed)
            upserts = [entry_id for entry_id in changed if entry_id in stored]
            change = VectorChange(
                upsert_ids=upserts,
                upsert_vectors=self._vectors.decode([stored[i] for i in upserts]) if upserts else None,
                delete_ids=[entry_id for entry_id in changed if entry_id not in stored],
            )
            await self._vectors.apply(change)
            self._note_writes(change)
        self._position = rows[-1][0]
        return None

    async def _reload(self) -> None:
        position = await vector_rows.log_position(self._log)  # first: nothing after it can be missed
        ids, blobs = await vector_rows.all_vectors(self._log)
        await self._vectors.replace_all(ids, blobs)
        logger.warning("vector index reloaded from SQLite (%d vectors): it had fallen behind the change log", len(ids))
        self._position = position
        self._schedule_save()

    # -- saving ---------------------------------------------------------------------------

    def _note_writes(self, change: VectorChange) -> None:
        if self._vectors.note_unsaved(len(change.upsert_ids) + len(change.delete_ids)):
            self._schedule_save()

    def _schedule_save(self) -> None:
        if self._saver is None or self._saver.done():
            self._saver = asyncio.create_task(self._save_soon(), name="vector-save")

    async def _save_soon(self) -> None:
        await anyio.sleep(self._save_delay_seconds)
        try:
            await self._vectors.save()
        except OSError:
            # A full disk: the next attempt comes after another round of writes (not at once).
            # SQLite has the vectors; a stale file is rebuilt at start.
            logger.exception("saving the vector index failed; the next attempt comes after more writes")

