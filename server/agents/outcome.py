"""How a task ended, and the usage and cost read from what the runtime printed.

Claude Code's ``result`` message carries the result text, turns, usage and cost. Agents run
through ``exec`` often speak a JSON-lines dialect of their own; the known ones are read here:
Claude Code's ``--output-format stream-json``/``json`` (a ``result`` object), Codex's ``exec
--json`` (``turn.completed`` with ``usage``, ``item.completed`` agent messages) and Gemini's
``--output-format json``/``stream-json`` (a ``result`` with ``stats``/``response``).
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Literal

OutcomeStatus = Literal["completed", "failed", "terminated"]


@dataclass(slots=True)
class Usage:
    """Tokens and cost a task reported; None where the runtime did not say."""

    input_tokens: int | None = None
    output_tokens: int | None = None
    cost_usd: float | None = None
    turns: int | None = None
    raw: dict[str, Any] | None = None

    def add_tokens(self, input_tokens: object, output_tokens: object) -> None:
        if isinstance(input_tokens, int):
            self.input_tokens = (self.input_tokens or 0) + input_tokens
        if isinstance(output_tokens, int):
            self.output_tokens = (self.output_tokens or 0) + output_tokens


@dataclass(slots=True)
class TaskOutcome:
    status: OutcomeStatus
    result: str | None = None
    error: str | None = None
    usage: Usage = field(default_factory=Usage)
    session_id: str | None = None
    exit_code: int | None = None


def claude_input_tokens(usage: dict[str, Any]) -> int:
    """Claude's input side: fresh input plus cache reads and writes, all of which are billed."""
    return sum(int(usage.get(name) or 0) for name in ("input_tokens", "cache_creation_input_tokens",
                                                      "cache_read_input_tokens"))


class JsonLinesUsage:
    """Reads usage, cost and a final answer from an exec agent's stdout, line by line, in any
    of the known dialects; lines that are not JSON (or not a known shape) are ignored."""

    def __init__(self) -> None:
        self.usage = Usage()
        self.result: str | None = None
        self.is_error = False
        self.session_id: str | None = None
        self.recognised = False

    def feed(self, line: str) -> None:
        text = line.strip()
        if not text.startswith("{"):
            return
        try:
            message = json.loads(text)
        except ValueError:
            return
        if isinstance(message, dict):
            self._read(message)

    def _read(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "result" and ("total_cost_usd" in message or "num_turns" in message or ("usage" in message
                                 and "stats" not in message)):
            self._claude_result(message)
        elif kind == "turn.completed" and isinstance(message.get("usage"), dict):
            self.recognised = True
            usage = message["usage"]
            self.usage.add_tokens(
                int(usage.get("input_tokens") or 0) + int(usage.get("cached_input_tokens") or 0),
                usage.get("output_tokens"),
            )
            self.usage.turns = (self.usage.turns or 0) + 1
        elif kind == "item.completed" and isinstance(message.get("item"), dict):
            item = message["item"]
            if item.get("type") in ("agent_message", "assistant_message") and isinstance(item.get("text"), str):
                self.result = item["text"]
        elif kind == "turn.failed":
            self.recognised = True
            self.is_error = True
            error = message.get("error")
            self.result = str(error.get("message") if isinstance(error, dict) else error)
        elif (kind == "result" and "stats" in message) or ("response" in message and "stats" in message):
            self._gemini_result(message)
        elif kind == "init" and isinstance(message.get("session_id"), str):
            self.session_id = message["session_id"]
        elif kind == "thread.started" and isinstance(message.get("thread_id"), str):
            self.session_id = message["thread_id"]

    def _claude_result(self, message: dict[str, Any]) -> None:
        self.recognised = True
        usage = message.get("usage") if isinstance(message.get("usage"), dict) else {}
        assert isinstance(usage, dict)
        self.usage = Usage(
            input_tokens=claude_input_tokens(usage) if usage else None,
            output_tokens=usage.get("output_tokens") if isinstance(usage.get("output_tokens"), int) else None,
            cost_usd=float(message["total_cost_usd"]) if isinstance(message.get("total_cost_usd"), int | float)
            else None,
            turns=message.get("num_turns") if isinstance(message.get("num_turns"), int) else None,
            raw=usage or None,
        )
        if isinstance(message.get("result"), str):
            self.result = message["result"]
        self.is_error = bool(message.get("is_error"))
        if isinstance(message.get("session_id"), str):
            self.session_id = message["session_id"]

    def _gemini_result(self, message: dict[str, Any]) -> None:
        self.recognised = True
        stats = message.get("stats") if isinstance(message.get("stats"), dict) else {}
        assert isinstance(stats, dict)
        # stream-json's result stats are flat; json's are per model under stats.models.<name>.tokens.
        if "input_tokens" in stats or "output_tokens" in stats:
            self.usage.add_tokens(stats.get("input_tokens"), stats.get("output_tokens"))
        models = stats.get("models")
        if isinstance(models, dict):
            for model in models.values():
                tokens = model.get("tokens") if isinstance(model, dict) else None
                if isinstance(tokens, dict):
                    self.usage.add_tokens(tokens.get("prompt", tokens.get("input")), tokens.get("candidates"))
        self.usage.raw = stats or None
        response = message.get("response")
        if isinstance(response, str):
            self.result = response
        if message.get("status") == "error" or message.get("error"):
            self.is_error = True
            error = message.get("error")
            if isinstance(error, dict) and isinstance(error.get("message"), str):
                self.result = error["message"]


class OutputTail:
    """The last ``max_bytes`` of a process's output, kept in memory for answers and listings."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._chunks: deque[bytes] = deque()
        self._size = 0
        self.total_bytes = 0

    def add(self, chunk: bytes) -> None:
        self.total_bytes += len(chunk)
        self._chunks.append(chunk)
        self._size += len(chunk)
        while self._size - len(self._chunks[0]) >= self.max_bytes:
            self._size -= len(self._chunks.popleft())

    def text(self) -> str:
        data = b"".join(self._chunks)[-self.max_bytes:]
        return data.decode("utf-8", errors="replace")

    def since(self, mark: int) -> str:
        """What came after the first ``mark`` bytes (a past `total_bytes`), as far as it is still kept."""
        data = b"".join(self._chunks)[-self.max_bytes:]
        kept_from = self.total_bytes - len(data)
        return data[max(mark - kept_from, 0):].decode("utf-8", errors="replace")
