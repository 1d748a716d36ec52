"""CPU and memory of a process group, read from /proc (Linux), for the agent-metrics samples."""

from __future__ import annotations

import os
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


def group_usage(pgid: int) -> GroupUsage | None:
    """Summed over every live process of the group (the agent and the tools it started); None when
    the group is gone or /proc is not there."""
    processes, ticks, pages = 0, 0, 0
    try:
        entries = list(_PROC.iterdir())
    except OSError:
        return None
    for entry in entries:
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            statm = (entry / "statm").read_text()
        except OSError:
            continue  # exited while we looked
        # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
        fields = stat[stat.rfind(")") + 2:].split()
        if int(fields[2]) != pgid or fields[0] == "Z":
            continue
        processes += 1
        ticks += int(fields[11]) + int(fields[12])
        pages += int(statm.split()[1])
    if not processes:
        return None
    return GroupUsage(processes=processes, cpu_seconds=ticks / _TICKS, rss_bytes=pages * _PAGE)
