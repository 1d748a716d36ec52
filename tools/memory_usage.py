"""``memory_usage``: the shared, persistent memory, in claude-flow's call shape.

``{"action": "store", "namespace": "agent-activities", "key": "agent-7-spawn",
"value": "{...json text...}", "ttl": 604800}`` works unchanged, and a string value comes
back as the very same string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, StrictBool

from server.errors import InvalidArgument
from server.memory import Entry, EntryMeta, MemoryStats, PutRequest, ScoredEntry
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.json_value import JsonValue
from tools.support.results import structured
from tools.support.timestamps import iso_utc, iso_utc_or_none

DEFAULT_NAMESPACE = "default"

Action = Literal["store", "store_batch", "retrieve", "list", "delete", "search", "stats"]


class MemoryEntry(CompactModel):
    namespace: str
    key: str
    value: JsonValue = Field(default=None, description="The stored value (retrieve and search only).")
    version: int = Field(description="Grows by one on every write; pass it as if_version for compare-and-set.")
    size: int = Field(description="Bytes of the value serialised as JSON.")
    tags: list[str]
    created_at: str
    updated_at: str
    expires_at: str | None = Field(description="ISO-8601 UTC; null means it never expires.")
    score: float | None = Field(default=None, description="Semantic search: cosine similarity to the query, -1..1.")
    preview: str | None = Field(
        default=None, description="search: the value's start when the answer had no room left for it; retrieve it for all."
    )

    @classmethod
    def from_scored(cls, scored: ScoredEntry) -> MemoryEntry:
        entry = cls.from_engine(scored.entry)
        entry.score = round(scored.score, 4)
        return entry

    @classmethod
    def from_engine(cls, entry: EntryMeta) -> MemoryEntry:
        fields: dict[str, Any] = {
            "namespace": entry.namespace,
            "key": entry.key,
            "version": entry.version,
            "size": entry.size,
            "tags": list(entry.tags),
            "created_at": iso_utc(entry.created_ms),
            "updated_at": iso_utc(entry.updated_ms),
            "expires_at": iso_utc_or_none(entry.expires_ms),
        }
        if isinstance(entry, Entry):
            if entry.preview is None:
                fields["value"] = entry.value
            else:
                fields["preview"] = entry.preview
        return cls(**fields)


class NamespaceUsage(BaseModel):
    namespace: str
    entries: int
    bytes: int
    oldest_at: str
    newest_at: str
    expiring_within_hour: int


class MemoryUsageStats(BaseModel):
    namespaces: list[NamespaceUsage]
    total_entries: int
    total_bytes: int
    database_bytes: int = Field(description="Size of the SQLite files on disk.")
    expired_total: int = Field(description="Entries expired since the database was created.")

    @classmethod
    def from_engine(cls, stats: MemoryStats) -> MemoryUsageStats:
        return cls(
            namespaces=[
                NamespaceUsage(
                    namespace=ns.namespace,
                    entries=ns.entries,
                    bytes=ns.bytes,
                    oldest_at=iso_utc(ns.oldest_ms),
                    newest_at=iso_utc(ns.newest_ms),
                    expiring_within_hour=ns.expiring_within_hour,
                )
                for ns in stats.namespaces
            ],
            total_entries=stats.total_entries,
            total_bytes=stats.total_bytes,
            database_bytes=stats.database_bytes,
            expired_total=stats.expired_total,
        )


class BatchEntry(BaseModel):
    """One entry of store_batch; absent fields take the call's namespace, ttl, tags and index."""

    # Unknown fields (a misspelt if_version would turn into a plain overwrite) are refused by
    # tools.support.arguments, which also accepts the camelCase spelling; the schema shows only ours.
    key: str
    value: JsonValue
    namespace: str | None = None
    ttl: int | None = Field(default=None, ge=0)
    tags: list[str] | None = None
    index: bool | None = None
    if_version: int | None = Field(default=None, ge=0, validation_alias=aliases("if_version", "ifVersion"))


