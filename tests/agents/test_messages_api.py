"""The scripted Messages API, proven against the real Claude Code CLI through claude-agent-sdk's ClaudeSDKClient.

Every CLI test opens its client with ``async with`` (which reaps the CLI) under ``anyio.fail_after(SAFETY)``:
a bound on a hung CLI, not a claim about speed.
"""

from __future__ import annotations

import dataclasses
import http.client
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    Message,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    SystemMessage,
    ToolPermissionContext,
    ToolUseBlock,
)

from tests.agents.conftest import MODEL
from tests.fixtures.messages_api import (
    TEST_API_KEY,
    Answer,
    ApiError,
    RecordedRequest,
    Reply,
    ScriptedMessagesApi,
    Usage,
    default_script,
)

SAFETY = 60
OTHER_MODEL = "claude-opus-4-5"


async def run_task(client: ClaudeSDKClient, prompt: str) -> tuple[list[Message], ResultMessage]:
    """Sends one task and collects its messages up to and including its ResultMessage."""
    await client.query(prompt)
    messages = [message async for message in client.receive_response()]
    result = messages[-1]
    assert isinstance(result, ResultMessage), messages
    return messages, result


async def test_reply_ends_the_task_with_the_scripted_text_and_usage(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions]
) -> None:
    def fixed_usage(request: RecordedRequest) -> Answer:
        # A custom script can build on the default one: here, its answers with fixed token counts.
        answer = default_script(request)
        return dataclasses.replace(answer, usage=Usage(1200, 34)) if isinstance(answer, Reply) else answer

    messages_api.script = fixed_usage
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options()) as client:
            _, result = await run_task(client, "reply: hello from the script [t1]")

    assert (result.subtype, result.is_error) == ("success", False)
    assert result.result == "hello from the script [t1]"
    assert result.num_turns == 1
    assert result.usage is not None
    assert (result.usage["input_tokens"], result.usage["output_tokens"]) == (1200, 34)
    assert result.total_cost_usd is not None and result.total_cost_usd > 0
    [request] = messages_api.requests_for("[t1]")
    assert (request.model, request.stream, request.query) == (MODEL, True, "beta=true")
    assert request.session_id == result.session_id
    assert request.headers["x-api-key"] == "<redacted>"
    assert TEST_API_KEY not in json.dumps(request.headers)
    assert messages_api.models_seen() == [MODEL]


async def test_bash_makes_the_cli_run_the_command_in_its_cwd(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions], workdir: Path
) -> None:
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options()) as client:
            messages, result = await run_task(client, "bash: echo made > made.txt && echo written")

    assert (workdir / "made.txt").read_text() == "made\n"
    assert (result.is_error, result.result, result.num_turns) == (False, "done: written", 2)
    [tool_use] = [block for message in messages if isinstance(message, AssistantMessage)
                  for block in message.content if isinstance(block, ToolUseBlock)]
    assert (tool_use.name, tool_use.input["command"]) == ("Bash", "echo made > made.txt && echo written")
    asked, answered = messages_api.turns()
    assert (asked.tool_results, asked.new_prompt) == ((), True)
    assert [(r.tool_use_id, r.text, r.is_error) for r in answered.tool_results] == [(tool_use.id, "written", False)]
    assert answered.new_prompt is False


async def test_set_model_between_tasks_changes_the_model_of_the_next_request(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions]
) -> None:
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options(model=MODEL)) as client:
            _, first = await run_task(client, "reply: one [m1]")
            await client.set_model(OTHER_MODEL)
            _, second = await run_task(client, "reply: two [m2]")

    assert (first.result, second.result) == ("one [m1]", "two [m2]")
    assert [request.model for request in messages_api.requests_for("[m1]")] == [MODEL]
    assert [request.model for request in messages_api.requests_for("[m2]")] == [OTHER_MODEL]
    assert messages_api.models_seen() == [MODEL, OTHER_MODEL]
    assert second.model_usage is not None and OTHER_MODEL in second.model_usage


@pytest.mark.parametrize(("status", "error_type"), [(400, "invalid_request_error"), (529, "overloaded_error")])
async def test_a_failing_api_ends_the_task_with_the_cli_error_and_the_session_lives_on(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions], status: int, error_type: str
) -> None:
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options()) as client:
            _, failed = await run_task(client, f"error: {status} scripted {error_type} [e1]")
            _, after = await run_task(client, "reply: still here [e2]")

    assert failed.is_error is True
    assert failed.api_error_status == status
    # The CLI's own wording around the API's message, e.g. "API Error: 400 scripted invalid_request_error [e1]".
    assert failed.result is not None and failed.result.startswith(f"API Error: {status} scripted {error_type} [e1]")
    attempts = messages_api.requests_for("[e1]")
    assert attempts and all(messages_api.outcome(request) == "failed" for request in attempts)
    assert (after.is_error, after.result) == (False, "still here [e2]")


async def test_a_transient_overload_is_retried_by_the_cli(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions], tmp_path: Path
) -> None:
    def overloaded_once(request: RecordedRequest) -> Answer:
        if request.is_turn and len(messages_api.turns()) == 1:  # the record already holds this request
            return ApiError(529, "Overloaded")
        return default_script(request)

    messages_api.script = overloaded_once
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options(env=messages_api.cli_env(tmp_path / "home", max_retries=1))) as client:
            messages, result = await run_task(client, "reply: recovered")

    assert (result.is_error, result.result) == (False, "recovered")
    retries = [message.data for message in messages if isinstance(message, SystemMessage) and message.subtype == "api_retry"]
    assert [(retry["attempt"], retry["error_status"]) for retry in retries] == [(1, 529)]
    assert [messages_api.outcome(request) for request in messages_api.turns()] == ["failed", "answered"]


