"""How entries are read back from the ``entries`` table: the columns every read selects first,
the condition that hides an expired entry, and rows turned into records.

Every read that answers with entries (get, list, export, search) selects `META_COLUMNS` in this
order, so one pair of functions turns any of their rows into an `EntryMeta` or an `Entry`.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from server.memory.models import Entry, EntryMeta
from server.memory.validation import decode_tags

# An entry is gone from every read the instant it expires; the sweeper deletes it later. (The same
# condition over the alias ``e`` is `vector_rows.LIVE_ENTRY`.)
LIVE = "(expires_ms IS NULL OR expires_ms > :now)"
META_COLUMNS = "namespace, key, version, size, tags, created_ms, updated_ms, expires_ms"


def meta_from_row(row: Sequence[Any]) -> EntryMeta:
    """A row of `META_COLUMNS` (anything after them is ignored)."""
    return EntryMeta(row[0], row[1], row[2], row[3], decode_tags(row[4]), row[5], row[6], row[7])


def entry_from_row(row: Sequence[Any]) -> Entry:
    """A row of `META_COLUMNS` followed by the value's JSON text."""
    return Entry(row[0], row[1], row[2], row[3], decode_tags(row[4]), row[5], row[6], row[7], json.loads(row[8]))
