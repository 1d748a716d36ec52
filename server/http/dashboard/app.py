"""The dashboard's HTTP routes: the page, sign-in, its data (JSON and server-sent events) and controls.

    GET  /                                the page (signed in), else a redirect to /login
    GET  /login?code=...                  the printed one-time link: a session cookie, then /
    GET  /login, POST /login (token=...)  sign in with the server's token
    GET  /static/app.js, /static/style.css, /static/favicon.svg
    GET  /api/state                       everything the page shows, and the session's CSRF token
    GET  /api/events                      the same, pushed (text/event-stream) on each change
    POST /api/queries/{query_id}/control  {"action": "pause" | "resume" | "terminate" | "change_model" |
                                           "change_budget", "model"?, "budget_usd"?}
                                          (a wrong body: 400, code invalid_argument, naming the field)
    GET  /api/queries/{query_id}/transcript?since_turn=N  a claude query's turns from N, as much as fits in
                                          64 KiB, and the next_turn to ask for (an exec query: its output tail)
    POST /api/requests/{request_id}/answer {"decision": "allow" | "always" | "deny", "message"?, "answers"?}
    GET  /api/agents/{agent_id}/changes?diff=1  a worktree agent's files, commits and (diff=1) diff, as
                                          agent_changes answers them; the diff cut at 256 KiB (diff_truncated)
    POST /api/agents/{agent_id}/merge     {"strategy"?: "merge" | "squash" | "rebase", "into"?, "dry_run"?}, as
                                          agent_merge takes it; a conflict (a dry run's too): 409, code conflict
    GET  /api/memory/search?q=...&namespace=...

An API request refused past the sign-in and CSRF checks is answered ``{"error": ..., "code": ...}``,
its status the code's (400 invalid_argument, 404 not_found, 409 conflict, 413 too_large, ...).

Without a token the server is on loopback, and every route answers only requests whose Host names
it (as ``/mcp`` does); with one, everything but the sign-in and the static files needs a session.
Failed sign-ins lock the client's address out for a while (`login_throttle`). Every answer carries
the headers of a browser-facing app (`SECURITY_HEADERS`): the page runs only its own script and
style files (it has no inline ones) and is never shown inside a frame.
"""

from __future__ import annotations

import asyncio
import html
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

from mcp.server.transport_security import TransportSecuritySettings
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import (
    FileResponse,
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
    StreamingResponse,
)
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from server.agents.spend import Limit
from server.errors import SwitchboardError
from server.http.dashboard.bodies import (
    answer_request,
    control_request,
    flag,
    merge_request,
    read_body,
    sign_in_token,
    turn_number,
)
from server.http.dashboard.login_throttle import LoginThrottle
from server.http.dashboard.sessions import COOKIE, SESSION_TTL_S, DashboardSessions, Session, csrf_ok
from server.http.dashboard.state import CostHistory, agent_changes, dashboard_state
from server.http.guard import host_allowed
from server.services import Services
from tools.support.query_views import TranscriptView

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"
STATIC_FILES = {"app.js": "text/javascript", "style.css": "text/css", "favicon.svg": "image/svg+xml"}
PUSH_EVERY_S = 5.0      # also without changes: CPU, memory and active times move on their own
SETTLE_S = 0.1          # changes that come together are pushed together
_STATUS_FOR_CODE = {"invalid_argument": 400, "not_found": 404, "conflict": 409, "forbidden": 403, "too_large": 413,
                    "unavailable": 503}
# Scripts, styles, the event stream and the sign-in form: this origin only, and no inline code, so
# text an agent wrote that ever slipped into the page as markup could still run nothing.
CONTENT_SECURITY_POLICY = ("default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
                           "frame-ancestors 'none'")
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Frame-Options": "DENY",  # frame-ancestors for browsers that predate it: no clickjacking the controls
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",  # a sign-in link's code never leaves in a Referer
}
_SECURITY_HEADER_PAIRS = [(name.lower().encode(), value.encode()) for name, value in SECURITY_HEADERS.items()]

