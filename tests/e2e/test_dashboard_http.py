"""The dashboard's sign-in and request checks over real HTTP (the page itself is driven in a browser
by test_dashboard_browser.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.e2e.stdio_peer import server_env
from tests.e2e.test_http_server import free_port, printed_sign_in_link, start_http, wait_until_listening

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
async def test_with_a_token_only_a_signed_in_browser_gets_in(dashboard: tuple[str, str]) -> None:
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
                               env=server_env(tmp_path / "data"), cwd=Path(__file__).resolve().parents[2],
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
