"""What the dashboard shows, gathered in one call, and the last hour of cost and running agents; a worktree
agent's changes, read when the page asks for them."""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from dataclasses import asdict
from typing import Any

from server.agents.proc_stats import usage_of_groups
from server.agents.workspaces import WorkspaceRecord
from server.objects.uploader import SUMMARY_NAMESPACE
from server.queries.registry import QueryView
from server.services import Services
from server.status import current_record, status_of

SAMPLE_EVERY_S = 15.0
MIN_GAP_S = 5.0
HOUR_S = 3600.0
RECENT_AGENTS = 100
RECENT_QUERIES = 30
RECENT_UPLOADS = 20
TAIL_CHARS = 4000
NEEDS_YOU_OUTPUT_BYTES = 2000
MAX_DIFF_BYTES = 256 * 1024  # the page shows a diff in a <pre>: past this it is cut (diff_truncated)


class CostHistory:
    """Samples of total cost and running agents over the last hour, for the page's chart: every 15 s,
    and within 5 s of a change (so a new swarm shows up at once, without sampling on every event)."""

    def __init__(self, every_s: float = SAMPLE_EVERY_S, min_gap_s: float = MIN_GAP_S) -> None:
        self._every_s, self._min_gap_s = every_s, min_gap_s
        self.samples: deque[tuple[int, float, int]] = deque(maxlen=int(HOUR_S / min_gap_s) + 1)

    def last_hour(self, now_ms: int) -> list[tuple[int, float, int]]:
        return [sample for sample in self.samples if sample[0] >= now_ms - HOUR_S * 1000]

    async def sample(self, services: Services) -> None:
        cost = sum(row.cost_usd for row in await services.queries.records.usage_by_model())
        running = (await services.supervisor.records.counts_by_status()).get("running", 0)
        self.samples.append((services.clock.now_ms(), round(cost, 6), running))

    @contextlib.asynccontextmanager
    async def sampling(self, services: Services) -> AsyncIterator[None]:
        changed = asyncio.Event()

        async def forever() -> None:
            while True:
                changed.clear()
                await self.sample(services)
                try:
                    await asyncio.wait_for(changed.wait(), self._every_s)
                    await asyncio.sleep(self._min_gap_s)
                except TimeoutError:
                    pass

        stop_listening = services.supervisor.changes.listen(lambda _kind, _ident: changed.set())
        task = asyncio.create_task(forever(), name="dashboard-history")
        try:
            yield
        finally:
            stop_listening()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def dashboard_state(services: Services, history: CostHistory) -> dict[str, Any]:
    """Everything the page renders, as JSON-ready data."""
    snapshot = await status_of(services, detail=False)  # the page lists agents and queries itself
    records = services.supervisor.records
    now = services.clock.now_ms()
    agents = []
    recent = [current_record(services, record) for record in await records.recent_agents(RECENT_AGENTS)]
    usage_by_pid = await asyncio.to_thread(usage_of_groups, [record.pid for record in recent if record.pid])
    workspaces = await services.supervisor.workspaces.of_agents([record.id for record in recent])
    for current in recent:
        usage = usage_by_pid.get(current.pid) if current.pid else None
        agents.append({
            "agent_id": current.id, "name": current.name, "type": current.type, "status": current.status,
            "model": current.model, "pid": current.pid, "tasks_run": current.tasks_run,
            "cost_usd": round(current.cost_usd, 6), "current_query": current.current_query,
            "uptime_s": round((now - current.ready_ms) / 1000) if current.ready_ms and not current.ended_ms else None,
            "cpu_seconds": round(usage.cpu_seconds, 1) if usage else None,
            "rss_bytes": usage.rss_bytes if usage else None,
            "workspace": _workspace(workspaces[current.id]) if current.id in workspaces else None,
            "budget_usd": current.budget_usd, "resumed_from": current.resumed_from,
        })
    active, _, _ = await services.queries.page(include_output=True, limit=200)
    ended = await services.queries.views(await services.queries.records.recent_ended_queries(RECENT_QUERIES),
                                         include_output=True)
    queries = [_query(view, controllable=services.supervisor.live(view.record.agent_id) is not None)
               for view in [*active, *ended]]
    uploads = sorted(await services.memory.export_page(namespace=SUMMARY_NAMESPACE),
                     key=lambda entry: entry.updated_ms, reverse=True)[:RECENT_UPLOADS]
    return {
        "status": snapshot.model_dump(),
        "needs_you": await _needs_you(services),
        "agents": agents,
        "queries": queries,
        "uploads": [{"key": entry.key, "at_ms": entry.updated_ms, **_summary(entry.value)} for entry in uploads],
        "history": history.last_hour(now),
    }


