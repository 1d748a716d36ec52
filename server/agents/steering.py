"""What can be done to a live agent's running work: stop and continue it, interrupt it, end it.

`server.queries.registry` steers queries through these; they act on the agent's processes and
its session, never on records.

Pausing stops the agent's process group and every process carrying its id (Claude Code runs each
Bash command in a session of its own) with SIGSTOP: no model request, no tool, no file change
until SIGCONT. Interrupting a claude task goes through the control protocol, so the agent stays
up for its next task.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Literal

from server.agents.live import Agent
from server.agents.process_groups import (
    end_group,
    end_processes,
    process_group_of,
    running_members,
    signal_group,
    signal_processes,
)
from server.agents.tagged_scan import SharedTaggedScan
from server.errors import Conflict

logger = logging.getLogger(__name__)

LiveSetting = Literal["model", "permission_mode"]


async def signal_work(agent: Agent, sig: int, scan: SharedTaggedScan) -> int:
    """Sends ``sig`` to the agent's process group and to every process carrying its id (its tools
    in sessions of their own); answers how many processes were found."""
    leader = agent.leader_pid
    if leader is None:
        raise Conflict(f"agent {agent.id} has no process to signal right now")
    signal_group(leader, sig)
    tagged = await scan.find([agent.id])
    signal_processes(tagged, sig)
    # Counted from both views (group members by stat, tools by their tag), so a pause and its
    # resume count the same processes however the two scans' timing falls.
    members = await asyncio.to_thread(running_members, leader)
    return len(set(tagged) | set(members) | {leader})


async def interrupt(agent: Agent, scan: SharedTaggedScan, grace_s: float, ended: asyncio.Event) -> int | None:
    """Interrupts a claude agent's task: once the CLI has acknowledged, ends the tools it left running
    and waits for ``ended`` (the task's end, recorded). Answers how many tool processes were ended,
    or None when that did not all happen within ``grace_s`` (or the CLI refused: signals will do)."""
    assert agent.session is not None
    try:
        async with asyncio.timeout(grace_s):
            await agent.session.interrupt()
            ended_tools = await _end_tools(agent, scan, grace_s)
            await ended.wait()
    except TimeoutError:
        return None
    except Exception as error:  # the CLI refused or is gone
        logger.info("agent %s: interrupt failed (%s); ending the work by signals", agent.id, error)
        return None
    return ended_tools


async def _end_tools(agent: Agent, scan: SharedTaggedScan, grace_s: float) -> int:
    """Ends what the interrupted task left running outside the CLI's own group (Claude Code runs
    each Bash command in a session of its own and may take a second or more to end it); answers
    how many processes that was."""
    cli = agent.session.pid if agent.session is not None else None
    tools = [pid for pid in await scan.find([agent.id]) if cli is None or process_group_of(pid) != cli]
    if tools:
        await end_processes(tools, grace_s)
    return len(tools)


async def end_exec_work(agent: Agent, actor: str, grace_s: float, scan: SharedTaggedScan) -> str | None:
    """Ends an exec agent's running task by signals (SIGTERM, then SIGKILL after ``grace_s``), its
    tools with it; the agent stays up for its next task. Answers how the group ended, or None when
    no task process runs."""
    process = agent.process
    if process is None:
        return None
    process.terminated_by = actor
    return await end_group(process.pid, grace_s, tag=agent.id, scan=scan)


async def apply_live(agent: Agent, setting: LiveSetting, value: str) -> None:
    """Sets the model or the permission mode on a claude agent's running session; raises what the
    CLI answers when it refuses (the SDK's bare Exception)."""
    assert agent.session is not None
    if setting == "model":
        await agent.session.set_model(value)
    else:
        await agent.session.set_permission_mode(value)
