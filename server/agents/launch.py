"""What every agent process starts with: its environment, its own process group, and the
errors that tell a transient spawn failure (retry) from a permanent one (fix the settings)."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Collection, Mapping
from pathlib import Path

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from server.agents.process_groups import AGENT_TAG_VARIABLE
from server.errors import SwitchboardError

# An agent's environment is an allowlist, not the server's environment minus a few names: the
# server's own secrets (S3 and cloud keys, database URLs, tokens of other tools) must not reach
# a process that runs whatever a model decides. These are what any program needs to run.
BASIC_ENV_NAMES = frozenset({"PATH", "HOME", "LANG", "TERM", "TZ", "USER", "LOGNAME", "SHELL", "TMPDIR"})
BASIC_ENV_PREFIXES = ("LC_",)
# What Claude Code needs besides: its credentials and settings, and the proxy to reach the API.
CLAUDE_ENV_PREFIXES = ("ANTHROPIC_", "CLAUDE_")
PROXY_ENV_NAMES = frozenset({"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "ALL_PROXY",
                             "http_proxy", "https_proxy", "no_proxy", "all_proxy"})

# Resource exhaustion that passes: the spawn is retried with backoff.
_TRANSIENT_ERRNOS = frozenset({errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.EBUSY, errno.ETXTBSY})


class SpawnFailed(SwitchboardError):
    """An agent's process could not be started. ``transient`` failures are retried."""

    code = "spawn_failed"

    def __init__(self, message: str, *, transient: bool) -> None:
        super().__init__(message)
        self.transient = transient


def spawn_retries(attempts: int) -> AsyncRetrying:
    """Starting a process or a session: transient failures (EAGAIN, EMFILE, an initialize timeout)
    are tried again with jittered backoff, up to ``attempts`` (SWITCHBOARD_AGENT_SPAWN_ATTEMPTS)."""
    return AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=wait_exponential_jitter(multiplier=0.2, max=2.0),
        retry=retry_if_exception(lambda error: isinstance(error, SpawnFailed) and error.transient),
        reraise=True,
    )


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


def agent_environment(agent_id: str, runtime: str, extra: Mapping[str, str],
                      passthrough: Collection[str] = ()) -> dict[str, str]:
    """What an agent's processes start with: the basics (`BASIC_ENV_NAMES`, ``LC_*``), what its
    runtime needs (claude: ``ANTHROPIC_*``, ``CLAUDE_*``, proxies), the server's values of the
    type's ``env_passthrough`` names, then the type's ``env``, then ``SWITCHBOARD_AGENT_ID``."""
    env = {name: value for name, value in os.environ.items()
           if _inherited(name, runtime) or name in passthrough}
    env.update(extra)
    env[AGENT_TAG_VARIABLE] = agent_id  # also how its stray tools are found (process_groups.tagged_processes)
    return env


def _inherited(name: str, runtime: str) -> bool:
    if name in BASIC_ENV_NAMES or name.startswith(BASIC_ENV_PREFIXES):
        return True
    return runtime == "claude" and (name in PROXY_ENV_NAMES or name.startswith(CLAUDE_ENV_PREFIXES))


def withheld_env_names(agent_env: Mapping[str, str]) -> list[str]:
    """The server's variables that are not in ``agent_env``: a claude agent's launcher unsets them
    (the SDK starts the CLI with the whole server environment; it can add variables, not remove them).
    Only shell names: ``/bin/sh`` does not pass any other name on."""
    return [name for name in os.environ if name not in agent_env and name.isidentifier()]


# A claude agent's MCP servers (its memory endpoint and bearer token among them) reach its CLI as a
# file only its owner may read, never on the command line, where `ps` shows it to every local user.
MCP_CONFIG_FILE = "mcp-config.json"


def write_mcp_config(state_dir: Path, servers: Mapping[str, object]) -> Path:
    """Writes ``{"mcpServers": servers}`` to the agent's state directory, mode 0600 from its creation."""
    path = state_dir / MCP_CONFIG_FILE
    temporary = path.with_name(f".{MCP_CONFIG_FILE}.{os.getpid()}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as file:
        os.fchmod(file.fileno(), 0o600)  # O_CREAT's mode only applies to a new file
        json.dump({"mcpServers": servers}, file)
    temporary.replace(path)
    return path


def remove_mcp_config(state_dir: Path) -> None:
    """Removes the agent's MCP config file (its token is revoked with it)."""
    (state_dir / MCP_CONFIG_FILE).unlink(missing_ok=True)


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
# this script records the CLI's pid (exec keeps it), drops the server's variables the agent is
# not to see, and execs the CLI as the leader of a new session, so its Bash tools are in a group
# Switchboard can signal.
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


def launcher_env(cli: str, pid_file: Path, agent_env: Mapping[str, str]) -> dict[str, str]:
    """The variables the launcher reads (and removes before the CLI starts)."""
    return {
        "SWITCHBOARD_LAUNCH_CLI": cli,
        "SWITCHBOARD_LAUNCH_PID_FILE": str(pid_file),
        "SWITCHBOARD_LAUNCH_UNSET": " ".join(withheld_env_names(agent_env)),
    }
