"""Permission requests and questions that wait for a person: the real Claude Code CLI against the
scripted Messages API, answered over MCP (and through the registry for the races)."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from mcp import Client

from server.agents.permissions import NO_ONE_TO_ASK
from server.app import build_server
from server.config import Settings
from server.errors import Conflict
from server.services import open_services
from tests.agents.groups import eventually_async, wait_until
from tests.agents.swarm import agent_settings, claude_type, request, spec
from tests.e2e.stdio_peer import StdioPeer, server_env
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.tools.answers import structured_of, text_of

REPO = Path(__file__).resolve().parents[2]
QUESTION = {"questions": [{"question": "Which colour should the report use?", "header": "Colour",
                           "options": [{"label": "red", "description": "warm"},
                                       {"label": "blue", "description": "cool"}],
                           "multiSelect": False}]}


def settings_for(tmp_path: Path, api: ScriptedMessagesApi, **type_fields: Any) -> Settings:
    fields = {"on_permission_request": "ask", **type_fields}
    return agent_settings(tmp_path, {"asker": claude_type(api, tmp_path / "home", **fields)})


def write(path: Path, content: str, marker: str) -> str:
    """A task asking for the Write tool; ``marker`` rides in the content (a directive's JSON runs to the end)."""
    return f"tool: Write {json.dumps({'file_path': str(path), 'content': f'{content} {marker}'})}"


def ask(marker: str) -> str:
    """A task asking QUESTION; ``marker`` rides in its header (the tool refuses unknown fields)."""
    (question,) = QUESTION["questions"]
    return f"tool: AskUserQuestion {json.dumps({'questions': [{**question, 'header': marker}]})}"


async def call(client: Client, tool: str, **arguments: Any) -> dict[str, Any]:
    return structured_of(await client.call_tool(tool, arguments))


async def spawn(client: Client) -> str:
    spawned = await call(client, "agents_spawn_parallel", agents=[{"type": "asker", "name": "asker"}])
    (agent,) = spawned["agents"]
    assert agent["status"] == "ready", agent
    return str(agent["agent_id"])


async def start(client: Client, agent_id: str, task: str) -> str:
    started = await call(client, "query_start", agent_id=agent_id, task=task)
    return str(started["query"]["query_id"])


async def needing_input(client: Client, query_id: str) -> dict[str, Any]:
    """The query once it waits for an answer, as query_list shows it."""
    listed: dict[str, Any] = {}

    async def asks() -> bool:
        nonlocal listed
        (listed,) = (await call(client, "query_list", query_ids=[query_id], include_history=True))["queries"]
        assert listed["status"] not in ("completed", "failed"), (listed.get("error"), listed.get("result"))
        return bool(listed["status"] == "needs_input" and listed.get("pending_requests"))

    await eventually_async(asks, "the query waits for an answer", timeout_s=60)
    return listed


async def log_of(client: Client, query_id: str) -> list[dict[str, Any]]:
    listed = await call(client, "query_list", query_ids=[query_id], include_history=True, include_output=True)
    return list(listed["queries"][0]["log"])


async def ended(client: Client, query_id: str) -> dict[str, Any]:
    waited = await call(client, "query_wait", query_ids=[query_id], timeout_s=60)
    (query,) = waited["queries"]
    return dict(query)


async def test_a_write_outside_the_types_tools_waits_and_runs_once_approved(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    target = tmp_path / "approved.txt"
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "approved", "[w1]"))
        listed = await needing_input(client, query_id)
        (pending,) = listed["pending_requests"]
        assert pending["tool"] == "Write" and pending["input"]["file_path"] == str(target)
        assert not target.exists(), "the Write ran before anyone answered"
        answered = await call(client, "query_control", action="approve", query_id=query_id)
        assert answered["request_id"] == pending["request_id"] and answered["request_status"] == "allowed"
        done = await ended(client, query_id)
        assert done["status"] == "completed" and done["result"].startswith("done:"), done
        assert target.read_text() == "approved [w1]"
        log = await log_of(client, query_id)
        assert [(e["by"], e["outcome"]) for e in log if e["action"] == "permission"] == \
            [("agent", "asked"), ("client", "allowed")]


