"""A worktree agent's review in a real browser (headless Chromium, driven by Playwright, as
test_dashboard_browser.py does): its Changes (the files with their lines, the diff shown as text,
never as markup) and its Merge (a dry run first, the real merge only on its confirm), and a
conflicting branch whose dry run offers no confirm, under the page's Content-Security-Policy.

Skipped, with the reason, where no Chromium is installed (`.ci/run` installs Debian's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from starlette.applications import Starlette

from server.http.dashboard.app import Dashboard
from server.http.dashboard.sessions import DashboardSessions
from server.http.dashboard.state import CostHistory
from server.services import open_services
from tests.agents.swarm import request, spec
from tests.fixtures.git_repo import run_git
from tests.http.dashboard.test_dashboard_browser import CHROMIUM, CHROMIUM_FLAGS, playwright_api, watched_page
from tests.http.dashboard.test_dashboard_http import serving
from tests.workspaces.test_agent_workspaces import by_name, settings_for

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no Chromium on this machine (apt-get install chromium)")

TOKEN = "workspace-browser-token"
MARKUP = "<img src=x onerror=document.title='injected'>"


async def test_changes_and_a_confirmed_merge_from_the_agent_list(tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("first", f"write app.py line two by first {MARKUP}", type="editor", cwd=str(repo / "src")),
            spec("second", "write app.py line two by second", type="editor", cwd=str(repo / "src")),
            wait=True))
        ids = by_name(report)
        main_before = run_git(repo, "rev-parse", "main").strip()
        dashboard = Dashboard(DashboardSessions(TOKEN), None, CostHistory())
        dashboard.attach(services)
        async with serving(Starlette(routes=dashboard.routes())) as base, playwright_api.async_playwright() as pw:
            browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
            page, console = await watched_page(browser)
            await page.goto(dashboard.sign_in_url("127.0.0.1", int(base.rsplit(":", 1)[1])))
            expect = playwright_api.expect
            await expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            row = page.locator(f"tr[data-agent='{ids['first']}']")
            await expect(row.locator("td.workspace")).to_contain_text("switchboard/first-")
            await expect(page.locator("#summary")).to_contain_text("worktrees (2 unmerged)")

            await row.get_by_role("button", name="Changes").click()
            review = page.locator(f"[data-review='{ids['first']}']")
            file_row = review.locator("tr[data-file='src/app.py']")
            await expect(file_row).to_contain_text("+1", timeout=10_000)
            await expect(file_row).to_contain_text("-3")
            await expect(review).to_contain_text("merges cleanly into main")
            await expect(review.locator("pre.diff")).to_contain_text(f"+line two by first {MARKUP}")
            assert await review.locator("img").count() == 0 and await page.title() == "Switchboard"
            await expect(review).not_to_contain_text("null")  # every absent part left out, none shown as text
            await page.screenshot(path=str(tmp_path / "changes.png"), full_page=True)

            await row.get_by_role("button", name="Merge").click()
            await expect(review).to_contain_text("Dry run: merges cleanly into main", timeout=10_000)
            assert run_git(repo, "rev-parse", "main").strip() == main_before  # a dry run moves nothing
            await page.screenshot(path=str(tmp_path / "dry-run.png"), full_page=True)
            await review.get_by_role("button", name="Confirm merge into main").click()
            await expect(review).to_contain_text("Merged into main (merge)", timeout=10_000)
            merged = run_git(repo, "rev-parse", "main").strip()
            assert merged != main_before
            await expect(review).to_contain_text(merged[:12])
            await expect(row.locator("td.workspace")).to_contain_text("merged into main", timeout=10_000)

            other = page.locator(f"tr[data-agent='{ids['second']}']")
            await other.get_by_label("merge strategy").select_option("squash")
            await other.get_by_role("button", name="Merge").click()
            conflict = page.locator(f"[data-review='{ids['second']}']")
            await expect(conflict).to_contain_text("would not merge", timeout=10_000)
            await expect(conflict).to_contain_text("src/app.py")
            await expect(conflict.get_by_role("button", name="Confirm squash into main")).to_have_count(0)
            # The first agent's panel, its merge shown, stayed open through the pushes and re-renders.
            await expect(review).to_contain_text("Merged into main (merge)")
            await page.screenshot(path=str(tmp_path / "conflict.png"), full_page=True)
            assert run_git(repo, "rev-parse", "main").strip() == merged
            assert [line for line in console if "Content Security Policy" in line or "uncaught" in line] == []
            await browser.close()
    for name in ("changes", "dry-run", "conflict"):
        assert (tmp_path / f"{name}.png").stat().st_size > 10_000
