"""Each `ObjectStore` ready with an empty bucket (S3 through the fault proxy to moto, or the local
directory store), and an uploader with limits small enough for tests to reach."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from server.memory import MemoryStore
from server.objects import (
    BatchUploader,
    LocalObjectStore,
    MultipartPolicy,
    ObjectStore,
    RetryPolicy,
    S3ObjectStore,
    UploadLimits,
)
from tests.manual_clock import ManualClock

MiB = 1024 * 1024


async def open_s3_store(endpoint_url: str, *, conditional_writes: bool = True) -> S3ObjectStore:
    return await S3ObjectStore.open(
        endpoint_url=endpoint_url, region="us-east-1", default_bucket=None, addressing_style="path",
        access_key_id="testing", secret_access_key="testing", conditional_writes=conditional_writes,
        max_connections=32, timeout_seconds=10,
    )


@dataclass(frozen=True)
class Target:
    kind: str  # "s3" or "local"
    store: ObjectStore
    bucket: str


@pytest.fixture(params=["s3", "local"])
async def target(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Target]:
    """An object store with an empty bucket: S3 (through the proxy to moto) or the local directory store."""
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    if request.param == "local":
        yield Target("local", LocalObjectStore(tmp_path / "objects"), bucket)
        return
    request.getfixturevalue("s3_admin").create_bucket(Bucket=bucket)
    store = await open_s3_store(request.getfixturevalue("proxy").url)
    try:
        yield Target("s3", store, bucket)
    finally:
        await store.close()


def make_uploader(
    target: Target, roots: list[Path], memory: MemoryStore | None = None, **limits: Any
) -> BatchUploader:
    """An uploader with small limits that tests can reach, and quick retries."""
    options: dict[str, Any] = {
        "max_files": 100, "max_file_bytes": 32 * MiB, "max_call_bytes": 64 * MiB, "max_inline_bytes": 64 * 1024,
        "max_concurrency": 32, "threshold": 8 * MiB, "part_size": 5 * MiB, "buffer_bytes": 32 * MiB,
        "max_attempts": 4,
    }
    options.update(limits)
    return BatchUploader(
        target.store,
        limits=UploadLimits(tuple(roots), options["max_files"], options["max_file_bytes"], options["max_call_bytes"],
                            options["max_inline_bytes"], options["max_concurrency"],
                            private_dirs=tuple(options.get("private_dirs", ())),
                            private_files=tuple(options.get("private_files", ())),
                            allow_hidden=options.get("allow_hidden", False)),
        multipart=MultipartPolicy(options["threshold"], options["part_size"]),
        retry=RetryPolicy(options["max_attempts"], initial_backoff_seconds=0.01, max_backoff_seconds=0.05),
        buffer_bytes=options["buffer_bytes"],
        memory=memory,
        clock=ManualClock(),
    )
