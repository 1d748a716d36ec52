"""The ``exec`` runtime: one process per task, any command (``codex exec``, ``gemini -p``, a script).

The process leads its own session (so the supervisor can signal it and everything it starts as
one group), reads nothing on stdin, and writes stdout and stderr to the agent's log file and to
a bounded tail in memory. Usage and cost are read from its stdout when it speaks a known
JSON-lines dialect (`outcome.JsonLinesUsage`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from server.agents.launch import make_dirs, spawn_failure
from server.agents.outcome import JsonLinesUsage, OutputTail, TaskOutcome, Usage

# A line longer than this is logged and kept in the tail, but not read as JSON.
_MAX_JSON_LINE = 4 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class ExecLaunch:
    argv: list[str]
    cwd: Path
    env: dict[str, str]
    log_path: Path


def prepare_files(launch: ExecLaunch, inputs_path: Path | None, inputs: object) -> IO[bytes]:
    """Creates a task's directories, writes its dependencies' results (JSON) to ``inputs_path`` (named
    to its process by ``SWITCHBOARD_INPUTS``) when it has some, and opens its log for appending."""
    make_dirs(launch.log_path.parent, launch.cwd)
    if inputs_path is not None:
        inputs_path.write_text(json.dumps(inputs, ensure_ascii=False, indent=1))
    return launch.log_path.open("ab")


class ExecProcess:
    """One running task process. `wait` reads its output until it exits and says how it ended."""

    def __init__(self, process: asyncio.subprocess.Process, log: IO[bytes], tail: OutputTail) -> None:
        self._process = process
        self._log = log
        self.tail = tail  # the agent's, across its tasks
        self._output = OutputTail(tail.max_bytes)  # this task's: its result when it prints no known JSON
        self._usage = JsonLinesUsage()
        self.terminated_by: str | None = None  # set by whoever ends it early, for the outcome's error
        self.on_usage: Callable[[], None] | None = None  # told when a line of its output reported usage

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def live_usage(self) -> Usage:
        """Usage read from its output so far (final when it has exited)."""
        return self._usage.usage

    @classmethod
    async def start(cls, launch: ExecLaunch, tail: OutputTail, log: IO[bytes]) -> ExecProcess:
        """Starts the process (its directories exist, ``log`` is open and becomes the process's to
        close); raises `SpawnFailed` (transient or not) when it cannot be started."""
        try:
            process = await asyncio.create_subprocess_exec(
                *launch.argv,
                cwd=launch.cwd,
                env=launch.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.PIPE,
                start_new_session=True,
                limit=_MAX_JSON_LINE,
            )
        except OSError as error:
            raise spawn_failure(error, launch.argv[0]) from error
        return cls(process, log, tail)

    async def wait(self) -> TaskOutcome:
        """Reads stdout and stderr to the end and waits for the exit; never raises for the task's own failure."""
        try:
            await asyncio.gather(self._read_stdout(), self._read_stderr())
            code = await self._process.wait()
        finally:
            self._log.close()
        usage = self._usage
        result = usage.result if usage.result is not None else self._output.text()
        if self.terminated_by is not None:
            return TaskOutcome("terminated", result=None, error=f"terminated: {self.terminated_by}", usage=usage.usage,
                               session_id=usage.session_id, exit_code=code)
        if code == 0 and not usage.is_error:
            return TaskOutcome("completed", result=result, usage=usage.usage, session_id=usage.session_id, exit_code=0)
        reason = f"exited with code {code}" if code >= 0 else f"killed by signal {-code}"
        detail = (usage.result if usage.is_error and usage.result else self._output.text()).strip()[-500:]
        return TaskOutcome("failed", result=usage.result, error=f"{reason}: {detail}" if detail else reason,
                           usage=usage.usage, session_id=usage.session_id, exit_code=code)

    async def _read_stdout(self) -> None:
        stream = self._process.stdout
        assert stream is not None
        while True:
            try:
                line = await stream.readline()
            except ValueError:  # a line over the limit: keep what is buffered, unread as JSON
                line = await stream.read(_MAX_JSON_LINE)
                self._record(line)
                continue
            if not line:
                return
            self._record(line)
            with contextlib.suppress(UnicodeDecodeError):
                before = (self._usage.usage.cost_usd, self._usage.usage.input_tokens, self._usage.usage.output_tokens)
                self._usage.feed(line.decode("utf-8"))
                after = (self._usage.usage.cost_usd, self._usage.usage.input_tokens, self._usage.usage.output_tokens)
                if after != before and self.on_usage is not None:
                    self.on_usage()

    async def _read_stderr(self) -> None:
        stream = self._process.stderr
        assert stream is not None
        while chunk := await stream.read(65536):
            self._record(chunk)

    def _record(self, data: bytes) -> None:
        self._log.write(data)
        self._log.flush()
        self.tail.add(data)
        self._output.add(data)