async def test_permission_requests_reach_can_use_tool_in_default_mode(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions], workdir: Path
) -> None:
    asked: list[tuple[str, dict[str, Any]]] = []

    async def can_use_tool(name: str, tool_input: dict[str, Any], context: ToolPermissionContext) -> Any:
        asked.append((name, tool_input))
        if name == "Write":
            return PermissionResultDeny(message="no writing in this test")
        return PermissionResultAllow()

    write = json.dumps({"file_path": str(workdir / "denied.txt"), "content": "x"})
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options(permission_mode="default", can_use_tool=can_use_tool)) as client:
            _, allowed = await run_task(client, "bash: touch allowed.txt && echo touched")
            _, denied = await run_task(client, f"tool: Write {write}")

    assert [name for name, _ in asked] == ["Bash", "Write"]
    assert asked[0][1]["command"] == "touch allowed.txt && echo touched"
    assert (allowed.result, (workdir / "allowed.txt").exists()) == ("done: touched", True)
    assert (denied.result, (workdir / "denied.txt").exists()) == ("failed: no writing in this test", False)


async def test_interrupt_during_a_slow_answer_hangs_up_on_it(
    messages_api: ScriptedMessagesApi, agent_options: Callable[..., ClaudeAgentOptions]
) -> None:
    with anyio.fail_after(SAFETY):
        async with ClaudeSDKClient(agent_options()) as client:
            await client.query("slow: 30 reply: too late [i1]")
            await messages_api.wait_until(lambda requests: any("[i1]" in request.user_text for request in requests))
            await client.interrupt()
            interrupted = [message async for message in client.receive_response()][-1]
            [slow] = messages_api.requests_for("[i1]")
            await messages_api.wait_until(lambda _: messages_api.outcome(slow) != "pending")
            _, after = await run_task(client, "reply: next [i2]")

    assert isinstance(interrupted, ResultMessage)
    assert (interrupted.subtype, interrupted.is_error) == ("error_during_execution", True)
    assert messages_api.outcome(slow) == "client_hung_up"
    assert after.result == "next [i2]"


def _post(api: ScriptedMessagesApi, path: str, body: dict[str, Any]) -> tuple[int, str, bytes]:
    connection = http.client.HTTPConnection(api.url.removeprefix("http://"), timeout=10)
    try:
        connection.request("POST", path, json.dumps(body), {"content-type": "application/json", "x-api-key": "sk-secret"})
        response = connection.getresponse()
        return response.status, response.getheader("content-type") or "", response.read()
    finally:
        connection.close()


def _sse(raw: bytes) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for frame in raw.decode().split("\n\n"):
        if frame:
            name, data = frame.split("\n")
            events.append((name.removeprefix("event: "), json.loads(data.removeprefix("data: "))))
    return events


def test_wire_shapes_without_the_cli() -> None:
    """The answer shapes the CLI relies on, checked on the wire; plus what happens to requests it does not serve."""
    with ScriptedMessagesApi() as api:
        user = {"role": "user", "content": [{"type": "text", "text": 'tool: Lookup {"q": "' + "x" * 60 + '"}'}]}
        status, kind, raw = _post(api, "/v1/messages", {"model": "m", "max_tokens": 100, "messages": [user], "stream": True})
        assert (status, kind) == (200, "text/event-stream")
        events = _sse(raw)
        assert [name for name, _ in events] == [
            "message_start", "ping", "content_block_start", *["content_block_delta"] * 3, "content_block_stop",
            "message_delta", "message_stop"]
        assert events[2][1]["content_block"]["name"] == "Lookup"
        partial = "".join(data["delta"]["partial_json"] for name, data in events if name == "content_block_delta")
        assert json.loads(partial) == {"q": "x" * 60}
        assert events[-2][1]["delta"]["stop_reason"] == "tool_use"

        status, kind, raw = _post(api, "/v1/messages", {"model": "m", "max_tokens": 1, "messages": [user]})
        message = json.loads(raw)
        assert (status, kind, message["type"], message["stop_reason"]) == (200, "application/json", "message", "end_turn")
        assert message["content"] == [{"type": "text", "text": "ok"}]  # max_tokens 1: a side request, no directive

        status, _, raw = _post(api, "/v1/messages/count_tokens", {"model": "m", "messages": [user]})
        assert status == 200 and json.loads(raw)["input_tokens"] > 0

        status, _, raw = _post(api, "/v1/elsewhere", {})
        assert (status, json.loads(raw)["error"]["type"]) == (404, "not_found_error")

        assert [request.kind for request in api.requests] == ["turn", "auxiliary", "other", "other"]
        assert [(request.method, request.path) for request in api.unknown_requests()] == [("POST", "/v1/elsewhere")]
        assert all(request.headers["x-api-key"] == "<redacted>" for request in api.requests)
        with pytest.raises(TimeoutError):
            api.wait_for(lambda requests: len(requests) > 4, timeout=0.05)
