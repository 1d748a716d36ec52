"""The real ``switchboard serve`` over stdio: handshake, tools, durability under SIGKILL, clean shutdown."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path

import pytest
from mcp import Client, StdioServerParameters

from tests.e2e.stdio_peer import StdioPeer, serve_command, server_env


async def test_sdk_client_initializes_lists_tools_stores_and_retrieves(tmp_path: Path) -> None:
    command, *args = serve_command()
    params = StdioServerParameters(command=command, args=args, env=server_env(tmp_path / "data"),
                                   cwd=str(Path(__file__).resolve().parents[2]))
    async with Client(params, mode="legacy") as client:
        assert client.server_info is not None and client.server_info.name == "switchboard"
        assert "memory_usage" in [tool.name for tool in (await client.list_tools()).tools]
        text = '{"result": "ok", "n": 3}'
        stored = await client.call_tool("memory_usage", {"action": "store", "key": "e2e", "value": text, "ttl": 60})
        assert not stored.is_error and stored.structured_content["entry"]["version"] == 1
        got = await client.call_tool("memory_usage", {"action": "retrieve", "key": "e2e"})
        assert got.structured_content["entry"]["value"] == text


def test_every_acknowledged_store_survives_sigkill(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = StdioPeer(data_dir, tmp_path / "stderr.log")
    server.initialize()
    acknowledged: dict[str, int] = {}
    for i in range(50):  # one by one
        result = server.call_tool("memory_usage",
                                  {"action": "store", "namespace": "durable", "key": f"seq-{i}", "value": i})
        acknowledged[result["structuredContent"]["entry"]["key"]] = i
    pipelined = {  # 200 in flight at once: these commit in groups
        server.send_request("tools/call", {"name": "memory_usage", "arguments": {
            "action": "store", "namespace": "durable", "key": f"burst-{i}", "value": {"i": i}}}): i
        for i in range(200)
    }
    for request_id, i in pipelined.items():
        response = server.read_response(request_id)
        assert response["result"]["isError"] is False
        acknowledged[f"burst-{i}"] = i
    server.kill()
    assert server.process.returncode == -signal.SIGKILL

    restarted = StdioPeer(data_dir, tmp_path / "stderr.log")
    restarted.initialize()
    listed = restarted.call_tool("memory_usage", {"action": "list", "namespace": "durable", "limit": 1000})
    assert {e["key"] for e in listed["structuredContent"]["entries"]} == set(acknowledged)
    burst = restarted.call_tool("memory_usage", {"action": "retrieve", "namespace": "durable", "key": "burst-199"})
    assert burst["structuredContent"]["entry"]["value"] == {"i": 199}
    # The vector index was never saved before the kill: it is rebuilt from SQLite, losing nothing.
    found = restarted.call_tool("memory_search", {"query": "i 199", "namespace": "durable", "k": 1})
    assert [hit["key"] for hit in found["structuredContent"]["results"]] == ["burst-199"]
    assert "vector index rebuilt from SQLite: 250 vectors" in (tmp_path / "stderr.log").read_text()
    restarted.close_stdin()
    assert restarted.wait() == 0


@pytest.mark.parametrize("stop", ["stdin-eof", "sigterm", "sigint"])
def test_shutdown_closes_sqlite_cleanly(tmp_path: Path, stop: str) -> None:
    data_dir = tmp_path / "data"
    server = StdioPeer(data_dir, tmp_path / "stderr.log")
    server.initialize()
    server.call_tool("memory_usage", {"action": "store", "key": "k", "value": "v"})
    if stop == "stdin-eof":
        server.close_stdin()
    else:
        server.process.send_signal(signal.SIGTERM if stop == "sigterm" else signal.SIGINT)
    assert server.wait() == 0
    log = (tmp_path / "stderr.log").read_text()
    assert "memory store closed" in log and "Traceback" not in log
    # A clean close checkpoints the WAL into the main file and removes it.
    assert not (data_dir / "memory.sqlite3-wal").exists()
    with sqlite3.connect(data_dir / "memory.sqlite3") as conn:
        assert conn.execute("SELECT value FROM entries WHERE key = 'k'").fetchone() == ('"v"',)


async def test_the_checked_in_mcp_json_entry_starts_a_working_server(tmp_path: Path) -> None:
    import json
    import os

    repo = Path(__file__).resolve().parents[2]
    entry = json.loads((repo / "mcp.json").read_text())["mcpServers"]["switchboard"]
    command = repo / entry["command"]
    # The entry names the console script in the venv `make test` creates; CI runs `make test`, so a
    # missing script is a failure there, never a skip.
    assert command.exists(), f"{command} does not exist: run the suite with `make test`, which creates it"
    env = {**os.environ, **entry["env"], "SWITCHBOARD_DATA_DIR": str(tmp_path / "data")}
    params = StdioServerParameters(command=str(command), args=entry["args"], env=env, cwd=str(repo))
    async with Client(params, mode="legacy") as client:
        result = await client.call_tool("memory_usage", {"action": "stats"})
        assert result.structured_content["stats"]["total_entries"] == 0
