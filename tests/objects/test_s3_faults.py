"""The S3 store on the wire: retries through injected faults, permanent refusals, no orphaned
multipart uploads, Content-MD5 on every body, conditional puts, and cancellation mid-part."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from server.objects import BatchRequest, FileSpec
from tests.objects.conftest import MiB, Target, make_uploader, open_s3_store
from tests.objects.loopback_proxy import LoopbackProxy


def write(path: Path, size: int) -> bytes:
    data = os.urandom(size)
    path.write_bytes(data)
    return data


@pytest.fixture
async def s3(proxy: LoopbackProxy, s3_admin: Any) -> AsyncIterator[Target]:
    bucket = f"faults-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    store = await open_s3_store(proxy.url)
    try:
        yield Target("s3", store, bucket)
    finally:
        await store.close()


def pending_uploads(s3_admin: Any, bucket: str) -> list[dict[str, Any]]:
    return s3_admin.list_multipart_uploads(Bucket=bucket).get("Uploads", [])


async def test_transient_faults_are_retried_to_success(
    s3: Target, proxy: LoopbackProxy, upload_root: Path, s3_admin: Any
) -> None:
    data = {name: write(upload_root / name, 4000) for name in ("a.txt", "b.txt", "c.txt", "calm.txt")}
    big = write(upload_root / "big.bin", 9 * MiB)
    proxy.fail("a.txt", "503", times=2)
    # aiohttp itself re-sends an idempotent request once when its connection drops (RFC 9112 9.3.1),
    # so it takes two drops for one to reach the uploader's retries.
    proxy.fail("b.txt", "drop", times=2)
    proxy.fail("c.txt", "slowdown", times=3)
    proxy.fail("big.bin", "503", times=1, methods=("PUT",))  # the first part to arrive
    result = await make_uploader(s3, [upload_root]).upload(
        BatchRequest([FileSpec(path=name) for name in [*data, "big.bin"]], bucket=s3.bucket)
    )
    assert result.status == "ok", result.failed
    assert {item.key: item.attempts for item in result.uploaded} == {
        "a.txt": 3, "b.txt": 2, "c.txt": 4, "calm.txt": 1, "big.bin": 2,
    }
    for name, content in [*data.items(), ("big.bin", big)]:
        assert s3_admin.get_object(Bucket=s3.bucket, Key=name)["Body"].read() == content
    assert [r.fault for r in proxy.seen("PUT", "a.txt")] == ["503", "503", None]
    assert [r.fault for r in proxy.seen("PUT", "b.txt")] == ["drop", "drop", None]
    assert pending_uploads(s3_admin, s3.bucket) == []


async def test_a_permanent_fault_is_reported_with_its_attempts_and_the_rest_lands(
    s3: Target, proxy: LoopbackProxy, upload_root: Path, s3_admin: Any
) -> None:
    write(upload_root / "doomed.txt", 100)
    write(upload_root / "denied.txt", 100)
    fine = write(upload_root / "fine.txt", 100)
    proxy.fail("doomed.txt", "503", times=None)
    proxy.fail("denied.txt", "denied", times=None)
    result = await make_uploader(s3, [upload_root], max_attempts=3).upload(
        BatchRequest([FileSpec(path="doomed.txt"), FileSpec(path="denied.txt"), FileSpec(path="fine.txt")],
                     bucket=s3.bucket)
    )
    assert (result.status, result.http_status) == ("partial", 207)
    doomed, denied = result.failed
    assert (doomed.code, doomed.attempts) == ("unavailable", 3)
    assert "gave up after 3 attempts" in doomed.message
    assert len(proxy.seen("PUT", "doomed.txt")) == 3
    # Access denied is not worth repeating: one request, one attempt.
    assert (denied.code, denied.attempts, len(proxy.seen("PUT", "denied.txt"))) == ("forbidden", 1, 1)
    assert s3_admin.get_object(Bucket=s3.bucket, Key="fine.txt")["Body"].read() == fine


async def test_a_missing_bucket_is_not_retried(s3: Target, proxy: LoopbackProxy, upload_root: Path) -> None:
    write(upload_root / "a.txt", 10)
    result = await make_uploader(s3, [upload_root]).upload(
        BatchRequest([FileSpec(path="a.txt")], bucket="no-such-bucket-here")
    )
    [failure] = result.failed
    assert (result.status, failure.code, failure.attempts) == ("failed", "not_found", 1)
    assert "bucket 'no-such-bucket-here' does not exist" in failure.message
    assert len(proxy.seen("PUT")) == 1


async def test_a_failed_multipart_upload_is_aborted(
    s3: Target, proxy: LoopbackProxy, upload_root: Path, s3_admin: Any
) -> None:
    write(upload_root / "big.bin", 12 * MiB)
    proxy.fail("big.bin", "503", times=None, methods=("PUT",))  # every part fails, every time
    result = await make_uploader(s3, [upload_root], max_attempts=2).upload(
        BatchRequest([FileSpec(path="big.bin")], bucket=s3.bucket)
    )
    [failure] = result.failed
    assert (result.status, failure.code) == ("failed", "unavailable")
    assert [r.method for r in proxy.seen("DELETE", "big.bin")] == ["DELETE"]  # the abort
    assert pending_uploads(s3_admin, s3.bucket) == []
    assert "Contents" not in s3_admin.list_objects_v2(Bucket=s3.bucket)


async def test_every_body_carries_a_signed_content_md5_and_no_expect_continue(
    s3: Target, proxy: LoopbackProxy, upload_root: Path
) -> None:
    write(upload_root / "small.txt", 5000)
    write(upload_root / "big.bin", 11 * MiB)
    result = await make_uploader(s3, [upload_root]).upload(
        BatchRequest([FileSpec(path="small.txt"), FileSpec(path="big.bin")], bucket=s3.bucket)
    )
    assert result.status == "ok"
    bodies = proxy.seen("PUT")
    assert len(bodies) == 1 + 3  # one object, three parts
    for request in bodies:
        assert request.headers["content-md5"] == request.body_md5
        # The signature covers Content-MD5, which covers the body: no SHA-256 of the body is needed.
        assert "content-md5" in request.headers["authorization"].split("SignedHeaders=")[1].split(",")[0]
        assert request.headers["x-amz-content-sha256"] == "UNSIGNED-PAYLOAD"
        # botocore asks for `Expect: 100-continue` by default, which costs every PUT a second round trip.
        assert "expect" not in request.headers


@pytest.mark.parametrize("conditional_writes", [True, False])
async def test_overwrite_false_uses_a_conditional_put_or_else_a_head_check(
    proxy: LoopbackProxy, s3_admin: Any, upload_root: Path, conditional_writes: bool
) -> None:
    bucket = f"cond-{uuid.uuid4().hex[:12]}"
    s3_admin.create_bucket(Bucket=bucket)
    s3_admin.put_object(Bucket=bucket, Key="taken.txt", Body=b"original")
    write(upload_root / "taken.txt", 10)
    write(upload_root / "free.txt", 10)
    store = await open_s3_store(proxy.url, conditional_writes=conditional_writes)
    try:
        result = await make_uploader(Target("s3", store, bucket), [upload_root]).upload(
            BatchRequest([FileSpec(path="taken.txt"), FileSpec(path="free.txt")], bucket=bucket, overwrite=False)
        )
    finally:
        await store.close()
    assert [(f.key, f.code) for f in result.failed] == [("taken.txt", "conflict")]
    assert [item.key for item in result.uploaded] == ["free.txt"]
    assert s3_admin.get_object(Bucket=bucket, Key="taken.txt")["Body"].read() == b"original"
    puts = proxy.seen("PUT")
    if conditional_writes:
        assert all(r.headers.get("if-none-match") == "*" for r in puts) and not proxy.seen("HEAD")
        assert len(puts) == 2
    else:
        assert not any("if-none-match" in r.headers for r in puts)
        assert len(proxy.seen("HEAD")) == 2 and [r.path for r in puts] == [f"/{bucket}/free.txt"]


async def test_cancelling_during_a_part_aborts_the_upload_and_keeps_what_landed(
    s3: Target, proxy: LoopbackProxy, upload_root: Path, s3_admin: Any
) -> None:
    done = write(upload_root / "done.txt", 100)
    write(upload_root / "big.bin", 12 * MiB)
    proxy.fail("big.bin", "stall", times=1, methods=("PUT",))  # one part hangs until released
    uploader = make_uploader(s3, [upload_root])
    request = BatchRequest([FileSpec(path="done.txt"), FileSpec(path="big.bin")], bucket=s3.bucket)
    finished = anyio.Event()

    async def on_progress(progress: Any) -> None:
        if progress.files_done == 1:
            finished.set()

    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(uploader.upload, request, on_progress)
            await anyio.to_thread.run_sync(proxy.stalled.wait, 30)
            await finished.wait()
            assert len(pending_uploads(s3_admin, s3.bucket)) == 1
            scope.cancel()
    proxy.release()
    assert scope.cancelled_caught
    assert pending_uploads(s3_admin, s3.bucket) == []
    assert s3_admin.get_object(Bucket=s3.bucket, Key="done.txt")["Body"].read() == done
    assert [o["Key"] for o in s3_admin.list_objects_v2(Bucket=s3.bucket)["Contents"]] == ["done.txt"]
