"""MCP resources, so a client can read Switchboard's state without spending tool calls:

- ``switchboard://status``: what ``switchboard status --json`` prints (memory, vectors, agents,
  queries, cost);
- ``switchboard://agents/{agent_id}/log``: the end of an agent's log (its output, or its Claude
  Code session: tasks, answers, tool calls, permission decisions);
- ``switchboard://queries/{query_id}``: one query as ``query_list`` shows it with
  ``include_output`` (state, times, usage, result, output tail, control log);
- ``switchboard://queries/{query_id}/transcript``: a claude query's latest turns (text, tool calls
  and results, model, usage) that fit in 64 KiB, as JSON; an exec query's output tail;
- ``switchboard://approvals``: the permission requests and questions waiting for an answer
  (``query_control approve`` / ``deny``), and the latest ones decided.

Updates reach subscribers in both protocol generations: ``resources/subscribe`` (a
``notifications/resources/updated`` per change) and ``subscriptions/listen`` (a resource-updated
event on the server's subscription bus). A query's and an agent's resources are announced when
the engine records a change; an agent's log and a running query's transcript when they have grown
(checked every second, so a chatty agent costs one notification a second); the status at most once
a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from pathlib import Path
from typing import Any, ParamSpec

from mcp import types
from mcp.server.context import ServerRequestContext
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ResourceError, ResourceNotFoundError
from mcp.server.session import ServerSession
from mcp.server.subscriptions import InMemorySubscriptionBus, ResourceUpdated

from server.agents.changes import Kind
from server.agents.transcript import transcript_path
from server.errors import NotFound, SwitchboardError
from server.services import Services
from server.status import status_of
from tools.support.query_views import ListedQuery, TranscriptView

logger = logging.getLogger(__name__)
P = ParamSpec("P")

STATUS_URI = "switchboard://status"
APPROVALS_URI = "switchboard://approvals"
RECENTLY_DECIDED = 20
LOG_TAIL_BYTES = 64 * 1024
CHECK_INTERVAL_S = 1.0


def agent_log_uri(agent_id: str) -> str:
    return f"switchboard://agents/{agent_id}/log"


def query_uri(query_id: str) -> str:
    return f"switchboard://queries/{query_id}"


def transcript_uri(query_id: str) -> str:
    return f"switchboard://queries/{query_id}/transcript"


class ResourceUpdates:
    """Who subscribed to what, and the announcing of changes to them."""

    def __init__(self, bus: InMemorySubscriptionBus) -> None:
        self._bus = bus
        self._sessions: dict[str, set[ServerSession]] = {}  # resources/subscribe: uri -> sessions
        self._log_sizes: dict[str, int] = {}  # agent id -> output count last announced
        self._transcript_sizes: dict[str, int] = {}  # running query id -> transcript bytes last announced
        self._status_due = False
        self._sending: set[asyncio.Task[None]] = set()
        self.services: Services | None = None

    def register(self, server: MCPServer[Services]) -> None:
        """Adds the resources and the (legacy) subscribe/unsubscribe handlers to ``server``."""
        server.resource(STATUS_URI, name="status", mime_type="application/json",
                        description="Memory, vectors, agents, queries and cost, now.")(self._status)
        server.resource("switchboard://agents/{agent_id}/log", name="agent-log", mime_type="text/plain",
                        description="The end of an agent's log.")(_agent_log)
        server.resource("switchboard://queries/{query_id}", name="query", mime_type="application/json",
                        description="One query: state, times, usage, result, output tail, control log.")(_query)
        server.resource("switchboard://queries/{query_id}/transcript", name="query-transcript",
                        mime_type="application/json",
                        description="A claude query's latest turns: text, tool calls and results, usage.")(_transcript)
        server.resource(APPROVALS_URI, name="approvals", mime_type="application/json",
                        description="Permission requests and questions waiting for an answer; the latest decided.")(
            self._approvals)
        lowlevel = server._lowlevel_server  # the SDK's MCPServer serves no resources/subscribe itself
        lowlevel.add_request_handler("resources/subscribe", types.SubscribeRequestParams, self._subscribe)
        lowlevel.add_request_handler("resources/unsubscribe", types.UnsubscribeRequestParams, self._unsubscribe)

    @contextlib.asynccontextmanager
    async def running(self, services: Services) -> AsyncIterator[None]:
        """Announces changes while the server runs."""
        self.services = services
        stop_listening = services.supervisor.changes.listen(self._changed)
        checker = asyncio.create_task(self._check_forever(services), name="resource-updates")
        try:
            yield
        finally:
            stop_listening()
            checker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await checker
            self.services = None

    async def _status(self) -> str:
        if self.services is None:
            raise ResourceError("the server is not serving yet")
        return (await status_of(self.services)).model_dump_json(indent=1)

    async def _subscribe(self, ctx: ServerRequestContext[Any], params: types.SubscribeRequestParams) -> types.EmptyResult:
        self._sessions.setdefault(str(params.uri), set()).add(ctx.session)
        return types.EmptyResult()

    async def _unsubscribe(self, ctx: ServerRequestContext[Any],
                           params: types.UnsubscribeRequestParams) -> types.EmptyResult:
        self._sessions.get(str(params.uri), set()).discard(ctx.session)
        return types.EmptyResult()

    async def _approvals(self) -> str:
        if self.services is None:
            raise ResourceError("the server is not serving yet")
        desk = self.services.queries.book.approvals
        decided = [request for request in await desk.recent(RECENTLY_DECIDED * 2) if request.status != "pending"]
        return json.dumps({"pending": [asdict(request) for request in await desk.pending()],
                           "recently_decided": [asdict(request) for request in decided[:RECENTLY_DECIDED]]}, indent=1)

    def _changed(self, kind: Kind, ident: str) -> None:
        self._status_due = True
        if kind == "query":
            self._announce(query_uri(ident))
            self._announce(transcript_uri(ident))  # its start and end, whatever the periodic check saw
        elif kind == "approval":
            self._announce(APPROVALS_URI)

    def _announce(self, uri: str) -> None:
        task = asyncio.get_running_loop().create_task(self._send(uri), name="resource-updated")
        self._sending.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._sending.discard)

    async def _send(self, uri: str) -> None:
        await self._bus.publish(ResourceUpdated(uri=uri))
        for session in list(self._sessions.get(uri, ())):
            try:
                await session.send_resource_updated(uri)
            except Exception:  # the session has gone: forget it
                self._sessions[uri].discard(session)

    async def _check_forever(self, services: Services) -> None:
        while True:
            await asyncio.sleep(CHECK_INTERVAL_S)
            if self._status_due:
                self._status_due = False
                await self._send(STATUS_URI)
            transcripts: dict[str, Path] = {}
            for agent in services.supervisor.live_agents():
                size = agent.tail.total_bytes
                if self._log_sizes.get(agent.id, 0) != size:
                    self._log_sizes[agent.id] = size
                    await self._send(agent_log_uri(agent.id))
                if agent.running is not None and agent.agent_type.runtime == "claude":
                    transcripts[agent.running.id] = transcript_path(services.supervisor.workdir_for(agent.id),
                                                                    agent.running.id)
            await self._announce_grown(transcripts)

    async def _announce_grown(self, transcripts: dict[str, Path]) -> None:
        """Announces each running query's transcript that has grown; forgets the ones no longer running."""
        sizes = await asyncio.to_thread(_sizes, transcripts)
        grown = [query_id for query_id, size in sizes.items() if self._transcript_sizes.get(query_id, 0) != size]
        self._transcript_sizes = sizes
        for query_id in grown:
            await self._send(transcript_uri(query_id))


