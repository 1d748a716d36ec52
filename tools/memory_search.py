"""``memory_search``: find memory entries by meaning (or by text), across one namespace or all.

claude-flow's ``{"pattern": "...", "namespace": "...", "limit": 5}`` works as well as
``{"query": "...", "k": 5}``; without a namespace every namespace is searched.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import Field

from server.errors import InvalidArgument
from server.memory import Entry, ScoredEntry
from server.services import Services
from server.vectors import text_to_embed
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.compact import CompactModel
from tools.support.json_value import JsonValue
from tools.support.results import structured
from tools.support.timestamps import iso_utc
from tools.support.wording import shown

DEFAULT_K = 10
# A value larger than this (serialised) comes back as a text preview of this many characters.
PREVIEW_CHARS = 2000

Mode = Literal["semantic", "text"]


class SearchHit(CompactModel):
    namespace: str
    key: str
    score: float = Field(description="semantic: cosine similarity to the query (-1..1); text: 1.")
    value: JsonValue = Field(default=None, description="The stored value, unless it is large (then see preview).")
    preview: str | None = Field(
        default=None, description="The start of a large value's text; retrieve it for all of it."
    )
    tags: list[str]
    updated_at: str

    @classmethod
    def from_engine(cls, score: float, entry: Entry) -> SearchHit:
        hit = cls(namespace=entry.namespace, key=entry.key, score=round(score, 4), tags=list(entry.tags),
                  updated_at=iso_utc(entry.updated_ms))
        if entry.preview is not None:  # the answer had no room left for this value
            hit.preview = entry.preview
        elif entry.size > PREVIEW_CHARS:
            hit.preview = text_to_embed(entry.value)[:PREVIEW_CHARS]
        else:
            hit.value = entry.value
        return hit


class MemorySearchResult(CompactModel):
    mode: Mode
    embedder: str | None = Field(default=None, description="semantic: the embedder that made the vectors.")
    results: list[SearchHit] = Field(description="Best first.")


# Text arguments are annotated exactly `str` (empty = absent) so the SDK does not JSON-parse them.
async def memory_search(
    ctx: Context[Services, Any],
    query: Annotated[str, Field(description="What to look for, in words.")] = "",
    namespace: Annotated[str, Field(description="Only this namespace; absent = all namespaces.")] = "",
    k: Annotated[int | None, Field(ge=1, le=100, description="Most results (default 10).")] = None,
    # threshold: claude-flow's name for the same cut-off.
    min_score: Annotated[
        float | None,
        Field(ge=-1, le=1, validation_alias=aliases("min_score", "minScore", "threshold"),
              description="semantic: drop results scoring lower (default: the server's floor, 0.2 for the "
                          "built-in embedder; -1 keeps all)."),
    ] = None,
    tags: Annotated[list[str] | None, Field(description="Only entries carrying all these tags.")] = None,
    mode: Annotated[Mode, Field(description="semantic: by meaning; text: value contains the query.")] = "semantic",
    pattern: Annotated[str, Field(description="Same as query (claude-flow).")] = "",
    limit: Annotated[int | None, Field(ge=1, le=100, description="Same as k (claude-flow).")] = None,
) -> Annotated[CallToolResult, MemorySearchResult]:
    """Search shared memory by meaning: entries ranked by similarity to query, best first.

    Semantic mode covers indexed entries (configured namespaces, or stored with index: true);
    text mode matches any entry whose value contains query. Large values come back as a preview.
    Errors start with a code: invalid_argument, unavailable.
    """
    services: Services = ctx.request_context.lifespan_context
    memory = services.memory
    text = _one_of("query", query, "pattern", pattern) or ""
    count = _one_of("k", k, "limit", limit) or DEFAULT_K
    if not text.strip():
        raise InvalidArgument("query (or pattern) must be a non-empty text to search for")
    if mode == "text":
        matches: Sequence[Entry] = await memory.search(
            namespace=namespace or None, text=text, limit=count, tags=tags or ()
        )
        return structured(
            MemorySearchResult(mode=mode, results=[SearchHit.from_engine(1.0, entry) for entry in matches])
        )
    scored: Sequence[ScoredEntry] = await memory.search_semantic(
        text, namespace=namespace or None, tags=tags or (), k=count, min_score=min_score
    )
    return structured(
        MemorySearchResult(
            mode=mode,
            embedder=memory.vectors.embedder_name if memory.vectors else None,
            results=[SearchHit.from_engine(hit.score, hit.entry) for hit in scored],
        )
    )


def _one_of(name: str, value: Any, alias: str, alias_value: Any) -> Any:
    """The argument given under its own name or its claude-flow alias; both must agree if both are given."""
    if value and alias_value and value != alias_value:
        raise InvalidArgument(
            f"{name} and {alias} are the same argument; give it once (got {shown(value)} and {shown(alias_value)})"
        )
    return value or alias_value


def tool() -> Tool:
    return CheckedTool.from_function(
        memory_search,
        title="Search memory by meaning",
        annotations=ToolAnnotations(
            read_only_hint=True, destructive_hint=False, idempotent_hint=True, open_world_hint=False
        ),
    )
