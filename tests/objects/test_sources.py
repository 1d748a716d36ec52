"""A validated file is read only if it is still the same file: swapping it (or a symlink in its
place) between validation and upload is refused, not followed."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from server.errors import Conflict
from server.objects import BatchRequest, FileSpec, UploadLimits
from server.objects.sources import FileSource
from server.objects.validation import plan_batch


def validated(root: Path, name: str) -> FileSource:
    limits = UploadLimits((root,), max_files=10, max_file_bytes=10**9, max_call_bytes=10**9, max_inline_bytes=1000,
                          max_concurrency=16)
    plan = plan_batch(BatchRequest([FileSpec(path=name)], bucket="b-1"), limits, None)
    [planned] = plan.planned
    assert isinstance(planned.source, FileSource)
    return planned.source


async def test_reads_the_validated_bytes_in_chunks_with_their_md5(upload_root: Path) -> None:
    data = os.urandom(600_000)
    (upload_root / "f.bin").write_bytes(data)
    source = validated(upload_root, "f.bin")
    first, rest = await source.read(0, 100_000), await source.read(100_000, 500_000)  # on the loop, in a thread
    assert bytes(first.data) + bytes(rest.data) == data
    assert rest.md5 == hashlib.md5(data[100_000:]).digest()


async def test_a_file_replaced_after_validation_is_refused(upload_root: Path, tmp_path: Path) -> None:
    (upload_root / "f.txt").write_text("validated")
    source = validated(upload_root, "f.txt")
    (upload_root / "f.txt").unlink()
    (upload_root / "f.txt").write_text("validatex")  # same size, another file
    with pytest.raises(Conflict, match="modified or replaced"):
        await source.read(0, 9)


async def test_a_symlink_swapped_in_after_validation_is_not_followed(upload_root: Path, tmp_path: Path) -> None:
    (upload_root / "f.txt").write_text("validated")
    (tmp_path / "secret.txt").write_text("the secret")
    source = validated(upload_root, "f.txt")
    (upload_root / "f.txt").unlink()
    (upload_root / "f.txt").symlink_to(tmp_path / "secret.txt")
    with pytest.raises(Conflict, match="cannot be opened any more"):
        await source.read(0, 9)


async def test_a_file_that_grew_or_shrank_is_refused(upload_root: Path) -> None:
    (upload_root / "log.txt").write_text("line 1\n")
    source = validated(upload_root, "log.txt")
    with (upload_root / "log.txt").open("a") as log:
        log.write("line 2\n")
    with pytest.raises(Conflict, match="modified or replaced"):
        await source.read(0, 7)
