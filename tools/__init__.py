"""The MCP tool surface: one module per tool, each a thin typed function over one engine object
(what they share is in `tools.support`)."""

from __future__ import annotations

from mcp.server.mcpserver.tools import Tool

from tools import (
    agent_changes,
    agent_list,
    agent_merge,
    agent_terminate,
    agents_spawn_parallel,
    memory_search,
    memory_usage,
    query_control,
    query_list,
    query_start,
    query_wait,
    upload_batch,
)

TOOL_MODULES = (memory_usage, memory_search, upload_batch, agents_spawn_parallel, agent_list, agent_terminate,
                agent_changes, agent_merge, query_start, query_control, query_list, query_wait)


def all_tools() -> list[Tool]:
    """Every tool (each a `CheckedTool`), for ``MCPServer(tools=...)``."""
    return [module.tool() for module in TOOL_MODULES]
