"""``switchboard workspaces``: the agents' git worktrees on this data dir, with their size on disk.

Read from the agents database and the disk, so it works from any shell while the server runs.
Each line says whose worktree it is, its branch, whether that branch is merged (only merged ones
are removed after SWITCHBOARD_WORKSPACE_TTL_H), and what it takes on disk.
"""

from __future__ import annotations

import argparse
import json
from typing import TextIO

from server.agents.records import AgentRecords
from server.agents.workspaces import AgentWorkspaces, WorkspaceListing
from server.cli.settings import add_data_dir_argument, run_on_agent_records
from server.clock import SystemClock
from server.config import Settings
from server.status import size_text


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    listing = commands.add_parser(
        "workspaces", help="list the agents' git worktrees, merged or not, with their size on disk",
        description="List every agent worktree not yet removed: agent, status, branch, merged into what, size on "
                    "disk, path. Merged ones are removed SWITCHBOARD_WORKSPACE_TTL_H after their agent ended; "
                    "unmerged ones are kept (agent_merge, or agent_terminate with discard_workspace).")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    add_data_dir_argument(listing)


def run(args: argparse.Namespace) -> int:
    """0 on success, 1 when there is nothing on record, 2 for invalid settings."""
    return run_on_agent_records(args, _run, name="switchboard workspaces")


async def _run(settings: Settings, args: argparse.Namespace, out: TextIO) -> None:
    records = await AgentRecords.open(settings.agents_database_path)
    try:
        listed = await AgentWorkspaces(settings, records, SystemClock()).listing()
    finally:
        await records.close()
    if args.json:
        for item in listed:
            out.write(json.dumps(_as_json(item)) + "\n")
        return
    if not listed:
        out.write("no agent worktrees on disk\n")
        return
    out.write(f"{'AGENT':<20} {'NAME':<16} {'STATUS':<10} {'MERGED':<12} {'SIZE':>10}  BRANCH / PATH\n")
    for item in listed:
        agent, workspace = item.agent, item.workspace
        out.write(f"{workspace.id:<20} {(agent.name if agent else '?')[:16]:<16} {(agent.status if agent else '?'):<10} "
                  f"{(workspace.merged_into or 'no')[:12]:<12} {size_text(item.size_bytes):>10}  {workspace.branch}\n"
                  f"{'':<72}{workspace.path}\n")
    total = sum(item.size_bytes for item in listed)
    unmerged = sum(1 for item in listed if not item.workspace.merged)
    out.write(f"{len(listed)} worktree(s), {unmerged} unmerged, {size_text(total)} on disk\n")


def _as_json(item: WorkspaceListing) -> dict[str, object]:
    workspace, agent = item.workspace, item.agent
    return {"agent_id": workspace.id, "name": agent.name if agent else None, "status": agent.status if agent else None,
            "repo": workspace.repo, "path": workspace.path, "branch": workspace.branch,
            "base_branch": workspace.base_branch, "base_commit": workspace.base_commit, "head": workspace.head,
            "merged_into": workspace.merged_into, "merged_commit": workspace.merged_commit,
            "size_bytes": item.size_bytes}
