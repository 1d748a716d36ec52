"""`Services`: the engine parts one server process shares, opened together and closed together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass

import anyio

from server.clock import Clock, SystemClock
from server.config import Settings
from server.memory import ExpirySweeper, MemoryStore
from server.objects import BatchUploader, ObjectStore
from server.objects.from_settings import build_uploader, open_object_store

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    clock: Clock
    memory: MemoryStore
    sweeper: ExpirySweeper
    objects: ObjectStore
    uploader: BatchUploader


@contextlib.asynccontextmanager
async def open_services(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Services]:
    """Open every store, start the background sweeper; on exit stop it and close the stores,
    even when the surrounding task is being cancelled (SIGINT, SIGTERM, stdin EOF)."""
    clock = clock or SystemClock()
    memory = await MemoryStore.open(
        settings.database_path,
        clock=clock,
        max_value_bytes=settings.memory_max_value_bytes,
        max_ttl_seconds=settings.memory_max_ttl_seconds,
        synchronous=settings.memory_sqlite_synchronous,
        group_commit_max=settings.memory_group_commit_max,
    )
    sweeper = ExpirySweeper(
        memory,
        interval_seconds=settings.memory_sweep_interval_seconds,
        batch_size=settings.memory_sweep_batch_size,
    )
    sweeping = asyncio.create_task(sweeper.run(), name="memory-sweeper")
    logger.info("memory store open at %s", settings.database_path)
    objects: ObjectStore | None = None
    try:
        objects = await open_object_store(settings)
        logger.info("object store: %s", objects.description)
        uploader = build_uploader(settings, objects, memory, clock)
        yield Services(settings=settings, clock=clock, memory=memory, sweeper=sweeper, objects=objects,
                       uploader=uploader)
    finally:
        with anyio.CancelScope(shield=True):
            if objects is not None:
                await objects.close()
            sweeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sweeping
            await memory.close()
            logger.info("memory store closed")
