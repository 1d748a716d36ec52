"""The MCP tool surface: one module per tool, each a thin typed function over one engine object."""

from __future__ import annotations

from typing import Any

from mcp.server.mcpserver import MCPServer

from tools import memory_search, memory_usage, upload_batch

TOOL_MODULES = (memory_usage, memory_search, upload_batch)


def register_tools(server: MCPServer[Any]) -> None:
    for module in TOOL_MODULES:
        module.register(server)
