"""`Services`: the engine parts one server process shares, opened together and closed together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import anyio

from server.agents.activity import ActivityLog
from server.agents.changes import ChangeFeed
from server.agents.records import AgentRecords
from server.agents.spawner import Spawner
from server.agents.supervisor import Supervisor
from server.clock import Clock, SystemClock
from server.config import Settings
from server.errors import Unavailable
from server.memory import ExpirySweeper, MemoryStore
from server.metrics import BudgetFigures, ServerMetrics, StateFigures
from server.objects import BatchUploader, ObjectStore
from server.objects.from_settings import build_uploader, open_object_store
from server.private_files import create_private_file, make_private_dir
from server.queries.approvals import RequestHooks
from server.queries.book import QueryBook
from server.queries.notifications import RequestNotifier
from server.queries.registry import QueryRegistry
from server.vectors import (
    Embedder,
    HashingEmbedder,
    HnswIndex,
    IndexIdentity,
    SemanticIndex,
    SentenceTransformerEmbedder,
    VectorIndex,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Services:
    settings: Settings
    clock: Clock
    memory: MemoryStore
    sweeper: ExpirySweeper
    objects: ObjectStore
    uploader: BatchUploader
    supervisor: Supervisor
    spawner: Spawner
    queries: QueryRegistry
    metrics: ServerMetrics

    async def state_figures(self) -> StateFigures:
        """What ``/metrics`` shows of the state (memory, vectors, agents, queries, usage), read now."""
        stats = await self.memory.stats()
        vectors = self.memory.vectors
        queries = self.queries.records
        return StateFigures(
            namespaces=stats.namespaces,
            vectors=vectors.count() if vectors is not None else 0,
            agents_by_status=await self.supervisor.records.counts_by_status(),
            queries_by_status=await queries.query_counts(),
            usage_by_model=await queries.usage_by_model(),
            pending_requests=await self.queries.book.approvals.pending_counts(),
            budgets=self._budget_figures(),
            budget_reached_queries=await queries.budget_reached_count(),
        )

    def _budget_figures(self) -> list[BudgetFigures]:
        budgets = self.supervisor.budgets
        return [BudgetFigures(state.level, call_id or "", round(state.spent.usd, 6), state.limit.usd,
                              state.remaining_usd)
                for call_id, state in budgets.shown()]


@contextlib.asynccontextmanager
async def open_services(settings: Settings, clock: Clock | None = None) -> AsyncIterator[Services]:
    """Open every store and start the background sweeper; on exit stop and close them in reverse
    order. Each part is closed even when closing another one fails, and even while the
    surrounding task is being cancelled (SIGINT, SIGTERM, end of stdin)."""
    clock = clock or SystemClock()
    make_private_layout(settings)
    async with contextlib.AsyncExitStack() as parts:
        vectors = build_semantic_index(settings)
        try:
            memory = await _open_memory(settings, clock, vectors)
        except BaseException:
            await vectors.index.close()
            raise
        parts.push_async_callback(_closing_shielded, _close_memory, memory)
        sweeper = ExpirySweeper(
            memory,
            interval_seconds=settings.memory_sweep_interval_seconds,
            batch_size=settings.memory_sweep_batch_size,
        )
        sweeping = asyncio.create_task(sweeper.run(), name="memory-sweeper")
        parts.push_async_callback(_closing_shielded, _stop, sweeping)
        logger.info("memory store open at %s; %d vectors (%s, %s)", settings.database_path, vectors.count(),
                    settings.vector_backend, vectors.embedder_name)
        objects = await open_object_store(settings)
        parts.push_async_callback(_closing_shielded, objects.close)
        logger.info("object store: %s", objects.description)
        uploader = build_uploader(settings, objects, memory, clock)
        # Opened after memory, so closed before it: agents are ended while their records can still be
        # written (the agents database and the activity log close after the supervisor).
        records = await AgentRecords.open(settings.agents_database_path)
        parts.push_async_callback(_closing_shielded, records.close)
        activity = ActivityLog(memory, settings)
        parts.push_async_callback(_closing_shielded, activity.close)
        changes = ChangeFeed()
        metrics = ServerMetrics()
        notifier = RequestNotifier(settings.notify_url) if settings.notify_url else None
        if notifier is not None:
            parts.push_async_callback(_closing_shielded, notifier.close)
        hooks = RequestHooks(on_raised=notifier.notify if notifier is not None else None,
                             on_decided=lambda request: metrics.record_decision(request.status, request.open_s))
        book = QueryBook(records, activity, changes, settings, clock, hooks)
        supervisor = await Supervisor.open(settings, records, book, activity, changes, clock)
        parts.push_async_callback(_closing_shielded, supervisor.close)
        queries = QueryRegistry(supervisor, book, settings)
        parts.push_async_callback(_closing_shielded, queries.close)  # its rules stop before the agents end
        spawner = Spawner(supervisor)
        if settings.agent_resume_on_start and supervisor.lost_at_start:
            supervisor.spawn_background(_resume_lost(spawner), name="resume-lost-agents")
        yield Services(settings=settings, clock=clock, memory=memory, sweeper=sweeper, objects=objects,
                       uploader=uploader, supervisor=supervisor, spawner=spawner, queries=queries,
                       metrics=metrics)


async def _resume_lost(spawner: Spawner) -> None:
    """In the background, so the server answers while the lost agents come back up."""
    try:
        await spawner.resume_lost_at_start()
    except Exception:
        logger.exception("the agents the previous run lost could not be resumed")


def make_private_layout(settings: Settings) -> None:
    """Create the data directory and what the stores fill in it owner-only (0700, the agents
    database 0600) before any store opens: each store creates what is missing with plain mkdir and
    connect, which would leave it open to every local user, and keeps what it finds."""
    make_private_dir(settings.data_dir)
    for directory in (settings.agent_state_root, settings.run_dir):
        make_private_dir(directory)
    if settings.uses_local_object_store:
        make_private_dir(settings.local_objects_dir)
    create_private_file(settings.agents_database_path)  # SQLite gives its -wal and -shm the same mode


async def _closing_shielded(close: Callable[..., Awaitable[object]], *args: object) -> None:
    with anyio.CancelScope(shield=True):
        await close(*args)


async def _stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _close_memory(memory: MemoryStore) -> None:
    await memory.close()  # also saves and closes the vector index
    logger.info("memory store closed")


async def _open_memory(settings: Settings, clock: Clock, vectors: SemanticIndex) -> MemoryStore:
    return await MemoryStore.open(
        settings.database_path,
        clock=clock,
        max_value_bytes=settings.memory_max_value_bytes,
        max_ttl_seconds=settings.memory_max_ttl_seconds,
        max_batch_bytes=settings.memory_max_batch_bytes,
        max_answer_bytes=settings.memory_max_answer_bytes,
        synchronous=settings.memory_sqlite_synchronous,
        group_commit_max=settings.memory_group_commit_max,
        readers=settings.memory_readers,
        vectors=vectors,
        reembed_vectors=settings.vector_reembed,
    )


def build_semantic_index(settings: Settings) -> SemanticIndex:
    """The embedder and vector backend the settings choose, not yet loaded."""
    embedder: Embedder
    wants_model = settings.vector_embedder == "sentence-transformers" or (
        settings.vector_embedder == "auto" and settings.vector_model is not None
    )
    if wants_model:
        if not settings.vector_model:
            raise Unavailable("SWITCHBOARD_VECTOR_EMBEDDER=sentence-transformers needs SWITCHBOARD_VECTOR_MODEL")
        embedder = SentenceTransformerEmbedder(settings.vector_model)
    else:
        embedder = HashingEmbedder(settings.vector_dimensions)
    identity = IndexIdentity(embedder.name, embedder.dimensions)
    index: VectorIndex
    if settings.vector_backend == "qdrant":
        from server.vectors.qdrant import QdrantIndex  # only here: see server/vectors/__init__.py

        api_key = settings.vector_qdrant_api_key.get_secret_value() if settings.vector_qdrant_api_key else None
        index = QdrantIndex.connect(
            identity,
            settings.qdrant_state_path,
            collection=settings.vector_qdrant_collection,
            url=settings.vector_qdrant_url,
            api_key=api_key,
            local_path=settings.qdrant_local_path,
        )
    else:
        index = HnswIndex(
            settings.vector_index_path,
            identity,
            m=settings.vector_hnsw_m,
            ef_construction=settings.vector_hnsw_ef_construction,
            ef_search=settings.vector_hnsw_ef_search,
        )
    return SemanticIndex(
        embedder, index, indexed_namespaces=settings.vector_indexed_namespaces, save_every=settings.vector_save_every,
        min_score=settings.vector_min_score,
    )
