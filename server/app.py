"""Wires the engine to the MCP SDK: the server, its lifespan, its tools, and both transports.

Only this module, the agent memory endpoint (``server/http/agent_memory.py``, which serves
the memory tools to spawned agents), the stdio transport (``server/stdio/transport.py``) and
one settings type in ``server/http/guard.py`` import the SDK; everything else under ``server/``
is usable (and tested, and benchmarked) without MCP.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import re
import signal
import sys
from collections.abc import AsyncIterator, Iterator

import anyio
import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.subscriptions import InMemorySubscriptionBus
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.types import ASGIApp

from server import __version__
from server.clock import Clock
from server.config import Settings
from server.errors import Forbidden, Unavailable
from server.http.agent_memory import AgentMemoryEndpoint
from server.http.dashboard.app import Dashboard
from server.http.dashboard.sessions import DashboardSessions
from server.http.dashboard.state import CostHistory
from server.http.guard import BearerTokenGuard, RequestBodyGuard, host_allowed, loopback_rebinding_protection
from server.metrics import CONTENT_TYPE as METRICS_CONTENT_TYPE
from server.services import Services, open_services
from server.startup_errors import open_services_or_refuse
from server.stdio.transport import stdio_transport
from tools import all_tools
from tools.resources import ResourceUpdates

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Switchboard coordinates agents. memory_usage is a shared, persistent memory: store results "
    "under a namespace and key (optionally with a ttl) so other agents can retrieve, list or search them. "
    "memory_search finds entries by meaning across all namespaces. "
    "upload_batch puts many files into object storage (S3 or a local store) in one parallel call."
)


MCP_PATH = "/mcp"
# Requests still open this long after a shutdown began are cut (a client's event stream would
# otherwise hold the server, and its stores, open for good).
GRACEFUL_SHUTDOWN_S = 10
METRICS_PATH = "/metrics"


def build_server(
    settings: Settings, *, clock: Clock | None = None, services: Services | None = None
) -> MCPServer[Services]:
    """The MCP server (tools and resources). It opens (and at the end closes) its own services,
    unless it is given open ones."""
    bus = InMemorySubscriptionBus()
    updates = ResourceUpdates(bus)

    @contextlib.asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        if services is not None:
            async with updates.running(services):
                yield services
            return
        async with open_services(settings, clock) as opened, agents_wired(opened), updates.running(opened):
            yield opened

    server: MCPServer[Services] = MCPServer(
        "switchboard",
        title="Switchboard",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        tools=list(all_tools()),
        subscriptions=bus,
    )
    updates.register(server)
    return server


@contextlib.asynccontextmanager
async def agents_wired(services: Services) -> AsyncIterator[None]:
    """Gives claude agents this server's memory (the loopback endpoint, unless turned off) and fills
    the warm pools; on exit ends every agent before the endpoint stops, so none loses its memory
    mid-task."""
    async with contextlib.AsyncExitStack() as stack:
        if services.settings.agent_shared_memory:
            endpoint = AgentMemoryEndpoint(services, max_body_bytes=services.settings.http_max_body_bytes)
            stack.push_async_callback(endpoint.aclose)
            services.supervisor.memory_access = endpoint
        stack.push_async_callback(services.supervisor.end_all)
        services.supervisor.pool.start()
        yield


def build_http_app(services: Services, settings: Settings, host: str, dashboard: Dashboard) -> ASGIApp:
    """The streamable HTTP app at ``/mcp``, Prometheus' ``/metrics`` and the dashboard at ``/``,
    behind the body guard and (with a token) the bearer token guard on ``/mcp`` and ``/metrics``
    (the dashboard signs browsers in itself); without a token, every route answers only requests
    naming this loopback host."""
    protection = _rebinding_protection(settings, _url_host(host))
    starlette = build_server(settings, services=services).streamable_http_app(
        streamable_http_path=MCP_PATH,
        host=host,
        transport_security=protection,
        max_request_body_size=settings.http_max_body_bytes,
    )

    async def metrics(request: Request) -> Response:
        if protection is not None and not host_allowed(protection, request.headers.get("host", "")):
            return PlainTextResponse("this endpoint answers requests to its own loopback address only\n",
                                     status_code=421)
        return Response(services.metrics.render(await services.state_figures()), media_type=METRICS_CONTENT_TYPE)

    starlette.add_route(METRICS_PATH, metrics, methods=["GET"])
    starlette.router.routes.extend(dashboard.routes())
    app: ASGIApp = RequestBodyGuard(starlette, max_body_bytes=settings.http_max_body_bytes, path=MCP_PATH)
    if settings.http_token is not None:
        app = BearerTokenGuard(app, settings.http_token.get_secret_value(), paths=(MCP_PATH, METRICS_PATH))
    return app


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve_stdio(settings: Settings) -> None:
    """Serve on stdin/stdout until stdin closes and every request received is answered, or until
    SIGINT/SIGTERM arrives; then close the stores."""
    async with open_services_or_refuse(settings) as services, agents_wired(services), \
            anyio.create_task_group() as tasks:
        tasks.start_soon(_cancel_on_signal, tasks.cancel_scope)
        # MCPServer.run_stdio_async has no way to take another transport: run its low-level server.
        lowlevel = build_server(settings, services=services)._lowlevel_server
        async with stdio_transport(settings.stdio_max_line_bytes) as (read_stream, write_stream):
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        tasks.cancel_scope.cancel()


async def serve_http(settings: Settings, host: str, port: int) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp`` (with ``/metrics`` and the dashboard at ``/``).
    Off loopback a bearer token is mandatory."""
    _refuse_open_without_token(settings, host, "HTTP")
    # The stores open before the port does, so a start-up refusal is one clear error, and close
    # after uvicorn has stopped serving.
    dashboard = new_dashboard(settings, host)
    async with open_services_or_refuse(settings) as services, agents_wired(services), \
            dashboard.history.sampling(services):
        dashboard.attach(services)
        logger.info("starting streamable HTTP at http://%s:%d%s (auth: %s)", _url_host(host), port, MCP_PATH,
                    "bearer token" if settings.http_token else "none, loopback only")
        await _serve_web(build_http_app(services, settings, host, dashboard), settings, host, port, dashboard, "HTTP")


