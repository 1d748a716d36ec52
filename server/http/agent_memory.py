"""`AgentMemoryEndpoint`: this server's shared memory, served to the claude agents it spawns.

Every agent gets the same memory as an MCP server of its own: a streamable HTTP endpoint of this
process on 127.0.0.1 (an ephemeral port, opened on the first grant), exposing only
``memory_usage`` and ``memory_search``, with a bearer token per agent. One process, one
`MemoryStore` and one vector index serve the whole swarm, and each tool call is attributed to the
agent whose token carried it. The endpoint runs beside whichever transport the server's own
client uses (stdio or HTTP), on a port of its own.

Like ``server/app.py``, this module wires the MCP SDK to the tools: a second `MCPServer`
(``switchboard-memory``) over the already open `Services`, behind the guards of
``server/http/guard.py``.

Attribution: `AgentTokenGuard` maps the token to its agent and runs the HTTP request with the
agent in the contextvar `calling_agent`; the SDK runs each message's handler in a copy of the
context of the request that carried it, so the agent is known in the handler task, where a
`ServerMiddleware` on the memory server counts and logs each ``tools/call`` (and where the tool
itself can read it through `calling_agent`).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import secrets
import socket
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from types import TracebackType
from typing import Any

import anyio
import uvicorn
from mcp.server.context import CallNext, HandlerResult, ServerRequestContext
from mcp.server.mcpserver import MCPServer
from mcp.shared.exceptions import MCPError
from mcp.types import INTERNAL_ERROR
from starlette.types import ASGIApp

from server import __version__
from server.errors import InvalidArgument, Unavailable
from server.http.guard import AgentTokenGuard, RequestBodyGuard, calling_agent, loopback_rebinding_protection
from server.services import Services
from tools import memory_search, memory_usage

logger = logging.getLogger(__name__)

HOST = "127.0.0.1"
MCP_PATH = "/mcp"
INSTRUCTIONS = (
    "Switchboard's shared memory, the same for every agent of this swarm. memory_usage stores results "
    "under a namespace and key (optionally with a ttl) so other agents can retrieve, list or search them; "
    "memory_search finds entries by meaning across all namespaces."
)
# Calls still running when the endpoint closes get this long to finish; then uvicorn cancels them
# (a write the memory's writer task has begun still commits: it is not the call's task).
GRACEFUL_STOP_SECONDS = 3
# The SDK's shutdown then waits for the cancelled calls to unwind, which work in a worker thread
# (embedding a large batch) delays; beyond this bound the serving task is cancelled outright.
STOP_TIMEOUT_SECONDS = GRACEFUL_STOP_SECONDS + 5.0
# Tool names and actions come from the agent; anything else than this is logged by repr, cut short,
# so a crafted name cannot forge log lines.
_PLAIN_WORD = re.compile(r"[A-Za-z0-9_.-]{1,64}")


class AgentMemoryEndpoint:
    """The shared memory as a loopback MCP server for spawned agents, one bearer token per agent.

    ``grant(agent)`` answers the agent's MCP server entry (for Claude Code's ``mcp_servers``),
    starting the HTTP server the first time; ``revoke(agent)`` makes its token fail at once;
    ``aclose()`` (or leaving ``async with``) stops serving. The `Services` stay open: their owner
    closes them, after this endpoint.
    """

    def __init__(self, services: Services, *, max_body_bytes: int) -> None:
        self._services = services
        self._max_body_bytes = max_body_bytes
        self._tokens = _AgentTokens()
        self._ledger = _CallLedger()
        # Serialises start and close: concurrent first grants start one server, and a close never
        # races a start.
        self._lifecycle = anyio.Lock()
        self._web: _BackgroundUvicorn | None = None
        self._serving: asyncio.Task[None] | None = None
        self._url: str | None = None
        self._closed = False

    @property
    def url(self) -> str | None:
        """``http://127.0.0.1:<port>/mcp`` while serving; None before the first grant and after `aclose`."""
        return self._url

    async def grant(self, agent_id: str) -> dict[str, object]:
        """The MCP server entry giving ``agent_id`` the shared memory:
        ``{"type": "http", "url": ..., "headers": {"Authorization": "Bearer <token>"}}``.

        Starts the HTTP server on first use. An agent keeps its token until revoked (a second
        grant answers the same one); after `revoke` a grant issues a new token. Raises
        `InvalidArgument` for an empty or unprintable id and `Unavailable` once closed or if the
        server cannot start.
        """
        if not agent_id or not agent_id.isprintable():
            raise InvalidArgument(f"an agent id must be a non-empty printable text; got {agent_id!r}")
        url = await self._started()
        token = self._tokens.issue(agent_id)
        return {"type": "http", "url": url, "headers": {"Authorization": f"Bearer {token}"}}

    def revoke(self, agent_id: str) -> None:
        """Make ``agent_id``'s token fail from the next request on (401). Requests already admitted
        finish. Revoking an agent without a token does nothing."""
        self._tokens.revoke(agent_id)

    def calls_by_agent(self) -> dict[str, int]:
        """How many tool calls each agent has made through this endpoint (revoked agents included)."""
        return dict(self._ledger.calls)

    async def aclose(self) -> None:
        """Stop serving: calls in flight get `GRACEFUL_STOP_SECONDS`, the whole stop at most
        `STOP_TIMEOUT_SECONDS`; then the port is closed. Idempotent; later grants raise `Unavailable`."""
        async with self._lifecycle:
            if self._closed:
                return
            self._closed = True
            web, serving = self._web, self._serving
            self._url = None
        if web is None or serving is None:
            return
        web.should_exit = True
        # Shielded: a close interrupted by cancellation would leave the port open and the task behind.
        with anyio.CancelScope(shield=True):
            done, _ = await asyncio.wait({serving}, timeout=STOP_TIMEOUT_SECONDS)
            if not done:
                logger.warning("the memory endpoint for agents did not stop within %.0f s; cancelling it",
                               STOP_TIMEOUT_SECONDS)
                serving.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await serving
        logger.info("memory endpoint for agents stopped")

    async def __aenter__(self) -> AgentMemoryEndpoint:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        await self.aclose()

    async def _started(self) -> str:
        async with self._lifecycle:
            if self._closed:
                raise Unavailable("the agent memory endpoint is closed")
            if self._url is not None:
                return self._url
            # Shielded: a grant cancelled half-way would leave a server starting that no one
            # knows of, and the next grant would start a second one.
            with anyio.CancelScope(shield=True):
                self._url = url = await self._start()
            return url

    async def _start(self) -> str:
        # Bound before uvicorn starts, so the port is known without a race for a free one.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind((HOST, 0))
            port = int(sock.getsockname()[1])
            config = uvicorn.Config(
                self._http_app(), log_config=None, lifespan="on", proxy_headers=False,
                timeout_graceful_shutdown=GRACEFUL_STOP_SECONDS,
                # uvicorn's loggers are process-wide: this also quiets the client-facing HTTP
                # transport's uvicorn lines (its access log) once the endpoint has started.
                log_level="warning",
            )
            web = _BackgroundUvicorn(config)
            serving = asyncio.create_task(_serve(web, sock), name="agent-memory-endpoint")
        except BaseException:
            sock.close()
            raise
        await web.startup_over.wait()
        if not web.started:
            await serving
            raise Unavailable("the agent memory endpoint could not start: see the error above")
        self._web, self._serving = web, serving
        url = f"http://{HOST}:{port}{MCP_PATH}"
        logger.info("memory endpoint for agents listening at %s", url)
        return url

    def _http_app(self) -> ASGIApp:
        """The memory server's streamable HTTP app behind the token guard (outermost: a request
        without a valid token is refused before its body is read) and the body guard."""
        app: ASGIApp = _memory_server(self._services, self._ledger).streamable_http_app(
            streamable_http_path=MCP_PATH,
            host=HOST,
            # Stateless, with JSON answers: the memory tools never call back to the client, so a
            # session would only add state to lose (an idle agent's session expiring after 30
            # minutes) and a standing SSE stream per agent that a close would have to wait out.
            # Each call stands alone and passes the token guard.
            stateless_http=True,
            json_response=True,
            transport_security=loopback_rebinding_protection(HOST),
            max_request_body_size=self._max_body_bytes,
        )
        app = RequestBodyGuard(app, max_body_bytes=self._max_body_bytes, path=MCP_PATH)
        return AgentTokenGuard(app, self._tokens.agent_for, path=MCP_PATH)


