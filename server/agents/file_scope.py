"""`FileScope`: where a sandboxed claude agent's file tools may read and write.

Claude Code's Bash sandbox confines the commands a claude agent runs; its own file tools (Read,
Edit, Write, ...) run in the CLI's process, outside that sandbox. A sandboxed agent's launch
therefore leaves them out of the tools the CLI allows without asking, so that every call reaches
the agent's `PermissionGate`, which refuses a path outside the scope before anything else is
decided: writes inside the workspace only, reads there and under the type's ``read_roots``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

READ_TOOLS = frozenset({"Read", "Glob", "Grep", "LS"})
WRITE_TOOLS = frozenset({"Edit", "MultiEdit", "Write", "NotebookEdit"})
FILE_TOOLS = READ_TOOLS | WRITE_TOOLS
# The input fields that name the path a file tool works on.
_PATH_FIELDS = ("file_path", "notebook_path", "path")


@dataclass(frozen=True, slots=True)
class FileScope:
    workdir: Path  # where relative paths start
    writable: tuple[Path, ...]
    readable: tuple[Path, ...]
    hidden: tuple[Path, ...] = ()  # never readable, even under a readable root, unless writable (the data directory)

    def refusal(self, tool_name: str, tool_input: dict[str, Any]) -> str | None:
        """Why the call is outside the scope, or None when it is inside (or names no path)."""
        if tool_name not in FILE_TOOLS:
            return None
        named = next((tool_input[field] for field in _PATH_FIELDS if isinstance(tool_input.get(field), str)), None)
        if named is None:
            return None
        # Resolved, so that a link the agent made in its workspace leads nowhere outside it.
        path = Path(os.path.realpath(self.workdir / Path(named).expanduser()))
        writable = tuple(Path(os.path.realpath(root)) for root in self.writable)
        roots = writable if tool_name in WRITE_TOOLS else (
            *writable, *(Path(os.path.realpath(root)) for root in self.readable))
        hidden = tuple(Path(os.path.realpath(root)) for root in self.hidden)
        if any(_within(path, root) for root in writable) or (
                any(_within(path, root) for root in roots) and not any(_within(path, root) for root in hidden)):
            return None
        where = "its workspace" if tool_name in WRITE_TOOLS else "its workspace and read_roots"
        return (f"{tool_name} of {named} was refused: this agent is sandboxed and may "
                f"{'write' if tool_name in WRITE_TOOLS else 'read'} only in {where} "
                f"({', '.join(map(str, roots))})")


def _within(path: Path, root: Path) -> bool:
    return path == root or path.is_relative_to(root)
