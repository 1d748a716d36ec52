"""Switchboard: an MCP server for coordinating many agents."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("switchboard-mcp")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+source"
