"""CPU and memory of a process group, read from /proc (Linux), for the agent-metrics samples."""

from __future__ import annotations

import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path

_PROC = Path("/proc")
_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class GroupUsage:
    processes: int
    cpu_seconds: float
    rss_bytes: int


def usage_of_groups(pgids: Collection[int]) -> dict[int, GroupUsage]:
    """CPU and RSS of each of ``pgids`` that still runs, summed over the group's live processes (the
    agent and the tools it started), in one scan of /proc: a swarm's agents are sampled together,
    not with a scan each."""
    wanted = set(pgids)
    totals: dict[int, list[int]] = {}  # pgid -> [processes, ticks, pages]
    try:
        entries = list(_PROC.iterdir()) if wanted else []
    except OSError:
        return {}
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        pgid = int(fields[2])
        if pgid not in wanted or fields[0] == "Z":
            continue
        try:
            pages = int((entry / "statm").read_text().split()[1])
        except OSError:
            continue
        total = totals.setdefault(pgid, [0, 0, 0])
        total[0] += 1
        total[1] += int(fields[11]) + int(fields[12])
        total[2] += pages
    return {pgid: GroupUsage(processes=count, cpu_seconds=ticks / _TICKS, rss_bytes=pages * _PAGE)
            for pgid, (count, ticks, pages) in totals.items()}