class MemoryUsageResult(CompactModel):
    action: Action
    success: bool = True
    found: bool | None = Field(default=None, description="retrieve: whether a live entry exists.")
    entry: MemoryEntry | None = Field(default=None, description="store: what was written; retrieve: the entry.")
    entries: list[MemoryEntry] | None = Field(
        default=None, description="list (no values), search (with values; semantic: with score)."
    )
    stored: int | None = Field(default=None, description="store_batch: how many entries were written.")
    versions: list[int] | None = Field(
        default=None, description="store_batch: each entry's new version, in the order sent (compact at any size)."
    )
    next_cursor: str | None = Field(
        default=None, description="list: pass back as cursor for the next page; absent at the end."
    )
    deleted: int | None = Field(default=None, description="delete: how many entries were deleted.")
    stats: MemoryUsageStats | None = None


# Text arguments are annotated exactly `str` (empty = absent): the SDK JSON-parses any other
# string argument, which would turn a key named "null" or a query "[1, 2]" into something else.
async def memory_usage(
    action: Annotated[Action, Field(description="What to do.")],
    ctx: Context[Services, Any],
    key: Annotated[str, Field(description="Entry key, 1..256 printable characters.")] = "",
    value: Annotated[JsonValue, Field(description="store: any JSON value; a string comes back unchanged.")] = None,
    namespace: Annotated[
        str, Field(description="Namespace (default 'default'); search without it covers all namespaces.")
    ] = "",
    ttl: Annotated[int | None, Field(ge=0, description="store: seconds to live; 0 or absent = never expires.")] = None,
    tags: Annotated[
        list[str] | None, Field(description="store: up to 32 labels; search: only entries with all.")
    ] = None,
    index: Annotated[
        bool | None, Field(description="store/store_batch: also index for semantic search (default: by namespace).")
    ] = None,
    entries: Annotated[
        list[BatchEntry] | None,
        Field(description="store_batch: up to 10,000 {key, value, namespace?, ttl?, tags?, index?}."),
    ] = None,
    if_version: Annotated[
        int | None,
        Field(ge=0, validation_alias=aliases("if_version", "ifVersion"),
              description="store/delete: act only if the entry is at this version (0 = absent)."),
    ] = None,
    prefix: Annotated[str, Field(description="list: only keys starting with this.")] = "",
    limit: Annotated[int, Field(ge=1, le=1000, description="list/search: most entries returned (semantic: k).")] = 100,
    cursor: Annotated[str, Field(description="list: next_cursor from the previous page.")] = "",
    # Strict: only a JSON true deletes a whole namespace, never "true" or 1.
    confirm: Annotated[StrictBool, Field(description="delete without key: must be true to delete the namespace.")] = False,
    # Bounded well below SQLite's 50,000-byte limit on GLOB patterns (beyond it the query fails).
    pattern: Annotated[str, Field(max_length=4096, description="search: glob over keys, e.g. 'agent-*'.")] = "",
    query: Annotated[
        str, Field(description="search: text the value must contain (text mode) or mean (semantic mode).")
    ] = "",
    mode: Annotated[
        Literal["text", "semantic"], Field(description="search: substring match, or closest in meaning.")
    ] = "text",
) -> Annotated[CallToolResult, MemoryUsageResult]:
    """Shared persistent memory for agents: namespaced JSON entries with TTL, versions and tags.

    Actions:
    - store {key, value, namespace?, ttl?, tags?, if_version?, index?}: create or replace; returns the version.
    - store_batch {entries: [{key, value, namespace?, ttl?, tags?, if_version?}], namespace?, ttl?, tags?}:
      up to 10,000 in one transaction, all or none; call-level fields are defaults for entries;
      answers stored and each entry's new version, in order.
    - retrieve {key, namespace?}: value and metadata; found=false when absent or expired.
    - list {namespace?, prefix?, limit?, cursor?}: keys and metadata, paged by next_cursor.
    - delete {key, namespace?, if_version?} or {namespace, confirm: true} for a whole namespace.
    - search {pattern? (key glob), query? (value text), namespace? (all if absent), tags?, limit?};
      mode "semantic" ranks indexed entries by meaning of query (see also memory_search).
    - stats: entries, bytes and expiry per namespace, totals, database size.
    Errors start with a code: invalid_argument, conflict, not_found, too_large.
    """
    services: Services = ctx.request_context.lifespan_context
    memory = services.memory
    arguments = _wire_arguments(ctx)
    match action:
        case "store":
            if "value" not in arguments:
                raise InvalidArgument("store needs a value (any JSON value)")
            meta = await memory.put(
                namespace or DEFAULT_NAMESPACE,
                _require_key(key, action),
                _as_sent(value, arguments),
                ttl_seconds=ttl,
                tags=tags or (),
                if_version=if_version,
                index=bool(index),
            )
            return structured(MemoryUsageResult(action=action, entry=MemoryEntry.from_engine(meta)))
        case "store_batch":
            if not entries:
                raise InvalidArgument("store_batch needs entries: a list of {key, value, ...}")
            if if_version is not None:
                raise InvalidArgument("in store_batch, if_version goes on each entry it guards")
            requests = [
                PutRequest(
                    item.namespace or namespace or DEFAULT_NAMESPACE,
                    item.key,
                    item.value,
                    item.ttl if item.ttl is not None else ttl,
                    tuple(item.tags if item.tags is not None else tags or ()),
                    if_version=item.if_version,
                    index=bool(item.index if item.index is not None else index),
                )
                for item in entries
            ]
            metas = await memory.put_many(requests)
            # Versions only: 10,000 entries' full metadata would put ~3.6 MB into the caller's context.
            return structured(
                MemoryUsageResult(action=action, stored=len(metas), versions=[meta.version for meta in metas])
            )
        case "retrieve":
            entry = await memory.get(namespace or DEFAULT_NAMESPACE, _require_key(key, action))
            if entry is None:
                return structured(MemoryUsageResult(action=action, found=False))
            return structured(MemoryUsageResult(action=action, found=True, entry=MemoryEntry.from_engine(entry)))
        case "list":
            page = await memory.list_page(namespace or DEFAULT_NAMESPACE, prefix=prefix, limit=limit, cursor=cursor or None)
            result = MemoryUsageResult(action=action, entries=[MemoryEntry.from_engine(e) for e in page.entries])
            if page.next_cursor is not None:
                result.next_cursor = page.next_cursor
            return structured(result)
        case "delete":
            if key:
                deleted = await memory.delete(namespace or DEFAULT_NAMESPACE, key, if_version=if_version)
            elif namespace and confirm:
                deleted = await memory.delete_namespace(namespace)
            else:
                raise InvalidArgument(
                    "delete needs a key, or a namespace with confirm: true "
                    "to delete the whole namespace"
                )
            return structured(MemoryUsageResult(action=action, deleted=deleted))
        case "search" if mode == "semantic":
            scored: Sequence[ScoredEntry] = await memory.search_semantic(
                query, namespace=namespace or None, tags=tags or (), k=limit
            )
            return structured(
                MemoryUsageResult(action=action, entries=[MemoryEntry.from_scored(s) for s in scored])
            )
        case "search":
            matches: Sequence[Entry] = await memory.search(
                namespace=namespace or None, key_glob=pattern, text=query, limit=limit, tags=tags or ()
            )
            return structured(MemoryUsageResult(action=action, entries=[MemoryEntry.from_engine(e) for e in matches]))
        case "stats":
            stats = MemoryUsageStats.from_engine(await memory.stats())
            return structured(MemoryUsageResult(action=action, stats=stats))


def _wire_arguments(ctx: Context[Services, Any]) -> dict[str, Any]:
    """The arguments exactly as the client sent them, before the SDK pre-parsed JSON-looking strings."""
    params = ctx.request_context.params or {}
    arguments = params.get("arguments")
    return arguments if isinstance(arguments, dict) else {}


def _as_sent(value: JsonValue, arguments: dict[str, Any]) -> JsonValue:
    # The SDK turns a string like '{"a": 1}' into a dict before we see it; claude-flow clients
    # send JSON text and expect the same text back, so keep what was on the wire.
    sent = arguments.get("value")
    return sent if isinstance(sent, str) else value


def _require_key(key: str, action: str) -> str:
    if not key:
        raise InvalidArgument(f"{action} needs a key (1..256 printable characters)")
    return key


def tool() -> Tool:
    return CheckedTool.from_function(
        memory_usage,
        title="Shared memory",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=False, open_world_hint=False
        ),
    )
