"""`S3ObjectStore`: any S3 endpoint (AWS, MinIO, R2, Ceph) through one long-lived aiobotocore client.

The client's connection pool is sized to the largest upload concurrency, so parallel
requests never queue for a connection. botocore's own retries are switched off: the
uploader retries with tenacity, so it can count and report every attempt.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Iterator, Mapping, Sequence
from typing import Any, Literal

from aiobotocore.config import AioConfig
from aiobotocore.session import get_session
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
    SSLError,
)
from botocore.exceptions import (
    ConnectionError as BotoConnectionError,
)
from botocore.handlers import add_expect_header, convert_body_to_file_like_object

from server.errors import (
    Conflict,
    Forbidden,
    InvalidArgument,
    NotFound,
    SwitchboardError,
    Unavailable,
)
from server.objects.store import Body, ListedObject, ObjectHead, PendingUpload, StoredPart

_STREAM_CHUNK = 1024 * 1024

# Error codes S3 (and compatible stores) use for "slow down" or "try again".
_TRANSIENT_CODES = frozenset({
    "SlowDown", "Throttling", "ThrottlingException", "RequestThrottled", "TooManyRequests",
    "RequestLimitExceeded", "RequestTimeout", "InternalError", "ServiceUnavailable",
    "OperationAborted", "ConditionalRequestConflict",
    # The body arrived different from its Content-MD5: damaged in transit, so sending it again can work.
    "BadDigest",
})
_DENIED_CODES = frozenset({"AccessDenied", "InvalidAccessKeyId", "SignatureDoesNotMatch", "AllAccessDisabled"})


class S3ObjectStore:
    """Objects in S3 buckets. Open with `S3ObjectStore.open`, close with `close`."""

    def __init__(
        self, client: Any, exit_stack: contextlib.AsyncExitStack, *, endpoint: str, default_bucket: str | None,
        conditional_writes: bool,
    ) -> None:
        self._client = client
        self._exit_stack = exit_stack
        self._endpoint = endpoint
        self._default_bucket = default_bucket
        self._conditional_writes = conditional_writes

    @classmethod
    async def open(
        cls,
        *,
        endpoint_url: str | None,
        region: str | None,
        default_bucket: str | None,
        addressing_style: Literal["auto", "path", "virtual"],
        access_key_id: str | None,
        secret_access_key: str | None,
        conditional_writes: bool,
        max_connections: int,
        timeout_seconds: float,
    ) -> S3ObjectStore:
        """One client for the life of the server. Without static keys, credentials come from the
        standard AWS chain (AWS_* variables, ~/.aws, container or instance role)."""
        if (access_key_id is None) != (secret_access_key is None):
            raise InvalidArgument(
                "set both SWITCHBOARD_S3_ACCESS_KEY_ID and SWITCHBOARD_S3_SECRET_ACCESS_KEY, or neither "
                "to use the standard AWS credential chain"
            )
        config = AioConfig(
            max_pool_connections=max_connections,
            connect_timeout=timeout_seconds,
            read_timeout=timeout_seconds,
            retries={"mode": "standard", "total_max_attempts": 1},
            # Every body carries Content-MD5, which the store verifies and the signature covers, so a
            # SHA-256 of the body in the signature adds no protection; over plain HTTP botocore would
            # still compute it, on the event loop (about 20 ms per 8 MiB part).
            s3={"addressing_style": addressing_style, "payload_signing_enabled": False},
            # Likewise botocore's default CRC32 would hash each body a second time and, over HTTPS,
            # switch to aws-chunked trailers that several S3-compatible stores refuse.
            request_checksum_calculation="when_required",
            response_checksum_validation="when_required",
        )
        session = get_session()
        exit_stack = contextlib.AsyncExitStack()
        client = await exit_stack.enter_async_context(
            session.create_client(
                "s3",
                endpoint_url=endpoint_url,
                region_name=region,
                aws_access_key_id=access_key_id,
                aws_secret_access_key=secret_access_key,
                config=config,
            )
        )
        # botocore wraps every PUT body in a file object and then asks for `Expect: 100-continue`, so each
        # request waits a full round trip for the server's go-ahead before sending its body, and aiohttp
        # reads the file object 64 KiB at a time through a thread pool. Our bodies are bytes already in
        # memory (one part at most): send them as they are, straight away.
        client.meta.events.unregister("before-call.s3", add_expect_header)
        for operation in ("PutObject", "UploadPart"):
            client.meta.events.unregister(f"before-parameter-build.s3.{operation}", convert_body_to_file_like_object)
        # Credentials are resolved on the first request, not here: the chain may end at the
        # instance-metadata endpoint, which off AWS only answers after a timeout.
        endpoint = endpoint_url or f"AWS S3 ({client.meta.region_name})"
        return cls(client, exit_stack, endpoint=endpoint, default_bucket=default_bucket,
                   conditional_writes=conditional_writes)

    @property
    def description(self) -> str:
        return f"s3 at {self._endpoint}"

    @property
    def default_bucket(self) -> str | None:
        return self._default_bucket

    @property
    def supports_conditional_put(self) -> bool:
        return self._conditional_writes

    async def close(self) -> None:
        await self._exit_stack.aclose()

    async def put_object(
        self, bucket: str, key: str, body: Body, *, content_md5: str, content_type: str,
        metadata: Mapping[str, str], if_absent: bool,
    ) -> str:
        params: dict[str, Any] = {
            "Bucket": bucket, "Key": key, "Body": body, "ContentMD5": content_md5,
            "ContentType": content_type, "Metadata": dict(metadata),
        }
        if if_absent and self._conditional_writes:
            params["IfNoneMatch"] = "*"
        with self._translated("upload", bucket, key):
            response = await self._client.put_object(**params)
        return _unquote(response["ETag"])

    async def create_multipart_upload(
        self, bucket: str, key: str, *, content_type: str, metadata: Mapping[str, str]
    ) -> str:
        with self._translated("start a multipart upload of", bucket, key):
            response = await self._client.create_multipart_upload(
                Bucket=bucket, Key=key, ContentType=content_type, Metadata=dict(metadata)
            )
        return str(response["UploadId"])

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, *, content_md5: str
    ) -> str:
        with self._translated(f"upload part {part_number} of", bucket, key):
            response = await self._client.upload_part(
                Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=part_number, Body=body, ContentMD5=content_md5
            )
        return _unquote(response["ETag"])

    async def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[StoredPart], *, if_absent: bool
    ) -> str:
        params: dict[str, Any] = {
            "Bucket": bucket, "Key": key, "UploadId": upload_id,
            "MultipartUpload": {"Parts": [{"PartNumber": p.number, "ETag": f'"{p.etag}"'} for p in parts]},
        }
        if if_absent and self._conditional_writes:
            params["IfNoneMatch"] = "*"
        with self._translated("complete the multipart upload of", bucket, key):
            response = await self._client.complete_multipart_upload(**params)
        return _unquote(response["ETag"])

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        try:
            with self._translated("abort the multipart upload of", bucket, key):
                await self._client.abort_multipart_upload(Bucket=bucket, Key=key, UploadId=upload_id)
        except NotFound:
            pass  # already gone: aborting is idempotent

    async def list_multipart_uploads(self, bucket: str) -> list[PendingUpload]:
        pending: list[PendingUpload] = []
        with self._translated("list multipart uploads in", bucket, ""):
            async for page in self._client.get_paginator("list_multipart_uploads").paginate(Bucket=bucket):
                pending.extend(PendingUpload(u["Key"], u["UploadId"]) for u in page.get("Uploads", []))
        return pending

    async def head_object(self, bucket: str, key: str) -> ObjectHead | None:
        try:
            with self._translated("look up", bucket, key):
                response = await self._client.head_object(Bucket=bucket, Key=key)
        except NotFound:  # a HEAD answer has no body, so a missing bucket also looks like this
            return None
        return ObjectHead(
            size=int(response["ContentLength"]),
            etag=_unquote(response["ETag"]),
            content_type=response.get("ContentType", ""),
            metadata=dict(response.get("Metadata", {})),
        )

    async def read_object(self, bucket: str, key: str) -> bytes:
        with self._translated("read", bucket, key):
            response = await self._client.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as stream:
                return bytes(await stream.read())

    async def stream_object(self, bucket: str, key: str) -> AsyncGenerator[bytes, None]:
        with self._translated("read", bucket, key):  # also around the reads: the connection can fail mid-body
            response = await self._client.get_object(Bucket=bucket, Key=key)
            async with response["Body"] as stream:
                while chunk := await stream.read(_STREAM_CHUNK):
                    yield bytes(chunk)

    async def list_objects(self, bucket: str, *, prefix: str) -> AsyncGenerator[ListedObject, None]:
        with self._translated("list objects in", bucket, ""):
            async for page in self._client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
                for item in page.get("Contents", []):
                    yield ListedObject(item["Key"], int(item["Size"]), _unquote(item["ETag"]))

    @contextlib.contextmanager
    def _translated(self, action: str, bucket: str, key: str) -> Iterator[None]:
        """Turn botocore's exceptions into domain errors: `Unavailable` for what is worth retrying."""
        where = f"s3://{bucket}/{key}" if key else f"bucket {bucket!r}"
        try:
            yield
        except ClientError as error:
            raise _client_error(error, action, where, bucket, self._endpoint) from error
        except (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError) as error:
            raise Forbidden(
                f"cannot {action} {where}: no usable AWS credentials ({error}); set AWS_ACCESS_KEY_ID and "
                "AWS_SECRET_ACCESS_KEY (or a profile), or SWITCHBOARD_S3_ACCESS_KEY_ID/SECRET_ACCESS_KEY"
            ) from error
        except ParamValidationError as error:
            raise InvalidArgument(f"cannot {action} {where}: {error}") from error
        except SSLError as error:
            raise Forbidden(f"cannot {action} {where}: TLS with {self._endpoint} failed: {error}") from error
        except (HTTPClientError, BotoConnectionError) as error:
            raise Unavailable(f"cannot {action} {where}: connection to {self._endpoint} failed: {error}") from error
        except BotoCoreError as error:
            raise Unavailable(f"cannot {action} {where}: {error}") from error


def _client_error(error: ClientError, action: str, where: str, bucket: str, endpoint: str) -> SwitchboardError:
    details = error.response.get("Error", {})
    code = str(details.get("Code", ""))
    status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))
    text = f"cannot {action} {where}: {code or status} {details.get('Message', '')}".rstrip()
    if code in _TRANSIENT_CODES or status == 429 or status >= 500:
        return Unavailable(text)
    if code in _DENIED_CODES or status == 403:
        return Forbidden(f"{text} (check the credentials and the bucket policy)")
    if code == "NoSuchBucket":
        return NotFound(f"bucket {bucket!r} does not exist at {endpoint}")
    if code == "PreconditionFailed" or status == 412:
        return Conflict(f"{where} already exists and overwrite is false; nothing was replaced")
    if code in ("NoSuchKey", "NoSuchUpload") or status == 404:
        return NotFound(text)
    return InvalidArgument(text)


def _unquote(etag: str) -> str:
    return etag.strip('"')
