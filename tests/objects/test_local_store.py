"""LocalObjectStore details the shared uploader tests cannot see: what stays on disk."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
from pathlib import Path
from typing import Any

import pytest

from server.errors import Unavailable
from server.objects.local import LocalObjectStore
from server.objects.models import BatchRequest, FileSpec
from tests.objects.conftest import MiB, Target, make_uploader


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
