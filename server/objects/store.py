"""`ObjectStore`: the handful of object-storage calls an upload needs, whatever holds the objects.

Contract for implementations: a transient fault (connection reset, timeout, 5xx, throttling)
raises `Unavailable`, which callers retry; a store with no room for the write raises `OutOfSpace`
(an `Unavailable` that callers do not retry); everything else raises the matching permanent
`SwitchboardError` (`Forbidden`, `NotFound`, `Conflict`, `InvalidArgument`), which they do not.
A write that fails leaves nothing of itself behind.
Every body arrives with its MD5 (base64, as in the Content-MD5 header) and the store refuses a
body that does not match it, so corruption between disk and store cannot land silently.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from server.errors import Unavailable

Body = bytes | bytearray  # one object or one part, already in memory


class OutOfSpace(Unavailable):
    """The store has no room for the write: disk full, quota or file-size limit reached.

    Still `unavailable` to the caller, since it passes once an operator frees space, but not
    retried within the call: a backoff of seconds frees nothing, and every retry would write
    the body again into the disk that is already full, starving the server's other writes."""


@dataclass(frozen=True, slots=True)
class StoredPart:
    """One uploaded part of a multipart upload, as `complete_multipart_upload` needs it."""

    number: int
    etag: str


@dataclass(frozen=True, slots=True)
class ObjectHead:
    """What a store knows about an object without reading it."""

    size: int
    etag: str
    content_type: str
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ListedObject:
    """One object of a listing."""

    key: str
    size: int
    etag: str


@dataclass(frozen=True, slots=True)
class PendingUpload:
    """A multipart upload that was started and neither completed nor aborted."""

    key: str
    upload_id: str


class ObjectStore(Protocol):
    """Buckets of keyed objects with user metadata: S3 (any endpoint) or a local directory."""

    @property
    def description(self) -> str:
        """Where objects go, for logs and summaries (never includes credentials)."""
        ...

    @property
    def default_bucket(self) -> str | None:
        """The bucket used when a call names none."""
        ...

    @property
    def supports_conditional_put(self) -> bool:
        """Whether ``if_absent`` is enforced by the store itself (atomically), not only by a prior HEAD."""
        ...

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: Body,
        *,
        content_md5: str,
        content_type: str,
        metadata: Mapping[str, str],
        if_absent: bool,
    ) -> str:
        """Store ``body`` under ``key``; return the ETag. With ``if_absent``, raise `Conflict` if the key exists."""
        ...

    async def create_multipart_upload(
        self, bucket: str, key: str, *, content_type: str, metadata: Mapping[str, str]
    ) -> str:
        """Start a multipart upload; return its upload id."""
        ...

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, *, content_md5: str
    ) -> str:
        """Store part ``part_number`` (1-based); return its ETag."""
        ...

    async def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[StoredPart], *, if_absent: bool
    ) -> str:
        """Join the parts (in part-number order) into the object; return its ETag."""
        ...

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        """Discard an unfinished multipart upload and its parts; an unknown upload id is not an error."""
        ...

    async def list_multipart_uploads(self, bucket: str) -> list[PendingUpload]:
        """Multipart uploads in ``bucket`` that are neither completed nor aborted."""
        ...

    async def head_object(self, bucket: str, key: str) -> ObjectHead | None:
        """The object's size, ETag, content type and metadata; None if there is no such object."""
        ...

    async def read_object(self, bucket: str, key: str) -> bytes:
        """The whole object in memory (for checks and small objects); `NotFound` if absent."""
        ...

    def stream_object(self, bucket: str, key: str) -> AsyncGenerator[bytes, None]:
        """The object's bytes, chunk by chunk, whatever its size; `NotFound` if absent.
        Close it (``contextlib.aclosing``) when stopping early, so the file or connection is released."""
        ...

    def list_objects(self, bucket: str, *, prefix: str) -> AsyncGenerator[ListedObject, None]:
        """The objects whose key starts with ``prefix``, in key order (UTF-8 bytes, as S3 lists them)."""
        ...

    async def close(self) -> None:
        """Release connections and files."""
        ...
