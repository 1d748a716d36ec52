"""What a search answers with, for text search and semantic search alike.

A search first reads each match's metadata, size and a short preview (`HIT_COLUMNS`), then,
in the same snapshot, the values of the matches that fit in one answer
(`entries_with_values`): a search over large values never reads or sends more than
``max_answer_bytes`` of them, and the other matches carry their preview instead.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import aiosqlite

from server.memory.entry_rows import META_COLUMNS
from server.memory.models import Entry
from server.memory.sql import fetch_all
from server.memory.validation import decode_tags

# Characters of a value's text shown in place of a value that does not fit in a search answer.
PREVIEW_CHARS = 200


def searchable_text(value_column: str) -> str:
    """SQL for what text search looks in, and what a preview shows: a string value's own text
    (quotes, backslashes and newlines as written), and any other value's canonical JSON."""
    return f"(CASE json_type({value_column}) WHEN 'text' THEN json_extract({value_column}, '$') ELSE {value_column} END)"


# Over the alias ``e``: `META_COLUMNS`, then the entry's id (row[8]) and its preview (row[9]),
# for :preview_chars characters.
HIT_COLUMNS = (
    ", ".join(f"e.{column.strip()}" for column in META_COLUMNS.split(","))
    + f", e.id, substr({searchable_text('e.value')}, 1, :preview_chars)"
)


async def entries_with_values(
    conn: aiosqlite.Connection, rows: Sequence[Sequence[Any]], max_answer_bytes: int
) -> list[Entry]:
    """Entries for these rows of `HIT_COLUMNS`, in order: each with its value while the values so
    far fit in ``max_answer_bytes``, else with its preview. Call inside the snapshot the rows came from."""
    budget = max_answer_bytes
    chosen: list[int] = []
    for row in rows:
        if row[3] <= budget:  # size: a smaller value further down may still fit
            chosen.append(row[8])
            budget -= row[3]
    values: dict[int, str] = {}
    if chosen:
        values = {row[0]: row[1] for row in await fetch_all(conn,
            "SELECT id, value FROM entries WHERE id IN (SELECT value FROM json_each(?))", (json.dumps(chosen),)
        )}
    entries = []
    for row in rows:
        tags = decode_tags(row[4])
        if row[8] in values:
            value, preview = json.loads(values[row[8]]), None
        else:
            value, preview = None, row[9]
        entries.append(Entry(row[0], row[1], row[2], row[3], tags, row[5], row[6], row[7], value, preview))
    return entries
