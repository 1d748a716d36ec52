"""The JSON Schemas of every tool's input and output, exactly as ``tools/list`` advertises them.

``switchboard schemas`` writes them to ``schemas/``; a test fails when the checked-in files
drift from the models.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import anyio
from mcp.server.mcpserver import MCPServer

from tools import all_tools


async def tool_schemas() -> dict[str, dict[str, Any]]:
    """File name -> schema, for the input and output of every tool."""
    server: MCPServer[Any] = MCPServer("switchboard", tools=list(all_tools()))
    files: dict[str, dict[str, Any]] = {}
    for tool in await server.list_tools():
        files[f"{tool.name}.input.json"] = tool.input_schema
        if tool.output_schema is not None:
            files[f"{tool.name}.output.json"] = tool.output_schema
    return files


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True) + "\n"


def write_schemas(directory: Path) -> list[Path]:
    """Write every tool's schemas under ``directory``; returns the paths written."""
    schemas = anyio.run(tool_schemas)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas.items():
        path = directory / name
        path.write_text(render(schema), encoding="utf-8")
        written.append(path)
    return written
