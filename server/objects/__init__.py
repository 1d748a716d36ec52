"""Object storage and batch uploads: the `ObjectStore` protocol, its S3 and local-directory
implementations, and the `BatchUploader` that `upload_batch` drives."""

from server.objects.local import LocalObjectStore
from server.objects.models import (
    BatchProgress,
    BatchRequest,
    BatchResult,
    BatchTotals,
    FailedUpload,
    FileSpec,
    UploadedObject,
)
from server.objects.retry import RetryPolicy
from server.objects.s3 import S3ObjectStore
from server.objects.store import ListedObject, ObjectHead, ObjectStore, OutOfSpace, PendingUpload, StoredPart
from server.objects.uploader import BatchUploader, MultipartPolicy
from server.objects.validation import UploadLimits

__all__ = [
    "BatchProgress", "BatchRequest", "BatchResult", "BatchTotals", "BatchUploader", "FailedUpload", "FileSpec",
    "ListedObject", "LocalObjectStore", "MultipartPolicy", "ObjectHead", "ObjectStore", "OutOfSpace", "PendingUpload",
    "RetryPolicy",
    "S3ObjectStore", "StoredPart", "UploadLimits", "UploadedObject",
]