def _memory_server(services: Services, ledger: _CallLedger) -> MCPServer[Services]:
    """The MCP server an agent sees: the two memory tools, on the open services."""

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        yield services  # opened and closed by their owner, not per endpoint

    return MCPServer(
        "switchboard-memory",
        title="Switchboard shared memory",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=services.settings.log_level,
        tools=[memory_usage.tool(), memory_search.tool()],
        middleware=[ledger],
    )


class _AgentTokens:
    """Bearer tokens by agent. Looked up by the token's SHA-256, so the lookup's timing depends on
    a digest an attacker cannot steer, then compared in constant time."""

    def __init__(self) -> None:
        self._by_agent: dict[str, str] = {}
        self._by_digest: dict[bytes, tuple[str, str]] = {}

    def issue(self, agent_id: str) -> str:
        token = self._by_agent.get(agent_id)
        if token is None:
            token = secrets.token_urlsafe(32)
            self._by_agent[agent_id] = token
            self._by_digest[_digest(token)] = (token, agent_id)
        return token

    def revoke(self, agent_id: str) -> None:
        token = self._by_agent.pop(agent_id, None)
        if token is not None:
            del self._by_digest[_digest(token)]

    def agent_for(self, presented: str) -> str | None:
        found = self._by_digest.get(_digest(presented))
        if found is None or not hmac.compare_digest(found[0].encode(), presented.encode()):
            return None
        return found[1]


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


