"""`ActivityLog`: what agents do, written into shared memory by the engine (not through MCP).

- ``agent-activities`` (7 days): ``<agent_id>-spawn`` when an agent is up or failed to start,
  ``<agent_id>-complete`` when its latest task ends;
- ``agent-results`` (7 days): ``<agent_id>-<query_id>``, each task's result, for other agents;
- ``agent-metrics`` (1 hour): ``<agent_id>``, the latest CPU, RSS and uptime sample.

Agent ids already read ``agent-<hex>`` and query ids ``query-<hex>``, so a key is the ids as they are
(``agent-1a2b3c4d5e6f-spawn``), never prefixed again.

Namespaces and TTLs are settings. Records are queued and written in batches by a background
task (one transaction for many agents' records), so recording never slows an agent down; a
failure to record is logged and never fails the agent. The query records (a task's end, each
log entry of ``query-events``) are written here by `server.queries.book`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from server.agents.proc_stats import GroupUsage
from server.agents.records import AgentRecord
from server.config import Settings
from server.memory import MemoryStore, PutRequest

logger = logging.getLogger(__name__)

# Most records written in one transaction.
_BATCH = 500


class ActivityLog:
    def __init__(self, memory: MemoryStore, settings: Settings) -> None:
        self._memory = memory
        self._settings = settings
        self._last_cpu: dict[str, tuple[float, int]] = {}
        self._queue: list[PutRequest] = []
        self._queued = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._writer: asyncio.Task[None] | None = None

    def spawned(self, agent: AgentRecord) -> None:
        self.put(
            self._settings.agent_activity_namespace, f"{agent.id}-spawn",
            {"agent_id": agent.id, "name": agent.name, "type": agent.type, "runtime": agent.runtime,
             "status": agent.status, "model": agent.model, "pid": agent.pid, "spawn_ms": agent.spawn_ms,
             "error": agent.error, "at_ms": agent.ready_ms or agent.created_ms},
            self._settings.agent_activity_ttl_s, tags=["spawn", agent.type, agent.status],
        )

    def sample(self, agent: AgentRecord, usage: GroupUsage, now_ms: int) -> None:
        previous = self._last_cpu.get(agent.id)
        self._last_cpu[agent.id] = (usage.cpu_seconds, now_ms)
        cpu_percent = None
        if previous is not None and now_ms > previous[1]:
            cpu_percent = round(100 * (usage.cpu_seconds - previous[0]) / ((now_ms - previous[1]) / 1000), 1)
        self.put(
            self._settings.agent_metrics_namespace, agent.id,
            {"agent_id": agent.id, "name": agent.name, "type": agent.type, "status": agent.status,
             "processes": usage.processes, "cpu_seconds": round(usage.cpu_seconds, 2), "cpu_percent": cpu_percent,
             "rss_bytes": usage.rss_bytes, "uptime_s": round((now_ms - (agent.ready_ms or agent.created_ms)) / 1000, 1),
             "at_ms": now_ms},
            self._settings.agent_metrics_ttl_s, tags=["metrics", agent.type],
        )

    def bounded(self, text: str | None) -> str | None:
        """``text`` as it fits in one memory value: its end, where the answer usually is."""
        limit = max(self._settings.memory_max_value_bytes // 2 - 1024, 256)
        if text is None or len(text.encode()) <= limit:
            return text
        return "…" + text.encode()[-limit:].decode("utf-8", errors="ignore")

    def put(self, namespace: str, key: str, value: dict[str, Any], ttl_s: int, tags: list[str]) -> None:
        """Queues one record; it is written with the next batch."""
        self._queue.append(PutRequest(namespace, key, value, ttl_s, tuple(tags)))
        self._idle.clear()
        self._queued.set()
        if self._writer is None:
            self._writer = asyncio.create_task(self._write(), name="agent-activity")

    async def flush(self) -> None:
        """Until every record queued so far is written (or given up on)."""
        await self._idle.wait()

    async def close(self) -> None:
        """Writes what is queued, then stops."""
        if self._writer is not None:
            await self.flush()
            self._writer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._writer
            self._writer = None

    async def _write(self) -> None:
        while True:
            await self._queued.wait()
            self._queued.clear()
            while self._queue:
                batch, self._queue = self._queue[:_BATCH], self._queue[_BATCH:]
                await self._write_batch(batch)
            self._idle.set()

    async def _write_batch(self, batch: list[PutRequest]) -> None:
        try:
            await self._memory.put_many(batch)
        except Exception:
            # One bad record must not lose the others: write them one by one, and log the ones refused.
            for request in batch:
                try:
                    await self._memory.put_many([request])
                except Exception:
                    logger.warning("could not record %s/%s", request.namespace, request.key, exc_info=True)
