"""The transcript file: what the writer appends (bounded tool results and inputs, a turn's usage at
its end), and the reader's pages (since_turn, the byte budget, a torn last line skipped)."""

from __future__ import annotations

import json
import stat
from pathlib import Path
from typing import Any

from server.agents.transcript import (
    TranscriptWriter,
    complete_lines,
    cut_text,
    page_of,
    read_entries,
    transcript_path,
)


def writer(tmp_path: Path, bound: int = 64) -> TranscriptWriter:
    ticks = iter(range(1000, 100000))
    transcript = TranscriptWriter(transcript_path(tmp_path / "agent", "query-1"), bound, lambda: next(ticks))
    transcript.open()
    return transcript


def two_turns(transcript: TranscriptWriter, output: str = "hello") -> None:
    transcript.assistant(1, "claude-sonnet-4-5", {"input_tokens": 10, "output_tokens": 1}, None)
    transcript.text("I will run it")
    transcript.assistant(1, "claude-sonnet-4-5", {"input_tokens": 10, "output_tokens": 7,
                                                  "server_tool_use": {"web_search_requests": 0}}, None)
    transcript.tool_use("toolu_1", "Bash", {"command": "echo hello"})
    transcript.tool_result("toolu_1", output, is_error=False)
    transcript.assistant(2, "claude-sonnet-4-5", {"input_tokens": 30, "output_tokens": 3}, None)
    transcript.text("done")
    transcript.result(is_error=False, turns=2, usage={"input_tokens": 40, "output_tokens": 10}, cost_usd=0.01)
    transcript.close()


def test_each_event_is_one_line_with_its_turn_and_a_turns_usage_comes_at_its_end(tmp_path: Path) -> None:
    transcript = writer(tmp_path)
    two_turns(transcript)
    lines = transcript.path.read_text().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [(entry["type"], entry["turn"]) for entry in entries] == [
        ("turn", 1), ("text", 1), ("tool_use", 1), ("usage", 1), ("tool_result", 1),
        ("turn", 2), ("text", 2), ("usage", 2), ("result", 2)]
    assert entries[0]["model"] == "claude-sonnet-4-5"
    assert entries[3]["usage"] == {"input_tokens": 10, "output_tokens": 7}  # the latest numbers, counts only
    assert entries[4] == {"type": "tool_result", "turn": 1, "at_ms": entries[4]["at_ms"], "tool_use_id": "toolu_1",
                          "is_error": False, "content": "hello"}
    assert entries[-1]["cost_usd"] == 0.01 and entries[-1]["turns"] == 2
    assert all(entry["at_ms"] >= 1000 for entry in entries)
    assert stat.S_IMODE(transcript.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(transcript.path.parent.stat().st_mode) == 0o700


def test_a_long_tool_result_and_a_long_input_keep_their_start_and_end_within_the_bound(tmp_path: Path) -> None:
    transcript = writer(tmp_path, bound=64)
    transcript.assistant(1, "m", {}, None)
    transcript.tool_use("toolu_1", "Write", {"file_path": "a.txt", "content": "x" * 1000})
    output = "first line\n" + "é" * 500 + "\nlast line: the error"
    transcript.tool_result("toolu_1", output, is_error=True)
    transcript.close()
    _, call, result = read_entries(transcript.path)
    assert call["input"]["file_path"] == "a.txt" and len(call["input"]["content"]) < 100
    assert result["content"].startswith("first line") and result["content"].endswith("the error")
    assert result["cut_bytes"] == len(output.encode()) - 64 and result["is_error"] is True
    kept, cut = cut_text("short", 64)
    assert (kept, cut) == ("short", 0)


def test_a_torn_last_line_is_skipped_and_a_reopened_writer_starts_a_fresh_line(tmp_path: Path) -> None:
    transcript = writer(tmp_path)
    transcript.assistant(1, "m", {}, None)
    transcript.text("before the crash")
    transcript.close()
    with transcript.path.open("a") as file:  # what a server killed mid-write leaves
        file.write('{"type": "text", "turn": 1, "text": "cut he')
    assert [entry["text"] for entry in read_entries(transcript.path) if entry["type"] == "text"] == ["before the crash"]
    again = TranscriptWriter(transcript.path, 64, lambda: 0)
    again.open()
    again.assistant(2, "m", {}, None)
    again.close()
    entries = read_entries(transcript.path)
    assert [(entry["type"], entry["turn"]) for entry in entries] == [("turn", 1), ("text", 1), ("turn", 2)]
    # A follower reading bytes as they come waits for a line's newline before taking it.
    data = transcript.path.read_bytes() + b'{"type": "text"'
    taken, used = complete_lines(data)
    assert len(taken) == 3 and used == len(data) - len(b'{"type": "text"')


def test_no_file_yet_reads_as_no_entries(tmp_path: Path) -> None:
    assert read_entries(transcript_path(tmp_path, "query-none")) == []
    page = page_of([], since_turn=0, budget_bytes=1000, ended=False)
    assert (page.entries, page.next_turn) == ([], 0)
    assert page_of([], since_turn=0, budget_bytes=1000, ended=True).next_turn is None


def entries_of(turns: int, text_bytes: int = 100) -> list[dict[str, Any]]:
    return [entry for turn in range(1, turns + 1) for entry in (
        {"type": "turn", "turn": turn, "model": "m"}, {"type": "text", "turn": turn, "text": "t" * text_bytes})]


def test_pages_hold_whole_turns_within_the_budget_and_name_the_next_turn() -> None:
    entries = entries_of(5)  # about 170 bytes a turn
    first = page_of(entries, since_turn=0, budget_bytes=400, ended=True)
    assert sorted({entry["turn"] for entry in first.entries}) == [1, 2] and first.next_turn == 3
    second = page_of(entries, since_turn=first.next_turn or 0, budget_bytes=400, ended=True)
    assert sorted({entry["turn"] for entry in second.entries}) == [3, 4] and second.next_turn == 5
    last = page_of(entries, since_turn=5, budget_bytes=400, ended=True)
    assert {entry["turn"] for entry in last.entries} == {5} and last.next_turn is None
    assert page_of(entries, since_turn=6, budget_bytes=400, ended=True).entries == []


def test_while_the_query_runs_its_last_turn_is_named_again() -> None:
    page = page_of(entries_of(2), since_turn=1, budget_bytes=10_000, ended=False)
    assert {entry["turn"] for entry in page.entries} == {1, 2} and page.next_turn == 2


def test_a_turn_bigger_than_the_budget_is_cut_with_a_note_and_the_page_moves_on() -> None:
    entries = entries_of(2, text_bytes=5000)
    page = page_of(entries, since_turn=1, budget_bytes=1000, ended=True)
    assert [entry["type"] for entry in page.entries] == ["turn", "note"]
    assert "1 more entries of turn 1 left out" in page.entries[-1]["text"] and page.next_turn == 2
    assert sum(len(json.dumps(entry)) for entry in page.entries) < 1000


def test_latest_holds_the_last_turns_that_fit_and_says_earlier_ones_are_left_out() -> None:
    page = page_of(entries_of(5), since_turn=0, budget_bytes=400, ended=False, latest=True)
    assert page.entries[0]["type"] == "note"
    assert sorted({entry["turn"] for entry in page.entries[1:]}) == [4, 5] and page.next_turn == 5
