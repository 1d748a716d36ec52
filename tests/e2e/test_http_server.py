"""The real ``switchboard serve --transport http``: streamable HTTP, bearer auth, loopback-only without a token."""

from __future__ import annotations

import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

from tests.e2e.stdio_peer import serve_command, server_env

REPO = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


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


@pytest.fixture
def http_server(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[str]:
    token = getattr(request, "param", None)
    port = free_port()
    process = start_http(tmp_path, port, **({"SWITCHBOARD_HTTP_TOKEN": token} if token else {}))
    try:
        wait_until_listening(process, port)
        yield f"http://127.0.0.1:{port}/mcp"
    finally:
        process.terminate()
        # uvicorn shuts the app down (closing the stores), then re-raises SIGTERM by convention.
        assert process.wait(30) == -signal.SIGTERM
        assert "memory store closed" in (tmp_path / "stderr.log").read_text()


async def test_streamable_http_stores_and_retrieves(http_server: str) -> None:
    async with Client(http_server) as client:
        stored = await client.call_tool("memory_usage", {"action": "store", "key": "over-http", "value": [1, 2]})
        assert stored.structured_content["entry"]["version"] == 1
        got = await client.call_tool("memory_usage", {"action": "retrieve", "key": "over-http"})
        assert got.structured_content["entry"]["value"] == [1, 2]


@pytest.mark.parametrize("http_server", ["s3cret-token"], indirect=True)
async def test_a_configured_token_is_required(http_server: str) -> None:
    async with httpx2.AsyncClient() as plain:
        response = await plain.post(http_server, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                    headers={"Accept": "application/json, text/event-stream"})
        assert response.status_code == 401
        wrong = await plain.post(http_server, json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"},
                                 headers={"Authorization": "Bearer wrong", "Accept": "application/json, text/event-stream"})
        assert wrong.status_code == 401
    async with httpx2.AsyncClient(headers={"Authorization": "Bearer s3cret-token"}) as authorised:
        async with Client(streamable_http_client(http_server, http_client=authorised)) as client:
            assert "memory_usage" in [t.name for t in (await client.list_tools()).tools]


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


def test_an_empty_token_is_refused_at_start(tmp_path: Path) -> None:
    process = start_http(tmp_path, free_port(), host="0.0.0.0", SWITCHBOARD_HTTP_TOKEN="  ")
    assert process.wait(30) == 2
    assert "http_token" in (tmp_path / "stderr.log").read_text()
