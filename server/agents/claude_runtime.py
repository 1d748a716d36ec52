"""The ``claude`` runtime: one long-lived Claude Code session per agent, through claude-agent-sdk.

The session is *up* when the CLI has started and answered the SDK's initialize; a task is a
user message into it and ends with the CLI's ``result`` (text, is_error, turns, usage, cost,
session id). While it runs, the stream tells the model in use (the ``init`` system message at
the start of each task, then each model turn's ``model``) and each turn's usage, priced per
model (`pricing`) into a live cost estimate. The CLI runs through Switchboard's launcher
(`launch.write_claude_launcher`), so it leads its own process group and its pid is known
without reaching into the SDK.

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
from typing import IO, Any, TypeGuard

import anyio
from claude_agent_sdk import (
    AssistantMessage,
    ClaudeAgentOptions,
    ClaudeSDKClient,
    ClaudeSDKError,
    CLINotFoundError,
    PermissionResultAllow,
    PermissionResultDeny,
    PermissionUpdate,
    ResultMessage,
    SystemMessage,
    TextBlock,
    ToolPermissionContext,
    ToolResultBlock,
    ToolUseBlock,
    UserMessage,
)

from server.agents.launch import SpawnFailed, launcher_env
from server.agents.outcome import OutputTail, TaskOutcome, Usage, claude_input_tokens
from server.agents.permissions import PermissionAnswer
from server.agents.pricing import cost_usd
from server.agents.transcript import TranscriptWriter

logger = logging.getLogger(__name__)

PermissionDecider = Callable[[str, dict[str, Any], list[dict[str, Any]]], Awaitable[PermissionAnswer]]
"""Given a tool name, its input and the permission updates Claude Code suggests (as sent), the answer:
allowed or not (with the message the model sees on refusal), whether to apply the suggestions for the
rest of the session, and a question's answers."""

ModelReported = Callable[[str], Awaitable[None]]
"""Told the model the CLI says it runs: at a task's start and whenever a model turn names another."""

UsageGrew = Callable[[], None]
"""Told (synchronously, from the stream) each time a model turn's usage raised the live estimate."""