async def test_a_denial_carries_its_message_to_the_model(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    target = tmp_path / "denied.txt"
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "no", "[d1]"))
        await needing_input(client, query_id)
        await call(client, "query_control", action="deny", query_id=query_id,
                   message="write the report to notes.md instead")
        done = await ended(client, query_id)
        assert done["status"] == "completed" and done["result"].startswith("failed:"), done
        assert not target.exists()
        (result,) = messages_api.requests_for("[d1]")[-1].tool_results
        assert result.is_error and "write the report to notes.md instead" in result.text


async def test_an_unanswered_request_expires_and_is_denied(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    target = tmp_path / "late.txt"
    async with Client(build_server(settings_for(tmp_path, messages_api, approval_timeout_s=1.0))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "late", "[x1]"))
        done = await ended(client, query_id)
        assert done["status"] == "completed" and not target.exists()
        (result,) = messages_api.requests_for("[x1]")[-1].tool_results
        assert result.is_error and "No one answered" in result.text
        log = await log_of(client, query_id)
        assert ("timeout", "expired") in [(e["by"], e["outcome"]) for e in log if e["action"] == "permission"]


async def test_remember_allows_the_same_kind_of_request_later_without_asking(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(first, "one", "[r1]"))
        await needing_input(client, query_id)
        await call(client, "query_control", action="approve", query_id=query_id, remember=True)
        assert (await ended(client, query_id))["status"] == "completed"
        later = await start(client, agent_id, write(second, "two", "[r2]"))
        done = await ended(client, later)
        assert done["status"] == "completed" and done["result"].startswith("done:"), done
        assert second.read_text() == "two [r2]"
        log = await log_of(client, later)
        assert "asked" not in [e["outcome"] for e in log], log


async def test_a_question_answered_over_mcp_reaches_the_model(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, ask("[q1]"))
        (pending,) = (await needing_input(client, query_id))["pending_requests"]
        assert pending["tool"] == "AskUserQuestion"
        assert pending["input"]["questions"][0]["question"] == "Which colour should the report use?"
        refused = await client.call_tool("query_control", {"action": "approve", "query_id": query_id})
        assert refused.is_error and "answer it with answers" in text_of(refused)
        await call(client, "query_control", action="approve", query_id=query_id,
                   answers={"Which colour should the report use?": "blue"})
        done = await ended(client, query_id)
        assert done["status"] == "completed", done
        (result,) = messages_api.requests_for("[q1]")[-1].tool_results
        assert not result.is_error and "blue" in result.text


async def test_without_ask_a_question_is_told_no_one_can_answer(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    settings = settings_for(tmp_path, messages_api, on_permission_request="decide")
    async with Client(build_server(settings)) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, ask("[q2]"))
        assert (await ended(client, query_id))["status"] == "completed"
        (result,) = messages_api.requests_for("[q2]")[-1].tool_results
        assert result.is_error and NO_ONE_TO_ASK in result.text


