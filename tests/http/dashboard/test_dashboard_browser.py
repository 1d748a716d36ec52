"""The dashboard in a real browser (headless Chromium, driven by Playwright): sign in with the
printed link, watch an exec agent's query, pause and resume it from the page and see the state
change without reloading, all under the page's Content-Security-Policy (nothing blocked); a
screenshot of each page goes to the test's tmp dir.

Skipped, with the reason, where no Chromium is installed (`.ci/run` installs Debian's)."""

from __future__ import annotations

import json
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.agents.groups import file_size, running_in_group, stat_fields
from tests.agents.swarm import EXEC_AGENT
from tests.e2e.test_http_server import free_port, printed_sign_in_link, start_http, wait_until_listening
from tests.fixtures.messages_api import ScriptedMessagesApi

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
playwright_api = pytest.importorskip("playwright.async_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")

TOKEN = "dashboard-test-token"
# As the machine's notes advise for a closed network: no background connections, no sandbox as root.
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A real `switchboard serve --transport http` with a token; its MCP URL and printed sign-in link."""
    port = free_port()
    types = {"worker": {"runtime": "exec", "command": [sys.executable, str(EXEC_AGENT), "{task}"]}}
    process = start_http(tmp_path, port, SWITCHBOARD_HTTP_TOKEN=TOKEN, SWITCHBOARD_AGENT_TYPES=json.dumps(types),
                         SWITCHBOARD_AGENT_ROOTS=str(tmp_path))
    try:
        wait_until_listening(process, port)
        yield f"http://127.0.0.1:{port}/mcp", printed_sign_in_link(tmp_path / "stderr.log")
    finally:
        process.terminate()
        assert process.wait(30) == 0


async def watched_page(browser: Any) -> tuple[Any, list[str]]:
    """A new page, and the list its console messages and uncaught errors go to (Chromium reports
    each thing its Content-Security-Policy blocked there)."""
    page = await browser.new_page(viewport={"width": 1280, "height": 800})
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))
    page.on("pageerror", lambda error: console.append(f"uncaught: {error}"))
    return page, console


def states(pgid: int) -> set[str]:
    return {fields[0] for pid in running_in_group(pgid) if (fields := stat_fields(pid)) is not None}


async def test_pause_and_resume_from_the_page_without_reloading(server: tuple[str, str], tmp_path: Path) -> None:
    mcp_url, link = server
    output = tmp_path / "loop.txt"
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
            Client(streamable_http_client(mcp_url, http_client=http)) as client:
        await client.call_tool("memory_usage", {"action": "store", "namespace": "findings", "key": "bug",
                                                "value": "the parser drops the last header line"})
        spawned = await client.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "looper", "task": f"loop {output}"}]})
        agent = spawned.structured_content["agents"][0]
        listed = await client.call_tool("agent_list", {})
        pgid = listed.structured_content["agents"][0]["pid"]

        async with playwright_api.async_playwright() as playwright:
            browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page, console = await watched_page(browser)
            served = await page.goto(link)
            assert page.url.endswith("/")  # the one-time link became a session, then the page
            assert served is not None
            assert "default-src 'self'" in (await served.header_value("content-security-policy") or "")
            expect = playwright_api.expect
            await expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            await page.click("nav button[data-tab=queries]")
            row = page.locator(f"tr[data-query='{agent['query_id']}']")
            await expect(row.locator(".status")).to_have_text("running", timeout=10_000)
            await page.screenshot(path=str(tmp_path / "queries-running.png"), full_page=True)

            navigations: list[str] = []
            page.on("framenavigated", lambda frame: navigations.append(frame.url))
            await row.get_by_role("button", name="Pause").click()
            await expect(row.locator(".status")).to_have_text("paused", timeout=5_000)
            assert states(pgid) == {"T"}
            size = file_size(output)
            await page.screenshot(path=str(tmp_path / "queries-paused.png"), full_page=True)
            await row.get_by_role("button", name="Resume").click()
            await expect(row.locator(".status")).to_have_text("running", timeout=5_000)
            assert navigations == [], "the page reloaded"
            while file_size(output) == size:  # resumed: the loop writes again (bounded by the test timeout)
                await page.wait_for_timeout(20)

            for tab in ("agents", "memory", "uploads", "index"):
                await page.click(f"nav button[data-tab={tab}]")
                await page.screenshot(path=str(tmp_path / f"{tab}.png"), full_page=True)
            await page.click("nav button[data-tab=memory]")
            await page.fill("form#search input[name=q]", "header line parser")
            await page.click("form#search button")
            await expect(page.locator("#hits")).to_contain_text("bug", timeout=5_000)
            await expect(page.locator(f"tr[data-agent='{agent['agent_id']}'] .status")).to_have_count(1)
            assert [line for line in console if "Content Security Policy" in line or "uncaught" in line] == []

            # Signed out (a fresh context): the API refuses, the page asks to sign in, the used link is spent.
            other = await browser.new_page()
            await other.goto(link)
            await expect(other.locator("body")).to_contain_text("has been used or has expired")
            await browser.close()
        await client.call_tool("agent_terminate", {"all": True})
    for name in ("queries-running", "queries-paused", "agents", "memory", "uploads", "index"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000


async def test_a_permission_request_is_allowed_from_the_needs_you_list(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    port = free_port()
    target = tmp_path / "from-dashboard.txt"
    types = {"asker": {"runtime": "claude", "model": "claude-sonnet-4-5", "allowed_tools": ["Bash"],
                       "on_permission_request": "ask", "env": messages_api.cli_env(tmp_path / "home")}}
    process = start_http(tmp_path, port, SWITCHBOARD_HTTP_TOKEN=TOKEN, SWITCHBOARD_AGENT_TYPES=json.dumps(types),
                         SWITCHBOARD_AGENT_ROOTS=str(tmp_path))
    try:
        wait_until_listening(process, port)
        link = printed_sign_in_link(tmp_path / "stderr.log")
        task = f"tool: Write {json.dumps({'file_path': str(target), 'content': 'allowed in the page'})}"
        async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as http, \
                Client(streamable_http_client(f"http://127.0.0.1:{port}/mcp", http_client=http)) as client:
            spawned = await client.call_tool("agents_spawn_parallel", {"agents": [
                {"type": "asker", "name": "writer", "task": task}]})
            query_id = spawned.structured_content["agents"][0]["query_id"]
            async with playwright_api.async_playwright() as playwright:
                browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
                page, console = await watched_page(browser)
                await page.goto(link)
                expect = playwright_api.expect
                request = page.locator("#needs-you .request")
                await expect(request).to_have_count(1, timeout=60_000)
                await expect(request).to_contain_text("writer asks to use Write")
                await expect(request.locator("pre").first).to_contain_text(str(target))
                assert not target.exists()
                await page.screenshot(path=str(tmp_path / "needs-you.png"), full_page=True)
                await request.get_by_role("button", name="Allow").click()
                await expect(page.locator("#needs-you")).to_be_hidden(timeout=10_000)
                waited = await client.call_tool("query_wait", {"query_ids": [query_id], "timeout_s": 60})
                assert waited.structured_content["queries"][0]["status"] == "completed"
                assert target.read_text() == "allowed in the page"
                await browser.close()
            assert console == [], console
    finally:
        process.terminate()
        assert process.wait(30) == 0
