"""What the memory store hands back: plain frozen records, times in epoch milliseconds (UTC)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class EntryMeta:
    """An entry without its value: what `list` returns and what a write acknowledges."""

    namespace: str
    key: str
    version: int
    size: int
    tags: tuple[str, ...]
    created_ms: int
    updated_ms: int
    expires_ms: int | None


@dataclass(frozen=True, slots=True)
class Entry(EntryMeta):
    """An entry with its value (any JSON value). In a search answer that had no room left for
    the value, ``preview`` holds the start of its text instead (and ``value`` is None)."""

    value: Any = None
    preview: str | None = None


@dataclass(frozen=True, slots=True)
class PutRequest:
    """One write for `MemoryStore.put_many`. ``ttl_seconds`` of None or 0 means no expiry;
    ``if_version`` of 0 means "only if absent"; ``index`` asks for a vector even outside the
    namespaces configured as indexed."""

    namespace: str
    key: str
    value: Any
    ttl_seconds: int | None = None
    tags: tuple[str, ...] = ()
    if_version: int | None = None
    index: bool = False


@dataclass(frozen=True, slots=True)
class ScoredEntry:
    """A semantic search result: the entry and its cosine similarity to the query (-1..1, higher is closer)."""

    score: float
    entry: Entry


@dataclass(frozen=True, slots=True)
class Page:
    """One page of a listing; ``next_cursor`` is None on the last page."""

    entries: list[EntryMeta]
    next_cursor: str | None


@dataclass(frozen=True, slots=True)
class NamespaceStats:
    namespace: str
    entries: int
    bytes: int
    oldest_ms: int
    newest_ms: int
    expiring_within_hour: int


@dataclass(frozen=True, slots=True)
class MemoryStats:
    namespaces: list[NamespaceStats] = field(default_factory=list)
    total_entries: int = 0
    total_bytes: int = 0
    database_bytes: int = 0
    expired_total: int = 0


@dataclass(frozen=True, slots=True)
class ImportedEntry:
    """One entry as `MemoryStore.import_entries` takes it: everything an export kept, times absolute."""

    namespace: str
    key: str
    value: Any
    version: int
    created_ms: int
    updated_ms: int
    expires_ms: int | None = None
    tags: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Skipped:
    namespace: str
    key: str
    reason: str


@dataclass(frozen=True, slots=True)
class ImportReport:
    written: int
    skipped: list[Skipped]
