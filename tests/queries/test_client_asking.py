"""A client in a blocking call is asked its agents' permission requests and questions as MCP form
elicitations: the real Claude Code CLI against the scripted Messages API, an SDK client whose
elicitation callback answers. ``legacy`` speaks the handshake protocol (the form is a request on
the call's back-channel); ``auto`` speaks 2026-07-28 (the form rides an input_required result and
the client's retry carries the answer)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from mcp import Client
from mcp.client.session import ClientRequestContext
from mcp.types import ElicitRequestFormParams, ElicitRequestParams, ElicitResult, ErrorData

from server.app import build_server
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.queries.test_approvals import ask, call, log_of, needing_input, settings_for, spawn, start, write

MODES = ["legacy", "auto"]


class Person:
    """An elicitation callback that answers each form with the next of ``answers`` (None: decline)."""

    def __init__(self, *answers: dict[str, Any] | None) -> None:
        self.answers = list(answers)
        self.forms: list[ElicitRequestFormParams] = []

    async def __call__(self, context: ClientRequestContext, params: ElicitRequestParams
                       ) -> ElicitResult | ErrorData:
        assert isinstance(params, ElicitRequestFormParams)
        self.forms.append(params)
        answer = self.answers.pop(0)
        return ElicitResult(action="decline") if answer is None else ElicitResult(action="accept", content=answer)


def permission_outcomes(log: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(entry["by"], entry["outcome"]) for entry in log if entry["action"] == "permission"]


@pytest.mark.parametrize("mode", MODES)
async def test_a_blocking_spawn_asks_its_client_and_the_answer_decides(
        tmp_path: Path, messages_api: ScriptedMessagesApi, mode: str) -> None:
    target = tmp_path / "asked.txt"
    person = Person({"decision": "allow"})
    async with Client(build_server(settings_for(tmp_path, messages_api)), mode=mode,
                      elicitation_callback=person) as client:
        spawned = await call(client, "agents_spawn_parallel", wait=True, timeout_s=120, agents=[
            {"type": "asker", "name": "writer", "task": write(target, "asked", "[e1]")}])
        (agent,) = spawned["agents"]
        assert agent["status"] == "completed" and agent["result"].startswith("done:"), agent
        assert target.read_text() == "asked [e1]"
        (form,) = person.forms
        assert "writer asks to use Write" in form.message and str(target) in form.message
        assert form.requested_schema["properties"]["decision"]["enum"][-1] == "deny"
        assert permission_outcomes(await log_of(client, agent["query_id"])) == [("agent", "asked"), ("client", "allowed")]


@pytest.mark.parametrize("mode", MODES)
async def test_a_question_is_asked_with_its_options_and_the_choice_reaches_the_model(
        tmp_path: Path, messages_api: ScriptedMessagesApi, mode: str) -> None:
    person = Person({"answer_1": "blue"})
    async with Client(build_server(settings_for(tmp_path, messages_api)), mode=mode,
                      elicitation_callback=person) as client:
        agent_id = await spawn(client)
        started = await call(client, "query_start", agent_id=agent_id, task=ask("[e2]"), wait=True, timeout_s=120)
        assert started["query"]["status"] == "completed", started
        (form,) = person.forms
        field = form.requested_schema["properties"]["answer_1"]
        assert field["title"] == "Which colour should the report use?" and field["enum"] == ["red", "blue"]
        (result,) = messages_api.requests_for("[e2]")[-1].tool_results
        assert not result.is_error and "blue" in result.text


@pytest.mark.parametrize("mode", MODES)
async def test_a_denial_from_the_form_carries_its_message(
        tmp_path: Path, messages_api: ScriptedMessagesApi, mode: str) -> None:
    target = tmp_path / "refused.txt"
    person = Person({"decision": "deny", "message": "use notes.md"})
    async with Client(build_server(settings_for(tmp_path, messages_api)), mode=mode,
                      elicitation_callback=person) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "no", "[e3]"))
        waited = await call(client, "query_wait", query_ids=[query_id], timeout_s=120)
        assert waited["queries"][0]["status"] == "completed" and not target.exists()
        (result,) = messages_api.requests_for("[e3]")[-1].tool_results
        assert result.is_error and "use notes.md" in result.text


@pytest.mark.parametrize("mode", MODES)
async def test_a_declined_form_leaves_the_request_to_the_other_surfaces(
        tmp_path: Path, messages_api: ScriptedMessagesApi, mode: str) -> None:
    target = tmp_path / "later.txt"
    person = Person(None)
    async with Client(build_server(settings_for(tmp_path, messages_api)), mode=mode,
                      elicitation_callback=person) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "later", "[e4]"))
        waited = await call(client, "query_wait", query_ids=[query_id], mode="any", timeout_s=3)
        assert waited["timed_out"] and waited["pending"] == [query_id]
        assert len(person.forms) == 1  # asked once in the call, not again
        (pending,) = (await needing_input(client, query_id))["pending_requests"]
        await call(client, "query_control", action="approve", query_id=query_id, request_id=pending["request_id"])
        waited = await call(client, "query_wait", query_ids=[query_id], timeout_s=120)
        assert waited["queries"][0]["status"] == "completed" and target.read_text() == "later [e4]"
        assert permission_outcomes(await log_of(client, query_id))[-1] == ("client", "allowed")


async def test_a_client_without_elicitation_is_not_asked_and_any_returns_on_needs_input(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    async with Client(build_server(settings_for(tmp_path, messages_api))) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(tmp_path / "held.txt", "held", "[e5]"))
        waited = await call(client, "query_wait", query_ids=[query_id], mode="any", timeout_s=120)
        (query,) = waited["queries"]
        assert query["status"] == "needs_input" and not waited["timed_out"]
        assert query["pending_requests"][0]["tool"] == "Write"


async def test_an_answer_given_elsewhere_decides_and_the_open_form_is_withdrawn(
        tmp_path: Path, messages_api: ScriptedMessagesApi) -> None:
    target = tmp_path / "elsewhere.txt"
    form_ended = asyncio.Event()
    answered_elsewhere: list[asyncio.Task[Any]] = []

    async def person_away(context: ClientRequestContext, params: ElicitRequestParams) -> ElicitResult | ErrorData:
        # While the form is open, the request is approved on another surface (here: query_control).
        answered_elsewhere.append(asyncio.create_task(
            call(client, "query_control", action="approve", query_id=query_id)))
        try:
            await asyncio.Event().wait()  # the person never comes back to this form
        finally:
            form_ended.set()
        raise AssertionError("unreachable")

    async with Client(build_server(settings_for(tmp_path, messages_api)), mode="legacy",
                      elicitation_callback=person_away) as client:
        agent_id = await spawn(client)
        query_id = await start(client, agent_id, write(target, "elsewhere", "[e6]"))
        waited = await call(client, "query_wait", query_ids=[query_id], timeout_s=120)
        assert waited["queries"][0]["status"] == "completed" and target.read_text() == "elsewhere [e6]"
        (approved,) = answered_elsewhere
        assert (await approved)["request_status"] == "allowed"
        await asyncio.wait_for(form_ended.wait(), 30)
