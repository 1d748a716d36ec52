"""BatchUploader behaviour, the same for every store: S3 over HTTP (moto behind the proxy) and
the local directory store."""

from __future__ import annotations

import base64
import hashlib
import logging
import os
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.errors import InvalidArgument
from server.memory import MemoryStore
from server.objects import BatchProgress, BatchRequest, FileSpec, ObjectStore
from tests.manual_clock import ManualClock
from tests.objects.conftest import MiB, Target, make_uploader


def write(path: Path, size: int) -> bytes:
    path.parent.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    path.write_bytes(data)
    return data


async def test_twenty_files_land_byte_equal_with_keys_types_and_checksums(target: Target, upload_root: Path) -> None:
    originals = {}
    for i in range(20):
        name = f"reports/part-{i:02d}.json" if i % 2 else f"logs/run-{i:02d}.txt"
        originals[name] = write(upload_root / name, 1000 + i * 5000)
    uploader = make_uploader(target, [upload_root])
    result = await uploader.upload(BatchRequest(
        [FileSpec(path=name, metadata={"Run-Id": "42"}) for name in originals], bucket=target.bucket, prefix="run-42",
    ))
    assert (result.status, result.http_status, result.failed) == ("ok", 200, [])
    assert [item.key for item in result.uploaded] == [f"run-42/{name}" for name in originals]
    for item, (name, data) in zip(result.uploaded, originals.items(), strict=True):
        assert item.source == name and item.size == len(data) and item.attempts == 1
        assert item.checksum == f"md5:{hashlib.md5(data).hexdigest()}" == f"md5:{item.etag}"
        assert item.content_type == ("application/json" if name.endswith(".json") else "text/plain")
        assert await target.store.read_object(target.bucket, item.key) == data
    head = await target.store.head_object(target.bucket, "run-42/reports/part-01.json")
    assert head is not None and head.metadata == {"run-id": "42"} and head.content_type == "application/json"
    totals = result.totals
    assert (totals.files, totals.uploaded, totals.failed) == (20, 20, 0)
    assert totals.bytes == sum(len(d) for d in originals.values()) and totals.mb_per_s > 0


async def test_mixed_batch_is_partial_and_the_valid_files_land(
    target: Target, upload_root: Path, tmp_path: Path
) -> None:
    good = {f"ok-{i}.bin": write(upload_root / f"ok-{i}.bin", 2048) for i in range(3)}
    write(tmp_path / "outside" / "secret.txt", 10)
    write(upload_root / "huge.bin", MiB + 1)
    files = [
        FileSpec(path="ok-0.bin"),
        FileSpec(path=str(tmp_path / "outside" / "secret.txt")),
        FileSpec(path="ok-1.bin"),
        FileSpec(path="missing.txt"),
        FileSpec(path="huge.bin"),
        FileSpec(path="ok-2.bin"),
    ]
    uploader = make_uploader(target, [upload_root], max_file_bytes=MiB)
    result = await uploader.upload(BatchRequest(files, bucket=target.bucket))
    assert (result.status, result.http_status) == ("partial", 207)
    assert [(f.source, f.code, f.attempts) for f in result.failed] == [
        (str(tmp_path / "outside" / "secret.txt"), "forbidden", 0),
        ("missing.txt", "not_found", 0),
        ("huge.bin", "too_large", 0),
    ]
    assert "outside the upload roots" in result.failed[0].message
    assert [item.key for item in result.uploaded] == list(good)
    for key, data in good.items():
        assert await target.store.read_object(target.bucket, key) == data
    for refused in ("secret.txt", "missing.txt", "huge.bin"):
        assert await target.store.head_object(target.bucket, refused) is None


async def test_all_or_nothing_uploads_nothing_when_one_file_is_invalid(target: Target, upload_root: Path) -> None:
    write(upload_root / "fine.txt", 100)
    uploader = make_uploader(target, [upload_root])
    result = await uploader.upload(BatchRequest(
        [FileSpec(path="fine.txt"), FileSpec(path="nope.txt"), FileSpec(text="hello", key="note.txt")],
        bucket=target.bucket, all_or_nothing=True,
    ))
    assert (result.status, result.http_status, result.uploaded) == ("failed", 500, [])
    assert [(f.source, f.code) for f in result.failed] == [
        ("fine.txt", "aborted"), ("nope.txt", "not_found"), ("files[2].content", "aborted"),
    ]
    assert await target.store.head_object(target.bucket, "fine.txt") is None
    assert await target.store.head_object(target.bucket, "note.txt") is None


