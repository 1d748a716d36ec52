"""The ``claude`` runtime: one long-lived Claude Code session per agent, through claude-agent-sdk.

The session is *up* when the CLI has started and answered the SDK's initialize; a task is a
user message into it and ends with the CLI's ``result`` (text, is_error, turns, usage, cost,
session id). The CLI runs through Switchboard's launcher (`launch.write_claude_launcher`), so
it leads its own process group and its pid is known without reaching into the SDK.

The SDK client is connected and disconnected by one owner task (its docs ask that a client
stay within the async context it was connected in); tasks, model and permission changes and
interrupts are sent from the callers' tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLINotFoundError,
    PermissionResultAllow,
    PermissionResultDeny,
    ResultMessage,
    TextBlock,
    ToolPermissionContext,
    ToolUseBlock,
    UserMessage,
)

from server.agents.launch import SpawnFailed, launcher_env
from server.agents.outcome import OutputTail, TaskOutcome, Usage, claude_input_tokens

logger = logging.getLogger(__name__)

PermissionDecider = Callable[[str, dict[str, Any]], Awaitable[str | None]]
"""Given a tool name and its input, None to allow it, or the message the model sees on refusal."""


@dataclass(slots=True)
class ClaudeLaunch:
    """Everything one session starts with."""

    cli: str
    launcher: Path
    workdir: Path
    state_dir: Path
    env: dict[str, str]
    model: str | None
    permission_mode: str
    system_prompt: str | None
    allowed_tools: list[str]
    disallowed_tools: list[str]
    mcp_config: Path | None = None  # a 0600 file (`launch.write_mcp_config`): never the token on argv
    setting_sources: list[str] = field(default_factory=list)

    @property
    def pid_file(self) -> Path:
        return self.state_dir / "claude.pid"

    @property
    def log_path(self) -> Path:
        return self.state_dir / "session.log"


class ClaudeSession:
    """A Claude Code session: `start` it, `run` tasks one at a time, `close` it."""

    def __init__(self, launch: ClaudeLaunch, decide_permission: PermissionDecider, tail: OutputTail) -> None:
        self._launch = launch
        self._decide_permission = decide_permission
        self.tail = tail
        self._client: ClaudeSDKClient | None = None
        self._owner: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._task_lock = asyncio.Lock()
        self._log: IO[str] | None = None
        self.pid: int | None = None
        self.session_id: str | None = None
        # The CLI reports the session's cost so far with every result; a task's cost is the difference.
        self._session_cost_usd = 0.0
        self._session_tokens = 0
        # The running task, as far as the stream tells before its result: turns and tokens from each
        # model message's usage (output counts are final only in the result), a cost estimated at the
        # session's own price per token so far, and how long the last model turn took to begin.
        self.live = Usage()
        self.last_turn_latency_s: float | None = None
        self._turn_ids: set[str] = set()
        self._waiting_since: float | None = None

    async def start(self, timeout_s: float) -> None:
        """Starts the CLI and waits for its initialize answer. Raises `SpawnFailed`: transient for a
        timeout, permanent for a missing or unstartable CLI."""
        self._launch.state_dir.mkdir(parents=True, exist_ok=True)
        self._launch.pid_file.unlink(missing_ok=True)
        self._log = self._launch.log_path.open("a", encoding="utf-8")
        connected: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._owner = asyncio.create_task(self._own(connected), name=f"claude-session-{self._launch.state_dir.name}")
        try:
            async with asyncio.timeout(timeout_s):
                await asyncio.shield(connected)
        except TimeoutError:
            await self.close()
            raise SpawnFailed(f"Claude Code did not answer initialize within {timeout_s:g} s", transient=True) from None
        except BaseException:
            await self.close()
            raise
        self.pid = self._read_pid()

    async def _own(self, connected: asyncio.Future[None]) -> None:
        client = ClaudeSDKClient(self._options())
        try:
            await client.connect()
        except CLINotFoundError as error:
            connected.set_exception(SpawnFailed(
                f"Claude Code not found at {self._launch.cli!r} (set SWITCHBOARD_AGENT_CLAUDE_CLI or the type's "
                f"command): {error}", transient=False))
            return
        except (ClaudeSDKError, OSError) as error:
            connected.set_exception(SpawnFailed(f"Claude Code failed to start: {error}; {self._stderr_hint()}",
                                                transient=True))
            return
        except asyncio.CancelledError:
            if not connected.done():
                connected.cancel()
            raise
        self._client = client
        connected.set_result(None)
        try:
            await self._closing.wait()
        finally:
            self._client = None
            with anyio.CancelScope(shield=True):
                await client.disconnect()

    def _options(self) -> ClaudeAgentOptions:
        launch = self._launch
        system_prompt: Any = (
            {"type": "preset", "preset": "claude_code", "append": launch.system_prompt}
            if launch.system_prompt else {"type": "preset", "preset": "claude_code"}
        )
        return ClaudeAgentOptions(
            cli_path=str(launch.launcher),
            cwd=str(launch.workdir),
            env={**launch.env, **launcher_env(launch.cli, launch.pid_file, launch.env)},
            model=launch.model,
            permission_mode=launch.permission_mode,  # type: ignore[arg-type]
            system_prompt=system_prompt,
            allowed_tools=launch.allowed_tools,
            disallowed_tools=launch.disallowed_tools,
            mcp_servers=launch.mcp_config if launch.mcp_config is not None else {},
            setting_sources=launch.setting_sources,  # type: ignore[arg-type]
            can_use_tool=self._can_use_tool,
            stderr=self._on_stderr,
        )

    def _read_pid(self) -> int | None:
        try:
            return int(self._launch.pid_file.read_text().strip())
        except (OSError, ValueError):
            logger.warning("claude agent in %s: the launcher wrote no pid", self._launch.state_dir)
            return None

    async def _can_use_tool(
        self, tool_name: str, tool_input: dict[str, Any], _context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        refusal = await self._decide_permission(tool_name, tool_input)
        self._write_log(f"[permission] {tool_name}: {'allowed' if refusal is None else 'denied'}\n")
        if refusal is None:
            return PermissionResultAllow()
        return PermissionResultDeny(message=refusal)

    def _on_stderr(self, line: str) -> None:
        self._write_log(f"[stderr] {line}\n")
        self.tail.add(f"{line}\n".encode())

    def _write_log(self, text: str) -> None:
        if self._log is not None and not self._log.closed:
            self._log.write(text)
            self._log.flush()

    def _stderr_hint(self) -> str:
        text = self.tail.text().strip()
        return f"its stderr ends: {text[-400:]}" if text else f"see {self._launch.log_path}"

    @property
    def alive(self) -> bool:
        return self._client is not None

    async def run(self, prompt: str) -> TaskOutcome:
        """Sends one task and waits for its result. A task that fails (an API error, no credentials,
        the CLI dying) is a ``failed`` outcome with the CLI's own message, never a raise."""
        async with self._task_lock:
            client = self._client
            if client is None:
                return TaskOutcome("failed", error="the Claude Code session has ended")
            self._write_log(f"[task] {prompt}\n")
            self.live, self._turn_ids, self.last_turn_latency_s = Usage(turns=0), set(), None
            self._waiting_since = time.monotonic()
            try:
                await client.query(prompt)
                async for message in client.receive_response():
                    if isinstance(message, AssistantMessage):
                        self._note_assistant(message)
                    elif isinstance(message, UserMessage):  # tool results: the model is asked again
                        self._waiting_since = time.monotonic()
                    elif isinstance(message, ResultMessage):
                        return self._outcome(message)
            except ClaudeSDKError as error:
                return TaskOutcome("failed", error=f"Claude Code failed: {error}; {self._stderr_hint()}")
            return TaskOutcome("failed", error=f"Claude Code exited before finishing the task; {self._stderr_hint()}")

    def _note_assistant(self, message: AssistantMessage) -> None:
        turn = message.message_id or message.uuid
        if turn is not None and turn not in self._turn_ids:  # the CLI sends one message per content block
            self._turn_ids.add(turn)
            self.live.turns = (self.live.turns or 0) + 1
            if self._waiting_since is not None:
                self.last_turn_latency_s = time.monotonic() - self._waiting_since
                self._waiting_since = None
            if message.usage:
                self.live.add_tokens(claude_input_tokens(message.usage), message.usage.get("output_tokens"))
                if self._session_tokens and self._session_cost_usd:
                    tokens = (self.live.input_tokens or 0) + (self.live.output_tokens or 0)
                    self.live.cost_usd = tokens * self._session_cost_usd / self._session_tokens
        for block in message.content:
            if isinstance(block, TextBlock):
                text = f"{block.text}\n"
            elif isinstance(block, ToolUseBlock):
                text = f"[tool] {block.name} {str(block.input)[:500]}\n"
            else:
                continue
            self._write_log(text)
            self.tail.add(text.encode())

    def _outcome(self, message: ResultMessage) -> TaskOutcome:
        self.session_id = message.session_id
        usage_numbers = message.usage or {}
        task_cost = None
        if message.total_cost_usd is not None:
            task_cost = max(message.total_cost_usd - self._session_cost_usd, 0.0)
            self._session_cost_usd = message.total_cost_usd
        if usage_numbers:
            self._session_tokens += claude_input_tokens(usage_numbers) + int(usage_numbers.get("output_tokens") or 0)
        usage = Usage(
            input_tokens=claude_input_tokens(usage_numbers) if usage_numbers else None,
            output_tokens=usage_numbers.get("output_tokens"),
            cost_usd=task_cost,
            turns=message.num_turns,
            raw=message.usage,
        )
        self._write_log(f"[result] is_error={message.is_error} {message.result or ''}\n")
        if message.is_error:
            detail = message.result or "; ".join(message.errors or []) or message.subtype
            return TaskOutcome("failed", result=message.result, error=f"Claude Code: {detail}", usage=usage,
                               session_id=message.session_id)
        return TaskOutcome("completed", result=message.result or "", usage=usage, session_id=message.session_id)

    async def set_model(self, model: str | None) -> None:
        if self._client is not None:
            await self._client.set_model(model)

    async def set_permission_mode(self, mode: str) -> None:
        if self._client is not None:
            await self._client.set_permission_mode(mode)  # type: ignore[arg-type]

    async def interrupt(self) -> None:
        if self._client is not None:
            await self._client.interrupt()

    async def close(self) -> None:
        """Ends the session (the SDK closes the CLI's stdin, then terminates it if it lingers).
        The supervisor ends the process group, with any tools still running, on its own."""
        self._closing.set()
        if self._owner is not None:
            if self._client is None and not self._owner.done():
                self._owner.cancel()  # still connecting: the SDK closes what it started when cancelled
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.shield(self._owner)
        if self._log is not None:
            self._log.close()
