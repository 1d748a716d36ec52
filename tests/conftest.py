"""Shared fixtures: a manual clock, a real SQLite-backed store, settings in a temp dir,
and an MCP client connected in-process to a real Switchboard server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from mcp import Client

from server.app import build_server
from server.clock import ManualClock
from server.config import Settings
from server.memory import MemoryStore


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def store(tmp_path: Path, clock: ManualClock) -> AsyncIterator[MemoryStore]:
    memory = await MemoryStore.open(
        tmp_path / "memory.sqlite3", clock=clock, max_value_bytes=64 * 1024, max_ttl_seconds=30 * 24 * 3600
    )
    yield memory
    await memory.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "data", memory_max_value_bytes=64 * 1024)


@pytest.fixture(params=["auto", "legacy"])
def connect(request: pytest.FixtureRequest, settings: Settings, clock: ManualClock) -> Callable[[], Client]:
    """Opens a client session to a fresh server, in the modern (auto) and legacy (initialize) handshake.

    Used as ``async with connect() as client``: the session must open and close in the test's own
    task (anyio cancel scopes), which an async-generator fixture cannot guarantee.
    """
    return lambda: Client(build_server(settings, clock=clock), mode=request.param)
