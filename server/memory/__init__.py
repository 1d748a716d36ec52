"""The persistent TTL memory: `MemoryStore` over SQLite, and the `ExpirySweeper`."""

from server.memory.models import Entry, EntryMeta, MemoryStats, NamespaceStats, Page, PutRequest, ScoredEntry
from server.memory.store import MemoryStore
from server.memory.sweeper import ExpirySweeper

__all__ = ["Entry", "EntryMeta", "ExpirySweeper", "MemoryStats", "MemoryStore", "NamespaceStats", "Page", "PutRequest",
           "ScoredEntry"]
