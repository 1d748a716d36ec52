"""Wires the engine to the MCP SDK: the server, its lifespan, its tools, and both transports.

This is the only engine module that imports the SDK; everything under ``server/`` else
is usable (and tested, and benchmarked) without MCP.
"""

from __future__ import annotations

import hmac
import ipaddress
import logging
import signal
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import uvicorn
from mcp.server.auth.provider import AccessToken
from mcp.server.auth.settings import AuthSettings
from mcp.server.mcpserver import MCPServer
from mcp.server.stdio import stdio_server
from mcp.server.transport_security import TransportSecuritySettings

from server import __version__
from server.clock import Clock
from server.config import Settings
from server.errors import Forbidden
from server.services import Services, open_services
from server.stdin_lines import StdinLines
from tools import register_tools

logger = logging.getLogger(__name__)

INSTRUCTIONS = (
    "Switchboard coordinates agents. memory_usage is a shared, persistent memory: store results "
    "under a namespace and key (optionally with a ttl) so other agents can retrieve, list or search them. "
    "memory_search finds entries by meaning across all namespaces. "
    "upload_batch puts many files into object storage (S3 or a local store) in one parallel call."
)


class StaticTokenVerifier:
    """Accepts exactly one bearer token, compared in constant time."""

    def __init__(self, token: str) -> None:
        self._token = token.encode("utf-8")

    async def verify_token(self, token: str) -> AccessToken | None:
        if hmac.compare_digest(token.encode("utf-8"), self._token):
            return AccessToken(token=token, client_id="switchboard-client", scopes=[])
        return None


def build_server(settings: Settings, *, clock: Clock | None = None, http_url: str | None = None) -> MCPServer[Services]:
    """The MCP server over a fresh set of services. ``http_url`` (with a configured token) turns on bearer auth."""

    @asynccontextmanager
    async def lifespan(_: MCPServer[Services]) -> AsyncIterator[Services]:
        async with open_services(settings, clock) as services:
            yield services

    auth_options: dict[str, object] = {}
    if http_url is not None and settings.http_token is not None:
        auth_options = {
            "token_verifier": StaticTokenVerifier(settings.http_token.get_secret_value()),
            # The token is configured out of band, so this server is its own issuer.
            "auth": AuthSettings(issuer_url=http_url, resource_server_url=f"{http_url}/mcp"),
        }
    server: MCPServer[Services] = MCPServer(
        "switchboard",
        title="Switchboard",
        version=__version__,
        instructions=INSTRUCTIONS,
        lifespan=lifespan,
        log_level=settings.log_level,
        **auth_options,  # type: ignore[arg-type]
    )
    register_tools(server)
    return server


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


async def serve_stdio(settings: Settings) -> None:
    """Serve on stdin/stdout until stdin closes or SIGINT/SIGTERM arrives; then close the stores."""
    server = build_server(settings)
    lowlevel = server._lowlevel_server  # the SDK's run_stdio_async offers no way to pass our stdin reader
    async with anyio.create_task_group() as tasks:
        tasks.start_soon(_cancel_on_signal, tasks.cancel_scope)
        async with stdio_server(stdin=StdinLines(sys.stdin.fileno())) as (read_stream, write_stream):  # type: ignore[arg-type]
            await lowlevel.run(read_stream, write_stream, lowlevel.create_initialization_options())
        logger.info("stdin closed; shutting down")
        tasks.cancel_scope.cancel()


async def serve_http(settings: Settings, host: str, port: int) -> None:
    """Serve streamable HTTP at ``http://host:port/mcp``. Off loopback a bearer token is mandatory."""
    if settings.http_token is None and not is_loopback(host):
        raise Forbidden(
            f"refusing to serve HTTP on {host} without a token: set SWITCHBOARD_HTTP_TOKEN, "
            "or bind to 127.0.0.1"
        )
    url_host = f"[{host}]" if ":" in host else host
    server = build_server(settings, http_url=f"http://{url_host}:{port}")
    app = server.streamable_http_app(host=host, transport_security=_rebinding_protection(settings, url_host))
    config = uvicorn.Config(app, host=host, port=port, log_level=settings.log_level.lower(), log_config=None)
    logger.info("serving streamable HTTP on http://%s:%d/mcp (auth: %s)", url_host, port,
                "bearer token" if settings.http_token else "none, loopback only")
    # uvicorn handles SIGINT/SIGTERM itself and runs the app's shutdown, which closes the stores.
    await uvicorn.Server(config).serve()


def _rebinding_protection(settings: Settings, url_host: str) -> TransportSecuritySettings | None:
    """Without a token, only requests naming this loopback host are served, so a web page that
    rebinds its own name to 127.x cannot reach the tools. (The SDK does this by itself for
    127.0.0.1, localhost and ::1 only.)"""
    if settings.http_token is not None:
        return None
    hosts = {url_host, "127.0.0.1", "localhost", "[::1]"}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(f"{name}:*" for name in hosts),
        allowed_origins=sorted(f"http://{name}:*" for name in hosts),
    )


async def _cancel_on_signal(scope: anyio.CancelScope) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for received in signals:
            logger.info("received %s; shutting down", signal.Signals(received).name)
            scope.cancel()
            return
