"""Reading tool answers in tests: the structured content of a success, the text of an error."""

from __future__ import annotations

from typing import Any

from mcp.types import CallToolResult, TextContent


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
