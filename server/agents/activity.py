"""`ActivityLog`: what agents do, written into shared memory by the engine (not through MCP).

- ``agent-activities`` (7 days): ``agent-<id>-spawn`` when an agent is up or failed to start,
  ``agent-<id>-complete`` when its latest task ends;
- ``agent-results`` (7 days): ``agent-<id>-<query_id>``, each task's result, for other agents;
- ``agent-metrics`` (1 hour): ``agent-<id>``, the latest CPU, RSS and uptime sample.

Namespaces and TTLs are settings. A failure to record is logged and never fails the agent.
"""

from __future__ import annotations

import logging
from typing import Any

from server.agents.proc_stats import GroupUsage
from server.agents.records import AgentRecord, QueryRecord
from server.config import Settings
from server.memory import MemoryStore

logger = logging.getLogger(__name__)

# The result text kept in an activity record; agent-results keeps it whole (up to the value limit).
_SUMMARY_CHARS = 500


class ActivityLog:
    def __init__(self, memory: MemoryStore, settings: Settings) -> None:
        self._memory = memory
        self._settings = settings
        self._last_cpu: dict[str, tuple[float, int]] = {}

    async def spawned(self, agent: AgentRecord) -> None:
        await self._put(
            self._settings.agent_activity_namespace, f"agent-{agent.id}-spawn",
            {"agent_id": agent.id, "name": agent.name, "type": agent.type, "runtime": agent.runtime,
             "status": agent.status, "model": agent.model, "pid": agent.pid, "spawn_ms": agent.spawn_ms,
             "error": agent.error, "at_ms": agent.ready_ms or agent.created_ms},
            self._settings.agent_activity_ttl_s, tags=["spawn", agent.type, agent.status],
        )

    async def task_ended(self, agent: AgentRecord, query: QueryRecord) -> None:
        summary = {"agent_id": agent.id, "name": agent.name, "type": agent.type, "query_id": query.id,
                   "status": query.status, "turns": query.turns, "input_tokens": query.input_tokens,
                   "output_tokens": query.output_tokens, "cost_usd": query.cost_usd, "error": query.error,
                   "at_ms": query.ended_ms}
        await self._put(
            self._settings.agent_activity_namespace, f"agent-{agent.id}-complete",
            {**summary, "result": (query.result or "")[:_SUMMARY_CHARS]},
            self._settings.agent_activity_ttl_s, tags=["complete", agent.type, query.status],
        )
        await self._put(
            self._settings.agent_results_namespace, f"agent-{agent.id}-{query.id}",
            {**summary, "task": query.task, "result": self._bounded(query.result)},
            self._settings.agent_results_ttl_s, tags=[agent.name, agent.type, query.status],
        )

    async def sample(self, agent: AgentRecord, usage: GroupUsage, now_ms: int) -> None:
        previous = self._last_cpu.get(agent.id)
        self._last_cpu[agent.id] = (usage.cpu_seconds, now_ms)
        cpu_percent = None
        if previous is not None and now_ms > previous[1]:
            cpu_percent = round(100 * (usage.cpu_seconds - previous[0]) / ((now_ms - previous[1]) / 1000), 1)
        await self._put(
            self._settings.agent_metrics_namespace, f"agent-{agent.id}",
            {"agent_id": agent.id, "name": agent.name, "type": agent.type, "status": agent.status,
             "processes": usage.processes, "cpu_seconds": round(usage.cpu_seconds, 2), "cpu_percent": cpu_percent,
             "rss_bytes": usage.rss_bytes, "uptime_s": round((now_ms - (agent.ready_ms or agent.created_ms)) / 1000, 1),
             "at_ms": now_ms},
            self._settings.agent_metrics_ttl_s, tags=["metrics", agent.type],
        )

    def _bounded(self, text: str | None) -> str | None:
        # A value over the memory limit would be refused: keep the end, where the answer usually is.
        limit = max(self._settings.memory_max_value_bytes // 2 - 1024, 256)
        if text is None or len(text.encode()) <= limit:
            return text
        return "…" + text.encode()[-limit:].decode("utf-8", errors="ignore")

    async def _put(self, namespace: str, key: str, value: dict[str, Any], ttl_s: int, tags: list[str]) -> None:
        try:
            await self._memory.put(namespace, key, value, ttl_seconds=ttl_s, tags=tags)
        except Exception:
            logger.warning("could not record %s/%s", namespace, key, exc_info=True)
