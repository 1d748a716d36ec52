"""The SDK's own floor: an MCP server over stdio with one tool that does nothing.

memory_bench.py measures it next to Switchboard, so the cost of the transport and the
SDK is visible apart from the cost of the memory store.
"""

from mcp.server.mcpserver import MCPServer
from pydantic import BaseModel


class Echo(BaseModel):
    key: str


server = MCPServer("empty")


@server.tool()
async def echo(key: str) -> Echo:
    """Return the key."""
    return Echo(key=key)


if __name__ == "__main__":
    server.run("stdio")
