"""The real ``switchboard serve --transport http``: streamable HTTP, bearer auth, loopback-only without a token,
request bodies that are too large or not valid JSON-RPC."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

from tests.e2e.malformed import INVALID_REQUEST, MALFORMED
from tests.e2e.stdio_peer import serve_command, server_env

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_listening(process: subprocess.Popen[bytes], port: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert process.poll() is None, "the server exited before listening"
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.05)  # polling for readiness against a deadline, not synchronising on time
    raise TimeoutError(f"nothing listening on port {port}")


def start_http(tmp_path: Path, port: int, host: str = "127.0.0.1", **env: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*serve_command(), "--transport", "http", "--host", host, "--port", str(port)],
        env=server_env(tmp_path / "data", **env),
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=(tmp_path / "stderr.log").open("wb"),
    )


def printed_sign_in_link(log: Path) -> str:
    """The dashboard link a server printed on stderr at start (polled for against a deadline)."""
    deadline = time.monotonic() + 10
    while "dashboard: " not in log.read_text():
        assert time.monotonic() < deadline, "the server printed no dashboard link"
        time.sleep(0.05)
    return log.read_text().split("dashboard: ", 1)[1].split()[0]


@pytest.fixture
def http_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    """A server on a free loopback port; parametrise (indirect) with a dict of extra environment variables."""
    port = free_port()
    process = start_http(tmp_path, port, **getattr(request, "param", {}))
    try:
        wait_until_listening(process, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        # uvicorn stops serving, then the stores close, then the process exits as on stdio.
        assert process.wait(30) == 0
        assert "memory store closed" in (tmp_path / "stderr.log").read_text()


async def test_streamable_http_stores_and_retrieves(http_server: str) -> None:
    async with Client(http_server) as client:
        stored = await client.call_tool("memory_usage", {"action": "store", "key": "over-http", "value": [1, 2]})
        assert stored.structured_content["entry"]["version"] == 1
        got = await client.call_tool("memory_usage", {"action": "retrieve", "key": "over-http"})
        assert got.structured_content["entry"]["value"] == [1, 2]


ACCEPT = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
LIST_TOOLS = {"jsonrpc": "2.0", "id": 1, "method": "tools/list"}
TOKEN = "s3cret-token"


@pytest.mark.parametrize("http_server", [{"SWITCHBOARD_HTTP_TOKEN": TOKEN,
                                          "PYTHONWARNINGS": "error::DeprecationWarning"}], indirect=True)
async def test_a_static_token_is_asked_for_plainly_and_sends_no_client_into_oauth(
    http_server: str, tmp_path: Path
) -> None:
    base = http_server.removesuffix("/mcp")
    async with httpx2.AsyncClient() as plain:
        # Nothing advertises an authorization server: clients have no OAuth flow to start.
        for path in ("/.well-known/oauth-protected-resource", "/.well-known/oauth-protected-resource/mcp",
                     "/.well-known/oauth-authorization-server", "/.well-known/openid-configuration", "/register"):
            assert (await plain.get(base + path)).status_code == 404, path
        missing = await plain.post(http_server, json=LIST_TOOLS, headers=ACCEPT)
        wrong = await plain.post(http_server, json=LIST_TOOLS, headers={**ACCEPT, "Authorization": "Bearer wrong"})
    assert (missing.status_code, wrong.status_code) == (401, 401)
    assert missing.headers["www-authenticate"] == 'Bearer realm="switchboard"'
    assert wrong.headers["www-authenticate"] == 'Bearer realm="switchboard", error="invalid_token"'
    for refused in (missing, wrong):
        message = refused.json()["error"]["message"]
        assert 'send "Authorization: Bearer <token>"' in message or '"Authorization: Bearer <token>"' in message
        assert "SWITCHBOARD_HTTP_TOKEN" in message and TOKEN not in refused.text

    # An MCP client without the token is told what to send, not "Server returned an error response".
    with pytest.RaisesGroup(pytest.RaisesExc(MCPError, match="SWITCHBOARD_HTTP_TOKEN"), flatten_subgroups=True):
        async with Client(http_server) as client:
            await client.list_tools()
    async with (httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as authorised,
                Client(streamable_http_client(http_server, http_client=authorised)) as client):
        assert "memory_usage" in [t.name for t in (await client.list_tools()).tools]
    # No deprecated SDK auth settings (MCPDeprecationWarning names validate_token_resource).
    assert "DeprecationWarning" not in (tmp_path / "stderr.log").read_text()


async def test_a_body_that_is_not_one_valid_message_gets_the_jsonrpc_error_stdio_gives(http_server: str) -> None:
    wrong: list[str] = []
    async with httpx2.AsyncClient() as http:
        for case in MALFORMED:
            response = await http.post(http_server, content=case.raw, headers=ACCEPT)
            reply = response.json()
            error = reply.get("error", {})
            if ((response.status_code, reply.get("id"), error.get("code")) != (400, case.request_id, case.code)
                    or case.says not in error.get("message", "")):
                wrong.append(f"{case.name}: HTTP {response.status_code} {reply}")
    assert not wrong, "\n".join(wrong)
    async with Client(http_server) as client:  # and the server serves on
        assert (await client.call_tool("memory_usage", {"action": "stats"})).is_error is False


# Semantic indexing off: embedding 5 MB of values takes seconds and is not what this test is about.
@pytest.mark.parametrize("http_server", [{"SWITCHBOARD_VECTOR_INDEXED_NAMESPACES": ""}], indirect=True)
async def test_a_store_batch_larger_than_the_sdk_default_4_mib_succeeds(http_server: str) -> None:
    # The documented maximum, 10,000 entries, in a 5.6 MB body (over the SDK's default 4 MiB cap).
    entries = [{"key": f"entry-{i}", "value": f"{i:06d}" + "x" * 494} for i in range(10_000)]
    async with Client(http_server) as client:
        stored = await client.call_tool("memory_usage", {"action": "store_batch", "namespace": "big",
                                                         "entries": entries})
        assert stored.is_error is False, stored.content
        assert stored.structured_content["stored"] == 10_000
        got = await client.call_tool("memory_usage", {"action": "retrieve", "namespace": "big", "key": "entry-9999"})
        assert got.structured_content["entry"]["value"] == entries[-1]["value"]


@pytest.mark.parametrize("http_server", [{"SWITCHBOARD_HTTP_MAX_BODY_BYTES": "65536"}], indirect=True)
async def test_a_body_over_the_configured_cap_gets_413_with_a_jsonrpc_error_naming_the_setting(
    http_server: str,
) -> None:
    big = {"action": "store", "key": "big", "value": "x" * 100_000}
    async with httpx2.AsyncClient() as http:
        response = await http.post(http_server, headers=ACCEPT, json={
            "jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "memory_usage", "arguments": big}})
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["code"] == INVALID_REQUEST
    assert error["data"] == {"limit_bytes": 65536, "setting": "http_max_body_bytes"}
    assert "65,536 bytes" in error["message"] and "SWITCHBOARD_HTTP_MAX_BODY_BYTES" in error["message"]
    async with Client(http_server) as client:
        with pytest.raises(MCPError, match="http_max_body_bytes"):  # what the client shows its user
            await client.call_tool("memory_usage", big)
        small = await client.call_tool("memory_usage", {"action": "store", "key": "small", "value": "x" * 1000})
        assert small.is_error is False


def test_refuses_to_serve_beyond_loopback_without_a_token(tmp_path: Path) -> None:
    process = start_http(tmp_path, free_port(), host="0.0.0.0")
    assert process.wait(30) == 1
    log = (tmp_path / "stderr.log").read_text()
    assert "refusing to serve HTTP on 0.0.0.0 without a token" in log and "SWITCHBOARD_HTTP_TOKEN" in log
    assert not (tmp_path / "data").exists()


def test_without_a_token_a_foreign_host_header_is_refused_on_any_loopback_address(tmp_path: Path) -> None:
    port = free_port()
    process = start_http(tmp_path, port, host="127.0.0.2")
    try:
        deadline = time.monotonic() + 30
        while True:  # readiness: poll against a deadline
            try:
                socket.create_connection(("127.0.0.2", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline and process.poll() is None
                time.sleep(0.05)
        body = {"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {
            "protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "0"}}}
        headers = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
        with httpx2.Client() as http:
            rebound = http.post(f"http://127.0.0.2:{port}/mcp", json=body, headers={
                **headers, "Host": f"evil.example:{port}", "Origin": f"http://evil.example:{port}"})
            own = http.post(f"http://127.0.0.2:{port}/mcp", json=body, headers=headers)
        assert rebound.status_code == 421
        assert own.status_code == 200
    finally:
        process.terminate()
        process.wait(30)


def test_a_port_in_use_is_refused_in_one_line_after_closing_the_stores(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = start_http(tmp_path, port)
        assert process.wait(30) == 1
    log = (tmp_path / "stderr.log").read_text()
    assert "address already in use" in log and f"cannot serve HTTP on 127.0.0.1:{port}" in log
    assert "Traceback" not in log and "memory store closed" in log


def test_an_empty_token_is_refused_at_start(tmp_path: Path) -> None:
    process = start_http(tmp_path, free_port(), host="0.0.0.0", SWITCHBOARD_HTTP_TOKEN="  ")
    assert process.wait(30) == 2
    assert "http_token" in (tmp_path / "stderr.log").read_text()


@pytest.mark.parametrize("http_server", [{"SWITCHBOARD_HTTP_TOKEN": TOKEN}], indirect=True)
async def test_metrics_need_the_token_when_the_server_has_one(http_server: str) -> None:
    metrics_url = http_server.removesuffix("/mcp") + "/metrics"
    async with httpx2.AsyncClient() as plain:
        refused = await plain.get(metrics_url)
        assert refused.status_code == 401 and "Authorization: Bearer" in refused.text
    async with httpx2.AsyncClient(headers={"Authorization": f"Bearer {TOKEN}"}) as authorised:
        async with Client(streamable_http_client(http_server, http_client=authorised)) as client:
            await client.call_tool("memory_usage", {"action": "store", "namespace": "seen", "key": "k", "value": "v"})
        answer = await authorised.get(metrics_url)
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
    assert 'switchboard_tool_calls_total{outcome="ok",tool="memory_usage"} 1.0' in answer.text
    assert 'switchboard_memory_entries{namespace="seen"} 1.0' in answer.text


async def test_metrics_without_a_token_answer_only_their_loopback_host(http_server: str) -> None:
    metrics_url = http_server.removesuffix("/mcp") + "/metrics"
    port = metrics_url.split(":")[2].split("/")[0]
    async with httpx2.AsyncClient() as http:
        served = await http.get(metrics_url)
        assert served.status_code == 200 and "# TYPE switchboard_tool_call_seconds histogram" in served.text
        rebound = await http.get(metrics_url, headers={"Host": f"evil.example:{port}"})
        assert rebound.status_code == 421