def _answering_errors(read: Callable[P, Awaitable[str]]) -> Callable[P, Awaitable[str]]:
    """A domain error answers its own text (the SDK would answer a bare "Error creating resource")."""

    @functools.wraps(read)
    async def reading(*args: P.args, **kwargs: P.kwargs) -> str:
        try:
            return await read(*args, **kwargs)
        except NotFound as error:
            raise ResourceNotFoundError(str(error)) from error
        except SwitchboardError as error:
            raise ResourceError(str(error)) from error

    return reading


@_answering_errors
async def _agent_log(agent_id: str, ctx: Context[Services, Any]) -> str:
    services: Services = ctx.request_context.lifespan_context
    record = await services.supervisor.records.agent(agent_id)
    if record is None:
        raise NotFound(f"no agent {agent_id!r} (agent_list shows the known ones)")
    state_dir = services.supervisor.workdir_for(agent_id)
    logs = [path for path in (state_dir / "output.log", state_dir / "session.log") if path.exists()]
    if not logs:
        return ""
    return await asyncio.to_thread(_tail, max(logs, key=lambda path: path.stat().st_mtime))


def _sizes(paths: dict[str, Path]) -> dict[str, int]:
    sizes = {}
    for ident, path in paths.items():
        try:
            sizes[ident] = path.stat().st_size
        except FileNotFoundError:
            sizes[ident] = 0
    return sizes


def _tail(path: Path) -> str:
    with path.open("rb") as source:
        source.seek(0, 2)
        size = source.tell()
        source.seek(max(size - LOG_TAIL_BYTES, 0))
        data = source.read()
    text = data.decode("utf-8", errors="replace")
    return text if size <= LOG_TAIL_BYTES else f"[{size - LOG_TAIL_BYTES} earlier bytes in {path}]\n{text}"


@_answering_errors
async def _query(query_id: str, ctx: Context[Services, Any]) -> str:
    services: Services = ctx.request_context.lifespan_context
    record = await services.queries.get(query_id)
    (view,) = await services.queries.views([record], include_output=True)
    return ListedQuery.from_engine(view).model_dump_json(indent=1)


@_answering_errors
async def _transcript(query_id: str, ctx: Context[Services, Any]) -> str:
    services: Services = ctx.request_context.lifespan_context
    view, page = await services.queries.transcript(query_id, latest=True)
    return TranscriptView.from_engine(view, page).model_dump_json(indent=1)
