"""Every running agent's CPU, RSS and uptime, sampled at an interval into the agent-metrics memory namespace."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from server.agents.activity import ActivityLog
from server.agents.live import Agent
from server.agents.proc_stats import usage_of_groups
from server.clock import Clock


async def sample_agents_forever(live_agents: Callable[[], list[Agent]], activity: ActivityLog, clock: Clock,
                                interval_s: float) -> None:
    """Until cancelled: each ``interval_s``, one /proc read (off the loop) of every agent whose
    process group runs, written through ``activity``."""
    while True:
        await asyncio.sleep(interval_s)
        running = {agent.record.pid: agent for agent in live_agents()
                   if agent.record.pid is not None and (agent.session is not None or agent.process is not None)}
        usage = await asyncio.to_thread(usage_of_groups, list(running))
        for pid, agent in running.items():
            if pid in usage:
                activity.sample(agent.record, usage[pid], clock.now_ms())
