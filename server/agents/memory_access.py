"""What a claude agent's shared memory is to the agents package: an MCP server entry to grant and revoke.

The app wires in the real one (`server.http.agent_memory.AgentMemoryEndpoint`); the agents
package only sees this protocol, so it never imports the HTTP layer above it.
"""

from __future__ import annotations

from typing import Any, Protocol


class AgentMemoryAccess(Protocol):
    """Gives a claude agent this server's memory as an MCP server (wired in by the app)."""

    async def grant(self, agent_id: str) -> dict[str, Any]:
        """The MCP server entry (type, url, headers) for that agent's Claude Code."""
        ...

    def revoke(self, agent_id: str) -> None: ...

    def calls_by_agent(self) -> dict[str, int]: ...
