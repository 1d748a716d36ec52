"""What every agent process starts with: its environment, its own process group, and the
errors that tell a transient spawn failure (retry) from a permanent one (fix the settings)."""

from __future__ import annotations

import errno
import os
import shutil
from collections.abc import Mapping
from pathlib import Path

from server.agents.process_groups import AGENT_TAG_VARIABLE
from server.errors import SwitchboardError

# Switchboard's own settings (HTTP token, S3 and Qdrant keys among them) configure this server,
# not its agents: none of them reaches an agent's environment.
_SERVER_ENV_PREFIX = "SWITCHBOARD_"

# Resource exhaustion that passes: the spawn is retried with backoff.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EBUSY, errno.ETXTBSY})


class SpawnFailed(SwitchboardError):
    """An agent's process could not be started. ``transient`` failures are retried."""

    code = "spawn_failed"

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def spawn_failure(error: OSError, executable: str) -> SpawnFailed:
    """The `SpawnFailed` for an OSError from starting ``executable``, with what to fix."""
    if isinstance(error, FileNotFoundError):
        return SpawnFailed(
            f"executable not found: {executable!r} (install it, put it on PATH, or fix the agent type's command)",
            transient=False,
        )
    if isinstance(error, PermissionError):
        return SpawnFailed(f"permission denied running {executable!r} (is it executable? chmod +x)", transient=False)
    if error.errno in _TRANSIENT_ERRNOS:
        return SpawnFailed(f"cannot start {executable!r} now: {error.strerror}", transient=True)
    return SpawnFailed(f"cannot start {executable!r}: {error}", transient=False)


def agent_environment(agent_id: str, extra: Mapping[str, str]) -> dict[str, str]:
    """The server's environment without Switchboard's own settings, plus the type's ``env``,
    plus ``SWITCHBOARD_AGENT_ID``."""
    env = {name: value for name, value in os.environ.items() if not name.startswith(_SERVER_ENV_PREFIX)}
    env.update(extra)
    env[AGENT_TAG_VARIABLE] = agent_id  # also how its stray tools are found (process_groups.tagged_processes)
    return env


def server_env_names() -> list[str]:
    """Names of the server's own variables, which a claude agent's launcher unsets (the SDK passes
    the whole server environment on; it can add variables but not remove them)."""
    return [name for name in os.environ
            if name.startswith(_SERVER_ENV_PREFIX) and name.isidentifier() and name != AGENT_TAG_VARIABLE]


def make_dirs(*paths: Path) -> None:
    """Creates an agent's directories."""
    for path in dict.fromkeys(paths):
        path.mkdir(parents=True, exist_ok=True)


def resolve_executable(executable: str, env: Mapping[str, str]) -> str | None:
    """The path ``executable`` runs as (looked up on the agent's PATH), or None."""
    if os.sep in executable:
        return executable if os.access(executable, os.X_OK) and Path(executable).is_file() else None
    return shutil.which(executable, path=env.get("PATH", os.defpath))


# The claude launcher. The SDK starts the CLI as a plain child, in the server's process group;
# this script records the CLI's pid (exec keeps it), drops the server's variables, and execs the
# CLI as the leader of a new session, so its Bash tools are in a group Switchboard can signal.
_CLAUDE_LAUNCHER = """#!/bin/sh
# Written by Switchboard: starts a claude agent's CLI in its own session (see server/agents/launch.py).
printf '%s\\n' "$$" > "$SWITCHBOARD_LAUNCH_PID_FILE"
cli=$SWITCHBOARD_LAUNCH_CLI
for name in $SWITCHBOARD_LAUNCH_UNSET; do unset "$name"; done
unset SWITCHBOARD_LAUNCH_PID_FILE SWITCHBOARD_LAUNCH_CLI SWITCHBOARD_LAUNCH_UNSET
exec {setsid} "$cli" "$@"
"""

_PYTHON_SETSID = "python3 -c 'import os, sys; os.setsid(); os.execv(sys.argv[1], sys.argv[1:])'"


def write_claude_launcher(directory: Path) -> Path:
    """Writes the launcher script (once per server start; its content never varies)."""
    setsid = shutil.which("setsid")
    script = _CLAUDE_LAUNCHER.format(setsid=setsid if setsid else _PYTHON_SETSID)
    path = directory / "claude-launcher.sh"
    directory.mkdir(parents=True, exist_ok=True)
    temporary = path.with_suffix(f".{os.getpid()}.tmp")
    temporary.write_text(script)
    temporary.chmod(0o700)
    temporary.replace(path)
    return path


def launcher_env(cli: str, pid_file: Path) -> dict[str, str]:
    """The variables the launcher reads (and removes before the CLI starts)."""
    return {
        "SWITCHBOARD_LAUNCH_CLI": cli,
        "SWITCHBOARD_LAUNCH_PID_FILE": str(pid_file),
        "SWITCHBOARD_LAUNCH_UNSET": " ".join(server_env_names()),
    }
