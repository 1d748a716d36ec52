"""`BatchUploader`: many files into an `ObjectStore` at once, with an exact account of what landed.

One call: validate every file (see ``validation.py``), upload the valid ones in parallel
under ``max_concurrency`` requests in flight and a byte budget for content in memory,
send files at or above the multipart threshold as parallel parts, retry transient faults,
and answer which objects landed and which did not (and why). A summary of every batch
goes to the memory namespace ``uploads``.

A bug met while uploading one file (any exception that is not a `SwitchboardError`) fails
that file only, as ``internal``, logged with its traceback; the other files go on and the
batch is recorded as usual.

Cancellation (the client gave up): in-flight requests stop, every unfinished multipart
upload is aborted (shielded, so the abort itself is not cancelled), and the objects that
had already landed are logged before the cancellation propagates.
"""

from __future__ import annotations

import hashlib
import logging
import math
import secrets
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import anyio

from server.clock import Clock
from server.errors import Conflict, Internal, NotFound, SwitchboardError, TooLarge, Unavailable
from server.memory import MemoryStore
from server.objects.budget import ByteBudget
from server.objects.models import (
    HTTP_STATUS,
    BatchProgress,
    BatchRequest,
    BatchResult,
    BatchStatus,
    BatchTotals,
    FailedUpload,
    UploadedObject,
)
from server.objects.retry import AttemptCounter, RetryPolicy, with_retries
from server.objects.store import ObjectStore, StoredPart
from server.objects.validation import PlannedUpload, UploadLimits, plan_batch, refused_for_all_or_nothing

logger = logging.getLogger(__name__)

SUMMARY_NAMESPACE = "uploads"
SUMMARY_TTL_SECONDS = 7 * 24 * 3600
SUMMARY_MAX_ITEMS = 100  # per list; the counts in the totals are always complete
MAX_PARTS = 10_000  # S3's limit on parts per upload
ABORT_TIMEOUT_SECONDS = 30.0
RECORD_TIMEOUT_SECONDS = 5.0

