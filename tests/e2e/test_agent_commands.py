"""``switchboard agents`` and ``switchboard queries``, lists and --follow, beside a running server.

Both lists follow one rule: what is live now by default, ended ones too with ``--all``.
"""

from __future__ import annotations

import json
import select
import subprocess
import sys
from pathlib import Path

import anyio

from server.agents.records import AgentRecords
from tests.agents.groups import file_size, wait_until
from tests.agents.test_no_orphans import start_server
from tests.e2e.stdio_peer import server_env

REPO = Path(__file__).resolve().parents[2]


def command(tmp_path: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "server.cli", *args], env=server_env(tmp_path / "data"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def first_line(process: subprocess.Popen[str]) -> str:
    """The first line a follower prints, failing instead of hanging if it prints none."""
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], 30)
    assert readable, "the follower printed nothing"
    return process.stdout.readline()


def finished(tmp_path: Path, *args: str) -> str:
    process = command(tmp_path, *args)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    return out


def test_lists_and_following_an_agent_and_a_query(tmp_path: Path) -> None:
    output, gate = tmp_path / "loop.txt", tmp_path / "gate"
    server = start_server(tmp_path)
    try:
        looper = server.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "looper", "task": f"loop {output}"}]})["structuredContent"]["agents"][0]
        waiter = server.call_tool("agents_spawn_parallel", {"agents": [
            {"type": "worker", "name": "waiter", "task": f"wait {gate}"}]})["structuredContent"]["agents"][0]
        wait_until(lambda: file_size(output) > 0, "the loop writes")

        listed = [json.loads(line) for line in finished(tmp_path, "agents", "--json").splitlines()]
        assert [(agent["name"], agent["status"]) for agent in listed] == [("looper", "running"), ("waiter", "running")]
        table = finished(tmp_path, "queries")
        assert looper["query_id"] in table and waiter["query_id"] in table

        follow_query = command(tmp_path, "queries", "--follow", waiter["query_id"])
        follow_agent = command(tmp_path, "agents", "--follow", waiter["agent_id"])
        first = first_line(follow_query)
        assert first == f"{waiter['query_id']} running model=- mode=default turns=-\n"
        assert first_line(follow_agent) == "waiting\n"
        server.call_tool("query_control", {"action": "change_model", "query_id": waiter["query_id"], "model": "m2"})
        gate.write_text("opened")
        query_out, _ = follow_query.communicate(timeout=60)
        assert follow_query.returncode == 0
        assert "   change_model by client: next_query" in query_out
        assert f"{waiter['query_id']} completed" in query_out and "-- result: waiting\nopened" in query_out

        server.call_tool("agent_terminate", {"agent_id": waiter["agent_id"]})
        agent_out, _ = follow_agent.communicate(timeout=60)
        assert follow_agent.returncode == 0
        assert agent_out.startswith("opened\n") and agent_out.endswith(f"-- agent {waiter['agent_id']} is "
                                                                                 "terminated\n")
        live, every = finished(tmp_path, "agents"), finished(tmp_path, "agents", "--all")
        assert looper["agent_id"] in live and waiter["agent_id"] not in live
        assert looper["agent_id"] in every and waiter["agent_id"] in every
        active = finished(tmp_path, "queries")
        assert looper["query_id"] in active and waiter["query_id"] not in active
        history = finished(tmp_path, "queries", "--all", "--json")
        statuses = {json.loads(line)["id"]: json.loads(line)["status"] for line in history.splitlines()}
        assert statuses == {looper["query_id"]: "running", waiter["query_id"]: "completed"}
        assert finished(tmp_path, "queries", "--history", "--json") == history  # the flag's first name still works
        unknown = command(tmp_path, "queries", "--follow", "query-nope")
        _, err = unknown.communicate(timeout=60)
        assert unknown.returncode == 1 and "no query 'query-nope'" in err
    finally:
        server.close_stdin()


def test_empty_lists_say_so_and_name_the_flag_for_history(tmp_path: Path) -> None:
    async def create_records() -> None:  # the agents database a server leaves behind, with nothing in it
        await (await AgentRecords.open(tmp_path / "data" / "agents.sqlite3")).close()

    anyio.run(create_records)
    assert finished(tmp_path, "queries") == "no active queries; `switchboard queries --all` lists ended ones too\n"
    assert finished(tmp_path, "agents") == "no live agents; `switchboard agents --all` lists ended ones too\n"
    assert finished(tmp_path, "queries", "--all") == "no queries on record\n"
    assert finished(tmp_path, "agents", "--status", "lost") == "no agents with status 'lost'\n"
    assert finished(tmp_path, "queries", "--json") == finished(tmp_path, "agents", "--all", "--json") == ""


def test_both_lists_document_the_same_rule_and_flag(tmp_path: Path) -> None:
    for what, live in (("agents", "live agents"), ("queries", "active queries")):
        shown = " ".join(finished(tmp_path, what, "--help").split())  # argparse wraps at the terminal's width
        assert f"List {live}" in shown and "with --all, ended ones too" in shown
        assert f"-a, --all ended {what} too, of this and earlier runs" in shown