SessionNamed = Callable[[str], Awaitable[None]]
"""Told the Claude Code session id as soon as the CLI names it (to resume the session after a crash)."""


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
    sandbox: dict[str, Any] | None = None  # Claude Code's Bash sandbox settings (`claude_launch.sandbox_settings`)
    resume: str | None = None  # a Claude Code session to continue (its conversation is the model's context)
    fork_session: bool = False  # with resume: a new session that starts from that one's conversation
    max_budget_usd: float | None = None  # the CLI's own stop, behind Switchboard's budgets

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
        # The model the session runs before any task names one: its initialize answer resolves
        # the configured model (or "default", when the type sets none) to a model id.
        self.model_at_start: str | None = None
        self.session_id: str | None = None
        # The CLI reports the session's cost so far with every result; a task's cost is the difference.
        self._session_cost_usd = 0.0
        # The model the CLI last said it runs (None until its first task starts).
        self.model: str | None = None
        # The running task, as far as the stream tells before its result: turns, and tokens and an
        # estimated cost from each model turn's usage at its model's list price (output counts are
        # final only in the result, whose cost then replaces the estimate), and how long the last
        # model turn took to begin.
        self.live = Usage()
        self.last_turn_latency_s: float | None = None
        self._turns: dict[str, tuple[str, dict[str, Any]]] = {}  # turn id -> its model and usage
        self._waiting_since: float | None = None
        self._on_usage: UsageGrew | None = None

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
        self.model_at_start = resolved_model(await client.get_server_info(), self._launch.model)
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
            sandbox=launch.sandbox,  # type: ignore[arg-type]
            resume=launch.resume,
            fork_session=launch.fork_session,
            max_budget_usd=launch.max_budget_usd,
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
        self, tool_name: str, tool_input: dict[str, Any], context: ToolPermissionContext
    ) -> PermissionResultAllow | PermissionResultDeny:
        answer = await self._decide_permission(tool_name, tool_input, _sent_form(context.suggestions))
        self._write_log(f"[permission] {tool_name}: {'allowed' if answer.allowed else 'denied'}\n")
        if not answer.allowed:
            return PermissionResultDeny(message=answer.message or f"{tool_name} was not allowed")
        return PermissionResultAllow(
            # A question's answers go back in its input: the model reads them as the tool's result.
            updated_input={**tool_input, "answers": answer.answers} if answer.answers else None,
            updated_permissions=list(context.suggestions) if answer.remember and context.suggestions else None)

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

    async def run(self, prompt: str, on_model: ModelReported | None = None, on_usage: UsageGrew | None = None,
                  on_session: SessionNamed | None = None, transcript: TranscriptWriter | None = None) -> TaskOutcome:
        """Sends one task and waits for its result. A task that fails (an API error, no credentials,
        the CLI dying) is a ``failed`` outcome with the CLI's own message, never a raise.
        ``on_model`` hears the model in use as soon as the CLI names it, and again if it changes;
        ``on_usage`` each time the live estimate grew; ``on_session`` the session id when it is new;
        ``transcript`` gets each turn's text, tool calls and results, and usage as they stream."""
        async with self._task_lock:
            client = self._client
            if client is None:
                return TaskOutcome("failed", error="the Claude Code session has ended")
            self._write_log(f"[task] {prompt}\n")
            self.live, self._turns, self.last_turn_latency_s = Usage(turns=0), {}, None
            self._waiting_since, self._on_usage = time.monotonic(), on_usage
            told: str | None = None  # what on_model last heard in this task
            try:
                await client.query(prompt)
                async for message in client.receive_response():
                    model = None
                    if isinstance(message, AssistantMessage):
                        self._note_assistant(message)
                        if transcript is not None:
                            self._transcribe(transcript, message)
                        if message.parent_tool_use_id is None:  # a subagent's turns may run another model
                            model = message.model
                    elif isinstance(message, SystemMessage) and message.subtype == "init":
                        model = message.data.get("model")
                        named = message.data.get("session_id")
                        if isinstance(named, str) and named and named != self.session_id:
                            self.session_id = named
                            if on_session is not None:
                                await self._tell(on_session, named)
                    elif isinstance(message, UserMessage):  # tool results: the model is asked again
                        self._waiting_since = time.monotonic()
                        if transcript is not None:
                            _transcribe_results(transcript, message)
                    elif isinstance(message, ResultMessage):
                        if transcript is not None:
                            transcript.result(is_error=message.is_error, turns=message.num_turns,
                                              usage=message.usage, cost_usd=message.total_cost_usd)
                        return self._outcome(message)
                    if _is_model(model) and model != told:
                        self.model = told = model
                        if on_model is not None:
                            await self._tell(on_model, model)
            except ClaudeSDKError as error:
                return TaskOutcome("failed", error=f"Claude Code failed: {error}; {self._stderr_hint()}",
                                   usage=self._live_copy())
            return TaskOutcome("failed", error=f"Claude Code exited before finishing the task; {self._stderr_hint()}",
                               usage=self._live_copy())

    async def _tell(self, listener: Callable[[str], Awaitable[None]], value: str) -> None:
        try:
            await listener(value)
        except Exception:  # recording the model or the session must never fail the task
            logger.warning("claude agent in %s: could not record %s", self._launch.state_dir, value, exc_info=True)

    def _note_assistant(self, message: AssistantMessage) -> None:
        turn = message.message_id or message.uuid
        if turn is not None:
            known = self._turns.get(turn)
            if known is None:  # the CLI sends one message per content block: a turn is counted once
                self.live.turns = (self.live.turns or 0) + 1
                if self._waiting_since is not None:
                    self.last_turn_latency_s = time.monotonic() - self._waiting_since
                    self._waiting_since = None
            if message.usage or known is None:
                self._turns[turn] = (message.model, _merged(known[1] if known else {}, message.usage or {}))
                self._price_live()
                if self._on_usage is not None:
                    self._on_usage()
        for block in message.content:
            if isinstance(block, TextBlock):
                text = f"{block.text}\n"
            elif isinstance(block, ToolUseBlock):
                text = f"[tool] {block.name} {str(block.input)[:500]}\n"
            else:
                continue
            self._write_log(text)
            self.tail.add(text.encode())

    def _transcribe(self, transcript: TranscriptWriter, message: AssistantMessage) -> None:
        turn = message.message_id or message.uuid
        _, usage = self._turns.get(turn, ("", {})) if turn is not None else ("", {})
        transcript.assistant(self.live.turns or 0, message.model, usage, message.parent_tool_use_id)
        for block in message.content:  # thinking is left out
            if isinstance(block, TextBlock):
                transcript.text(block.text, message.parent_tool_use_id)
            elif isinstance(block, ToolUseBlock):
                transcript.tool_use(block.id, block.name, block.input, message.parent_tool_use_id)

    def _price_live(self) -> None:
        """The task's tokens and cost so far, from every turn's usage; the cost is None while any
        turn's model has no price (tokens only: an estimate that leaves turns out would mislead)."""
        with_usage = [(model, usage) for model, usage in self._turns.values() if usage]
        if not with_usage:
            return
        self.live.input_tokens = sum(claude_input_tokens(usage) for _, usage in with_usage)
        self.live.output_tokens = sum(int(usage.get("output_tokens") or 0) for _, usage in with_usage)
        # A turn that used no tokens (the CLI's own "<synthetic>" message for an API error) costs nothing.
        costs = [cost_usd(model, usage) if _tokens(usage) else 0.0 for model, usage in with_usage]
        self.live.cost_usd = None if None in costs else sum(cost for cost in costs if cost is not None)

    def _live_copy(self) -> Usage:
        return Usage(self.live.input_tokens, self.live.output_tokens, self.live.cost_usd, self.live.turns)

    def _outcome(self, message: ResultMessage) -> TaskOutcome:
        self.session_id = message.session_id
        usage_numbers = message.usage or {}
        task_cost = self.live.cost_usd  # the estimate, unless the CLI tells the real cost
        if message.total_cost_usd is not None:
            task_cost = max(message.total_cost_usd - self._session_cost_usd, 0.0)
            self._session_cost_usd = message.total_cost_usd
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


