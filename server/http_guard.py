"""ASGI middleware in front of the SDK's streamable HTTP app: the bearer token, and the request body.

`BearerTokenGuard` checks the one static token (``SWITCHBOARD_HTTP_TOKEN``) itself instead of
through the SDK's OAuth resource-server support. That support advertises protected-resource
metadata naming an authorization server, which for a static token does not exist: clients
then start OAuth discovery and registration, fail, and never tell the user to send the
header. Here a 401 says exactly that, and nothing points at OAuth.

`RequestBodyGuard` caps the body at a configured size (the SDK's 4 MiB default refused a
documented 10,000-entry store_batch) and answers a body that is not one valid JSON-RPC
message the way the stdio transport answers such a line (see `server.jsonrpc_wire`).
"""

from __future__ import annotations

import hmac
import logging

import anyio.to_thread
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.jsonrpc_wire import INVALID_REQUEST, WireError, read_message, too_large

logger = logging.getLogger(__name__)

REALM = "switchboard"
# Bodies longer than this are checked in a worker thread, so a big store_batch does not stall the event loop.
PARSE_INLINE_MAX_BYTES = 1024 * 1024


def is_endpoint(scope: Scope, path: str) -> bool:
    """Whether the request is for the MCP endpoint at ``path`` (with or without a trailing slash)."""
    return scope["type"] == "http" and str(scope["path"]).rstrip("/") == path


class BearerTokenGuard:
    """Lets a request to the MCP endpoint through only with ``Authorization: Bearer <token>``."""

    def __init__(self, app: ASGIApp, token: str, *, path: str) -> None:
        self._app = app
        self._token = token.encode("utf-8")
        self._path = path

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not is_endpoint(scope, self._path):
            await self._app(scope, receive, send)
            return
        scheme, _, credentials = Headers(scope=scope).get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not credentials.strip():
            await _unauthorized(
                send, f'Bearer realm="{REALM}"',
                "this server needs a bearer token: send the header \"Authorization: Bearer <token>\", where "
                "<token> is the value of SWITCHBOARD_HTTP_TOKEN the server runs with (no OAuth is involved)",
            )
            return
        # compare_digest takes as long whatever the token's common prefix with the guess.
        if not hmac.compare_digest(credentials.strip().encode("latin-1"), self._token):
            logger.warning("refused a request with a wrong bearer token from %s", _client(scope))
            await _unauthorized(
                send, f'Bearer realm="{REALM}", error="invalid_token"',
                "the bearer token is wrong: send \"Authorization: Bearer <token>\" with the value of "
                "SWITCHBOARD_HTTP_TOKEN the server runs with",
            )
            return
        await self._app(scope, receive, send)


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


async def _unauthorized(send: Send, challenge: str, message: str) -> None:
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

