"""How a tool answers when it cannot do what was asked: a tool error (``isError: true``) whose
text starts with a stable code, then says what was wrong and what is accepted.

The codes are the `SwitchboardError` ones (``invalid_argument``, ``conflict``, ...) plus
``internal`` for anything unexpected, whose details stay in the server log.
"""

from __future__ import annotations

from mcp.types import CallToolResult, TextContent

INTERNAL = "internal"


def error_result(text: str) -> CallToolResult:
    return CallToolResult(content=[TextContent(type="text", text=text)], is_error=True)


def internal_error_result(tool: str, error: Exception) -> CallToolResult:
    # Only the exception's type reaches the client: its message may carry stored data or paths.
    return error_result(
        f"{INTERNAL}: {tool} failed unexpectedly ({type(error).__name__}); the details are in the server log"
    )
