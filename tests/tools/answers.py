"""Reading tool answers in tests: the structured content of a success, the text of an error."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from mcp.types import CallToolResult, TextContent, Tool

# What the model sees of every tool together (names, descriptions, input schemas): clients pay for it
# in context on every session (DESIGN.md). Output schemas are not shown to the model, but kept lean:
# about 2,100 bytes a tool for the twelve tools (the three query tools share the ListedQuery shape, pending
# permission requests included: those cost 1,000 bytes of the 29,000).
MODEL_VISIBLE_BUDGET = 24_000
OUTPUT_SCHEMAS_BUDGET = 29_000


def structured_of(result: CallToolResult) -> dict[str, Any]:
    assert not result.is_error, result.content
    assert isinstance(result.structured_content, dict), result
    return result.structured_content


def text_of(result: CallToolResult) -> str:
    """The text of the answer's first (for every Switchboard tool: only) content block."""
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


def error_text(result: CallToolResult) -> str:
    assert result.is_error, result.structured_content
    return text_of(result)


def listing_sizes(tools: Sequence[Tool]) -> tuple[int, int]:
    """Bytes of the listing the model sees (without output schemas), and of the output schemas."""
    dumped = [tool.model_dump(mode="json", by_alias=True, exclude_none=True) for tool in tools]
    outputs = [entry.pop("outputSchema", None) for entry in dumped]
    return len(json.dumps(dumped).encode()), len(json.dumps(outputs).encode())
