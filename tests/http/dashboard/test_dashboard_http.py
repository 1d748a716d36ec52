"""The dashboard's sign-in and request checks over real HTTP (the page itself is driven in a browser
by test_dashboard_browser.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
import uvicorn
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.applications import Starlette
from starlette.types import ASGIApp

from server.http.dashboard.app import Dashboard
from server.http.dashboard.login_throttle import FREE_FAILURES, LoginThrottle
from server.http.dashboard.sessions import DashboardSessions
from server.http.dashboard.state import CostHistory
from tests.agents.swarm import EXEC_AGENT
from tests.e2e.stdio_peer import server_env
from tests.e2e.test_http_server import free_port, printed_sign_in_link, start_http, wait_until_listening
from tests.manual_clock import ManualClock

TOKEN = "dash-http-token"


@pytest.fixture
def dashboard(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """A real server's base URL and the sign-in link it printed; parametrise with extra environment."""
    port = free_port()
    process = start_http(tmp_path, port, **getattr(request, "param", {}))
    try:
        wait_until_listening(process, port)
        yield f"http://127.0.0.1:{port}", printed_sign_in_link(tmp_path / "stderr.log")
    finally:
        process.terminate()
        assert process.wait(30) == 0


@pytest.mark.parametrize("dashboard", [{"SWITCHBOARD_HTTP_TOKEN": TOKEN}], indirect=True)
async def test_with_a_token_only_a_signed_in_browser_gets_in(dashboard: tuple[str, str], tmp_path: Path) -> None:
    base, link = dashboard
    async with httpx2.AsyncClient() as stranger:
        page = await stranger.get(f"{base}/")
        assert page.status_code == 303 and page.headers["location"] == "/login"
        api = await stranger.get(f"{base}/api/state")
        assert api.status_code == 401 and "sign in first" in api.json()["error"]
        forged = await stranger.get(f"{base}/login", params={"code": "made-up"})
        assert forged.status_code == 401 and "has been used or has expired" in forged.text
        wrong = await stranger.post(f"{base}/login", data={"token": "guess"})
        assert wrong.status_code == 401 and "not this server's token" in wrong.text
    async with httpx2.AsyncClient() as browser:
        signed = await browser.get(link)
        assert signed.status_code == 303 and signed.headers["location"] == "/"
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        state = (await browser.get(f"{base}/api/state")).json()
        assert state["status"]["agents_by_status"] == {} and state["csrf"]
        assert (await browser.get(f"{base}/")).status_code == 200
    async with httpx2.AsyncClient() as late:
        again = await late.get(link)  # one use only
        assert again.status_code == 401
    async with httpx2.AsyncClient() as by_token:
        assert (await by_token.post(f"{base}/login", data={"token": TOKEN})).status_code == 303
        assert (await by_token.get(f"{base}/api/state")).status_code == 200
    # The one-time code is printed once, as the link; uvicorn's access log shows it redacted.
    log = (tmp_path / "stderr.log").read_text()
    code = link.rsplit("code=", 1)[1]
    assert log.count(code) == 1 and "/login?code=[redacted]" in log


