"""LocalObjectStore details the shared uploader tests cannot see: what stays on disk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from server.errors import Unavailable
from server.objects.local import LocalObjectStore
from server.objects.models import BatchRequest, FileSpec
from tests.objects.conftest import MiB, Target, make_uploader

REPO = Path(__file__).resolve().parents[2]


async def test_concurrent_overwrites_of_one_key_leave_exactly_one_data_file(tmp_path: Path) -> None:
    store = LocalObjectStore(tmp_path)
    bodies = [f"version {i}".encode() * 100 for i in range(8)]
    for _ in range(20):
        await asyncio.gather(*(
            store.put_object("local", "same-key", body,
                             content_md5=base64.b64encode(hashlib.md5(body).digest()).decode(),
                             content_type="text/plain", metadata={}, if_absent=False)
            for body in bodies
        ))
    data_files = list(tmp_path.rglob("*.data"))
    assert len(data_files) == 1
    assert data_files[0].read_bytes() in bodies


class AnswerLostOnce(LocalObjectStore):
    """The first write of each kind lands, then its answer is lost (a read timeout, as on a real link)."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.lost: set[str] = set()

    def _lose_first(self, what: str) -> None:
        if what not in self.lost:
            self.lost.add(what)
            raise Unavailable(f"read timeout waiting for the answer to {what}")

    async def put_object(self, *args: Any, **kwargs: Any) -> str:
        etag = await super().put_object(*args, **kwargs)
        self._lose_first("put")
        return etag

    async def complete_multipart_upload(self, *args: Any, **kwargs: Any) -> str:
        etag = await super().complete_multipart_upload(*args, **kwargs)
        self._lose_first("complete")
        return etag


@pytest.mark.parametrize("size", [1000, 9 * MiB], ids=["single-put", "multipart"])
async def test_a_write_that_landed_but_lost_its_answer_is_reported_uploaded(tmp_path: Path, size: int) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(os.urandom(size))
    store = AnswerLostOnce(tmp_path / "objects")
    uploader = make_uploader(Target("local", store, "local"), [root])
    # overwrite=false: the retry is a conditional write that finds the first try's object.
    result = await uploader.upload(BatchRequest(files=[FileSpec(path="f.bin")], bucket="local", overwrite=False))
    assert result.status == "ok", result.failed
    assert result.uploaded[0].attempts == 2
    head = await store.head_object("local", "f.bin")
    assert head is not None and head.etag == result.uploaded[0].etag


async def test_a_conflict_on_the_first_try_is_still_a_conflict(tmp_path: Path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    (root / "f.bin").write_bytes(b"new")
    store = LocalObjectStore(tmp_path / "objects")
    old = b"old"
    await store.put_object("local", "f.bin", old, content_md5=base64.b64encode(hashlib.md5(old).digest()).decode(),
                           content_type="text/plain", metadata={}, if_absent=False)
    result = await make_uploader(Target("local", store, "local"), [root]).upload(
        BatchRequest(files=[FileSpec(path="f.bin")], bucket="local", overwrite=False))
    assert result.status == "failed" and result.failed[0].code == "conflict"


def run_size_limited(mode: str, config: dict[str, Any]) -> dict[str, Any]:
    """Run `tests.objects.fsize_limited` in a child whose files cannot grow past ``config["limit"]``."""
    completed = subprocess.run(
        [sys.executable, "-m", "tests.objects.fsize_limited", mode, json.dumps(config)],
        check=False, capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"},
        timeout=120,
    )
    assert completed.returncode == 0, completed.stderr
    answer: dict[str, Any] = json.loads(completed.stdout)
    return answer


def files_under(directory: Path) -> list[Path]:
    """Every file the store keeps, except the per-directory lock files it reuses."""
    return sorted(path for path in directory.rglob("*") if path.is_file() and path.name != ".lock")


@pytest.mark.parametrize(
    ("size", "threshold", "part_size"),
    [(2 * MiB, 8 * MiB, MiB), (3 * MiB, MiB, 2 * MiB), (3 * MiB, MiB, MiB)],
    ids=["whole-put", "multipart-part", "multipart-completion"],
)
async def test_a_write_that_runs_out_of_space_leaves_nothing_behind_and_is_not_retried(
    tmp_path: Path, size: int, threshold: int, part_size: int
) -> None:
    # Files may not grow past 1.5 MiB: the 2 MiB put, the 2 MiB part and the 3 MiB completed object
    # each fail part-way, with bytes already on disk; the 100-byte file fits.
    root = tmp_path / "root"
    root.mkdir()
    (root / "big.bin").write_bytes(os.urandom(size))
    (root / "ok.txt").write_bytes(b"x" * 100)
    answer = run_size_limited("batch", {
        "limit": 3 * MiB // 2, "root": str(root), "objects": str(tmp_path / "objects"),
        "threshold": threshold, "part_size": part_size, "files": ["big.bin", "ok.txt"],
    })
    assert answer["uploaded"] == ["ok.txt"]
    [failure] = answer["failed"]
    assert (failure["key"], failure["code"], failure["attempts"]) == ("big.bin", "unavailable", 1)
    assert "File too large" in failure["message"] and "free space" in failure["message"]
    # Exactly what the one landed object needs: its record and its data file.
    ok_hash = hashlib.sha256(b"ok.txt").hexdigest()
    assert [path.name.split(".")[0] for path in files_under(tmp_path / "objects" / "local")] == [ok_hash, ok_hash]


async def test_a_part_that_runs_out_of_space_is_removed_by_the_store_itself(tmp_path: Path) -> None:
    answer = run_size_limited("part", {"limit": MiB, "objects": str(tmp_path / "objects"), "size": 2 * MiB})
    assert answer["code"] == "unavailable" and "File too large" in answer["message"]
    # Not aborted: the upload stays open, holding its description and no part data.
    upload_dir = tmp_path / "objects" / "local" / "multipart" / answer["upload_id"]
    assert [path.name for path in files_under(upload_dir)] == ["upload.json"]


async def test_objects_are_where_the_readme_says(tmp_path: Path) -> None:
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    for documented in ("`objects/<h[0:2]>/<h>.json`", "`objects/<h[0:2]>/<h>.<random>.data`",
                       "SHA-256 (hex) of the key in UTF-8", "switchboard objects get"):
        assert documented in readme
    body = b"report"
    store = LocalObjectStore(tmp_path)
    await store.put_object("local", "run-42/report.md", body, content_type="text/markdown", metadata={"a": "b"},
                           content_md5=base64.b64encode(hashlib.md5(body).digest()).decode(), if_absent=False)
    h = hashlib.sha256(b"run-42/report.md").hexdigest()
    record = json.loads((tmp_path / "local" / "objects" / h[:2] / f"{h}.json").read_text())
    assert record == {"key": "run-42/report.md", "size": 6, "etag": hashlib.md5(body).hexdigest(),
                      "content_type": "text/markdown", "metadata": {"a": "b"}, "data": record["data"]}
    assert record["data"].startswith(f"{h}.") and record["data"].endswith(".data")
    assert (tmp_path / "local" / "objects" / h[:2] / record["data"]).read_bytes() == body
