"""Worktree agents' changes and merges through the dashboard's JSON API, over real HTTP (a signed-in
session, its CSRF token), on real exec agents in real worktrees of a real repository: what the
agent list shows of each branch, the changed files and the diff, a dry run that moves nothing,
the merge that moves main, and a second branch's conflict answered 409 with main left alone."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
from starlette.applications import Starlette

from server.http.dashboard.app import Dashboard
from server.http.dashboard.bodies import MAX_BODY_BYTES
from server.http.dashboard.sessions import DashboardSessions
from server.http.dashboard.state import CostHistory
from server.services import Services, open_services
from tests.agents.swarm import request, spec
from tests.fixtures.git_repo import run_git
from tests.http.dashboard.test_dashboard_http import assert_browser_headers, serving
from tests.workspaces.test_agent_workspaces import by_name, settings_for

TOKEN = "workspace-dashboard-token"


@contextlib.asynccontextmanager
async def signed_in(services: Services) -> AsyncIterator[tuple[str, httpx2.AsyncClient, dict[str, str]]]:
    """The dashboard of ``services`` on a loopback port, a client signed in with the token, and the
    headers a state-changing request of its page carries (its CSRF token)."""
    dashboard = Dashboard(DashboardSessions(TOKEN), None, CostHistory())
    dashboard.attach(services)
    async with serving(Starlette(routes=dashboard.routes())) as base, httpx2.AsyncClient(timeout=60) as http:
        assert (await http.post(f"{base}/login", data={"token": TOKEN})).status_code == 303
        csrf = (await http.get(f"{base}/api/state")).json()["csrf"]
        yield base, http, {"X-CSRF-Token": csrf}


def main_of(top: Path) -> str:
    return run_git(top, "rev-parse", "main").strip()


async def listed(http: httpx2.AsyncClient, base: str) -> dict[str, dict[str, Any]]:
    return {agent["name"]: agent for agent in (await http.get(f"{base}/api/state")).json()["agents"]}


async def test_changes_then_a_dry_run_then_the_merge_and_a_conflicting_branch_refused(
        tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("first", "write app.py line two by first", type="editor", cwd=str(repo / "src")),
            spec("second", "write app.py line two by second", type="editor", cwd=str(repo / "src")),
            spec("bystander", "ok nothing to merge"),
            wait=True))
        assert [entry.status for entry in report.entries] == ["completed"] * 3, report.entries
        ids = by_name(report)
        async with signed_in(services) as (base, http, csrf):
            agents = await listed(http, base)
            first_branch = agents["first"]["workspace"]["branch"]
            assert first_branch == f"switchboard/first-{ids['first'].removeprefix('agent-')[:8]}"
            assert agents["first"]["workspace"] == {"branch": first_branch, "base_branch": "main",
                                                    "merged_into": None, "discarded": False, "removed": False}
            assert agents["bystander"]["workspace"] is None

            changes = await http.get(f"{base}/api/agents/{ids['first']}/changes", params={"diff": "1"})
            assert changes.status_code == 200
            assert_browser_headers(changes)
            shown = changes.json()
            assert shown["files"] == [{"path": "src/app.py", "status": "M", "added": 1, "removed": 3}]
            assert shown["branch"] == first_branch and shown["base_branch"] == "main"
            assert shown["merges_cleanly"] is True and shown["conflicts"] == [] and shown["merged_into"] is None
            assert [commit.split(" ", 1)[1] for commit in shown["commits"]] == ["first: write app.py line two by first"]
            assert "+line two by first" in shown["diff"] and "-line one" in shown["diff"]
            assert shown["diff_truncated"] is False
            assert shown["head"] == run_git(repo, "rev-parse", first_branch).strip()
            without_diff = (await http.get(f"{base}/api/agents/{ids['first']}/changes")).json()
            assert without_diff["diff"] is None and without_diff["files"] == shown["files"]

            main_before = main_of(repo)
            url = f"{base}/api/agents/{ids['first']}/merge"
            dry = await http.post(url, json={"dry_run": True}, headers=csrf)
            assert dry.status_code == 200, dry.text
            assert dry.json() == {"agent_id": ids["first"], "branch": first_branch, "into": "main",
                                  "strategy": "merge", "dry_run": True, "before": main_before, "after": main_before}
            assert main_of(repo) == main_before and (repo / "src" / "app.py").read_text().startswith("line one")
            assert (await listed(http, base))["first"]["workspace"]["merged_into"] is None

            merged = await http.post(url, json={"strategy": "merge", "into": "main"}, headers=csrf)
            assert merged.status_code == 200, merged.text
            outcome = merged.json()
            assert outcome["dry_run"] is False and outcome["before"] == main_before
            assert outcome["after"] != main_before and main_of(repo) == outcome["after"]
            assert (repo / "src" / "app.py").read_text() == "line two by first"  # the clean checkout came along
            assert (await listed(http, base))["first"]["workspace"]["merged_into"] == "main"
            assert (await http.get(f"{base}/api/agents/{ids['first']}/changes")).json()["merged_into"] == "main"

            # The second branch edits the same lines: its changes say it would conflict, and both its
            # dry run and its merge answer 409 naming the file, with main where the first merge left it.
            second = (await http.get(f"{base}/api/agents/{ids['second']}/changes")).json()
            assert second["merges_cleanly"] is False and second["conflicts"] == ["src/app.py"]
            for body in ({"dry_run": True}, {"dry_run": True, "strategy": "squash"}, {}):
                refused = await http.post(f"{base}/api/agents/{ids['second']}/merge", json=body, headers=csrf)
                assert refused.status_code == 409, (body, refused.text)
                assert refused.json()["code"] == "conflict" and "src/app.py" in refused.json()["error"], body
                assert "nothing was changed" in refused.json()["error"]
            assert main_of(repo) == outcome["after"] and run_git(repo, "status", "--porcelain") == ""
            assert (repo / "src" / "app.py").read_text() == "line two by first"
            assert (await listed(http, base))["second"]["workspace"]["merged_into"] is None


async def test_wrong_requests_are_refused_with_a_code_and_change_nothing(tmp_path: Path, repo: Path) -> None:
    async with open_services(settings_for(tmp_path)) as services:
        report = await services.spawner.spawn_many(request(
            spec("editor", "write notes.txt from the agent", type="editor", cwd=str(repo)),
            spec("plain", "ok works in its cwd", type="plain"),
            wait=True))
        ids = by_name(report)
        main_before = main_of(repo)
        async with signed_in(services) as (base, http, csrf):
            for agent_id, status, code in [("agent-000000000000", 404, "not_found"),
                                           (ids["plain"], 400, "invalid_argument")]:
                changes = await http.get(f"{base}/api/agents/{agent_id}/changes")
                assert changes.status_code == status and changes.json()["code"] == code, changes.text
                merge = await http.post(f"{base}/api/agents/{agent_id}/merge", json={"dry_run": True}, headers=csrf)
                assert merge.status_code == status and merge.json()["code"] == code, merge.text
            assert "works in its cwd" in changes.json()["error"]

            odd_flag = await http.get(f"{base}/api/agents/{ids['editor']}/changes", params={"diff": "yes"})
            assert odd_flag.status_code == 400 and "diff" in odd_flag.json()["error"]

            url = f"{base}/api/agents/{ids['editor']}/merge"
            wrong: list[tuple[Any, str]] = [
                ({"strategy": "octopus"}, "strategy"),
                ({"strategy": 1}, "strategy"),
                ({"dry_run": "yes"}, "dry_run"),
                ({"dry_run": 1}, "dry_run"),
                ({"into": 5}, "into"),
                ({"into": " main"}, "into"),
                ({"into": "b" * 300}, "into"),
                ({"force": True}, "force"),
                (["merge"], "body"),
                (None, "body"),
            ]
            for body, field in wrong:
                answer = await http.post(url, json=body, headers=csrf)
                assert answer.status_code == 400, body
                assert answer.json()["code"] == "invalid_argument" and field in answer.json()["error"], body
            no_branch = await http.post(url, json={"into": "nowhere"}, headers=csrf)
            assert no_branch.status_code == 400 and "'nowhere' is not a branch" in no_branch.json()["error"]
            huge = await http.post(url, json={"into": "b" * MAX_BODY_BYTES}, headers=csrf)
            assert huge.status_code == 413 and huge.json()["code"] == "too_large"
            # A merge needs the page's CSRF token and its own origin, like every other change.
            assert (await http.post(url, json={})).status_code == 403
            cross = await http.post(url, json={}, headers={**csrf, "Origin": "http://evil.example"})
            assert cross.status_code == 403
            assert_browser_headers(cross)
            assert main_of(repo) == main_before
            async with httpx2.AsyncClient() as stranger:
                assert (await stranger.get(f"{base}/api/agents/{ids['editor']}/changes")).status_code == 401
                assert (await stranger.post(url, json={})).status_code == 401
            assert main_of(repo) == main_before
            # And then the right request merges.
            merged = await http.post(url, json={"strategy": "squash"}, headers=csrf)
            assert merged.status_code == 200 and merged.json()["strategy"] == "squash"
            assert main_of(repo) == merged.json()["after"] != main_before
            assert run_git(repo, "show", "main:notes.txt") == "from the agent"
