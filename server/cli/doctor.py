"""`diagnose`: ``switchboard doctor``'s checks, each one line (ok, warn or FAIL) saying what to fix.

Settings, the data directory (writable, and private to its owner), both SQLite databases' integrity, the vector index against its
rows in SQLite, the object store (S3 with its bucket, or the local directory), Qdrant when it is
the backend, each agent type's executable, bubblewrap for the types that run sandboxed, what the
agents' worktrees take on disk, and Claude Code's credentials.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from server.agents.launch import SpawnFailed, resolve_executable
from server.config import Settings
from server.errors import SwitchboardError
from server.private_files import looser_than_private, make_private_dir
from server.services import Services
from server.startup_errors import open_services_or_refuse
from server.status import size_text
from server.workspaces.sandbox import INSTALL_HINT, find_bwrap

# What lets Claude Code reach a model without a person logging in.
CLAUDE_CREDENTIAL_VARIABLES = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "CLAUDE_CODE_OAUTH_TOKEN",
                               "ANTHROPIC_BASE_URL", "CLAUDE_CODE_USE_BEDROCK", "CLAUDE_CODE_USE_VERTEX")
REMOTE_TIMEOUT_S = 10.0


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool  # False fails the run
    detail: str
    warning: bool = False  # with ok: nothing fails now, but something is worth fixing

    @property
    def verdict(self) -> str:
        """``ok``, ``warn`` or ``FAIL``: the line's first word."""
        return "FAIL" if not self.ok else "warn" if self.warning else "ok"


async def diagnose(settings: Settings) -> AsyncIterator[Check]:
    """The checks, in order, each as soon as it is known."""
    yield Check("settings", True, f"valid; data dir {settings.data_dir.absolute()}")
    yield _data_dir_writable(settings.data_dir)
    yield _data_dir_private(settings.data_dir)
    for label, path in (("memory database", settings.database_path), ("agents database",
                                                                      settings.agents_database_path)):
        yield await asyncio.to_thread(_integrity, label, path)
    try:
        async with open_services_or_refuse(settings) as services:
            yield await _vectors_consistent(services)
            yield await _object_store(services)
            yield await _qdrant(settings)
            for check in _agent_types(services):
                yield check
            yield _sandbox(services)
            yield await _worktrees(services)
    except SwitchboardError as error:
        yield Check("services", False, f"could not open the stores: {error}")
    yield _claude_credentials(settings)


def _data_dir_writable(data_dir: Path) -> Check:
    try:
        make_private_dir(data_dir)
        with tempfile.NamedTemporaryFile(dir=data_dir, prefix=".doctor-"):
            pass
    except OSError as error:
        return Check("data dir", False, f"{data_dir} is not writable ({error.strerror}); fix its permissions or set "
                                        "SWITCHBOARD_DATA_DIR")
    return Check("data dir", True, f"{data_dir} writable")


def _data_dir_private(data_dir: Path) -> Check:
    # The server creates it 0700; one made before that, or by hand, may be open to every local user,
    # who could then read the databases (memory values may hold keys) and the agents' logs.
    try:
        loose = looser_than_private(data_dir)
    except OSError as error:
        return Check("data dir access", False, f"{data_dir} cannot be examined ({error.strerror})")
    if loose is None:
        return Check("data dir access", True, f"{data_dir} is private to its owner")
    return Check("data dir access", True, f"{data_dir} is mode {loose:04o}: other local users can read the "
                                          f"databases and logs in it; run `chmod 700 {data_dir}`", warning=True)


def _integrity(label: str, path: Path) -> Check:
    if not path.exists():
        return Check(label, True, f"{path.name} not created yet (created on first use)")
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
            rows = conn.execute("PRAGMA quick_check").fetchall()
    except sqlite3.Error as error:
        return Check(label, False, f"{path} cannot be read: {error}")
    problems = [str(row[0]) for row in rows if row[0] != "ok"]
    if problems:
        return Check(label, False, f"{path}: {problems[0]} ({len(problems)} problem(s)); restore it from a backup")
    return Check(label, True, f"{path.name} passes quick_check")


async def _vectors_consistent(services: Services) -> Check:
    vectors = services.memory.vectors
    if vectors is None:
        return Check("vector index", True, "semantic indexing is off")
    rows = await asyncio.to_thread(_count_rows, services.settings.database_path, "vectors")
    if vectors.count() != rows:
        return Check("vector index", False, f"{vectors.count()} vectors in the index, {rows} in SQLite; restart the "
                                            "server to rebuild the index from SQLite")
    return Check("vector index", True, f"{rows} vectors, as in SQLite ({services.settings.vector_backend}, "
                                       f"{vectors.embedder_name})")


def _count_rows(path: Path, table: str) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10) as conn:
        (rows,) = conn.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
    return int(rows)


