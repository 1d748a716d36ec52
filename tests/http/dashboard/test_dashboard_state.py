"""What the dashboard shows, read from a real engine: agents with CPU and RSS, queries with their
log, upload batches, and the chart's samples, taken soon after a change."""

from __future__ import annotations

from pathlib import Path

from server.http.dashboard.state import CostHistory, dashboard_state
from server.services import open_services
from tests.agents.groups import eventually, file_size
from tests.agents.swarm import agent_settings, request, spec


async def test_state_and_samples_follow_the_swarm(tmp_path: Path) -> None:
    output = tmp_path / "loop.txt"
    history = CostHistory(every_s=60, min_gap_s=0.05)
    async with open_services(agent_settings(tmp_path)) as services, history.sampling(services):
        await eventually(lambda: len(history.samples) == 1, "the first sample")
        report = await services.spawner.spawn_many(request(spec("priced", "claude-json the answer"),
                                                           spec("looper", f"loop {output}"), wait=False))
        priced, looper = report.entries
        await services.queries.wait([priced.query_id or ""], mode="all", timeout_s=10)
        await eventually(lambda: file_size(output) > 0, "the loop writes")
        # A change brings a sample within min_gap_s, long before every_s.
        await eventually(lambda: history.samples[-1][1] == 0.0125 and history.samples[-1][2] == 1,
                         "a sample with the cost and the running agent")
        await services.queries.control("pause", looper.query_id or "")
        state = await dashboard_state(services, history)
        by_name = {agent["name"]: agent for agent in state["agents"]}
        assert by_name["looper"]["status"] == "running" and by_name["looper"]["rss_bytes"] > 1_000_000
        assert by_name["looper"]["cpu_seconds"] is not None and by_name["priced"]["pid"] is None
        queries = {query["query_id"]: query for query in state["queries"]}
        paused = queries[looper.query_id]
        assert paused["status"] == "paused" and paused["controllable"] is True
        assert [event["action"] for event in paused["log"]] == ["pause"]
        assert queries[priced.query_id]["cost_usd"] == 0.0125
        assert state["status"]["queries_by_status"] == {"paused": 1, "completed": 1}
        assert tuple(state["history"][-1][1:]) == (0.0125, 1)
        await services.queries.control("terminate", looper.query_id or "", grace_s=1)
