"""How engine errors reach a client: as a tool error (``isError: true``) whose text starts
with the stable error code, then says what was wrong and what is accepted."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from mcp.server.mcpserver.exceptions import ToolError

from server.errors import SwitchboardError


@contextmanager
def tool_errors() -> Iterator[None]:
    """Turn a `SwitchboardError` raised inside the block into a `ToolError` with the same text."""
    try:
        yield
    except SwitchboardError as error:
        raise ToolError(str(error)) from error
