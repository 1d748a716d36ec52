"""``switchboard status``: a separate process reads what a running server holds and runs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.agents.groups import file_size, wait_until
from tests.agents.test_no_orphans import start_server
from tests.e2e.stdio_peer import server_env

REPO = Path(__file__).resolve().parents[2]


def status(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "server.cli", "status", *args], env=server_env(tmp_path / "data"),
                          cwd=REPO, capture_output=True, text=True, timeout=60, check=False)


def test_status_shows_a_running_servers_memory_agents_and_queries(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    server = start_server(tmp_path)
    try:
        for key in ("a", "b", "c"):
            server.call_tool("memory_usage", {"action": "store", "namespace": "notes", "key": key, "value": key * 10})
        spawned = server.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "looper", "task": f"loop {output}"}]})["structuredContent"]["agents"][0]
        wait_until(lambda: file_size(output) > 0, "the loop writes")

        answered = status(tmp_path, "--json")
        assert answered.returncode == 0, answered.stderr
        snapshot = json.loads(answered.stdout)
        notes = next(row for row in snapshot["namespaces"] if row["namespace"] == "notes")
        assert (notes["entries"], notes["bytes"]) == (3, 3 * len(json.dumps("aaaaaaaaaa")))
        (agent,) = snapshot["live_agents"]
        assert (agent["agent_id"], agent["status"], agent["current_query"]) == (
            spawned["agent_id"], "running", spawned["query_id"])
        assert agent["pid"] is not None
        (query,) = snapshot["active_queries"]
        assert (query["query_id"], query["status"]) == (spawned["query_id"], "running")
        assert snapshot["agents_by_status"] == {"running": 1} and snapshot["queries_by_status"] == {"running": 1}

        text = status(tmp_path)
        assert text.returncode == 0 and spawned["agent_id"] in text.stdout and "notes" in text.stdout
        assert "queries  1 running" in text.stdout
        # Reading the state disturbed nothing: the agent still runs and writes.
        size = file_size(output)
        wait_until(lambda: file_size(output) > size, "the loop goes on writing")
    finally:
        server.close_stdin()
