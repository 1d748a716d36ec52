"""Bringing back an agent that ended (lost in a crash, terminated, failed) as a new agent.

The new agent (its own id, ``resumed_from`` the old one) takes over the old one's working
directory and git workspace, and a claude agent's CLI starts with the old Claude Code session
(``--resume``), so that its next task sees the whole earlier conversation; ``fork`` starts a new
session from that conversation instead, leaving the old one as it was. An exec agent has no
conversation: resuming one starts its type again in the same place.
"""

from __future__ import annotations

from dataclasses import dataclass

from server.agents.records import AgentRecord, AgentRecords
from server.agents.workspaces import AgentWorkspaces, WorkspaceRecord
from server.errors import Conflict, NotFound

# The states an agent can be resumed from: its processes are gone.
RESUMABLE_STATUSES = ("lost", "terminated", "failed")

# Told to the model when a task is started again after the server restarted under it.
RESTART_NOTE = ("[Switchboard] The server restarted while you were working on the task below, which interrupted "
                "you. Your conversation so far is above; check what was already done, then finish the task.\n\n")


@dataclass(frozen=True, slots=True)
class ResumedAgent:
    """What a resumed agent takes over: the old agent's record, its workspace, its Claude Code session."""

    record: AgentRecord
    workspace: WorkspaceRecord | None
    session_id: str | None
    fork: bool = False


async def resumable(records: AgentRecords, workspaces: AgentWorkspaces, agent_id: str, *, fork: bool,
                    live: bool) -> ResumedAgent:
    """The agent ``agent_id`` ready to be resumed, or `NotFound` / `Conflict` saying why it cannot be."""
    record = await records.agent(agent_id)
    if record is None:
        raise NotFound(f"resume: no agent {agent_id!r} (agent_list with include_ended shows the known ones)")
    if live or record.status not in RESUMABLE_STATUSES:
        raise Conflict(f"resume: agent {agent_id} is {record.status}; only an agent that ended "
                       f"({', '.join(RESUMABLE_STATUSES)}) can be resumed")
    taken = await records.rows("SELECT id FROM agents WHERE resumed_from = ?", (agent_id,))
    if taken:
        raise Conflict(f"resume: agent {agent_id} was already resumed as {taken[0][0]}; resume that one")
    found = await workspaces.of_agents([agent_id])
    workspace = found.get(agent_id)
    if workspace is not None and workspace.removed_ms is not None:
        raise Conflict(f"resume: agent {agent_id}'s worktree was removed (merged and swept, or discarded); "
                       "its work is on the branch or in the merge")
    session_id = record.session_id or await _last_session(records, agent_id)
    if record.runtime == "claude" and session_id is None:
        raise Conflict(f"resume: agent {agent_id} never started a Claude Code conversation (no task ran); "
                       "spawn a new agent instead")
    return ResumedAgent(record, workspace, session_id if record.runtime == "claude" else None, fork)


async def interrupted_task(records: AgentRecords, agent_id: str) -> str | None:
    """The task the agent was running when its server was lost (its query marked lost), if any."""
    rows = await records.rows("SELECT task FROM queries WHERE agent_id = ? AND status = 'lost' "
                              "ORDER BY seq DESC LIMIT 1", (agent_id,))
    return str(rows[0][0]) if rows else None


async def _last_session(records: AgentRecords, agent_id: str) -> str | None:
    rows = await records.rows("SELECT session_id FROM queries WHERE agent_id = ? AND session_id IS NOT NULL "
                              "ORDER BY seq DESC LIMIT 1", (agent_id,))
    return str(rows[0][0]) if rows else None