async def serve_dashboard(settings: Settings, host: str, port: int) -> None:
    """Only the dashboard (no ``/mcp``), for watching the agents of servers sharing this data dir."""
    _refuse_open_without_token(settings, host, "the dashboard")
    dashboard = new_dashboard(settings, host)
    async with open_services_or_refuse(settings) as services, dashboard.history.sampling(services):
        dashboard.attach(services)
        await _serve_web(Starlette(routes=dashboard.routes()), settings, host, port, dashboard, "the dashboard")


def new_dashboard(settings: Settings, host: str) -> Dashboard:
    token = settings.http_token.get_secret_value() if settings.http_token is not None else None
    return Dashboard(DashboardSessions(token), _rebinding_protection(settings, _url_host(host)), CostHistory())


def _refuse_open_without_token(settings: Settings, host: str, what: str) -> None:
    if settings.http_token is None and not is_loopback(host):
        raise Forbidden(f"refusing to serve {what} on {host} without a token: set SWITCHBOARD_HTTP_TOKEN, "
                        "or bind to 127.0.0.1")


async def _serve_web(app: ASGIApp, settings: Settings, host: str, port: int, dashboard: Dashboard, what: str) -> None:
    """Runs uvicorn until a signal (see `_stop_on_signal`); raises `Unavailable` if it cannot listen."""
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(), log_config=None,
                            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_S)
    access_log = logging.getLogger("uvicorn.access")
    if not any(isinstance(existing, SignInCodeRedacted) for existing in access_log.filters):
        access_log.addFilter(SignInCodeRedacted())
    web = _UvicornLeavingSignalsToUs(config)
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_stop_on_signal, web, dashboard)
        # A sign-in link (one use, ten minutes), like a notebook server's: on stderr (stdout is no
        # place for it), never in a log file.
        sys.stderr.write(f"dashboard: {dashboard.sign_in_url(_url_host(host), port)}\n")
        sys.stderr.flush()
        try:
            await web.serve()
        except SystemExit:  # how uvicorn gives up when it cannot listen; it has logged why
            web.started = False
        tasks.cancel_scope.cancel()
    if not web.started:
        raise Unavailable(f"cannot serve {what} on {_url_host(host)}:{port}: see the error above")


class SignInCodeRedacted(logging.Filter):
    """uvicorn's access log names each request's path and query: a sign-in link's one-time code
    is a secret until used, so it is logged as ``code=[redacted]``."""

    _CODE = re.compile(r"(?<=[?&]code=)[^&\s]+")

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(self._CODE.sub("[redacted]", arg) if isinstance(arg, str) else arg
                                for arg in record.args)
        return True


class _UvicornLeavingSignalsToUs(uvicorn.Server):
    """uvicorn re-raises SIGINT/SIGTERM the moment it stops serving, which would kill the process
    before the stores close; `serve_http` handles those signals itself (`_stop_on_signal`)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _rebinding_protection(settings: Settings, url_host: str) -> TransportSecuritySettings | None:
    """Without a token, only requests naming this loopback host are served, so a web page that
    rebinds its own name to 127.x cannot reach the tools."""
    if settings.http_token is not None:
        return None
    return loopback_rebinding_protection(url_host)


async def _stop_on_signal(web: uvicorn.Server, dashboard: Dashboard) -> None:
    """The first signal stops uvicorn gracefully (open requests finish, the dashboard's event streams
    end); a second one stops it at once."""
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            logger.info("received %s; shutting down", signal.Signals(received).name)
            dashboard.close()
            if web.should_exit:
                web.force_exit = True
            web.should_exit = True


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            logger.info("received %s; shutting down", signal.Signals(received).name)
            scope.cancel()
            return