Handler = Callable[[Request], Awaitable[Response]]


class Dashboard:
    """The dashboard of one server: its sessions, its history, its routes."""

    def __init__(self, sessions: DashboardSessions, protection: TransportSecuritySettings | None,
                 history: CostHistory, login_throttle: LoginThrottle | None = None) -> None:
        self._sessions = sessions
        self._protection = protection
        self.history = history
        self._throttle = login_throttle or LoginThrottle()
        self._attached: Services | None = None
        self._closing = asyncio.Event()

    def close(self) -> None:
        """Ends every open event stream (the server is shutting down)."""
        self._closing.set()

    def attach(self, services: Services) -> None:
        """The open services it shows (set once the stores are open, before it serves)."""
        self._attached = services

    @property
    def _services(self) -> Services:
        assert self._attached is not None, "attach() the services before serving"
        return self._attached

    def sign_in_url(self, url_host: str, port: int) -> str:
        """Where a browser starts: with a token, a one-time sign-in link; without, the page."""
        base = f"http://{url_host}:{port}"
        return f"{base}/login?code={self._sessions.new_code()}" if self._sessions.needs_sign_in else f"{base}/"

    def routes(self) -> list[BaseRoute]:
        return [
            _SecuredRoute("/", self._guarded(self._page, api=False), methods=["GET"]),
            _SecuredRoute("/login", self._hosted(self._login), methods=["GET", "POST"]),
            _SecuredRoute("/static/{name}", self._hosted(self._static), methods=["GET"]),
            _SecuredRoute("/api/state", self._guarded(self._state), methods=["GET"]),
            _SecuredRoute("/api/events", self._guarded(self._events), methods=["GET"]),
            _SecuredRoute("/api/queries/{query_id}/control", self._guarded(self._control), methods=["POST"]),
            _SecuredRoute("/api/queries/{query_id}/transcript", self._guarded(self._transcript), methods=["GET"]),
            _SecuredRoute("/api/requests/{request_id}/answer", self._guarded(self._answer), methods=["POST"]),
            _SecuredRoute("/api/agents/{agent_id}/changes", self._guarded(self._changes), methods=["GET"]),
            _SecuredRoute("/api/agents/{agent_id}/merge", self._guarded(self._merge), methods=["POST"]),
            _SecuredRoute("/api/memory/search", self._guarded(self._search), methods=["GET"]),
        ]

    # -- access --------------------------------------------------------------------------------

    def _hosted(self, handler: Handler) -> Handler:
        """Without a token: only requests naming this loopback host (a rebound name gets nothing)."""

        async def checked(request: Request) -> Response:
            if self._protection is not None and not host_allowed(self._protection, request.headers.get("host", "")):
                return Response("this dashboard answers requests to its own loopback address only\n", 421)
            return await handler(request)

        return checked

    def _guarded(self, handler: Callable[[Request, Session], Awaitable[Response]], *, api: bool = True) -> Handler:
        async def checked(request: Request) -> Response:
            session_id = request.cookies.get(COOKIE)
            session = self._sessions.session(session_id)
            fresh = None
            if session is None:
                if self._sessions.needs_sign_in:
                    if api:
                        return JSONResponse({"error": "sign in first: open the link the server printed, or /login"},
                                            401)
                    return RedirectResponse("/login", 303)
                fresh = self._sessions.open_without_sign_in()
                session = self._sessions.session(fresh)
                assert session is not None
            if request.method == "POST" and not self._same_origin(request, session):
                return JSONResponse({"error": "refused: a state-changing request needs this page's X-CSRF-Token "
                                              "and its own Origin"}, 403)
            response = await handler(request, session)
            if fresh is not None:
                _set_cookie(response, fresh)
            return response

        return self._hosted(checked)

    @staticmethod
    def _same_origin(request: Request, session: Session) -> bool:
        origin = request.headers.get("origin")
        if origin is not None and origin.split("://", 1)[-1] != request.headers.get("host"):
            return False
        return csrf_ok(session, request.headers.get("x-csrf-token"))

    async def _login(self, request: Request) -> Response:
        if request.method == "POST":
            try:
                token = sign_in_token(request.headers.get("content-type", ""), await read_body(request))
            except SwitchboardError as error:  # not a guess at the token: answered, not counted
                return HTMLResponse(_login_form(error.message), _STATUS_FOR_CODE.get(error.code, 400))
            return self._sign_in(request, lambda: self._sessions.redeem_token(token),
                                 "That is not this server's token.")
        if "code" in request.query_params:
            code = request.query_params["code"]
            return self._sign_in(request, lambda: self._sessions.redeem_code(code),
                                 "That sign-in link has been used or has expired; sign in with the token, or "
                                 "restart the dashboard for a new link.")
        if not self._sessions.needs_sign_in:
            return RedirectResponse("/", 303)
        return HTMLResponse(_login_form(None))

    def _sign_in(self, request: Request, redeem: Callable[[], str | None], refusal: str) -> Response:
        """One sign-in attempt, checked only while the client is not locked out. Nothing here awaits,
        so concurrent guesses from one address cannot all pass the lockout check before any is counted."""
        client = request.client.host if request.client is not None else "unknown"
        wait_s = self._throttle.retry_after_s(client)
        if wait_s:
            return HTMLResponse(_login_form(f"Too many failed sign-ins from your address: try again in {wait_s} s."),
                                429, headers={"Retry-After": str(wait_s)})
        session_id = redeem()
        if session_id is None:
            self._throttle.failed(client)
            if self._throttle.retry_after_s(client):
                logger.warning("dashboard sign-in: %s is locked out after repeated failures", client)
            return HTMLResponse(_login_form(refusal), 401)
        self._throttle.succeeded(client)
        response = RedirectResponse("/", 303)
        _set_cookie(response, session_id)
        return response

    # -- the page ------------------------------------------------------------------------------

    async def _page(self, _request: Request, _session: Session) -> Response:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=_NO_STORE)

    async def _static(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name not in STATIC_FILES:
            return Response("not found\n", 404)
        return FileResponse(STATIC / name, media_type=STATIC_FILES[name], headers=_NO_STORE)

    async def _state(self, _request: Request, session: Session) -> Response:
        return JSONResponse({**await dashboard_state(self._services, self.history), "csrf": session.csrf})

    async def _events(self, request: Request, _session: Session) -> Response:
        return StreamingResponse(self._stream(request), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    async def _stream(self, request: Request) -> AsyncIterator[str]:
        changed = asyncio.Event()
        stop_listening = self._services.supervisor.changes.listen(lambda _kind, _ident: changed.set())
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            while not self._closing.is_set():
                state = await dashboard_state(self._services, self.history)
                yield f"event: state\ndata: {json.dumps(state, separators=(',', ':'))}\n\n"
                change = asyncio.ensure_future(changed.wait())
                await asyncio.wait((change, closing), timeout=PUSH_EVERY_S, return_when=asyncio.FIRST_COMPLETED)
                change.cancel()
                if change.done() and not change.cancelled():
                    await asyncio.sleep(SETTLE_S)
                changed.clear()
                if await request.is_disconnected():
                    return
        finally:
            closing.cancel()
            stop_listening()

    async def _control(self, request: Request, _session: Session) -> Response:
        query_id = request.path_params["query_id"]
        try:
            asked = control_request(await read_body(request))
            outcome = await self._services.queries.control(asked.action, query_id, model=asked.model, actor="dashboard",
                                                           budget=Limit(asked.budget_usd))
        except SwitchboardError as error:
            return _refusal(error)
        return JSONResponse({"query_id": query_id, "status": outcome.query.status, "effect": outcome.effect})

    async def _transcript(self, request: Request, _session: Session) -> Response:
        try:
            since_turn = turn_number(request.query_params.get("since_turn"), "since_turn")
            view, page = await self._services.queries.transcript(request.path_params["query_id"],
                                                                 since_turn=since_turn)
        except SwitchboardError as error:
            return _refusal(error)
        return JSONResponse(TranscriptView.from_engine(view, page).model_dump(mode="json", exclude_none=True),
                            headers=_NO_STORE)

    async def _answer(self, request: Request, _session: Session) -> Response:
        request_id = request.path_params["request_id"]
        try:
            answer = answer_request(await read_body(request))
            pending = await self._services.queries.book.approvals.get(request_id)
            outcome = await self._services.queries.answer(
                pending.query_id, request_id, allow=answer.allowed, by="dashboard", message=answer.message,
                remember=answer.remember, answers=answer.answers)
        except SwitchboardError as error:
            return _refusal(error)
        decided = outcome.request
        assert decided is not None
        return JSONResponse({"request_id": decided.id, "status": decided.status, "query_id": decided.query_id})

    async def _changes(self, request: Request, _session: Session) -> Response:
        try:
            include_diff = flag(request.query_params.get("diff"), "diff")
            changes = await agent_changes(self._services, request.path_params["agent_id"], include_diff=include_diff)
        except SwitchboardError as error:
            return _refusal(error)
        return JSONResponse(changes, headers=_NO_STORE)

    async def _merge(self, request: Request, _session: Session) -> Response:
        agent_id = request.path_params["agent_id"]
        workspaces = self._services.supervisor.workspaces
        try:
            merge = merge_request(await read_body(request))
            workspace = await workspaces.get(agent_id)
            outcome = await workspaces.merge(agent_id, into=merge.into, strategy=merge.strategy, dry_run=merge.dry_run)
        except SwitchboardError as error:
            return _refusal(error)
        return JSONResponse({"agent_id": agent_id, "branch": workspace.branch, "into": outcome.into,
                             "strategy": outcome.strategy, "dry_run": outcome.dry_run, "before": outcome.before,
                             "after": outcome.after})

    async def _search(self, request: Request, _session: Session) -> Response:
        text = request.query_params.get("q", "").strip()
        if not text:
            return JSONResponse({"hits": []})
        try:
            hits = await self._services.memory.search_semantic(
                text, namespace=request.query_params.get("namespace") or None, k=20)
        except SwitchboardError as error:
            return _refusal(error)
        return JSONResponse({"hits": [{"namespace": hit.entry.namespace, "key": hit.entry.key,
                                       "score": round(hit.score, 3), "value": hit.entry.value} for hit in hits]})


_NO_STORE = {"Cache-Control": "no-store"}


class _SecuredRoute(Route):
    """A route every answer of which carries `SECURITY_HEADERS`, a refused method's included."""

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def send_secured(message: Message) -> None:
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_SECURITY_HEADER_PAIRS]}
            await send(message)

        try:
            await super().handle(scope, receive, send_secured)
        except HTTPException as refused:  # how Starlette answers a method the route does not take
            await PlainTextResponse(refused.detail, refused.status_code, refused.headers)(scope, receive, send_secured)


def _refusal(error: SwitchboardError) -> JSONResponse:
    return JSONResponse({"error": str(error), "code": error.code}, _STATUS_FOR_CODE.get(error.code, 500))


def _set_cookie(response: Response, session_id: str) -> None:
    response.set_cookie(COOKIE, session_id, max_age=int(SESSION_TTL_S), path="/", httponly=True, samesite="strict")


def _login_form(problem: str | None) -> str:
    note = f'<p class="problem">{html.escape(problem, quote=False)}</p>' if problem else ""
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>Switchboard: sign in</title>
<link rel="stylesheet" href="/static/style.css"><link rel="icon" href="/static/favicon.svg"></head><body class="login"><main>
<h1>Switchboard</h1>{note}<p>Open the link the server printed, or sign in with its token
(<code>SWITCHBOARD_HTTP_TOKEN</code>).</p>
<form method="post" action="/login"><input type="password" name="token" autocomplete="current-password"
placeholder="token" required autofocus><button type="submit">Sign in</button></form></main></body></html>"""
