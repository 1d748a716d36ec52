"""What a batch upload takes and what it answers: plain frozen records."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

BatchStatus = Literal["ok", "partial", "failed"]
# The HTTP status the seed API answered for each outcome; clients written against it read this.
HTTP_STATUS: Mapping[BatchStatus, int] = {"ok": 200, "partial": 207, "failed": 500}


@dataclass(frozen=True, slots=True)
class FileSpec:
    """One file to upload, as the caller named it: exactly one of ``path``, ``text`` or ``base64``."""

    path: str | None = None
    text: str | None = None
    base64: str | None = None
    key: str | None = None
    content_type: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BatchRequest:
    files: Sequence[FileSpec]
    bucket: str | None = None
    prefix: str = ""
    max_concurrency: int = 16
    overwrite: bool = True
    all_or_nothing: bool = False


@dataclass(frozen=True, slots=True)
class UploadedObject:
    source: str
    bucket: str
    key: str
    size: int
    etag: str
    checksum: str  # the MD5 the store verified: "md5:<hex>", or "md5-of-parts:<hex>-<parts>" for multipart
    content_type: str
    attempts: int  # 1 plus the number of retried requests
    ms: int


@dataclass(frozen=True, slots=True)
class FailedUpload:
    source: str
    key: str | None
    code: str
    message: str
    attempts: int  # 0: refused before any request was sent


@dataclass(frozen=True, slots=True)
class BatchTotals:
    files: int
    uploaded: int
    failed: int
    bytes: int
    wall_ms: int
    mb_per_s: float  # uploaded bytes / wall time, in 10^6 bytes per second


@dataclass(frozen=True, slots=True)
class BatchResult:
    batch_id: str
    status: BatchStatus
    http_status: int
    bucket: str
    uploaded: list[UploadedObject]
    failed: list[FailedUpload]
    totals: BatchTotals


@dataclass(frozen=True, slots=True)
class BatchProgress:
    files_done: int
    files_total: int
    bytes_done: int
    bytes_total: int
