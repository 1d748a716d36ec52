"""A claude query's transcript: one JSON object a line, appended as the session streams, read in pages.

It lives at ``<agent state dir>/transcripts/<query_id>.jsonl`` (`transcript_path`; 0700 directory,
0600 file). Every line has ``type``, ``turn`` (the model turn it belongs to, counted from 1 as the
query's ``turns`` are) and ``at_ms``; by type:

    turn         a model turn begins: ``model``
    text         assistant text: ``text``
    tool_use     a tool call: ``id``, ``name``, ``input`` (long strings in it cut to the bound)
    usage        the turn is over: its ``usage`` (token counts as the stream reported them)
    tool_result  a tool's result, in the turn that called it: ``tool_use_id``, ``is_error``,
                 ``content`` (cut to SWITCHBOARD_TRANSCRIPT_TOOL_RESULT_BYTES; ``cut_bytes`` says how much)
    result       the query's end as the CLI reported it: ``is_error``, ``turns``, ``usage``, ``cost_usd``

A subagent's lines carry its ``parent_tool_use_id``. Thinking is left out. Readers add entries of
type ``note`` (never in the file) where they leave something out.

Each line is written whole and flushed at once, so another process can follow the file; a server
that dies mid-write leaves a torn last line, which readers skip (and a writer reopening the file
starts on a fresh line).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from server.private_files import PRIVATE_FILE_MODE, make_private_dir

logger = logging.getLogger(__name__)

TRANSCRIPTS_DIR = "transcripts"
ANSWER_BYTES = 64 * 1024
"""What one answer (a query_list page, the resource, the dashboard) holds of transcripts at most."""

_CUT_MARK = "\n[... {cut} bytes cut ...]\n"
EXEC_NOTE = "an exec query keeps no transcript: output_tail is its output"


def transcript_path(state_dir: Path, query_id: str) -> Path:
    """Where the transcript of ``query_id``, run by the agent whose state directory is ``state_dir``, is."""
    return state_dir / TRANSCRIPTS_DIR / f"{query_id}.jsonl"


class TranscriptWriter:
    """Appends one query's transcript. Told each assistant message's turn (`assistant`), then its
    blocks; it writes a turn's ``turn`` line when the turn begins and its ``usage`` line when it ends
    (the next turn, a tool result or the result)."""

    def __init__(self, path: Path, tool_result_bytes: int, now_ms: Callable[[], int]) -> None:
        self.path = path
        self._bound = tool_result_bytes
        self._now_ms = now_ms
        self._file: IO[str] | None = None
        self._turn = 0
        self._open_usage: dict[str, Any] | None = None  # the current turn's usage, until its usage line

    def open(self) -> None:
        make_private_dir(self.path.parent)
        descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC,
                             PRIVATE_FILE_MODE)
        os.fchmod(descriptor, PRIVATE_FILE_MODE)  # O_CREAT's mode passes through the umask
        self._file = os.fdopen(descriptor, "a", encoding="utf-8")
        if _ends_torn(self.path):  # a crash cut the last line: ours must not be glued to it
            self._file.write("\n")
            self._file.flush()

    def close(self) -> None:
        self._end_turn()
        if self._file is not None:
            self._file.close()
            self._file = None

    def assistant(self, turn: int, model: str, usage: dict[str, Any], parent_tool_use_id: str | None) -> None:
        """An assistant message of model turn ``turn`` (its usage merged over the turn's messages so far)."""
        if turn != self._turn:
            self._end_turn()
            self._turn = turn
            self._write("turn", parent_tool_use_id, model=model)
        self._open_usage = usage

    def text(self, text: str, parent_tool_use_id: str | None = None) -> None:
        self._write("text", parent_tool_use_id, text=text)

    def tool_use(self, tool_use_id: str, name: str, tool_input: dict[str, Any],
                 parent_tool_use_id: str | None = None) -> None:
        self._write("tool_use", parent_tool_use_id, id=tool_use_id, name=name, input=_bounded(tool_input, self._bound))

    def tool_result(self, tool_use_id: str, content: str, is_error: bool,
                    parent_tool_use_id: str | None = None) -> None:
        self._end_turn()
        kept, cut = cut_text(content, self._bound)
        fields: dict[str, Any] = {"tool_use_id": tool_use_id, "is_error": is_error, "content": kept}
        if cut:
            fields["cut_bytes"] = cut
        self._write("tool_result", parent_tool_use_id, **fields)

    def result(self, *, is_error: bool, turns: int | None, usage: dict[str, Any] | None,
               cost_usd: float | None) -> None:
        self._end_turn()
        self._write("result", None, is_error=is_error, turns=turns, usage=token_counts(usage or {}),
                    cost_usd=cost_usd)

    def _end_turn(self) -> None:
        usage, self._open_usage = token_counts(self._open_usage or {}), None
        if usage:  # a turn the stream reported no numbers for has no usage line
            self._write("usage", None, usage=usage)

    def _write(self, kind: str, parent_tool_use_id: str | None, **fields: Any) -> None:
        if self._file is None:
            return
        line: dict[str, Any] = {"type": kind, "turn": self._turn, "at_ms": self._now_ms(), **fields}
        if parent_tool_use_id is not None:
            line["parent_tool_use_id"] = parent_tool_use_id
        try:
            # One write of the whole line, flushed: a follower never sees half of it unless we crash.
            self._file.write(json.dumps(line, ensure_ascii=False, default=str) + "\n")
            self._file.flush()
        except OSError:  # a full disk loses transcript lines, never the task
            logger.warning("could not append to the transcript %s", self.path, exc_info=True)


def token_counts(usage: dict[str, Any]) -> dict[str, int]:
    """The token counts of a usage report (the CLI adds nested details a transcript need not keep)."""
    return {name: value for name, value in usage.items() if isinstance(value, int) and not isinstance(value, bool)}


def cut_text(text: str, bound: int) -> tuple[str, int]:
    """``text`` within ``bound`` UTF-8 bytes: its start and its end (where errors show), and the bytes cut."""
    data = text.encode()
    if len(data) <= bound:
        return text, 0
    half = bound // 2
    cut = len(data) - 2 * half
    head = data[:half].decode(errors="ignore")
    tail = data[len(data) - half:].decode(errors="ignore")
    return head + _CUT_MARK.format(cut=cut) + tail, cut


def _bounded(value: Any, bound: int) -> Any:
    """A tool's input with each long string in it cut (a Write's whole file need not be in the transcript)."""
    if isinstance(value, str):
        return cut_text(value, bound)[0]
    if isinstance(value, dict):
        return {key: _bounded(item, bound) for key, item in value.items()}
    if isinstance(value, list):
        return [_bounded(item, bound) for item in value]
    return value


def _ends_torn(path: Path) -> bool:
    with path.open("rb") as existing:
        existing.seek(0, os.SEEK_END)
        if existing.tell() == 0:
            return False
        existing.seek(-1, os.SEEK_END)
        return existing.read(1) != b"\n"


# -- reading -----------------------------------------------------------------------------------


@dataclass(slots=True)
class TranscriptPage:
    """Entries of some turns, oldest first, and the turn to ask for next (None: nothing can follow)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    next_turn: int | None = None


def complete_lines(data: bytes) -> tuple[list[dict[str, Any]], int]:
    """The entries of the whole lines in ``data`` and how many bytes they took; a last line without its
    newline is left for later (being written, or torn by a crash), a line that is not JSON skipped."""
    end = data.rfind(b"\n") + 1
    entries = []
    for raw in data[:end].splitlines():
        if not raw.strip():
            continue
        try:
            entry = json.loads(raw)
        except ValueError:
            logger.info("skipped a torn transcript line: %r", raw[:80])
            continue
        if isinstance(entry, dict):
            entries.append(entry)
    return entries, end


def read_entries(path: Path) -> list[dict[str, Any]]:
    """Every whole entry of a transcript file; none when there is no file (yet)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return []
    return complete_lines(data)[0]


def page_of(entries: Iterable[dict[str, Any]], *, since_turn: int, budget_bytes: int, ended: bool,
            latest: bool = False) -> TranscriptPage:
    """The whole turns from ``since_turn`` on that fit in ``budget_bytes`` (of compact JSON); with
    ``latest``, the last turns that fit instead. A turn bigger than the budget on its own is cut (a
    note says so) and the page moves past it. While the query runs (not ``ended``) its last turn may
    still grow, so ``next_turn`` names that turn again rather than the one after it."""
    turns: dict[int, list[dict[str, Any]]] = {}
    for entry in entries:
        turn = entry.get("turn")
        if isinstance(turn, int) and turn >= since_turn:
            turns.setdefault(turn, []).append(entry)
    order = sorted(turns, reverse=latest)
    chosen: dict[int, list[dict[str, Any]]] = {}
    left = budget_bytes
    for turn in order:
        size = sum(_size(entry) for entry in turns[turn])
        if size > left:
            if not chosen:
                chosen[turn] = _cut_turn(turn, turns[turn], left)
            break
        chosen[turn] = turns[turn]
        left -= size
    page = TranscriptPage([entry for turn in sorted(chosen) for entry in chosen[turn]])
    last = order[0] if latest and order else (order[-1] if order else None)
    if latest and len(chosen) < len(order):
        page.entries.insert(0, _note(min(chosen), "earlier turns left out: query_list include_transcript with "
                                                  "since_turn pages from the start"))
    if ended and (latest or len(chosen) == len(order)):
        return page  # all of it, and nothing can follow
    if latest or len(chosen) == len(order):
        page.next_turn = last if last is not None else since_turn
    else:
        page.next_turn = max(chosen) + 1
        if not ended and last is not None:
            page.next_turn = min(page.next_turn, last)
    return page


def _cut_turn(turn: int, entries: list[dict[str, Any]], budget: int) -> list[dict[str, Any]]:
    kept, left = [], budget
    for entry in entries:
        size = _size(entry)
        if size > left:
            break
        kept.append(entry)
        left -= size
    kept.append(_note(turn, f"{len(entries) - len(kept)} more entries of turn {turn} left out: bigger than "
                            f"the answer's {budget} bytes"))
    return kept


def exec_page() -> TranscriptPage:
    """What stands for an exec query's transcript: a note that its output tail is all there is."""
    return TranscriptPage([{"type": "note", "text": EXEC_NOTE}])


def _note(turn: int, text: str) -> dict[str, Any]:
    return {"type": "note", "turn": turn, "text": text}


def _size(entry: dict[str, Any]) -> int:
    return len(json.dumps(entry, ensure_ascii=False, separators=(",", ":")).encode())