async def test_a_20_mib_file_goes_multipart_and_reads_back_equal(target: Target, upload_root: Path) -> None:
    data = write(upload_root / "dataset.bin", 20 * MiB)
    uploader = make_uploader(target, [upload_root], threshold=8 * MiB, part_size=5 * MiB)
    result = await uploader.upload(BatchRequest([FileSpec(path="dataset.bin")], bucket=target.bucket))
    assert result.status == "ok", result.failed
    [item] = result.uploaded
    part_digests = b"".join(hashlib.md5(data[i:i + 5 * MiB]).digest() for i in range(0, 20 * MiB, 5 * MiB))
    expected = f"{hashlib.md5(part_digests).hexdigest()}-4"
    # The store computed the same multipart ETag from the parts it verified.
    assert (item.checksum, item.etag, item.size) == (f"md5-of-parts:{expected}", expected, 20 * MiB)
    assert await target.store.read_object(target.bucket, "dataset.bin") == data
    assert await target.store.list_multipart_uploads(target.bucket) == []


async def test_overwrite_false_never_replaces_an_existing_object(target: Target, upload_root: Path) -> None:
    first = write(upload_root / "small.txt", 300)
    first_big = write(upload_root / "big.bin", 9 * MiB)
    uploader = make_uploader(target, [upload_root])
    request = BatchRequest([FileSpec(path="small.txt"), FileSpec(path="big.bin")], bucket=target.bucket)
    assert (await uploader.upload(request)).status == "ok"
    write(upload_root / "small.txt", 300)
    write(upload_root / "big.bin", 9 * MiB)
    refused = await uploader.upload(BatchRequest(request.files, bucket=target.bucket, overwrite=False))
    assert refused.status == "failed"
    assert [(f.key, f.code) for f in refused.failed] == [("small.txt", "conflict"), ("big.bin", "conflict")]
    assert "overwrite is false" in refused.failed[0].message
    assert await target.store.read_object(target.bucket, "small.txt") == first
    assert await target.store.read_object(target.bucket, "big.bin") == first_big
    assert await target.store.list_multipart_uploads(target.bucket) == []
    replaced = await uploader.upload(request)
    assert replaced.status == "ok"
    assert await target.store.read_object(target.bucket, "small.txt") == (upload_root / "small.txt").read_bytes()


async def test_symlinks_are_followed_and_must_stay_inside_the_roots(
    target: Target, upload_root: Path, tmp_path: Path
) -> None:
    write(tmp_path / "elsewhere" / "passwords.txt", 50)
    (upload_root / "escape.txt").symlink_to(tmp_path / "elsewhere" / "passwords.txt")
    (upload_root / "linked-dir").symlink_to(tmp_path / "elsewhere")
    inside = write(upload_root / "real" / "data.csv", 70)
    (upload_root / "alias.csv").symlink_to(upload_root / "real" / "data.csv")
    uploader = make_uploader(target, [upload_root])
    result = await uploader.upload(BatchRequest(
        [FileSpec(path="escape.txt"), FileSpec(path="linked-dir/passwords.txt"), FileSpec(path="alias.csv"),
         FileSpec(path="../elsewhere/passwords.txt")],
        bucket=target.bucket,
    ))
    assert [(f.source, f.code) for f in result.failed] == [
        ("escape.txt", "forbidden"), ("linked-dir/passwords.txt", "forbidden"),
        ("../elsewhere/passwords.txt", "forbidden"),
    ]
    # A link inside the roots is followed; the key is the real file's place under the root.
    assert [(item.source, item.key) for item in result.uploaded] == [("alias.csv", "real/data.csv")]
    assert await target.store.read_object(target.bucket, "real/data.csv") == inside
    assert await target.store.head_object(target.bucket, "escape.txt") is None


async def test_the_servers_own_state_is_never_uploaded_even_inside_a_root(target: Target, upload_root: Path) -> None:
    write(upload_root / ".switchboard" / "memory.sqlite3", 100)
    (upload_root / "state-link").symlink_to(upload_root / ".switchboard" / "memory.sqlite3")
    write(upload_root / "ok.txt", 10)
    uploader = make_uploader(target, [upload_root], private_dirs=[upload_root / ".switchboard"])
    result = await uploader.upload(BatchRequest(
        [FileSpec(path=".switchboard/memory.sqlite3"), FileSpec(path="state-link"), FileSpec(path="ok.txt")],
        bucket=target.bucket,
    ))
    assert [(f.source, f.code) for f in result.failed] == [
        (".switchboard/memory.sqlite3", "forbidden"), ("state-link", "forbidden"),
    ]
    assert "server's own state" in result.failed[0].message
    assert [item.key for item in result.uploaded] == ["ok.txt"]


