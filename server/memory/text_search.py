"""Text search: live entries by key glob, by what their values say, and by tags.

A key matches a GLOB pattern (``*``, ``?``, ``[...]``); a value matches when its text (a
string's own characters, any other value's JSON: `searchable_text`) contains the query, ASCII
letters compared without case (SQLite's ``lower``). Matches come in (namespace, key) order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from server.clock import Clock
from server.errors import InvalidArgument
from server.memory import vector_rows
from server.memory.models import Entry
from server.memory.readers import ReaderPool, snapshot
from server.memory.search_hits import HIT_COLUMNS, PREVIEW_CHARS, entries_with_values, searchable_text
from server.memory.sql import fetch_all
from server.memory.validation import check_limit, check_name, check_search_text, check_tags

_TEXT_MATCHES = f"""
SELECT {HIT_COLUMNS} FROM entries AS e WHERE {vector_rows.LIVE_ENTRY}
AND (:namespace IS NULL OR e.namespace = :namespace)
AND (:glob IS NULL OR e.key GLOB :glob)
AND (:text IS NULL OR instr(lower({searchable_text('e.value')}), lower(:text)) > 0)
AND {vector_rows.has_all_tags("e.tags")}
ORDER BY e.namespace, e.key LIMIT :limit
"""


@dataclass(frozen=True, slots=True)
class TextSearch:
    """Searches a memory store's entries through its readers (`MemoryStore.search` is its `search`)."""

    readers: ReaderPool
    clock: Clock
    max_answer_bytes: int

    async def search(
        self,
        *,
        namespace: str | None = None,
        key_glob: str | None = None,
        text: str | None = None,
        limit: int = 100,
        tags: Sequence[str] = (),
    ) -> list[Entry]:
        """Live entries whose key matches ``key_glob`` (``*``, ``?``, ``[...]``), whose value
        text contains ``text`` (ASCII case-insensitive) and that carry every one of ``tags``,
        across one namespace or all of them. Values come while the answer holds at most
        ``max_answer_bytes`` of them; the other entries carry a preview instead. Entries come in
        (namespace, key) order, at most ``limit`` of them."""
        if namespace is not None:
            check_name("namespace", namespace)
        if not key_glob and not text:
            raise InvalidArgument("search needs a key glob (pattern, e.g. 'agent-*') or a text to look for (query)")
        check_search_text("pattern", key_glob)
        check_search_text("query", text)
        check_limit(limit)
        wanted_tags = check_tags(tags)
        async with self.readers.connection() as conn, snapshot(conn):
            rows = await fetch_all(conn,
                _TEXT_MATCHES,
                {
                    "namespace": namespace,
                    "glob": key_glob or None,
                    "text": text or None,
                    "now": self.clock.now_ms(),
                    "limit": limit,
                    "tags": json.dumps(wanted_tags, ensure_ascii=False),
                    "tag_count": len(wanted_tags),
                    "preview_chars": PREVIEW_CHARS,
                },
            )
            return await entries_with_values(conn, rows, self.max_answer_bytes)