async def agent_changes(services: Services, agent_id: str, *, include_diff: bool) -> dict[str, Any]:
    """A worktree agent's work on its branch, as agent_changes answers it: files, commits, whether it merges
    cleanly into the branch it started from, and (``include_diff``) the diff, cut at `MAX_DIFF_BYTES`.
    `NotFound` for an unknown agent, `InvalidArgument` for one that works in its cwd."""
    workspaces = services.supervisor.workspaces
    workspace = await workspaces.get(agent_id)
    changes = await workspaces.changes(agent_id, include_diff=include_diff, max_diff_bytes=MAX_DIFF_BYTES)
    return {
        "agent_id": agent_id, "branch": changes.branch, "base": changes.base, "base_branch": workspace.base_branch,
        "head": changes.head, "commits": changes.commits, "files": [asdict(file) for file in changes.files],
        "merges_cleanly": changes.merges_cleanly, "conflicts": changes.conflicted,
        "merged_into": workspace.merged_into, "diff": changes.diff, "diff_truncated": changes.diff_truncated,
    }


def _workspace(workspace: WorkspaceRecord) -> dict[str, Any]:
    """What the agent list shows of a worktree agent's workspace (a discarded one has no branch to review)."""
    return {"branch": workspace.branch, "base_branch": workspace.base_branch, "merged_into": workspace.merged_into,
            "discarded": workspace.discarded_ms is not None, "removed": workspace.removed_ms is not None}


async def _needs_you(services: Services) -> list[dict[str, Any]]:
    """The permission requests and questions waiting for an answer, oldest first, each with its
    agent's name and recent output (what a person needs to judge it)."""
    needs = []
    for request in await services.queries.book.approvals.pending():
        agent = services.supervisor.live(request.agent_id)
        record = agent.record if agent is not None else await services.supervisor.records.agent(request.agent_id)
        needs.append({
            "request_id": request.id, "query_id": request.query_id, "agent_id": request.agent_id,
            "agent_name": record.name if record is not None else None, "tool": request.tool,
            "input": request.input, "questions": request.questions, "suggestions": request.suggestions,
            "created_ms": request.created_ms, "expires_ms": request.expires_ms,
            "recent_output": agent.tail.since(max(agent.tail.total_bytes - NEEDS_YOU_OUTPUT_BYTES, 0))
            if agent is not None else None,
        })
    return needs


def _query(view: QueryView, *, controllable: bool) -> dict[str, Any]:
    record = view.record
    return {
        "query_id": record.id, "agent_id": record.agent_id, "status": record.status, "task": record.task[:300],
        "model": record.model, "permission_mode": record.permission_mode, "active_ms": view.active_ms,
        "turns": record.turns, "input_tokens": record.input_tokens, "output_tokens": record.output_tokens,
        "cost_usd": record.cost_usd, "result": (record.result or "")[-TAIL_CHARS:], "error": record.error,
        "output_tail": (view.output_tail or "")[-TAIL_CHARS:], "log": [asdict(event) for event in view.log or []],
        "controllable": controllable,
        "budget_usd": record.budget_usd, "budget_tokens": record.budget_tokens,
        "remaining_usd": view.budget.remaining_usd if view.budget is not None else None,
        "budget_reached": record.budget_reached,
    }


def _summary(value: Any) -> dict[str, Any]:
    if not isinstance(value, dict):
        return {}
    listed = value.get("failed")
    failed: list[Any] = listed if isinstance(listed, list) else []
    return {"status": value.get("status"), "bucket": value.get("bucket"), "files": value.get("files"),
            "failed": failed[:20], "bytes": value.get("bytes")}