async def test_without_a_token_loopback_hosts_only_and_csrf_for_changes(dashboard: tuple[str, str]) -> None:
    base, link = dashboard
    assert link == f"{base}/"
    port = base.rsplit(":", 1)[1]
    async with httpx2.AsyncClient() as http:
        rebound = await http.get(f"{base}/", headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 421
        assert (await http.get(f"{base}/")).status_code == 200  # and a session cookie
        csrf = (await http.get(f"{base}/api/state")).json()["csrf"]
        url = f"{base}/api/queries/query-nope/control"
        bare = await http.post(url, json={"action": "pause"})
        assert bare.status_code == 403 and "X-CSRF-Token" in bare.json()["error"]
        cross = await http.post(url, json={"action": "pause"},
                                headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
        assert cross.status_code == 403
        allowed = await http.post(url, json={"action": "pause"}, headers={"X-CSRF-Token": csrf, "Origin": base})
        assert allowed.status_code == 404 and "no query 'query-nope'" in allowed.json()["error"]
        odd = await http.post(url, json={"action": "explode"}, headers={"X-CSRF-Token": csrf})
        assert odd.status_code == 400


def test_the_dashboard_command_serves_only_the_dashboard_and_prints_its_url(tmp_path: Path) -> None:
    port = free_port()
    log = tmp_path / "stderr.log"
    process = subprocess.Popen([sys.executable, "-m", "server.cli", "dashboard", "--port", str(port)],
                               env=server_env(tmp_path / "data"), cwd=Path(__file__).resolve().parents[3],
                               stdout=subprocess.PIPE, stderr=log.open("wb"))
    try:
        wait_until_listening(process, port)
        assert printed_sign_in_link(log) == f"http://127.0.0.1:{port}/"
        with httpx2.Client() as http:
            assert http.get(f"http://127.0.0.1:{port}/").status_code == 200
            assert "switchboard_tool_calls_total" not in http.get(f"http://127.0.0.1:{port}/metrics").text
            assert http.get(f"http://127.0.0.1:{port}/mcp").status_code == 404
    finally:
        process.terminate()
        assert process.wait(30) == 0
    assert process.stdout is not None and process.stdout.read() == b""  # stdout stays clean


async def test_an_open_event_stream_neither_blocks_nor_outlives_a_shutdown(tmp_path: Path) -> None:
    port = free_port()
    process = start_http(tmp_path, port)
    try:
        wait_until_listening(process, port)
        async with httpx2.AsyncClient(timeout=30) as http, \
                http.stream("GET", f"http://127.0.0.1:{port}/api/events") as stream:
            lines = stream.aiter_lines()
            assert await anext(lines) == "event: state"
            assert (await anext(lines)).startswith('data: {"status":')
            process.terminate()  # with the stream still open
            # The server ends the stream itself (a clean end of the chunked body), not by cutting
            # the connection when its graceful-shutdown time is up.
            async for _ in lines:
                pass
            assert process.wait(30) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert "memory store closed" in (tmp_path / "stderr.log").read_text()


BROWSER_HEADERS = {
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


def assert_browser_headers(response: httpx2.Response) -> None:
    """The headers a browser-facing answer carries: own scripts and styles only, never framed."""
    where = f"{response.request.method} {response.request.url.path} ({response.status_code})"
    for name, value in BROWSER_HEADERS.items():
        assert response.headers.get(name) == value, f"{where}: {name}"
    policy = {directive.split()[0]: directive.split()[1:]
              for directive in response.headers.get("content-security-policy", "").split(";") if directive.strip()}
    assert policy.get("default-src") == ["'self'"], where
    assert policy.get("frame-ancestors") == ["'none'"], where
    assert "'unsafe-inline'" not in str(policy) and "'unsafe-eval'" not in str(policy), where


@pytest.mark.parametrize("dashboard", [{"SWITCHBOARD_HTTP_TOKEN": TOKEN}], indirect=True)
async def test_every_dashboard_answer_carries_the_browser_security_headers(dashboard: tuple[str, str]) -> None:
    base, link = dashboard
    async with httpx2.AsyncClient() as stranger:
        answers = [
            await stranger.get(f"{base}/"),  # 303 to /login
            await stranger.get(f"{base}/login"),  # the form
            await stranger.post(f"{base}/login", data={"token": "guess"}),  # 401
            await stranger.get(f"{base}/api/state"),  # 401
            await stranger.get(f"{base}/static/app.js"),
            await stranger.get(f"{base}/static/style.css"),
            await stranger.get(f"{base}/static/secrets.txt"),  # 404
            await stranger.delete(f"{base}/login"),  # 405
        ]
        assert [answer.status_code for answer in answers] == [303, 200, 401, 401, 200, 200, 404, 405]
    async with httpx2.AsyncClient(timeout=30) as browser:
        answers = [await browser.get(link), await browser.get(f"{base}/"), await browser.get(f"{base}/api/state")]
        assert [answer.status_code for answer in answers] == [303, 200, 200]
        answers.append(await browser.post(f"{base}/api/queries/query-nope/control", json={"action": "pause"}))  # 403
        async with browser.stream("GET", f"{base}/api/events") as stream:
            answers.append(stream)
    for answer in answers:
        assert_browser_headers(answer)


async def test_a_rebound_host_is_refused_with_the_browser_security_headers(dashboard: tuple[str, str]) -> None:
    base, _ = dashboard
    async with httpx2.AsyncClient() as http:
        rebound = await http.get(f"{base}/", headers={"Host": f"evil.example:{base.rsplit(':', 1)[1]}"})
    assert rebound.status_code == 421
    assert_browser_headers(rebound)


@contextlib.asynccontextmanager
async def serving(app: ASGIApp) -> AsyncIterator[str]:
    """``app`` on a real loopback port in this process (so the test holds its clock), until the block ends."""
    port = free_port()
    web = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off"))
    task = asyncio.create_task(web.serve())
    deadline = time.monotonic() + 30
    while not web.started:
        assert not task.done() and time.monotonic() < deadline, "the dashboard did not start listening"
        await asyncio.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        web.should_exit = True
        await task


def client_at(address: str) -> httpx2.AsyncClient:
    """An HTTP client whose requests come from ``address`` (any of 127.0.0.0/8 is this machine)."""
    return httpx2.AsyncClient(transport=httpx2.AsyncHTTPTransport(local_address=address))


async def test_failed_sign_ins_lock_the_address_out_for_a_growing_time() -> None:
    clock = ManualClock()
    dashboard = Dashboard(DashboardSessions(TOKEN), None, CostHistory(), login_throttle=LoginThrottle(clock))
    async with serving(Starlette(routes=dashboard.routes())) as base, \
            client_at("127.0.0.1") as guesser, client_at("127.0.0.2") as neighbour:
        for attempt in range(FREE_FAILURES):
            wrong = await guesser.post(f"{base}/login", data={"token": f"guess-{attempt}"})
            assert wrong.status_code == 401, attempt
        # Locked out: not even the right token (or a valid sign-in link) is checked, nor used up.
        link = dashboard.sign_in_url("127.0.0.1", int(base.rsplit(":", 1)[1]))
        for refused in (await guesser.post(f"{base}/login", data={"token": TOKEN}), await guesser.get(link)):
            assert refused.status_code == 429 and "Too many failed sign-ins" in refused.text
            first_wait = int(refused.headers["retry-after"])
            assert first_wait > 0
        # Another address is not held up by this one's failures.
        assert (await neighbour.post(f"{base}/login", data={"token": TOKEN})).status_code == 303

        # Once the wait is over the next attempt is checked; another failure locks out for longer.
        clock.advance(first_wait)
        assert (await guesser.post(f"{base}/login", data={"token": "one more guess"})).status_code == 401
        refused = await guesser.post(f"{base}/login", data={"token": TOKEN})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > first_wait
        clock.advance(int(refused.headers["retry-after"]))
        assert (await guesser.get(link)).status_code == 303  # the link was not spent while locked out

        # A success resets the count: the next few failures are answered 401 again, not 429.
        for attempt in range(FREE_FAILURES):
            assert (await guesser.post(f"{base}/login", data={"token": f"again-{attempt}"})).status_code == 401
        assert (await guesser.post(f"{base}/login", data={"token": TOKEN})).status_code == 429


@pytest.mark.parametrize("dashboard", [{"SWITCHBOARD_HTTP_TOKEN": TOKEN}], indirect=True)
async def test_the_served_dashboard_refuses_sign_ins_after_repeated_failures(dashboard: tuple[str, str]) -> None:
    base, _ = dashboard
    async with client_at("127.0.0.1") as guesser, client_at("127.0.0.3") as owner:
        answers = [(await guesser.post(f"{base}/login", data={"token": f"guess-{n}"})).status_code
                   for n in range(FREE_FAILURES)]
        assert answers == [401] * FREE_FAILURES
        refused = await guesser.post(f"{base}/login", data={"token": TOKEN})
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) > 0
        assert (await owner.post(f"{base}/login", data={"token": TOKEN})).status_code == 303


@pytest.mark.parametrize("dashboard", [{"SWITCHBOARD_HTTP_TOKEN": TOKEN}], indirect=True)
async def test_a_malformed_sign_in_body_is_refused_as_the_callers_mistake(dashboard: tuple[str, str]) -> None:
    base, _ = dashboard
    async with httpx2.AsyncClient() as http:
        no_boundary = await http.post(f"{base}/login", content=b"token=x",
                                      headers={"Content-Type": "multipart/form-data"})
        assert no_boundary.status_code == 400
        not_utf8 = await http.post(f"{base}/login", content=b"token=%ff%fe",
                                   headers={"Content-Type": "application/x-www-form-urlencoded"})
        assert not_utf8.status_code == 400 and "UTF-8" in not_utf8.text
        huge = await http.post(f"{base}/login", data={"token": "x" * 200_000})
        assert huge.status_code == 413
        # None of these was a guess at the token, and the right one still works.
        assert (await http.post(f"{base}/login", data={"token": TOKEN})).status_code == 303


EXEC_TYPES = {"worker": {"runtime": "exec", "command": [sys.executable, str(EXEC_AGENT), "{task}"]}}


@pytest.mark.parametrize("dashboard", [{"SWITCHBOARD_AGENT_TYPES": json.dumps(EXEC_TYPES)}], indirect=True)
async def test_a_wrong_control_body_is_invalid_argument_and_changes_nothing(dashboard: tuple[str, str],
                                                                            tmp_path: Path) -> None:
    base, _ = dashboard
    async with httpx2.AsyncClient(timeout=30) as http, Client(streamable_http_client(f"{base}/mcp")) as client:
        spawned = await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "waiter", "task": f"wait {tmp_path / 'never'}"}]})
        query_id = spawned.structured_content["agents"][0]["query_id"]
        csrf = (await http.get(f"{base}/api/state")).json()["csrf"]
        url = f"{base}/api/queries/{query_id}/control"

        def query_and_agent(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
            query = next(query for query in state["queries"] if query["query_id"] == query_id)
            return query, next(agent for agent in state["agents"] if agent["agent_id"] == query["agent_id"])

        query, agent = query_and_agent((await http.get(f"{base}/api/state")).json())
        assert query["status"] == "running"
        wrong: list[tuple[Any, str]] = [
            ({"action": "change_model", "model": 5}, "model"),
            ({"action": "change_model", "model": ["opus"]}, "model"),
            ({"action": "change_model", "model": {"name": "opus"}}, "model"),
            ({"action": "change_model", "model": True}, "model"),
            ({"action": "change_model"}, "model"),
            ({"action": "change_model", "model": "   "}, "model"),
            ({"action": "change_model", "model": "m" * 1000}, "model"),
            ({"action": "pause", "model": 5}, "model"),
            ({"action": "pause", "grace_s": 0}, "grace_s"),
            ({"action": "change_budget"}, "budget_usd"),
            ({"action": "change_budget", "budget_usd": 0}, "budget_usd"),
            ({"action": "change_budget", "budget_usd": "5"}, "budget_usd"),
            ({"action": "change_budget", "budget_usd": True}, "budget_usd"),
            ({"action": "resume", "budget_usd": 5}, "budget_usd"),
            ({"action": 5}, "action"),
            ({"action": ["pause"]}, "action"),
            ({"action": "explode"}, "action"),
            ({}, "action"),
            ([{"action": "pause"}], "body"),
            ("pause", "body"),
            (None, "body"),
        ]
        for body, field in wrong:
            answer = await http.post(url, json=body, headers={"X-CSRF-Token": csrf})
            assert answer.status_code == 400, body
            assert answer.json()["code"] == "invalid_argument" and field in answer.json()["error"], body
        for raw in (b"{", b"[" * 5000, b'{"action": "pause"', b"\xff\xfe", b""):
            answer = await http.post(url, content=raw, headers={"X-CSRF-Token": csrf,
                                                                "Content-Type": "application/json"})
            assert answer.status_code == 400 and answer.json()["code"] == "invalid_argument", raw[:20]
            assert "body" in answer.json()["error"], raw[:20]
        huge = await http.post(url, json={"action": "change_model", "model": "m" * 100_000},
                               headers={"X-CSRF-Token": csrf})
        assert huge.status_code == 413 and huge.json()["code"] == "too_large"

        after, agent_after = query_and_agent((await http.get(f"{base}/api/state")).json())
        assert after["status"] == "running" and after["log"] == [] and agent_after["model"] == agent["model"]
        changed = await http.post(url, json={"action": "change_model", "model": " other-model "},
                                  headers={"X-CSRF-Token": csrf})
        assert changed.status_code == 200 and changed.json()["effect"] == "next_query"
        after, agent_after = query_and_agent((await http.get(f"{base}/api/state")).json())
        assert agent_after["model"] == "other-model" and [event["action"] for event in after["log"]] == ["change_model"]
        budgeted = await http.post(url, json={"action": "change_budget", "budget_usd": 2.5},
                                   headers={"X-CSRF-Token": csrf})
        assert budgeted.status_code == 200
        after, _ = query_and_agent((await http.get(f"{base}/api/state")).json())
        assert after["budget_usd"] == 2.5 and after["remaining_usd"] == 2.5
        assert [event["action"] for event in after["log"]] == ["change_model", "change_budget"]
        await client.call_tool("agent_terminate", {"all": True})


async def test_a_wrong_answer_body_is_invalid_argument_and_an_unknown_request_not_found(
        dashboard: tuple[str, str]) -> None:
    base, _ = dashboard
    async with httpx2.AsyncClient(timeout=30) as http:
        csrf = (await http.get(f"{base}/api/state")).json()["csrf"]
        url = f"{base}/api/requests/request-000000000000/answer"
        for body, field in [({"decision": "maybe"}, "decision"), ({}, "decision"), ({"decision": True}, "decision"),
                            ({"decision": "deny", "message": 5}, "message"),
                            ({"decision": "allow", "answers": ["blue"]}, "answers"),
                            ({"decision": "allow", "answers": {"q": 1}}, "answers"),
                            ({"decision": "allow", "remember": True}, "remember"), ("allow", "body")]:
            answer = await http.post(url, json=body, headers={"X-CSRF-Token": csrf})
            assert answer.status_code == 400, body
            assert answer.json()["code"] == "invalid_argument" and field in answer.json()["error"], body
        unknown = await http.post(url, json={"decision": "allow"}, headers={"X-CSRF-Token": csrf})
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"
        unsigned = await http.post(url, json={"decision": "allow"})
        assert unsigned.status_code == 403