async def test_only_the_listed_patterns_ask(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    asked, decided = tmp_path / "asked" / "a.txt", tmp_path / "free" / "b.txt"
    settings = settings_for(tmp_path, messages_api, on_permission_request=[f"Write({tmp_path}/asked/*)"])
    async with Client(build_server(settings)) as client:
        agent_id = await spawn(client)
        free = await start(client, agent_id, write(decided, "b", "[p1]"))
        assert (await ended(client, free))["result"].startswith("failed:")  # decided: Write is not the type's
        (result,) = messages_api.requests_for("[p1]")[-1].tool_results
        assert "allows only these tools" in result.text
        held = await start(client, agent_id, write(asked, "a", "[p2]"))
        await needing_input(client, held)
        await call(client, "query_control", action="approve", query_id=held)
        assert (await ended(client, held))["status"] == "completed" and asked.read_text() == "a [p2]"


async def test_terminate_while_pending_cancels_the_request(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(tmp_path / "never.txt", "x", "[t1]"))
        (pending,) = (await needing_input(client, query_id))["pending_requests"]
        await call(client, "query_control", action="terminate", query_id=query_id)
        assert (await ended(client, query_id))["status"] == "terminated"
        late = await client.call_tool("query_control", {"action": "approve", "query_id": query_id,
                                                        "request_id": pending["request_id"]})
        assert late.is_error and "cancelled (by client)" in text_of(late)
        assert not (tmp_path / "never.txt").exists()


async def test_two_answers_at_once_one_wins_the_other_is_a_conflict(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with open_services(settings_for(tmp_path, messages_api)) as services:
        (entry,) = (await services.spawner.spawn_many(request(spec("asker", type="asker")))).entries
        query = await services.queries.start(entry.agent_id, write(tmp_path / "raced.txt", "r", "[c1]"))

        async def pending() -> bool:
            return bool(await services.queries.book.approvals.pending([query.id]))

        await eventually_async(pending, "the request is pending", timeout_s=60)
        answers = await asyncio.gather(
            services.queries.answer(query.id, None, allow=True, by="dashboard"),
            services.queries.answer(query.id, None, allow=False, by="cli", message="no"),
            return_exceptions=True)
        won = [answer for answer in answers if not isinstance(answer, BaseException)]
        lost = [answer for answer in answers if isinstance(answer, BaseException)]
        assert len(won) == 1 and len(lost) == 1 and isinstance(lost[0], Conflict), answers
        assert won[0].request is not None
        assert f"by {won[0].request.decided_by}" in lost[0].message



async def cli(data_dir: Path, *args: str) -> tuple[int, str, str]:
    """``switchboard <args>`` as a second process on the same data dir."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "server.cli", *args, env=server_env(data_dir), cwd=REPO,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def test_the_cli_lists_and_answers_from_a_second_process(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    target = tmp_path / "from-cli.txt"
    settings = settings_for(tmp_path, messages_api)
    async with Client(build_server(settings)) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "cli", "[cli1]"))
        (pending,) = (await needing_input(client, query_id))["pending_requests"]
        code, listed, _ = await cli(settings.data_dir, "approvals")
        assert code == 0 and pending["request_id"] in listed and "Write: " in listed and str(target) in listed
        code, answered, _ = await cli(settings.data_dir, "approve", pending["request_id"])
        assert code == 0 and answered == f"{pending['request_id']} allowed\n"
        assert (await ended(client, query_id))["status"] == "completed" and target.read_text() == "cli [cli1]"
        code, _, error = await cli(settings.data_dir, "deny", pending["request_id"], "-m", "too late")
        assert code == 1 and "already allowed (by cli)" in error
        asked = await start(client, agent_id, ask("[cli2]"))
        (question,) = (await needing_input(client, asked))["pending_requests"]
        code, listed, _ = await cli(settings.data_dir, "approvals")
        assert "choices: red | blue" in listed
        code, _, _ = await cli(settings.data_dir, "answer", question["request_id"], "2")
        assert code == 0 and (await ended(client, asked))["status"] == "completed"
        (result,) = messages_api.requests_for("[cli2]")[-1].tool_results
        assert "blue" in result.text


class Webhook:
    """A loopback HTTP endpoint that records each POSTed JSON document (the first answered 500: retried)."""

    def __init__(self) -> None:
        self.documents: list[dict[str, Any]] = []
        self.attempts = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.sockets[0].getsockname()[1]}/hook/secret-token"

    async def __aenter__(self) -> Webhook:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *_: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
        body = await reader.readexactly(length)
        self.attempts += 1
        status = b"500 Internal Server Error" if self.attempts == 1 else b"200 OK"
        if self.attempts > 1:
            self.documents.append(json.loads(body))
        writer.write(b"HTTP/1.1 " + status + b"\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
        await writer.drain()
        writer.close()


async def test_a_new_request_is_posted_to_the_webhook_counted_and_announced(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with Webhook() as webhook:
        settings = agent_settings(tmp_path, {"asker": claude_type(messages_api, tmp_path / "home",
                                                                  on_permission_request="ask")},
                                  notify_url=webhook.url)
        async with open_services(settings) as services:
            (entry,) = (await services.spawner.spawn_many(request(spec("asker", type="asker")))).entries
            query = await services.queries.start(entry.agent_id, write(tmp_path / "hooked.txt", "h", "[n1]"))

            async def posted() -> bool:
                return bool(webhook.documents)

            await eventually_async(posted, "the webhook got the request", timeout_s=60)
            (document,) = webhook.documents
            assert webhook.attempts == 2  # the 500 was retried
            assert document["event"] == "permission_request" and document["query_id"] == query.id
            assert document["tool"] == "Write" and "switchboard approve" in document["text"]
            assert document["content"] == document["text"]
            metrics = services.metrics.render(await services.state_figures()).decode()
            assert 'switchboard_pending_requests{kind="permission"} 1.0' in metrics
            await services.queries.answer(query.id, None, allow=True, by="client")
            assert (await services.queries.wait([query.id], mode="all", timeout_s=60)).queries[0].record.status \
                == "completed"
            metrics = services.metrics.render(await services.state_figures()).decode()
            assert 'switchboard_pending_requests{kind="permission"} 0.0' in metrics
            assert 'switchboard_request_decision_seconds_count{outcome="allowed"} 1.0' in metrics


async def test_the_approvals_resource_lists_what_waits(tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(tmp_path / "r.txt", "r", "[res1]"))
        (pending,) = (await needing_input(client, query_id))["pending_requests"]
        read = await client.read_resource("switchboard://approvals")
        listed = json.loads(read.contents[0].text)  # type: ignore[union-attr]
        assert [request["id"] for request in listed["pending"]] == [pending["request_id"]]
        await call(client, "query_control", action="deny", query_id=query_id)
        await ended(client, query_id)
        listed = json.loads((await client.read_resource("switchboard://approvals")).contents[0].text)  # type: ignore[union-attr]
        assert listed["pending"] == [] and listed["recently_decided"][0]["status"] == "denied"


async def test_a_request_pending_when_the_server_is_killed_is_cancelled_at_the_next_start(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    types = {"asker": {"runtime": "claude", "model": "claude-sonnet-4-5", "allowed_tools": ["Bash"],
                       "on_permission_request": "ask", "env": messages_api.cli_env(tmp_path / "home")}}
    env = {"SWITCHBOARD_AGENT_TYPES": json.dumps(types), "SWITCHBOARD_AGENT_ROOTS": str(tmp_path),
           "SWITCHBOARD_AGENT_WATCHDOG_GRACE_S": "0.5"}
    server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log", **env)
    try:
        server.initialize()
        task = write(tmp_path / "crashed.txt", "c", "[k1]")
        answer = server.call_tool("agents_spawn_parallel", {"agents": [{"type": "asker", "name": "a", "task": task}]})
        (agent,) = answer["structuredContent"]["agents"]

        def pending() -> list[dict[str, Any]]:
            listed = server.call_tool("query_list", {"query_ids": [agent["query_id"]]})["structuredContent"]
            return list(listed["queries"][0].get("pending_requests") or []) if listed["queries"] else []

        wait_until(lambda: bool(pending()), "the request is pending", timeout_s=60)
        (request_id,) = [request["request_id"] for request in pending()]
    finally:
        server.kill()
    async with open_services(agent_settings(tmp_path, {"asker": claude_type(messages_api, tmp_path / "home")})) \
            as services:
        stored = await services.queries.book.approvals.get(request_id)
        assert stored.status == "cancelled" and stored.decided_by == "restart"
        assert (await services.queries.get(agent["query_id"])).status == "lost"
        assert await services.queries.book.approvals.pending() == []
    assert not (tmp_path / "crashed.txt").exists()
