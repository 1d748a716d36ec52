"""`ClaudeLaunches`: how a claude agent's session starts.

Which CLI (the type's, the setting's, or the one claude-agent-sdk bundles), through which
launcher, in which directories, with which environment and tools, and, with the shared memory
on, the MCP config that gives it this server's memory (a 0600 file, never argv).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from server.agents.claude_runtime import ClaudeLaunch
from server.agents.file_scope import FILE_TOOLS
from server.agents.launch import SpawnFailed, make_dirs, resolve_executable, write_claude_launcher, write_mcp_config
from server.agents.memory_access import AgentMemoryAccess
from server.agents.types import MEMORY_TOOLS, AgentType, type_environment
from server.config import Settings
from server.workspaces.sandbox import Sandbox

BUNDLED_CLI = "bundled"


class ClaudeLaunches:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._launcher: Path | None = None  # written once per server start

    async def for_agent(self, agent_id: str, agent_type: AgentType, *, model: str | None, permission_mode: str,
                        workdir: Path, state_dir: Path, memory: AgentMemoryAccess | None,
                        sandbox: Sandbox | None = None) -> ClaudeLaunch:
        """The launch of ``agent_id``'s session; grants it the shared memory when that is on. A
        sandboxed one runs its commands in Claude Code's Bash sandbox, and its file tools always
        ask (the agent's `PermissionGate` keeps them inside its `FileScope`)."""
        if self._launcher is None:
            self._launcher = write_claude_launcher(self._settings.data_dir / "run")
        make_dirs(state_dir, workdir)
        mcp_config: Path | None = None
        allowed = [tool for tool in agent_type.allowed_tools if sandbox is None or tool not in FILE_TOOLS]
        if memory is not None and self._settings.agent_shared_memory:
            servers = {"switchboard": await memory.grant(agent_id)}
            mcp_config = await asyncio.to_thread(write_mcp_config, state_dir, servers)
            allowed.extend(tool for tool in MEMORY_TOOLS if tool not in allowed)
        return ClaudeLaunch(
            cli=self.cli(agent_type),
            launcher=self._launcher,
            workdir=workdir,
            state_dir=state_dir,
            env=type_environment(agent_type, agent_id),
            model=model,
            permission_mode=permission_mode,
            system_prompt=agent_type.system_prompt,
            allowed_tools=allowed,
            disallowed_tools=list(agent_type.disallowed_tools),
            mcp_config=mcp_config,
            setting_sources=list(agent_type.setting_sources),
            sandbox=sandbox_settings(sandbox) if sandbox is not None else None,
        )

    def cli(self, agent_type: AgentType) -> str:
        """The claude executable: the type's command, else the setting, else the one the SDK bundles."""
        configured = agent_type.command[0] if agent_type.command else self._settings.agent_claude_cli
        if configured and configured != BUNDLED_CLI:
            found = resolve_executable(configured, os.environ)
            if found is None:
                raise SpawnFailed(
                    f"Claude Code executable not found: {configured!r} (fix SWITCHBOARD_AGENT_CLAUDE_CLI or the "
                    "type's command, or unset it to use the CLI bundled with claude-agent-sdk)", transient=False)
            return found
        import claude_agent_sdk

        bundled = Path(claude_agent_sdk.__file__).parent / "_bundled" / "claude"
        if not bundled.is_file():
            raise SpawnFailed("claude-agent-sdk ships no bundled Claude Code CLI on this platform; set "
                              "SWITCHBOARD_AGENT_CLAUDE_CLI to a claude executable", transient=False)
        return str(bundled)


def sandbox_settings(sandbox: Sandbox) -> dict[str, Any]:
    """Claude Code's Bash sandbox (bubblewrap on Linux) for ``sandbox``: every command sandboxed,
    none let out of it, the hidden paths unreadable, the workspace writable, the network off
    (no host on the allow list, and no prompt for others) unless the type allows it."""
    return {
        "enabled": True,
        "autoAllowBashIfSandboxed": True,
        "allowUnsandboxedCommands": False,
        "network": {"allowedDomains": ["*"]} if sandbox.network else {"allowedDomains": [], "strictAllowlist": True},
        "filesystem": {
            "denyRead": [str(path) for path in sandbox.hidden],
            "allowRead": [str(path) for path in (*sandbox.writable, *sandbox.readable)],
            "allowWrite": [str(path) for path in sandbox.writable],
        },
    }
