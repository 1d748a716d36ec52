"""``execute_command``: one argv run in an agent's directory and environment, never through a shell.

Only executables on ``SWITCHBOARD_QUERY_COMMAND_ALLOWLIST`` run: an entry is a name looked up on
the server's PATH or an absolute path, and the command's first argument (looked up on the
agent's PATH) must resolve to the same file as one of them. The process leads its own group,
has no stdin, is ended (group and all) when it outlives its timeout, and keeps the last
``output_bytes`` of stdout and of stderr.
"""

from __future__ import annotations

import asyncio
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.agents.launch import resolve_executable, spawn_failure
from server.agents.outcome import OutputTail
from server.agents.process_groups import end_group
from server.errors import InvalidArgument


@dataclass(frozen=True, slots=True)
class CommandResult:
    argv: list[str]
    exit_code: int | None    # None when it was ended for its timeout
    stdout: str
    stderr: str
    timed_out: bool
    duration_ms: float


def command_argv(command: str | Sequence[str]) -> list[str]:
    """The argv of ``command``: a list as given, or a string (claude-flow's ``executeCommand(queryId,
    command: string)``) split by shell quoting rules, ``"git log -n 3 'a b'"`` into four arguments.
    Never run by a shell: ``;``, ``|``, ``$(...)`` and globs are plain characters of an argument."""
    if isinstance(command, str):
        try:
            argv = shlex.split(command)
        except ValueError as error:  # an unclosed quote, a trailing backslash
            raise InvalidArgument(f"command {command[:80]!r} cannot be split into arguments: {error}") from None
    else:
        argv = list(command)
    if not argv or not argv[0]:
        raise InvalidArgument('execute_command needs `command`: an argv list such as ["git", "status"], or a string '
                              'such as "git status"')
    return argv


def allowed_executable(executable: str, allowlist: Sequence[str], env: Mapping[str, str]) -> str | None:
    """The path ``executable`` runs as (on the agent's PATH), when that is the file of an allowlist
    entry; else None. Entries are looked up on the server's own PATH, so a PATH the agent's
    environment points elsewhere cannot make another file count as allowed."""
    resolved = resolve_executable(executable, env)
    if resolved is None:
        return None
    target = os.path.realpath(resolved)
    for entry in allowlist:
        allowed = resolve_executable(entry, os.environ)
        if allowed is not None and os.path.realpath(allowed) == target:
            return resolved
    return None


async def run_command(argv: Sequence[str], cwd: Path, env: Mapping[str, str], timeout_s: float,
                      output_bytes: int) -> CommandResult:
    """Runs ``argv`` to its end or its timeout. Raises `SpawnFailed` when it cannot start."""
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        process = await asyncio.create_subprocess_exec(
            *argv, cwd=cwd, env=dict(env), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
        )
    except OSError as error:
        raise spawn_failure(error, argv[0]) from error
    stdout, stderr = OutputTail(output_bytes), OutputTail(output_bytes)

    async def drain(stream: asyncio.StreamReader | None, tail: OutputTail) -> None:
        assert stream is not None
        while chunk := await stream.read(65536):
            tail.add(chunk)

    reading = asyncio.gather(drain(process.stdout, stdout), drain(process.stderr, stderr))
    timed_out = False
    try:
        async with asyncio.timeout(timeout_s):
            await reading
            await process.wait()
    except TimeoutError:
        timed_out = True
        await end_group(process.pid, 1.0)  # what it printed so far is in the tails already
        await process.wait()
    return CommandResult(list(argv), None if timed_out else process.returncode, stdout.text(), stderr.text(),
                         timed_out, (loop.time() - began) * 1000)
