"""The real ``switchboard serve`` over stdio at the edges of the protocol: end of input with
requests in flight, lines that are not valid messages, and lines over the size limit."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from tests.e2e.malformed import INVALID_REQUEST, MALFORMED
from tests.e2e.stdio_peer import DEADLINE_SECONDS, StdioPeer, serve_command, server_env

REPO = Path(__file__).resolve().parents[2]

INITIALIZE = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
    "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "tests", "version": "0"}}}
INITIALIZED = {"jsonrpc": "2.0", "method": "notifications/initialized"}


def tool_call(request_id: int, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": request_id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


def run_piped(data_dir: Path, messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str, int]:
    """What ``printf '...' | switchboard serve`` prints, logs and exits with: every message, then end of input."""
    piped = b"".join(json.dumps(message).encode() + b"\n" for message in messages)
    result = subprocess.run(serve_command(), input=piped, capture_output=True, env=server_env(data_dir), cwd=REPO,
                            timeout=DEADLINE_SECONDS, check=False)
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    return answers, result.stderr.decode(), result.returncode


def test_end_of_input_answers_every_request_received_then_shuts_down_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    batch = [{"key": f"entry-{i}", "value": {"i": i}} for i in range(2000)]  # still running when input ends
    answers, log, code = run_piped(data_dir, [
        INITIALIZE, INITIALIZED,
        {"jsonrpc": "2.0", "id": 2, "method": "tools/list"},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
        tool_call(4, "memory_usage", {"action": "store", "namespace": "piped", "key": "one", "value": "v"}),
        tool_call(5, "memory_usage", {"action": "store_batch", "namespace": "batch", "entries": batch}),
    ])
    by_id = {answer["id"]: answer for answer in answers}
    assert sorted(answer["id"] for answer in answers) == [1, 2, 3, 4, 5], answers
    assert all("result" in answer for answer in answers), [a for a in answers if "error" in a]
    assert "memory_usage" in [tool["name"] for tool in by_id[2]["result"]["tools"]]
    assert by_id[4]["result"]["isError"] is False and by_id[5]["result"]["isError"] is False
    assert code == 0 and "memory store closed" in log and "Traceback" not in log

    # What was answered is in the database: a second server on the same directory finds it.
    restarted = StdioPeer(data_dir, tmp_path / "stderr.log")
    restarted.initialize()
    one = restarted.call_tool("memory_usage", {"action": "retrieve", "namespace": "piped", "key": "one"})
    last = restarted.call_tool("memory_usage", {"action": "retrieve", "namespace": "batch", "key": "entry-1999"})
    assert one["structuredContent"]["entry"]["value"] == "v"
    assert last["structuredContent"]["entry"]["value"] == {"i": 1999}
    restarted.close_stdin()
    assert restarted.wait() == 0


def test_a_request_the_client_cancelled_does_not_hold_up_shutdown(tmp_path: Path) -> None:
    batch = [{"key": f"entry-{i}", "value": i} for i in range(10_000)]
    answers, log, code = run_piped(tmp_path / "data", [
        INITIALIZE, INITIALIZED,
        tool_call(2, "memory_usage", {"action": "store_batch", "namespace": "batch", "entries": batch}),
        {"jsonrpc": "2.0", "method": "notifications/cancelled", "params": {"requestId": 2, "reason": "changed mind"}},
        {"jsonrpc": "2.0", "id": 3, "method": "ping"},
    ])
    ids = [answer["id"] for answer in answers]
    assert ids.count(3) == 1 and ids.count(2) <= 1  # the cancelled call may have finished first
    assert code == 0 and "memory store closed" in log and "Traceback" not in log


def test_every_unreadable_line_is_answered_and_the_server_keeps_serving(tmp_path: Path) -> None:
    server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log")
    server.initialize()
    wrong: list[str] = []
    for case in MALFORMED:
        server.send_line(case.raw)
        reply = server.read_message()  # a missing reply fails here, on the deadline
        error = reply.get("error", {})
        if (reply.get("id"), error.get("code")) != (case.request_id, case.code) or case.says not in error["message"]:
            wrong.append(f"{case.name}: {reply}")
        assert server.request("ping", {}) == {}, case.name
    assert not wrong, "\n".join(wrong)
    # Nothing was half-written: the tool never saw the refused calls.
    stats = server.call_tool("memory_usage", {"action": "stats"})
    assert stats["structuredContent"]["stats"]["total_entries"] == 0
    server.close_stdin()
    assert server.wait() == 0


def test_a_line_over_the_limit_is_refused_naming_the_setting_and_the_next_line_is_served(tmp_path: Path) -> None:
    server = StdioPeer(tmp_path / "data", tmp_path / "stderr.log", SWITCHBOARD_STDIO_MAX_LINE_BYTES="4096")
    server.initialize()
    value = "x" * 10_000
    server.send({"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {
        "name": "memory_usage", "arguments": {"action": "store", "key": "big", "value": value}}})
    reply = server.read_message()
    assert reply["id"] is None and reply["error"]["code"] == INVALID_REQUEST
    message = reply["error"]["message"]
    assert "4,096 bytes" in message and "stdio_max_line_bytes" in message
    assert "SWITCHBOARD_STDIO_MAX_LINE_BYTES" in message
    assert reply["error"]["data"] == {"limit_bytes": 4096, "setting": "stdio_max_line_bytes"}
    assert server.request("ping", {}) == {}
    small = server.call_tool("memory_usage", {"action": "store", "key": "small", "value": "x" * 1000})
    assert small["isError"] is False
    got = server.call_tool("memory_usage", {"action": "retrieve", "key": "big"})
    assert got["structuredContent"]["found"] is False
    server.close_stdin()
    assert server.wait() == 0
