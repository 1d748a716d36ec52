"""Start-up removes what writers killed mid-write left in the local store, and nothing a live writer
is still writing: real child processes (tests/objects/stuck_writer.py), really killed with SIGKILL."""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from server.config import Settings
from server.objects import LocalObjectStore
from server.objects.from_settings import open_object_store
from server.objects.local_writers import WRITERS_DIR

REPO = Path(__file__).resolve().parents[2]


class StuckWriter:
    """A child process holding two writes half-done in the local store under ``root``."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.objects.stuck_writer", str(root), name], cwd=REPO, text=True,
            stdout=subprocess.PIPE, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        )
        self.upload_id = ""

    async def stuck(self) -> None:
        """Returns once both writes are held, each with its bytes on disk."""
        lines: set[str] = set()
        with anyio.fail_after(60):
            while len(lines) < 3:
                assert self.process.stdout is not None
                line = await anyio.to_thread.run_sync(self.process.stdout.readline, abandon_on_cancel=True)
                assert line, f"the writer {self.name} ended early (exit code {self.process.poll()})"
                if line.startswith("upload "):
                    self.upload_id = line.split()[1]
                    line = "upload"
                lines.add(line.strip())
        assert lines == {"upload", "stuck put", "stuck part"}

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)


@pytest.fixture
def writers() -> Iterator[list[StuckWriter]]:
    started: list[StuckWriter] = []
    yield started
    for writer in started:
        if writer.process.poll() is None:
            writer.kill()
        if writer.process.stdout is not None:
            writer.process.stdout.close()


def files_under(root: Path) -> dict[Path, int]:
    """Every file of the store, with its size, but the per-directory lock files it reuses."""
    return {path: path.stat().st_size for path in root.rglob("*") if path.is_file() and path.name != ".lock"}


def committed(root: Path) -> set[Path]:
    """Every object's record and the data file it names."""
    records = set((root / "local" / "objects").glob("*/*.json"))
    return records | {record.parent / json.loads(record.read_text())["data"] for record in records}


async def test_start_up_removes_a_killed_writers_leftovers_and_keeps_a_live_writers_work(
    tmp_path: Path, writers: list[StuckWriter], caplog: pytest.LogCaptureFixture
) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    root = settings.local_objects_dir
    killed = StuckWriter(root, "killed")
    writers.append(killed)
    await killed.stuck()
    killed_files = files_under(root)
    # All but its committed object (done.txt's record and data) and its writer lock: the cut put's
    # data and new record, the upload's upload.json, part 1 and part 2's temporary.
    leftovers = {path: size for path, size in killed_files.items()
                 if path not in committed(root) and path.parent.name != WRITERS_DIR}
    assert sorted(path.suffix for path in leftovers) == [".data", ".json", ".part", ".tmp", ".tmp"]
    live = StuckWriter(root, "live")
    writers.append(live)
    await live.stuck()
    live_files = {path: size for path, size in files_under(root).items() if path not in killed_files}
    killed.kill()

    with caplog.at_level(logging.WARNING, logger="server.objects.local"):
        store = await open_object_store(settings)  # as the server does when it starts
    try:
        assert [path for path in leftovers if path.exists()] == []
        assert not (root / "local" / "multipart" / killed.upload_id).exists()
        after = files_under(root)
        assert {path: after.get(path) for path in live_files} == live_files, "a live writer's work was touched"
        assert await store.read_object("local", "killed/done.txt") == b"committed before the crash"
        assert [upload.upload_id for upload in await store.list_multipart_uploads("local")] == [live.upload_id]
        assert [record.getMessage() for record in caplog.records if "leftover" in record.getMessage()] == [
            f"local object store {root}: removed {len(leftovers)} leftover files ({sum(leftovers.values())} bytes, "
            "1 unfinished multipart uploads among them) of writes cut short by a process that ended"]
        # The killed writer's lock is gone with its leftovers; the live writer's stays.
        assert {path.name for path in (root / WRITERS_DIR).iterdir()} == {
            path.name for path in live_files if path.parent.name == WRITERS_DIR}
    finally:
        await store.close()

    live.kill()
    store = await open_object_store(settings)
    try:
        assert await store.list_multipart_uploads("local") == []
        assert set(files_under(root)) == committed(root) and len(committed(root)) == 4  # two done.txt objects
        assert await store.read_object("local", "live/done.txt") == b"committed before the crash"
        assert list((root / WRITERS_DIR).iterdir()) == []
    finally:
        await store.close()


async def test_a_store_that_closed_leaves_leftovers_and_one_still_open_keeps_its_work(tmp_path: Path) -> None:
    body = b"x"
    md5 = base64.b64encode(hashlib.md5(body).digest()).decode()
    still_open, closed = LocalObjectStore(tmp_path), LocalObjectStore(tmp_path)
    for store in (still_open, closed):
        await store.create_multipart_upload("local", "k", content_type="x/y", metadata={})
        await store.put_object("local", "k", body, content_md5=md5, content_type="x/y", metadata={}, if_absent=False)
    await closed.close()
    removed = await LocalObjectStore(tmp_path).remove_leftovers()
    assert (removed.files, removed.uploads) == (1, 1)  # the closed store's upload: its folder and upload.json
    assert len(await still_open.list_multipart_uploads("local")) == 1
    assert await still_open.read_object("local", "k") == body
    await still_open.close()
