"""Building the object store and the uploader from `Settings`: the one place that reads upload settings."""

from __future__ import annotations

import logging
from pathlib import Path

from server.clock import Clock
from server.config import Settings
from server.memory import MemoryStore
from server.objects.local import DEFAULT_LOCAL_BUCKET, LocalObjectStore
from server.objects.retry import RetryPolicy
from server.objects.s3 import S3ObjectStore
from server.objects.store import ObjectStore
from server.objects.uploader import BatchUploader, MultipartPolicy
from server.objects.validation import UploadLimits

logger = logging.getLogger(__name__)


async def open_object_store(settings: Settings) -> ObjectStore:
    """S3 when an endpoint or a bucket is configured; otherwise a directory under the data dir, cleared of
    what writes cut short by a dead process left in it."""
    if settings.uses_local_object_store:
        settings.local_objects_dir.mkdir(parents=True, exist_ok=True)
        local = LocalObjectStore(settings.local_objects_dir, default_bucket=DEFAULT_LOCAL_BUCKET)
        await local.remove_leftovers()
        return local
    secret = settings.s3_secret_access_key
    return await S3ObjectStore.open(
        endpoint_url=settings.s3_endpoint_url,
        region=settings.s3_region,
        default_bucket=settings.s3_bucket,
        addressing_style=settings.s3_addressing_style,
        access_key_id=settings.s3_access_key_id,
        secret_access_key=secret.get_secret_value() if secret is not None else None,
        conditional_writes=settings.s3_conditional_writes,
        max_connections=settings.upload_max_concurrency,
        timeout_seconds=settings.upload_request_timeout_seconds,
    )


def build_uploader(settings: Settings, store: ObjectStore, memory: MemoryStore | None, clock: Clock) -> BatchUploader:
    for root in settings.upload_roots:
        resolved = root.resolve()
        if resolved == Path(resolved.anchor):
            # A client that starts the server from / (some desktop apps do) would otherwise expose every file.
            logger.warning("upload root %s lets agents upload any file this server can read; "
                           "set SWITCHBOARD_UPLOAD_ROOTS to the directories meant for uploads", resolved)
    return BatchUploader(
        store,
        limits=UploadLimits(
            roots=tuple(settings.upload_roots),
            max_files=settings.upload_max_files,
            max_file_bytes=settings.upload_max_file_bytes,
            max_call_bytes=settings.upload_max_call_bytes,
            max_inline_bytes=settings.upload_max_inline_bytes,
            max_concurrency=settings.upload_max_concurrency,
            private_dirs=(settings.data_dir,),
            private_files=(settings.config_file,),
            allow_hidden=settings.upload_allow_hidden,
        ),
        multipart=MultipartPolicy(settings.upload_multipart_threshold_bytes, settings.upload_part_size_bytes),
        retry=RetryPolicy(settings.upload_max_attempts, settings.upload_retry_initial_seconds),
        buffer_bytes=settings.upload_buffer_bytes,
        memory=memory,
        clock=clock,
    )
