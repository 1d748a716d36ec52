"""What a real ``switchboard serve`` creates in a fresh data directory is its owner's alone.

The databases hold whatever clients store (an S3 key, a token), so every directory the server
makes is 0700 and every file 0600, under the usual umask 022, while it runs (the SQLite -wal and
-shm files exist then) and after it has shut down (the vector index is saved then). The umask
itself stays as it was: agents inherit it, and their files in users' projects keep normal modes.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

from tests.e2e.stdio_peer import StdioPeer

USUAL_UMASK = 0o022


def modes_under(root: Path) -> Iterator[tuple[str, str, int]]:
    """(path relative to ``root``, "dir" or "file", permission bits) of ``root`` and all below it."""
    yield ".", "dir", stat.S_IMODE(root.stat().st_mode)
    for directory, subdirs, files in os.walk(root):
        for name in subdirs:
            path = Path(directory, name)
            yield str(path.relative_to(root)), "dir", stat.S_IMODE(path.lstat().st_mode)
        for name in files:
            path = Path(directory, name)
            yield str(path.relative_to(root)), "file", stat.S_IMODE(path.lstat().st_mode)


def not_private(root: Path) -> list[str]:
    return [f"{path} ({kind}) is {mode:04o}" for path, kind, mode in modes_under(root)
            if mode != (0o700 if kind == "dir" else 0o600)]


def umask_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("Umask:"):
            return int(line.split()[1], 8)
    raise AssertionError(f"no Umask line for {pid}")


def start_with_usual_umask(data_dir: Path, stderr: Path) -> StdioPeer:
    previous = os.umask(USUAL_UMASK)  # the child inherits it: the server must not rely on a strict one
    try:
        server = StdioPeer(data_dir, stderr)
    finally:
        os.umask(previous)
    server.initialize()
    return server


def test_a_fresh_data_dir_and_everything_in_it_are_owner_only(tmp_path: Path) -> None:
    parent = tmp_path / "state"  # missing too: created on the way, just as private
    data = parent / "data"
    server = start_with_usual_umask(data, tmp_path / "stderr.log")
    try:
        secret = {"aws_secret_access_key": "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"}
        server.call_tool("memory_usage", {"action": "store", "namespace": "secrets", "key": "s3", "value": secret})
        server.call_tool("memory_usage", {"action": "store_batch", "namespace": "notes", "entries": [
            {"key": f"note-{n}", "value": f"a note about deploying service {n}"} for n in range(20)]})
        found = server.call_tool("memory_search", {"query": "deploying service", "k": 3})
        assert found["structuredContent"]["results"], found
        assert umask_of(server.process.pid) == USUAL_UMASK
        assert not_private(data) == []
        created = {path for path, _, _ in modes_under(data)}
        assert {"memory.sqlite3", "memory.sqlite3-wal", "memory.sqlite3-shm", "agents.sqlite3",
                "agents.sqlite3-wal", "agents.sqlite3-shm", "agents", "run", "objects"} <= created, created
    finally:
        server.close_stdin()
    assert server.wait() == 0
    assert {"vectors.hnsw", "memory.sqlite3"} <= {path for path, _, _ in modes_under(data)}
    assert not_private(data) == []
    assert stat.S_IMODE(parent.stat().st_mode) == 0o700