def _transcribe_results(transcript: TranscriptWriter, message: UserMessage) -> None:
    if isinstance(message.content, str):
        return
    for block in message.content:
        if isinstance(block, ToolResultBlock):
            transcript.tool_result(block.tool_use_id, _result_text(block.content), bool(block.is_error),
                                   message.parent_tool_use_id)


def _result_text(content: str | list[dict[str, Any]] | None) -> str:
    """A tool result's content as text: its text parts, and a mark for each other part (an image)."""
    if content is None or isinstance(content, str):
        return content or ""
    return "\n".join(str(part.get("text", "")) if part.get("type") == "text" else f"[{part.get('type', 'part')}]"
                     for part in content)


def _is_model(name: object) -> TypeGuard[str]:
    # "<synthetic>" names the CLI's own messages (an API error shown as a turn), not a model.
    return isinstance(name, str) and bool(name) and not name.startswith("<")


def _tokens(usage: dict[str, Any]) -> int:
    return claude_input_tokens(usage) + int(usage.get("output_tokens") or 0)


def _merged(known: dict[str, Any], usage: dict[str, Any]) -> dict[str, Any]:
    """One turn's usage from all its messages: each count at the highest any of them reported
    (the first carries message_start's numbers, with output_tokens 1)."""
    merged = {**known, **usage}
    for name, value in known.items():
        if isinstance(value, int) and isinstance(usage.get(name), int):
            merged[name] = max(value, usage[name])
    return merged


def resolved_model(server_info: dict[str, Any] | None, configured: str | None) -> str | None:
    """The model id the CLI's initialize answer resolves ``configured`` to (an alias such as
    ``opus``, or ``default`` when None); a configured full id stays as it is; None when unknown."""
    wanted = configured or "default"
    for model in (server_info or {}).get("models") or ():
        if isinstance(model, dict) and model.get("value") == wanted and isinstance(model.get("resolvedModel"), str):
            return str(model["resolvedModel"])
    return configured


def _sent_form(suggestions: list[PermissionUpdate]) -> list[dict[str, Any]]:
    """The CLI's suggestions as it sent them (a person reads them; `remember` applies them); one the SDK
    cannot express back is left out."""
    sent = []
    for suggestion in suggestions:
        try:
            sent.append(suggestion.to_dict())
        except ValueError:
            logger.info("left out a permission suggestion the SDK cannot send back: %r", suggestion)
    return sent
