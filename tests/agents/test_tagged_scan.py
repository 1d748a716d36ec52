"""SharedTaggedScan: concurrent looks for tagged processes share scans of /proc, and each caller
gets exactly the processes carrying its own tags, from a scan that began after it asked."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from server.agents.process_groups import AGENT_TAG_VARIABLE
from server.agents.tagged_scan import SharedTaggedScan


@pytest.fixture
def tagged() -> Iterator[dict[str, int]]:
    """Three sleeping processes, tagged agent-a, agent-b and agent-c: tag -> pid."""
    started = {tag: subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                                     env={**os.environ, AGENT_TAG_VARIABLE: tag}) for tag in ("agent-a", "agent-b",
                                                                                             "agent-c")}
    try:
        yield {tag: process.pid for tag, process in started.items()}
    finally:
        for process in started.values():
            process.kill()
            process.wait()


async def test_concurrent_finds_share_scans_and_get_their_own_processes(tagged: dict[str, int]) -> None:
    scan = SharedTaggedScan()
    asks = [["agent-a"], ["agent-b"], ["agent-a", "agent-c"], ["agent-none"]] * 5
    found = await asyncio.gather(*(scan.find(tags) for tags in asks))
    expected = [[tagged["agent-a"]], [tagged["agent-b"]], sorted([tagged["agent-a"], tagged["agent-c"]]), []] * 5
    assert found == expected
    assert 1 <= scan.scans < len(asks)  # twenty looks, far fewer scans of /proc


async def test_a_find_sees_a_process_tagged_before_it_asked(tagged: dict[str, int]) -> None:
    scan = SharedTaggedScan()
    assert await scan.find([]) == []
    late = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"],
                            env={**os.environ, AGENT_TAG_VARIABLE: "agent-late"})
    try:
        assert await scan.find(["agent-late"]) == [late.pid]
    finally:
        late.kill()
        late.wait()
    assert await scan.find(["agent-late"]) == []  # reaped: gone from the next scan