class _CallLedger:
    """A `ServerMiddleware` counting and logging each ``tools/call`` by the agent that made it.

    It runs in the handler task, before the arguments are validated, so a refused call counts too.
    (The SDK calls its middleware API provisional; `CheckedTool.run` is the fallback seam.)
    """

    def __init__(self) -> None:
        self.calls: Counter[str] = Counter()

    async def __call__(self, ctx: ServerRequestContext[Any, Any], call_next: CallNext) -> HandlerResult:
        if ctx.method == "tools/call":
            agent = calling_agent.get()
            if agent is None:  # every request passes AgentTokenGuard: this would be a wiring fault
                raise MCPError(INTERNAL_ERROR, "internal: a tool call arrived without an agent")
            params = ctx.params or {}
            arguments = params.get("arguments")
            action = arguments.get("action") if isinstance(arguments, dict) else None
            self.calls[agent] += 1
            logger.info("agent %s: %s%s", agent, _shown(params.get("name")),
                        "" if action is None else f" {_shown(action)}")
        return await call_next(ctx)


def _shown(value: object) -> str:
    if isinstance(value, str) and _PLAIN_WORD.fullmatch(value):
        return value
    return repr(value)[:64]


class _BackgroundUvicorn(uvicorn.Server):
    """uvicorn serving beside the main server: it leaves SIGINT/SIGTERM to the main server (uvicorn
    would take them over while it serves, and re-raise them when it stops), and says when its start
    is over, successful or not."""

    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.startup_over = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        try:
            await super().startup(sockets)
        finally:
            self.startup_over.set()


async def _serve(web: _BackgroundUvicorn, sock: socket.socket) -> None:
    try:
        await web.serve(sockets=[sock])
    except SystemExit:  # how uvicorn gives up when it cannot start; it has logged why
        pass
    finally:
        sock.close()
        web.startup_over.set()  # also when it failed before its startup began