async def test_inline_content_and_the_checks_on_each_file(target: Target, upload_root: Path) -> None:
    write(upload_root / "dir" / "x.txt", 10)
    binary = os.urandom(500)
    uploader = make_uploader(target, [upload_root], max_inline_bytes=1000)
    files = [
        FileSpec(text="# Summary\nall green\n", key="notes/summary.md"),
        FileSpec(base64=base64.b64encode(binary).decode(), key="blob"),
        FileSpec(text="no key"),
        FileSpec(base64="not base64!", key="bad"),
        FileSpec(text="x" * 1001, key="too-long.txt"),
        FileSpec(path="dir/x.txt", key="../up.txt"),
        FileSpec(path="dir/x.txt", key="/abs.txt"),
        FileSpec(path="dir"),
        FileSpec(path="dir/x.txt", text="both"),
        FileSpec(text="again", key="blob"),
        FileSpec(path="dir/x.txt", metadata={"bad name!": "v"}),
        FileSpec(key="nothing-to-send"),
    ]
    result = await uploader.upload(BatchRequest(files, bucket=target.bucket))
    assert result.status == "partial"
    assert [(item.key, item.content_type) for item in result.uploaded] == [
        ("notes/summary.md", "text/markdown"), ("blob", "application/octet-stream"),
    ]
    assert await target.store.read_object(target.bucket, "notes/summary.md") == b"# Summary\nall green\n"
    assert await target.store.read_object(target.bucket, "blob") == binary
    codes = [(f.source, f.code) for f in result.failed]
    assert codes == [
        ("files[2].content", "invalid_argument"), ("files[3].content_base64", "invalid_argument"),
        ("files[4].content", "too_large"), ("dir/x.txt", "invalid_argument"), ("dir/x.txt", "invalid_argument"),
        ("dir", "invalid_argument"), ("dir/x.txt", "invalid_argument"), ("files[9].content", "invalid_argument"),
        ("dir/x.txt", "invalid_argument"), ("files[11]", "invalid_argument"),
    ]
    messages = [f.message for f in result.failed]
    assert "needs a key" in messages[0] and "'..' segment" in messages[3] and "starts with '/'" in messages[4]
    assert "not a regular file" in messages[5] and "exactly one of" in messages[6]
    assert "already the destination of files[1]" in messages[7]


@pytest.mark.parametrize(
    ("request_fields", "expected"),
    [
        ({"files": []}, "files must hold 1..100 entries"),
        ({"bucket": "Not_A_Bucket"}, "not a valid bucket name"),
        ({"prefix": "../up"}, "prefix: key '../up' has a '..' segment"),
        ({"max_concurrency": 33}, "max_concurrency must be 1..32"),
    ],
)
async def test_an_invalid_call_raises_and_uploads_nothing(
    target: Target, upload_root: Path, request_fields: dict[str, object], expected: str
) -> None:
    write(upload_root / "a.txt", 10)
    fields: dict[str, object] = {"files": [FileSpec(path="a.txt")], "bucket": target.bucket, **request_fields}
    with pytest.raises(InvalidArgument, match=expected.replace(".", r"\.")):
        await make_uploader(target, [upload_root]).upload(BatchRequest(**fields))  # type: ignore[arg-type]
    assert await target.store.head_object(target.bucket, "a.txt") is None


async def test_progress_counts_files_and_bytes_up_to_the_totals(target: Target, upload_root: Path) -> None:
    sizes = [1000, 2000, 9 * MiB]
    for i, size in enumerate(sizes):
        write(upload_root / f"f{i}", size)
    reports: list[BatchProgress] = []

    async def on_progress(progress: BatchProgress) -> None:
        reports.append(progress)

    result = await make_uploader(target, [upload_root]).upload(
        BatchRequest([FileSpec(path=f"f{i}") for i in range(3)], bucket=target.bucket), on_progress
    )
    assert result.status == "ok"
    assert reports[-1] == BatchProgress(files_done=3, files_total=3, bytes_done=sum(sizes), bytes_total=sum(sizes))
    assert [r.bytes_done for r in reports] == sorted(r.bytes_done for r in reports)
    assert [r.files_done for r in reports] == sorted(r.files_done for r in reports)
    assert len(reports) >= 3 + 2  # each file, and each of the big file's two parts


async def test_each_batch_leaves_a_summary_in_memory_for_seven_days(
    target: Target, upload_root: Path, store: MemoryStore, clock: ManualClock
) -> None:
    write(upload_root / "a.txt", 10)
    uploader = make_uploader(target, [upload_root], memory=store)
    result = await uploader.upload(BatchRequest([FileSpec(path="a.txt"), FileSpec(path="b.txt")], bucket=target.bucket))
    entry = await store.get("uploads", f"batch-{result.batch_id}")
    assert entry is not None and entry.expires_ms is not None
    assert entry.expires_ms - entry.updated_ms == 7 * 24 * 3600 * 1000
    assert entry.value["status"] == "partial" and entry.value["bucket"] == target.bucket
    assert entry.value["totals"]["uploaded"] == 1 and entry.value["uploaded"][0]["key"] == "a.txt"
    assert entry.value["failed"][0]["code"] == "not_found"