async def _object_store(services: Services) -> Check:
    objects, settings = services.objects, services.settings
    bucket = objects.default_bucket
    if settings.uses_local_object_store:
        return Check("object store", True, f"{objects.description}")
    if bucket is None:
        return Check("object store", False, "S3 has no bucket: set SWITCHBOARD_S3_BUCKET (or pass bucket per call)")
    try:
        async with asyncio.timeout(REMOTE_TIMEOUT_S):
            async for _ in objects.list_objects(bucket, prefix=""):
                break
    except TimeoutError:
        return Check("object store", False, f"{objects.description}: no answer in {REMOTE_TIMEOUT_S:g} s")
    except SwitchboardError as error:
        return Check("object store", False, f"{objects.description}: {error}")
    return Check("object store", True, f"{objects.description}: bucket {bucket!r} listed")


async def _qdrant(settings: Settings) -> Check:
    if settings.vector_backend != "qdrant":
        return Check("qdrant", True, "not the vector backend (hnsw)")
    if settings.vector_qdrant_url is None:
        return Check("qdrant", True, f"embedded at {settings.qdrant_local_path}")
    from qdrant_client import AsyncQdrantClient

    client = AsyncQdrantClient(url=settings.vector_qdrant_url, timeout=int(REMOTE_TIMEOUT_S))
    try:
        collections = await client.get_collections()
    except Exception as error:  # the client raises transport and HTTP errors of several kinds
        return Check("qdrant", False, f"{settings.vector_qdrant_url} unreachable: {error}")
    finally:
        await client.close()
    return Check("qdrant", True, f"{settings.vector_qdrant_url}: {len(collections.collections)} collection(s)")


def _agent_types(services: Services) -> list[Check]:
    checks = []
    for name, agent_type in services.supervisor.types.items():
        label = f"agent type {name}"
        if agent_type.runtime == "claude":
            try:
                checks.append(Check(label, True, f"Claude Code at {services.supervisor.launches.cli(agent_type)}"))
            except SpawnFailed as error:
                checks.append(Check(label, False, str(error)))
            continue
        assert agent_type.command is not None
        env = {**os.environ, **agent_type.env}
        path = resolve_executable(agent_type.command[0], env)
        checks.append(Check(label, path is not None, f"runs {path}" if path else
                            f"{agent_type.command[0]!r} not found on PATH: install it or fix the type's command"))
    return checks


def _sandbox(services: Services) -> Check:
    """bubblewrap, which sandboxed agents need (worktree agents are sandboxed unless their type says not)."""
    sandboxed = [name for name, agent_type in services.supervisor.types.items()
                 if agent_type.sandbox or (agent_type.sandbox is None and agent_type.workspace != "shared")]
    found = find_bwrap()
    if found is not None:
        return Check("sandbox", True, f"bubblewrap at {found}")
    if not sandboxed:
        return Check("sandbox", True, f"bubblewrap not installed; no agent type runs sandboxed ({INSTALL_HINT})",
                     warning=True)
    return Check("sandbox", False, f"bubblewrap not installed, and agents of {', '.join(sandboxed)} run sandboxed "
                                   f"(their worktree agents, unless sandbox = false): {INSTALL_HINT}")


async def _worktrees(services: Services) -> Check:
    disk = await services.supervisor.workspaces.disk_use()
    limit = services.settings.workspace_disk_warn_gb
    detail = f"{disk.worktrees} worktree(s), {disk.unmerged} unmerged, {size_text(disk.bytes)} on disk"
    if disk.bytes > limit * 1024 ** 3:
        return Check("worktrees", True, f"{detail}: more than SWITCHBOARD_WORKSPACE_DISK_WARN_GB={limit:g}; merge "
                                        "(agent_merge) or discard (agent_terminate discard_workspace) what is done, "
                                        "see switchboard workspaces", warning=True)
    return Check("worktrees", True, detail)


def _claude_credentials(settings: Settings) -> Check:
    found = [name for name in CLAUDE_CREDENTIAL_VARIABLES if os.environ.get(name)]
    typed = sorted({name for agent_type in settings.agent_types.values() for name in agent_type.env
                    if name in CLAUDE_CREDENTIAL_VARIABLES})
    login = Path.home() / ".claude" / ".credentials.json"
    if found or typed or login.is_file():
        where = ", ".join([*found, *(f"{name} (agent type env)" for name in typed),
                           *([str(login)] if login.is_file() else [])])
        return Check("claude credentials", True, f"from {where}")
    # A warning, not a failure: exec agents need none, and a server may run only those.
    return Check("claude credentials", True, "none found: claude agents will not be able to call the model until "
                                             "credentials are set: set ANTHROPIC_API_KEY (or ANTHROPIC_BASE_URL for "
                                             "a compatible API) in the server's environment or the agent type's "
                                             "env, or run `claude` once to log in; exec agents need none",
                 warning=True)
