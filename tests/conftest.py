"""Shared fixtures: a manual clock, a real SQLite-backed store, settings in a temp dir,
an MCP client connected in-process to a real Switchboard server, and moto's S3 server
(a child process on a loopback port) with a fault-injecting proxy in front of it."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from mcp import Client

from server.app import build_server
from server.config import Settings
from server.memory import MemoryStore
from tests.fixtures.git_repo import make_repo
from tests.fixtures.messages_api import ScriptedMessagesApi
from tests.fixtures.postgres_cluster import PostgresCluster, PostgresUnavailable
from tests.manual_clock import ManualClock
from tests.objects.loopback_proxy import LoopbackProxy
from tests.objects.moto_process import MotoServer


@pytest.fixture(scope="session")
def postgres_cluster() -> Iterator[PostgresCluster]:
    """One private PostgreSQL cluster for the session (`tests.fixtures.postgres_cluster`). Without
    PostgreSQL installed its tests are skipped, except under CI, which must run them."""
    try:
        cluster = PostgresCluster()
    except PostgresUnavailable as missing:
        if os.environ.get("CI"):
            raise
        pytest.skip(str(missing))
    with cluster:
        yield cluster


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A real git repository (`tests.fixtures.git_repo.make_repo`): main, src/app.py, README."""
    return make_repo(tmp_path / "repo")


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


@pytest.fixture(scope="session")
def moto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MotoServer]:
    server = MotoServer(tmp_path_factory.mktemp("moto") / "moto.log")
    yield server
    server.stop()


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[LoopbackProxy]:
    proxy = LoopbackProxy(moto.port).start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="session")
def s3_admin(moto: MotoServer) -> Any:
    """A plain boto3 client straight to moto (no proxy): creates buckets and checks what landed."""
    return boto3.client("s3", endpoint_url=moto.url, region_name="us-east-1",
                        aws_access_key_id="testing", aws_secret_access_key="testing")


@pytest.fixture
def upload_root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    root.mkdir()
    return root


@pytest.fixture
def messages_api() -> Iterator[ScriptedMessagesApi]:
    """A started `ScriptedMessagesApi` with the default script; after the test it checks that the script never
    raised and that the CLI asked for nothing the server does not serve (a CONNECT would be a try at the network)."""
    with ScriptedMessagesApi() as api:
        yield api
    assert not api.script_errors, api.script_errors
    assert not api.unknown_requests(), [(request.method, request.path) for request in api.unknown_requests()]
