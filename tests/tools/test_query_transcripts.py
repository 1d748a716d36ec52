"""A claude query's transcript through every surface, on the real Claude Code CLI against the scripted
Messages API: query_list's include_transcript and since_turn, the transcript resource and its update
notifications (both protocol generations), the dashboard's JSON endpoint, and ``switchboard queries
--follow`` in another process while the query runs. An exec query's transcript is its output tail."""

from __future__ import annotations

import asyncio
import json
import sys
import threading
import warnings
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest
from mcp import Client, types
from mcp.shared.subscriptions import ResourceUpdated

from server.agents.transcript import EXEC_NOTE
from server.app import build_server
from server.config import Settings
from server.services import Services, open_services
from tests.agents.swarm import agent_settings, claude_type, held_after_tool_results, request, spec
from tests.e2e.stdio_peer import server_env
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.http.dashboard.test_workspaces import signed_in
from tests.tools.answers import error_text, structured_of

REPO = Path(__file__).resolve().parents[2]
BASH_TASK = "bash: echo first-output; echo second-output"


@pytest.fixture
def settings(tmp_path: Path, messages_api: ScriptedMessagesApi) -> Settings:
    return agent_settings(tmp_path, {"helper": claude_type(messages_api, tmp_path / "home")})


@pytest.fixture
def release(messages_api: ScriptedMessagesApi) -> threading.Event:
    """Set to let the model answer the tool result (its second turn); set at the end in any case."""
    released = threading.Event()
    messages_api.script = held_after_tool_results(released)
    return released


@pytest.fixture
async def services(settings: Settings, release: threading.Event) -> AsyncIterator[Services]:
    try:
        async with open_services(settings) as opened:
            yield opened
    finally:
        release.set()


async def start_bash_task(services: Services) -> tuple[str, str]:
    (entry,) = (await services.spawner.spawn_many(request(spec("teller", BASH_TASK, type="helper")))).entries
    return entry.agent_id, entry.query_id or ""


async def until_turn_one_is_in(services: Services, query_id: str) -> None:
    with anyio.fail_after(60):
        while True:
            _, page = await services.queries.transcript(query_id)
            if page is not None and any(entry["type"] == "tool_result" for entry in page.entries):
                return
            await anyio.sleep(0.02)


async def list_transcript(client: Client, query_id: str, **arguments: Any) -> dict[str, Any]:
    answer = structured_of(await client.call_tool("query_list", {
        "query_ids": [query_id], "include_history": True, "include_transcript": True, **arguments}))
    (listed,) = answer["queries"]
    return dict(listed)


def kinds(entries: list[dict[str, Any]]) -> list[tuple[str, int]]:
    return [(entry["type"], entry["turn"]) for entry in entries]


async def test_query_list_pages_a_running_then_ended_query_by_turn(services: Services, release: threading.Event) -> None:
    _, query_id = await start_bash_task(services)
    async with Client(build_server(services.settings, services=services)) as client:
        await until_turn_one_is_in(services, query_id)
        running = await list_transcript(client, query_id)
        assert running["status"] == "running" and running["next_turn"] == 1
        assert kinds(running["transcript"]) == [("turn", 1), ("tool_use", 1), ("usage", 1), ("tool_result", 1)]
        assert running["transcript"][3]["content"] == "first-output\nsecond-output"
        release.set()
        await services.queries.wait([query_id], mode="all", timeout_s=60)
        rest = await list_transcript(client, query_id, since_turn=running["next_turn"])
        assert rest["status"] == "completed" and "next_turn" not in rest  # all of it: nothing follows
        assert rest["transcript"][:4] == running["transcript"]  # turn one again, now known to be over
        second = await list_transcript(client, query_id, since_turn=2)
        assert kinds(second["transcript"]) == [("turn", 2), ("text", 2), ("usage", 2), ("result", 2)]
        assert second["transcript"][1]["text"] == "done: first-output\nsecond-output"
        assert "transcript" not in structured_of(await client.call_tool("query_list", {
            "query_ids": [query_id], "include_history": True}))["queries"][0]  # only when asked


async def test_query_list_refuses_since_turn_without_include_transcript_and_a_negative_turn(
        services: Services, release: threading.Event) -> None:
    release.set()
    async with Client(build_server(services.settings, services=services)) as client:
        alone = await client.call_tool("query_list", {"since_turn": 2})
        assert error_text(alone) == ("invalid_argument: since_turn pages a transcript: pass include_transcript: true "
                                     "with it")
        negative = await client.call_tool("query_list", {"include_transcript": True, "since_turn": -1})
        assert error_text(negative).startswith("invalid_argument: since_turn")


