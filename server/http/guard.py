"""ASGI middleware in front of the SDK's streamable HTTP app: the bearer token(s), and the request body.

`BearerTokenGuard` checks the one static token (``SWITCHBOARD_HTTP_TOKEN``) itself instead of
through the SDK's OAuth resource-server support. That support advertises protected-resource
metadata naming an authorization server, which for a static token does not exist: clients
then start OAuth discovery and registration, fail, and never tell the user to send the
header. Here a 401 says exactly that, and nothing points at OAuth.

`AgentTokenGuard` does the same for the per-agent tokens of the agent memory endpoint
(``server/http/agent_memory.py``), and runs each admitted request with its agent in
`calling_agent`.

`loopback_rebinding_protection` is the SDK's host/origin check set for an endpoint bound to a
loopback address (the one SDK type imported here).

`RequestBodyGuard` caps the body at a configured size (the SDK's 4 MiB default refused a
documented 10,000-entry store_batch) and answers a body that is not one valid JSON-RPC
message the way the stdio transport answers such a line (see `server.jsonrpc_wire`).
"""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable, Collection
from contextvars import ContextVar

import anyio.to_thread
from mcp.server.transport_security import TransportSecuritySettings
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.jsonrpc_wire import INVALID_REQUEST, WireError, read_message, too_large

logger = logging.getLogger(__name__)

REALM = "switchboard"
# Bodies longer than this are checked in a worker thread, so a big store_batch does not stall the event loop.
PARSE_INLINE_MAX_BYTES = 1024 * 1024


calling_agent: ContextVar[str | None] = ContextVar("calling_agent", default=None)
"""The agent an `AgentTokenGuard` admitted the current request for (None elsewhere). The SDK runs
the handler of each message in a copy of the context of the HTTP request that carried it (the
way its own auth middleware hands the access token to handlers), so a tool call sees it too."""


def is_endpoint(scope: Scope, path: str) -> bool:
    """Whether the request is for the MCP endpoint at ``path`` (with or without a trailing slash)."""
    return scope["type"] == "http" and str(scope["path"]).rstrip("/") == path


def loopback_rebinding_protection(url_host: str) -> TransportSecuritySettings:
    """Only requests naming this loopback host (or 127.0.0.1, localhost, [::1]) in Host and Origin
    are served, so a web page that rebinds its own name to 127.x cannot reach the tools. (The SDK
    does this by itself for 127.0.0.1, localhost and ::1 only.)"""
    hosts = {url_host, "127.0.0.1", "localhost", "[::1]"}
    return TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=sorted(f"{name}:*" for name in hosts),
        allowed_origins=sorted(f"http://{name}:*" for name in hosts),
    )


def host_allowed(protection: TransportSecuritySettings, host_header: str) -> bool:
    """Whether a request's Host header names one of the hosts ``protection`` allows (``name:*``
    patterns), for endpoints served beside the SDK's, which checks its own."""
    name = host_header.rsplit(":", 1)[0] if not host_header.endswith("]") else host_header
    return any(allowed == host_header or (allowed.endswith(":*") and allowed[:-2] == name)
               for allowed in protection.allowed_hosts)


