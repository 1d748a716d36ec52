"""``upload_batch``: many files to S3 (or the local object store) in one call, in parallel.

``{"files": [{"path": "out/report.md"}, {"content": "# notes", "key": "notes.md"}],
"prefix": "run-42"}`` uploads both and answers, per file, what landed and what did not.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context
from mcp.server.mcpserver.tools import Tool
from mcp.types import CallToolResult, ToolAnnotations
from pydantic import BaseModel, Field, StrictBool

from server.objects import BatchProgress, BatchRequest, BatchResult, FileSpec
from server.services import Services
from tools.support.arguments import aliases
from tools.support.checked import CheckedTool
from tools.support.results import structured


class UploadFile(BaseModel):
    path: str | None = Field(
        default=None, description="File under the upload roots; relative paths start at the first root."
    )
    content: str | None = Field(default=None, description="Inline text (UTF-8) instead of a path.")
    content_base64: str | None = Field(
        default=None, validation_alias=aliases("content_base64", "contentBase64"), description="Inline bytes, base64."
    )
    key: str | None = Field(default=None, description="Object key; default: the path relative to its upload root.")
    content_type: str | None = Field(
        default=None, validation_alias=aliases("content_type", "contentType"),
        description="Default: guessed from the key.",
    )
    metadata: dict[str, str] | None = Field(default=None, description="S3 user metadata (ASCII, 2 KiB in all).")


class UploadedItem(BaseModel):
    source: str
    bucket: str
    key: str
    size: int
    etag: str
    checksum: str = Field(description="MD5 the store verified: md5:<hex>, or md5-of-parts:<hex>-<n> for multipart.")
    content_type: str
    attempts: int = Field(description="1 + retried requests.")
    ms: int


class FailedItem(BaseModel):
    source: str
    key: str | None
    error: str = Field(description="Code: invalid_argument, not_found, forbidden, too_large, conflict, "
                                   "unavailable (gave up retrying), aborted or internal.")
    message: str
    attempts: int = Field(description="0: refused before sending anything.")


class UploadTotals(BaseModel):
    files: int
    uploaded: int
    failed: int
    bytes: int
    wall_ms: int
    mb_per_s: float


class UploadBatchResult(BaseModel):
    batch_id: str = Field(description="Key of the batch summary in memory namespace 'uploads' (as batch-<id>).")
    status: Literal["ok", "partial", "failed"]
    http_status: Literal[200, 207, 500]
    bucket: str
    uploaded: list[UploadedItem]
    failed: list[FailedItem]
    totals: UploadTotals

    @classmethod
    def from_engine(cls, result: BatchResult) -> UploadBatchResult:
        return cls(
            batch_id=result.batch_id,
            status=result.status,
            http_status=result.http_status,
            bucket=result.bucket,
            uploaded=[
                UploadedItem(source=u.source, bucket=u.bucket, key=u.key, size=u.size, etag=u.etag,
                             checksum=u.checksum, content_type=u.content_type, attempts=u.attempts, ms=u.ms)
                for u in result.uploaded
            ],
            failed=[FailedItem(source=f.source, key=f.key, error=f.code, message=f.message, attempts=f.attempts)
                    for f in result.failed],
            totals=UploadTotals(
                files=result.totals.files, uploaded=result.totals.uploaded, failed=result.totals.failed,
                bytes=result.totals.bytes, wall_ms=result.totals.wall_ms, mb_per_s=result.totals.mb_per_s,
            ),
        )


async def upload_batch(
    files: Annotated[list[UploadFile], Field(description="Each: path, content or content_base64; key? "
                                                         "content_type? metadata?")],
    ctx: Context[Services, Any],
    # Plain `str`, not `str | None`: the SDK would turn a prefix such as "2026" or "null" into JSON values.
    bucket: Annotated[str, Field(description="Default (empty): the server's configured bucket.")] = "",
    prefix: Annotated[str, Field(description="Folder for every key: 'run-42' gives 'run-42/<key>'.")] = "",
    max_concurrency: Annotated[int, Field(ge=1, validation_alias=aliases("max_concurrency", "maxConcurrency"),
                                          description="Requests in flight (server limit 64 by default).")] = 16,
    # Strict, as every destructive switch: "false" or 0 is a mistake to report, not a value to guess.
    overwrite: Annotated[StrictBool, Field(description="false: never replace an existing object.")] = True,
    all_or_nothing: Annotated[bool, Field(validation_alias=aliases("all_or_nothing", "allOrNothing"),
                                          description="Upload nothing if any file is invalid.")] = False,
) -> Annotated[CallToolResult, UploadBatchResult]:
    """Upload many files to object storage (S3/MinIO/R2, or a local directory store) in parallel.

    Every file is checked first (inside the upload roots, readable, size limits, safe key);
    invalid ones are reported and skipped. Large files go multipart; transient faults are
    retried. Answers status ok|partial|failed (http_status 200|207|500) with each uploaded
    object (key, size, etag, checksum) and each failure (error code, message). Reports
    progress; a summary is kept in memory namespace 'uploads' for 7 days.
    """
    services: Services = ctx.request_context.lifespan_context
    request = BatchRequest(
        files=[
            FileSpec(path=f.path, text=f.content, base64=f.content_base64, key=f.key, content_type=f.content_type,
                     metadata=f.metadata or {})
            for f in files
        ],
        bucket=bucket or None,
        prefix=prefix,
        max_concurrency=max_concurrency,
        overwrite=overwrite,
        all_or_nothing=all_or_nothing,
    )

    async def report(progress: BatchProgress) -> None:
        message = (f"{progress.files_done}/{progress.files_total} files, "
                   f"{progress.bytes_done}/{progress.bytes_total} bytes")
        if progress.bytes_total:
            await ctx.report_progress(progress.bytes_done, progress.bytes_total, message)
        else:
            await ctx.report_progress(progress.files_done, progress.files_total, message)

    result = await services.uploader.upload(request, report)
    metrics = services.metrics
    metrics.upload_bytes.inc(result.totals.bytes)
    metrics.upload_files.labels(outcome="uploaded").inc(len(result.uploaded))
    for failure in result.failed:
        metrics.upload_files.labels(outcome=failure.code).inc()
    return structured(UploadBatchResult.from_engine(result))


def tool() -> Tool:
    return CheckedTool.from_function(
        upload_batch,
        title="Batch upload",
        annotations=ToolAnnotations(
            read_only_hint=False, destructive_hint=True, idempotent_hint=True, open_world_hint=True
        ),
    )