async def test_cancelling_leaves_whole_objects_or_none_and_no_multipart_uploads(
    target: Target, upload_root: Path, caplog: pytest.LogCaptureFixture
) -> None:
    small = {f"s{i}.txt": write(upload_root / f"s{i}.txt", 1000) for i in range(4)}
    big = write(upload_root / "big.bin", 30 * MiB)
    uploader = make_uploader(target, [upload_root], max_concurrency=2, part_size=5 * MiB)
    first_file_done = anyio.Event()

    async def on_progress(progress: BatchProgress) -> None:
        if progress.files_done >= 1:
            first_file_done.set()

    files = [FileSpec(path="s0.txt"), FileSpec(path="big.bin"), *[FileSpec(path=f"s{i}.txt") for i in range(1, 4)]]
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(uploader.upload, BatchRequest(files, bucket=target.bucket, max_concurrency=2),
                             on_progress)
            await first_file_done.wait()
            scope.cancel()
    assert scope.cancelled_caught
    assert await target.store.list_multipart_uploads(target.bucket) == []
    landed = []
    for key, data in [*small.items(), ("big.bin", big)]:
        if await target.store.head_object(target.bucket, key) is not None:
            assert await target.store.read_object(target.bucket, key) == data
            landed.append(key)
    assert "big.bin" not in landed
    # The log names what had landed when the call was cancelled (a PUT in flight may land unreported).
    [cancel_log] = [r.getMessage() for r in caplog.records if "cancelled" in r.getMessage()]
    reported = [key for key in small if f"'{key}'" in cancel_log]
    assert reported and set(reported) <= set(landed)


class RaisesForOneKey:
    """The real store, except that writing one key raises a RuntimeError: a bug, not a store fault."""

    def __init__(self, inner: ObjectStore, key: str) -> None:
        self._inner = inner
        self._key = key

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)

    async def put_object(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> str:
        if key == self._key:
            raise RuntimeError(f"bug while putting {key}")
        return await self._inner.put_object(bucket, key, *args, **kwargs)

    async def upload_part(self, bucket: str, key: str, *args: Any, **kwargs: Any) -> str:
        if key == self._key:
            raise RuntimeError(f"bug while sending a part of {key}")
        return await self._inner.upload_part(bucket, key, *args, **kwargs)


@pytest.mark.parametrize("size", [1000, 9 * MiB], ids=["single-put", "multipart"])
async def test_an_unexpected_error_fails_only_its_file_and_the_batch_is_still_recorded(
    target: Target, upload_root: Path, store: MemoryStore, caplog: pytest.LogCaptureFixture, size: int
) -> None:
    good = {f"ok-{i}.txt": write(upload_root / f"ok-{i}.txt", 2000) for i in range(3)}
    write(upload_root / "boom.bin", size)
    broken = Target(target.kind, RaisesForOneKey(target.store, "boom.bin"), target.bucket)
    uploader = make_uploader(broken, [upload_root], memory=store)
    result = await uploader.upload(BatchRequest(
        [FileSpec(path="ok-0.txt"), FileSpec(path="boom.bin"), FileSpec(path="ok-1.txt"), FileSpec(path="ok-2.txt")],
        bucket=target.bucket,
    ))
    assert result.status == "partial"
    assert [(f.key, f.code, f.attempts) for f in result.failed] == [("boom.bin", "internal", 1)]
    assert "RuntimeError" in result.failed[0].message and "server log" in result.failed[0].message
    assert [item.key for item in result.uploaded] == list(good)
    for key, data in good.items():
        assert await target.store.read_object(target.bucket, key) == data
    assert await target.store.head_object(target.bucket, "boom.bin") is None
    assert await target.store.list_multipart_uploads(target.bucket) == []
    entry = await store.get("uploads", f"batch-{result.batch_id}")
    assert entry is not None and entry.value["status"] == "partial"
    assert [(f["key"], f["code"]) for f in entry.value["failed"]] == [("boom.bin", "internal")]
    [logged] = [record for record in caplog.records if record.exc_info is not None]
    assert logged.levelno == logging.ERROR and "boom.bin" in logged.getMessage()
    assert isinstance(logged.exc_info[1], RuntimeError)  # type: ignore[index]