async def test_an_exec_querys_transcript_is_its_output_tail(services: Services, release: threading.Event) -> None:
    release.set()
    (entry,) = (await services.spawner.spawn_many(request(spec("echoer", "ok exec says hi"), wait=True))).entries
    async with Client(build_server(services.settings, services=services)) as client:
        listed = await list_transcript(client, entry.query_id or "")
        assert listed["output_tail"] == "exec says hi\n" and "next_turn" not in listed
        assert listed["transcript"] == [{"type": "note", "text": EXEC_NOTE}]
        shown = json.loads(_text(await client.read_resource(f"switchboard://queries/{entry.query_id}/transcript")))
        assert shown["output_tail"] == "exec says hi\n"
        assert shown["entries"] == [{"type": "note", "text": EXEC_NOTE}]


@pytest.mark.parametrize("mode", ["auto", "legacy"])
async def test_the_transcript_resource_is_announced_as_it_grows(services: Services, release: threading.Event,
                                                                 mode: str) -> None:
    updated: list[str] = []

    async def on_message(message: Any) -> None:
        if isinstance(message, types.ResourceUpdatedNotification):
            updated.append(str(message.params.uri))

    _, query_id = await start_bash_task(services)
    uri = f"switchboard://queries/{query_id}/transcript"
    async with Client(build_server(services.settings, services=services), mode=mode,
                      message_handler=on_message) as client:
        if mode == "legacy":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # resources/subscribe: the 2025 protocol's way
                await client.subscribe_resource(uri)
            await until_turn_one_is_in(services, query_id)
            with anyio.fail_after(10):
                while uri not in updated:
                    await anyio.sleep(0.01)
        else:
            async with client.listen(resource_subscriptions=[uri]) as subscription:
                await until_turn_one_is_in(services, query_id)
                with anyio.fail_after(10):
                    async for event in subscription:
                        if isinstance(event, ResourceUpdated) and event.uri == uri:
                            break
        during = json.loads(_text(await client.read_resource(uri)))
        assert during["status"] == "running" and during["next_turn"] == 1
        assert [entry["type"] for entry in during["entries"]][-1] == "tool_result"
        release.set()
        await services.queries.wait([query_id], mode="all", timeout_s=60)
        after = json.loads(_text(await client.read_resource(uri)))
        assert after["status"] == "completed" and after["entries"][-1]["type"] == "result"
        assert "next_turn" not in after


async def test_the_dashboard_serves_the_transcript_from_a_turn(services: Services, release: threading.Event) -> None:
    _, query_id = await start_bash_task(services)
    await until_turn_one_is_in(services, query_id)
    async with signed_in(services) as (base, http, _):
        url = f"{base}/api/queries/{query_id}/transcript"
        during = (await http.get(url)).json()
        assert during["status"] == "running" and during["next_turn"] == 1
        assert kinds(during["entries"]) == [("turn", 1), ("tool_use", 1), ("usage", 1), ("tool_result", 1)]
        release.set()
        await services.queries.wait([query_id], mode="all", timeout_s=60)
        after = (await http.get(url, params={"since_turn": "2"})).json()
        assert after["status"] == "completed" and "next_turn" not in after
        assert kinds(after["entries"]) == [("turn", 2), ("text", 2), ("usage", 2), ("result", 2)]
        bad = await http.get(url, params={"since_turn": "two"})
        assert bad.status_code == 400 and bad.json()["code"] == "invalid_argument"
        unknown = await http.get(f"{base}/api/queries/query-nope/transcript")
        assert unknown.status_code == 404 and unknown.json()["code"] == "not_found"


async def test_queries_follow_prints_transcript_lines_as_they_are_appended_and_stops_at_the_end(
        services: Services, release: threading.Event, tmp_path: Path) -> None:
    _, query_id = await start_bash_task(services)
    follower = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", "queries", "--follow", query_id, "--json",
        env=server_env(services.settings.data_dir), cwd=REPO, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE)
    assert follower.stdout is not None
    try:
        seen: list[dict[str, Any]] = []
        with anyio.fail_after(60):  # another process reads turn one while the model's second turn is held
            while not any(line.get("transcript", {}).get("type") == "tool_result" for line in seen):
                seen.append(json.loads(await follower.stdout.readline()))
        assert follower.returncode is None
        printed = [line["transcript"] for line in seen if "transcript" in line]
        assert kinds(printed) == [("turn", 1), ("tool_use", 1), ("usage", 1), ("tool_result", 1)]
        release.set()
        with anyio.fail_after(60):
            rest, errors = await follower.communicate()
        assert follower.returncode == 0, errors
        later = [json.loads(line) for line in rest.decode().splitlines()]
        assert kinds([line["transcript"] for line in later if "transcript" in line]) == [
            ("turn", 2), ("text", 2), ("usage", 2), ("result", 2)]
        assert later[-1]["transcript"]["type"] == "result"
        assert [line["query"]["status"] for line in later if "query" in line][-1] == "completed"
    finally:
        if follower.returncode is None:
            follower.kill()
            await follower.wait()


def _text(result: types.ReadResourceResult) -> str:
    (content,) = result.contents
    assert isinstance(content, types.TextResourceContents)
    return content.text