class BearerTokenGuard:
    """Lets a request to the guarded endpoints through only with ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str, *, paths: Collection[str]) -> None:
        self._app = app
        self._token = token.encode("utf-8")
        self._paths = tuple(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not any(is_endpoint(scope, path) for path in self._paths):
            await self._app(scope, receive, send)
            return
        token = presented_bearer(scope)
        if token is None:
            await _unauthorized(send, wrong_token=False, message=(
                "this server needs a bearer token: send the header \"Authorization: Bearer <token>\", where "
                "<token> is the value of SWITCHBOARD_HTTP_TOKEN the server runs with (no OAuth is involved)"))
            return
        # compare_digest takes as long whatever the token's common prefix with the guess.
        if not hmac.compare_digest(token.encode("latin-1"), self._token):
            logger.warning("refused a request with a wrong bearer token from %s", _client(scope))
            await _unauthorized(send, wrong_token=True, message=(
                "the bearer token is wrong: send \"Authorization: Bearer <token>\" with the value of "
                "SWITCHBOARD_HTTP_TOKEN the server runs with"))
            return
        await self._app(scope, receive, send)


class AgentTokenGuard:
    """Lets a request to the MCP endpoint through only with ``Authorization: Bearer <token>`` naming
    an agent (``agent_for`` maps a presented token to its agent, or None for an unknown or revoked
    one), and runs it with that agent in `calling_agent`."""

    def __init__(self, app: ASGIApp, agent_for: Callable[[str], str | None], *, path: str) -> None:
        self._app = app
        self._agent_for = agent_for
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_endpoint(scope, self._path):
            await self._app(scope, receive, send)
            return
        token = presented_bearer(scope)
        if token is None:
            await _unauthorized(send, wrong_token=False, message=(
                "this endpoint serves the agents Switchboard started: send the header "
                "\"Authorization: Bearer <token>\" with the token of this agent's MCP server entry"))
            return
        agent = self._agent_for(token)
        if agent is None:
            logger.warning("refused a request with an unknown or revoked agent token from %s", _client(scope))
            await _unauthorized(send, wrong_token=True, message=(
                "the bearer token is unknown or has been revoked: an agent may use only the token of the entry "
                "it was started with, while it runs"))
            return
        admitted = calling_agent.set(agent)
        try:
            await self._app(scope, receive, send)
        finally:
            calling_agent.reset(admitted)


def presented_bearer(scope: Scope) -> str | None:
    """The token of the request's ``Authorization: Bearer <token>`` header; None without one."""
    scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
    token = credentials.strip()
    return token if scheme.lower() == "bearer" and token else None


class RequestBodyGuard:
    """Refuses a POST to the MCP endpoint whose body is too large (413) or not one valid JSON-RPC message (400)."""

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, path: str) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_endpoint(scope, self._path) or scope["method"] != "POST":
            await self._app(scope, receive, send)
            return
        body = await self._read_body(scope, receive)
        if isinstance(body, WireError):
            logger.warning("refused a request body: %s", body.message)
            await _send_json(send, 413, body.to_json())
            return
        checked = (await anyio.to_thread.run_sync(read_message, body) if len(body) > PARSE_INLINE_MAX_BYTES
                   else read_message(body))
        if isinstance(checked, WireError):
            logger.warning("answered an unreadable request body with %d: %s", checked.code, checked.message)
            await _send_json(send, 400, checked.to_json())
            return
        # The SDK parses the body again: the price of keeping its transport as it is.
        await self._app(scope, _replay(body, receive), send)

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | WireError:
        declared = Headers(scope=scope).get("content-length", "")
        if declared.isdigit() and int(declared) > self._max_body_bytes:
            return self._too_large(int(declared))
        parts: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                break
            part = message.get("body", b"")
            size += len(part)
            if size > self._max_body_bytes:
                return self._too_large(None)
            parts.append(part)
            if not message.get("more_body", False):
                break
        return b"".join(parts)

    def _too_large(self, size: int | None) -> WireError:
        return too_large(size, self._max_body_bytes, "http_max_body_bytes", "the request body")


def _replay(body: bytes, receive: Receive) -> Receive:
    """A receive channel that yields the body already read, then whatever the client sends next (a disconnect)."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if sent:
            return await receive()
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return replay


async def _unauthorized(send: Send, *, wrong_token: bool, message: str) -> None:
    """The 401 both guards answer: RFC 6750's challenge (``invalid_token`` when one was presented)
    and what to send instead, as a JSON-RPC error body."""
    challenge = f'Bearer realm="{REALM}"' + (', error="invalid_token"' if wrong_token else "")
    body = WireError(INVALID_REQUEST, f"Unauthorized: {message}").to_json()
    await _send_json(send, 401, body, [(b"www-authenticate", challenge.encode("latin-1"))])


async def _send_json(send: Send, status: int, body: bytes, headers: list[tuple[bytes, bytes]] | None = None) -> None:
    await send({
        "type": "http.response.start",
        "status": status,
        "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                    *(headers or [])],
    })
    await send({"type": "http.response.body", "body": body})


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "an unknown address"