ProgressCallback = Callable[[BatchProgress], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class MultipartPolicy:
    threshold_bytes: int
    part_size_bytes: int

    def part_size_for(self, size: int) -> int:
        """The configured part size, grown when a file would otherwise need more than 10,000 parts."""
        return max(self.part_size_bytes, math.ceil(size / MAX_PARTS))


class _Progress:
    """Files and bytes done so far, reported to the caller's callback (best effort: a failing
    callback is logged, never fails the upload)."""

    def __init__(self, files_total: int, bytes_total: int, callback: ProgressCallback | None) -> None:
        self.files_total = files_total
        self.bytes_total = bytes_total
        self.files_done = 0
        self.bytes_done = 0
        self._callback = callback

    async def add(self, *, files: int = 0, bytes_: int = 0) -> None:
        self.files_done += files
        self.bytes_done += bytes_
        if self._callback is None:
            return
        try:
            await self._callback(BatchProgress(self.files_done, self.files_total, self.bytes_done, self.bytes_total))
        except Exception as error:  # progress is advisory
            logger.warning("progress report failed (%s); uploads continue", error)
            self._callback = None


@contextmanager
def _shielded_for(seconds: float, what: str) -> Iterator[None]:
    """Shield the block from cancellation, but give up after ``seconds`` (raising `Unavailable`),
    so a dead store cannot hold a cancelled call forever."""
    with anyio.CancelScope(shield=True, deadline=anyio.current_time() + seconds) as scope:
        yield
    if scope.cancelled_caught:
        raise Unavailable(f"{what} took longer than {seconds:.0f}s")


class BatchUploader:
    """Uploads batches of files into one `ObjectStore`; one instance serves every call."""

    def __init__(
        self,
        store: ObjectStore,
        *,
        limits: UploadLimits,
        multipart: MultipartPolicy,
        retry: RetryPolicy,
        buffer_bytes: int,
        memory: MemoryStore | None = None,
        clock: Clock,
    ) -> None:
        self.store = store
        self.limits = limits
        self._multipart = multipart
        self._retry = retry
        # Shared by every batch: the bound on file content in memory holds for the whole server.
        self._budget = ByteBudget(buffer_bytes)
        self._memory = memory
        self._clock = clock

    async def upload(self, request: BatchRequest, on_progress: ProgressCallback | None = None) -> BatchResult:
        """Validate every file, upload the valid ones in parallel, and account for each file.

        Raises (uploading nothing) only when the call as a whole is invalid; a file that is
        invalid or fails to upload is reported in ``failed``."""
        started = time.perf_counter()
        batch_id = self._new_batch_id()
        plan = await anyio.to_thread.run_sync(plan_batch, request, self.limits, self.store.default_bucket)
        refused = list(plan.refused)
        to_upload = plan.planned
        if request.all_or_nothing and refused:
            refused += refused_for_all_or_nothing(to_upload)
            to_upload = []
        uploaded: list[tuple[int, UploadedObject]] = []
        failed: list[tuple[int, FailedUpload]] = refused
        progress = _Progress(len(to_upload), sum(p.size for p in to_upload), on_progress)
        requests_in_flight = anyio.CapacityLimiter(request.max_concurrency)

        async def upload_one(planned: PlannedUpload) -> None:
            outcome = await self._upload_file(plan.bucket, planned, request.overwrite, requests_in_flight, progress)
            if isinstance(outcome, UploadedObject):
                uploaded.append((planned.index, outcome))
            else:
                failed.append((planned.index, outcome))
            await progress.add(files=1)

        try:
            async with anyio.create_task_group() as uploads:
                for planned in to_upload:
                    uploads.start_soon(upload_one, planned)
        except anyio.get_cancelled_exc_class():
            with anyio.CancelScope(shield=True):
                await self._record_cancelled(batch_id, plan.bucket, request, uploaded, len(to_upload), started)
            raise
        result = self._result(batch_id, plan.bucket, len(request.files), uploaded, failed, started)
        # The objects have landed: a cancellation arriving now must not lose their record.
        with anyio.CancelScope(shield=True), anyio.move_on_after(RECORD_TIMEOUT_SECONDS):
            await self._record(result, request)
        return result

    # -- one file ---------------------------------------------------------------------------

    async def _upload_file(
        self, bucket: str, planned: PlannedUpload, overwrite: bool, limiter: anyio.CapacityLimiter,
        progress: _Progress,
    ) -> UploadedObject | FailedUpload:
        started = time.perf_counter()
        counter = AttemptCounter()
        try:
            if not overwrite and (planned.size >= self._multipart.threshold_bytes
                                  or not self.store.supports_conditional_put):
                # Without conditional writes this is the only guard; before a multipart upload it
                # also saves sending every part of an object that would be refused at the end.
                await self._refuse_if_exists(bucket, planned, limiter, counter)
            if planned.size >= self._multipart.threshold_bytes:
                etag, checksum = await self._upload_multipart(bucket, planned, overwrite, limiter, counter, progress)
            else:
                etag, checksum = await self._upload_whole(bucket, planned, overwrite, limiter, counter, progress)
        except SwitchboardError as error:
            logger.warning("upload of %s to %s/%s failed after %d attempt(s): %s",
                           planned.label, bucket, planned.key, counter.attempts, error)
            return FailedUpload(planned.label, planned.key, error.code, error.message, counter.attempts)
        except Exception as error:
            # Not cancellation (a BaseException): a bug, here or in a library. Raised, it would cancel
            # every other file of the batch and lose its record; it is this file's failure only.
            logger.error("upload of %s to %s/%s failed with an unexpected error", planned.label, bucket, planned.key,
                         exc_info=error)
            detail = f" ({error})" if str(error) else ""
            internal = Internal(f"unexpected {type(error).__name__} in the server{detail}; "
                                "the server log has its traceback")
            return FailedUpload(planned.label, planned.key, internal.code, internal.message, counter.attempts)
        return UploadedObject(
            source=planned.label, bucket=bucket, key=planned.key, size=planned.size, etag=etag, checksum=checksum,
            content_type=planned.content_type, attempts=counter.attempts,
            ms=round((time.perf_counter() - started) * 1000),
        )

    async def _refuse_if_exists(
        self, bucket: str, planned: PlannedUpload, limiter: anyio.CapacityLimiter, counter: AttemptCounter
    ) -> None:
        async with limiter:
            head = await with_retries(self._retry, f"HEAD {bucket}/{planned.key}",
                                      lambda: self.store.head_object(bucket, planned.key), counter)
        if head is not None:
            raise Conflict(f"{bucket}/{planned.key} already exists and overwrite is false; nothing was replaced")

    async def _upload_whole(
        self, bucket: str, planned: PlannedUpload, overwrite: bool, limiter: anyio.CapacityLimiter,
        counter: AttemptCounter, progress: _Progress,
    ) -> tuple[str, str]:
        async with self._budget.reserve(planned.size):
            chunk = await planned.source.read(0, planned.size)
            async with limiter:
                retries_before = counter.retries
                try:
                    etag = await with_retries(
                        self._retry, f"PUT {bucket}/{planned.key}",
                        lambda: self.store.put_object(
                            bucket, planned.key, chunk.data, content_md5=chunk.content_md5,
                            content_type=planned.content_type, metadata=planned.metadata, if_absent=not overwrite,
                        ),
                        counter,
                    )
                except Conflict:
                    # A retried conditional PUT refused because the object exists may be meeting its own
                    # first try, which landed but whose answer was lost: then it succeeded.
                    if counter.retries == retries_before or not await self._holds(bucket, planned.key, chunk.md5.hex()):
                        raise
                    etag = chunk.md5.hex()
        await progress.add(bytes_=planned.size)
        return etag, f"md5:{chunk.md5.hex()}"

    async def _upload_multipart(
        self, bucket: str, planned: PlannedUpload, overwrite: bool, limiter: anyio.CapacityLimiter,
        counter: AttemptCounter, progress: _Progress,
    ) -> tuple[str, str]:
        where = f"{bucket}/{planned.key}"
        async with limiter:
            # Shielded: a start cancelled after it reached the store would leave an upload whose id we
            # never learn, so could never abort.
            with _shielded_for(ABORT_TIMEOUT_SECONDS, f"starting the multipart upload of {where}"):
                upload_id = await with_retries(
                    self._retry, f"start multipart {where}",
                    lambda: self.store.create_multipart_upload(
                        bucket, planned.key, content_type=planned.content_type, metadata=planned.metadata
                    ),
                    counter,
                )
        try:
            parts = await self._upload_parts(bucket, planned, upload_id, limiter, counter, progress)
            async with limiter:
                # Shielded: with every part stored, finishing is one short request, and a cancellation
                # landing in the middle of it would leave us unsure whether the object exists.
                with _shielded_for(ABORT_TIMEOUT_SECONDS, f"completing the multipart upload of {where}"):
                    retries_before = counter.retries
                    expected_etag = f"{hashlib.md5(b''.join(d for _, d in parts)).hexdigest()}-{len(parts)}"
                    try:
                        etag = await with_retries(
                            self._retry, f"complete multipart {where}",
                            lambda: self.store.complete_multipart_upload(
                                bucket, planned.key, upload_id, [part for part, _ in parts], if_absent=not overwrite
                            ),
                            counter,
                        )
                    except (NotFound, Conflict):
                        # A retried completion that finds its upload gone (or the object present) may be
                        # meeting its own first try, which completed but whose answer was lost.
                        if counter.retries == retries_before or not await self._holds(bucket, planned.key,
                                                                                       expected_etag):
                            raise
                        etag = expected_etag
        except BaseException:
            # Failed or cancelled: abort, so no orphaned parts are left to be billed. Shielded, so a
            # cancelled call still gets its abort out; bounded, so a dead store cannot hang shutdown.
            with anyio.CancelScope(shield=True), anyio.move_on_after(ABORT_TIMEOUT_SECONDS):
                await self._abort(bucket, planned.key, upload_id)
            raise
        digests = b"".join(digest for _, digest in parts)
        return etag, f"md5-of-parts:{hashlib.md5(digests).hexdigest()}-{len(parts)}"

    async def _upload_parts(
        self, bucket: str, planned: PlannedUpload, upload_id: str, limiter: anyio.CapacityLimiter,
        counter: AttemptCounter, progress: _Progress,
    ) -> list[tuple[StoredPart, bytes]]:
        """Every part in parallel; the first part that fails for good cancels the others and is raised."""
        part_size = self._multipart.part_size_for(planned.size)
        count = math.ceil(planned.size / part_size)
        done: dict[int, tuple[StoredPart, bytes]] = {}
        first_error: list[Exception] = []

        async def upload_part(number: int, scope: anyio.CancelScope) -> None:
            offset = (number - 1) * part_size
            length = min(part_size, planned.size - offset)
            try:
                async with self._budget.reserve(length):
                    chunk = await planned.source.read(offset, length)
                    async with limiter:
                        etag = await with_retries(
                            self._retry, f"part {number} of {bucket}/{planned.key}",
                            lambda: self.store.upload_part(
                                bucket, planned.key, upload_id, number, chunk.data, content_md5=chunk.content_md5
                            ),
                            counter,
                        )
            except Exception as error:  # a bug too: raised as itself, not wrapped in the task group's ExceptionGroup
                first_error.append(error)
                scope.cancel()
                return
            done[number] = (StoredPart(number, etag), chunk.md5)
            await progress.add(bytes_=length)

        async with anyio.create_task_group() as parts:
            for number in range(1, count + 1):
                parts.start_soon(upload_part, number, parts.cancel_scope)
        if first_error:
            raise first_error[0]
        return [done[number] for number in range(1, count + 1)]

    async def _holds(self, bucket: str, key: str, etag: str) -> bool:
        """Whether the store holds this key with exactly this ETag (the object this call sent)."""
        try:
            head = await with_retries(self._retry, f"HEAD {bucket}/{key}",
                                      lambda: self.store.head_object(bucket, key), AttemptCounter())
        except SwitchboardError:
            return False
        return head is not None and head.etag == etag

    async def _abort(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            await with_retries(self._retry, f"abort multipart {bucket}/{key}",
                               lambda: self.store.abort_multipart_upload(bucket, key, upload_id), AttemptCounter())
            logger.info("aborted multipart upload %s of %s/%s", upload_id, bucket, key)
        except Exception as error:  # also a bug: it must not replace the failure that led to the abort
            logger.error("could not abort multipart upload %s of %s/%s (%s); its parts remain until a "
                         "lifecycle rule removes them", upload_id, bucket, key, error,
                         exc_info=None if isinstance(error, SwitchboardError) else error)

    # -- the answer and the record ----------------------------------------------------------

    def _result(
        self, batch_id: str, bucket: str, files: int, uploaded: list[tuple[int, UploadedObject]],
        failed: list[tuple[int, FailedUpload]], started: float,
    ) -> BatchResult:
        wall_seconds = time.perf_counter() - started
        uploaded_bytes = sum(item.size for _, item in uploaded)
        status: BatchStatus = "ok" if not failed else "partial" if uploaded else "failed"
        return BatchResult(
            batch_id=batch_id,
            status=status,
            http_status=HTTP_STATUS[status],
            bucket=bucket,
            uploaded=[item for _, item in sorted(uploaded, key=lambda pair: pair[0])],
            failed=[item for _, item in sorted(failed, key=lambda pair: pair[0])],
            totals=BatchTotals(
                files=files,
                uploaded=len(uploaded),
                failed=len(failed),
                bytes=uploaded_bytes,
                wall_ms=round(wall_seconds * 1000),
                mb_per_s=round(uploaded_bytes / wall_seconds / 1e6, 3) if wall_seconds > 0 else 0.0,
            ),
        )

    def _new_batch_id(self) -> str:
        stamp = datetime.fromtimestamp(self._clock.now_ms() / 1000, tz=UTC).strftime("%Y%m%dT%H%M%SZ")
        return f"{stamp}-{secrets.token_hex(4)}"

    async def _record(self, result: BatchResult, request: BatchRequest) -> None:
        logger.info("batch %s: %s, %d uploaded, %d failed, %d bytes in %d ms", result.batch_id, result.status,
                    result.totals.uploaded, result.totals.failed, result.totals.bytes, result.totals.wall_ms)
        summary = {
            "batch_id": result.batch_id,
            "status": result.status,
            "http_status": result.http_status,
            "store": self.store.description,
            "bucket": result.bucket,
            "prefix": request.prefix,
            "totals": {
                "files": result.totals.files, "uploaded": result.totals.uploaded, "failed": result.totals.failed,
                "bytes": result.totals.bytes, "wall_ms": result.totals.wall_ms, "mb_per_s": result.totals.mb_per_s,
            },
            "uploaded": [{"key": u.key, "size": u.size, "etag": u.etag} for u in result.uploaded[:SUMMARY_MAX_ITEMS]],
            "failed": [{"source": f.source, "key": f.key, "code": f.code, "message": f.message}
                       for f in result.failed[:SUMMARY_MAX_ITEMS]],
        }
        await self._remember(result.batch_id, summary)

    async def _record_cancelled(
        self, batch_id: str, bucket: str, request: BatchRequest, uploaded: list[tuple[int, UploadedObject]],
        planned: int, started: float,
    ) -> None:
        keys = [item.key for _, item in sorted(uploaded, key=lambda pair: pair[0])]
        logger.warning("batch %s cancelled after %d ms: %d of %d files had landed in bucket %s: %s",
                       batch_id, round((time.perf_counter() - started) * 1000), len(keys), planned, bucket, keys)
        with anyio.move_on_after(RECORD_TIMEOUT_SECONDS):
            await self._remember(batch_id, {
                "batch_id": batch_id, "status": "cancelled", "store": self.store.description, "bucket": bucket,
                "prefix": request.prefix, "files": len(request.files), "uploaded": keys[:SUMMARY_MAX_ITEMS],
            })

    async def _remember(self, batch_id: str, summary: dict[str, object]) -> None:
        """Write the summary to memory; a failure here never fails the upload, which already happened."""
        if self._memory is None:
            return
        ttl = min(SUMMARY_TTL_SECONDS, self._memory.max_ttl_seconds)
        key = f"batch-{batch_id}"
        try:
            try:
                await self._memory.put(SUMMARY_NAMESPACE, key, summary, ttl_seconds=ttl, tags=["upload_batch"])
            except TooLarge:  # too many long keys or messages for one entry: keep the counts
                brief = {name: value for name, value in summary.items() if name not in ("uploaded", "failed")}
                await self._memory.put(SUMMARY_NAMESPACE, key, brief, ttl_seconds=ttl, tags=["upload_batch"])
        except SwitchboardError as error:
            logger.warning("could not record batch %s in memory: %s", batch_id, error)
