"""`Sandbox`: an agent's command run under bubblewrap (``bwrap``), seeing only what its task needs.

The whole filesystem is mounted read-only, with the server's data directory (the memory database,
other agents' directories and logs, tokens) and any other hidden path replaced by an empty tmpfs;
the workspace is writable, and so is a private ``/tmp``. The command runs in new PID, IPC and (unless
the network is allowed) network namespaces: ``/proc`` is a new one showing only the sandbox's own
processes, so the server's environment (``/proc/<pid>/environ``) and other agents are out of sight.
The process group is kept (no ``--new-session``), so the supervisor's signals to the group reach
the sandboxed processes as they reach unsandboxed ones.
"""

from __future__ import annotations

import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from server.errors import SwitchboardError

INSTALL_HINT = "install bubblewrap (Debian/Ubuntu: apt-get install bubblewrap; Fedora: dnf install bubblewrap)"


class SandboxUnavailable(SwitchboardError):
    """The sandbox an agent needs cannot be made here; the message says what to install."""

    code = "unavailable"


def find_bwrap() -> str | None:
    """The bubblewrap executable on PATH, or None."""
    return shutil.which("bwrap")


def require_bwrap() -> str:
    found = find_bwrap()
    if found is None:
        raise SandboxUnavailable(f"this agent runs sandboxed, but bubblewrap (bwrap) is not installed: {INSTALL_HINT}; "
                                 "or set sandbox = false in its type")
    return found


@dataclass(frozen=True, slots=True)
class Sandbox:
    """What one agent's sandbox lets it see and write."""

    writable: tuple[Path, ...]  # the workspace, and git's own directory of its worktree
    hidden: tuple[Path, ...]  # replaced by an empty tmpfs (the data directory)
    readable: tuple[Path, ...] = ()  # shown read-only even inside a hidden path (task inputs, the repository's .git)
    read_roots: tuple[Path, ...] = ()  # shown read-only under /tmp (the type's read_roots), never over a hidden path
    network: bool = False
    bwrap: str = field(default_factory=require_bwrap)

    def wrap(self, argv: Sequence[str], cwd: Path) -> list[str]:
        """``argv`` as a command that runs it in this sandbox, in ``cwd``."""
        args = [self.bwrap, "--die-with-parent", "--unshare-pid", "--unshare-ipc", "--unshare-uts"]
        if not self.network:
            args.append("--unshare-net")
        # Mounted in this order, each on top of the ones before: a read root under /tmp shows again,
        # but one holding the data directory cannot show it, for the hidden paths come after it.
        args += ["--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp"]
        for path in self.read_roots:
            args += ["--ro-bind-try", str(path), str(path)]
        for path in self.hidden:
            args += ["--tmpfs", str(path)]
        for path in self.readable:
            args += ["--ro-bind-try", str(path), str(path)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
        args += ["--chdir", str(cwd), "--", *argv]
        return args
