"""`LocalObjectStore`: buckets as directories under the data dir, the embedded default.

Layout under the root, per bucket::

    <bucket>/objects/<h[:2]>/<h>.json          the object's record: key, size, ETag, type, metadata, data file
    <bucket>/objects/<h[:2]>/<h>.<token>.data  the bytes the record names
    <bucket>/multipart/<upload id>/            upload.json and NNNNN.part files of an unfinished upload
    .writers/<writer id>.lock                   held (flock) by each open store that writes; see local_writers

where ``h`` is the SHA-256 of the key, so any S3 key maps to a safe file name and "a" and
"a/b" can both exist. The record is the commit point: the data is written and fsynced
under a fresh name first, then the record is swapped in with one rename, so a reader sees
the old object or the new one, never a mix. ETags are computed the way S3 does (MD5 of the
body; for multipart, MD5 of the part MD5s plus "-N").

A write that fails part-way (disk full) deletes what it had written before it reports the
failure, so a failed upload costs no space, however often it is retried. A write cut short by
the death of its process cannot clean up: every name it creates carries its store's writer id,
and `remove_leftovers` (run when the server opens the store) deletes those of writers that are
gone (`server.objects.local_writers`).

All file work runs in worker threads; the event loop only waits.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import fcntl
import hashlib
import json
import logging
import os
import secrets
import shutil
import tempfile
from collections.abc import AsyncGenerator, Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar

import anyio

from server.errors import Conflict, InvalidArgument, NotFound, Unavailable
from server.objects.local_writers import Leftovers, WriterClaim, remove_leftovers
from server.objects.naming import check_bucket, check_key
from server.objects.store import Body, ListedObject, ObjectHead, OutOfSpace, PendingUpload, StoredPart

T = TypeVar("T")
logger = logging.getLogger(__name__)

DEFAULT_LOCAL_BUCKET = "local"
_COPY_CHUNK = 1024 * 1024
# No room: waiting a few seconds will not change that (see `OutOfSpace`).
_NO_SPACE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})


class LocalObjectStore:
    """Objects in a directory tree; same keys, metadata, ETags and multipart calls as S3."""

    def __init__(self, root: Path, *, default_bucket: str = DEFAULT_LOCAL_BUCKET) -> None:
        self._root = root
        self._default_bucket = default_bucket
        self._writer = WriterClaim(root)

    @property
    def description(self) -> str:
        return f"local directory {self._root}"

    @property
    def default_bucket(self) -> str | None:
        return self._default_bucket

    @property
    def supports_conditional_put(self) -> bool:
        return True  # os.link refuses to replace an existing record, atomically

    async def close(self) -> None:
        """Gives up this store's writer id (the only thing that stays open between calls)."""
        await anyio.to_thread.run_sync(self._writer.release)

    async def remove_leftovers(self) -> Leftovers:
        """Deletes the files and multipart uploads that writes of dead processes left behind; another
        live server's work in progress is left alone. Logs what it removed."""
        removed = await self._run(remove_leftovers, self._root)
        if removed.files or removed.uploads:
            logger.warning("local object store %s: removed %d leftover files (%d bytes, %d unfinished multipart "
                           "uploads among them) of writes cut short by a process that ended", self._root,
                           removed.files, removed.bytes, removed.uploads)
        return removed

    async def put_object(
        self, bucket: str, key: str, body: Body, *, content_md5: str, content_type: str,
        metadata: Mapping[str, str], if_absent: bool,
    ) -> str:
        return await self._run(self._put_sync, bucket, key, body, content_md5, content_type, dict(metadata), if_absent)

    async def create_multipart_upload(
        self, bucket: str, key: str, *, content_type: str, metadata: Mapping[str, str]
    ) -> str:
        return await self._run(self._create_multipart_sync, bucket, key, content_type, dict(metadata))

    async def upload_part(
        self, bucket: str, key: str, upload_id: str, part_number: int, body: Body, *, content_md5: str
    ) -> str:
        return await self._run(self._upload_part_sync, bucket, upload_id, part_number, body, content_md5)

    async def complete_multipart_upload(
        self, bucket: str, key: str, upload_id: str, parts: Sequence[StoredPart], *, if_absent: bool
    ) -> str:
        return await self._run(self._complete_sync, bucket, key, upload_id, list(parts), if_absent)

    async def abort_multipart_upload(self, bucket: str, key: str, upload_id: str) -> None:
        await self._run(self._abort_sync, bucket, upload_id)

    async def list_multipart_uploads(self, bucket: str) -> list[PendingUpload]:
        return await self._run(self._list_uploads_sync, bucket)

    async def head_object(self, bucket: str, key: str) -> ObjectHead | None:
        record = await self._run(self._read_record, bucket, key)
        if record is None:
            return None
        return ObjectHead(record["size"], record["etag"], record["content_type"], record["metadata"])

    async def read_object(self, bucket: str, key: str) -> bytes:
        return await self._run(self._read_sync, bucket, key)

    async def stream_object(self, bucket: str, key: str) -> AsyncGenerator[bytes, None]:
        # One open file from start to end: an overwrite meanwhile deletes its name, not the bytes
        # being read, so the stream is the object as it was when it was opened.
        data = await self._run(self._open_data, bucket, key)
        try:
            while chunk := await self._run(data.read, _COPY_CHUNK):
                yield chunk
        finally:
            data.close()

    async def list_objects(self, bucket: str, *, prefix: str) -> AsyncGenerator[ListedObject, None]:
        for listed in await self._run(self._list_sync, bucket, prefix):
            yield listed

    async def _run(self, function: Callable[..., T], *args: Any) -> T:
        """Run blocking file work in a worker thread; a failing disk becomes a domain error, not a crash."""
        try:
            return await anyio.to_thread.run_sync(function, *args)
        except OSError as error:
            cause = error.strerror or str(error)
            if error.errno in _NO_SPACE_ERRNOS:
                raise OutOfSpace(
                    f"the local object store at {self._root} has no room: {cause}; nothing was kept. "
                    "Make free space on its disk (or raise the quota or file-size limit), then upload again"
                ) from error
            where = f" ({error.filename})" if error.filename else ""
            raise Unavailable(f"the local object store at {self._root} failed: {cause}{where}") from error

    # -- paths ------------------------------------------------------------------------------

    def _bucket_dir(self, bucket: str) -> Path:
        return self._root / check_bucket(bucket)

    def _record_path(self, bucket: str, key: str) -> Path:
        digest = hashlib.sha256(check_key(key).encode("utf-8")).hexdigest()
        return self._bucket_dir(bucket) / "objects" / digest[:2] / f"{digest}.json"

    def _upload_dir(self, bucket: str, upload_id: str) -> Path:
        if not upload_id.isalnum():
            raise NotFound(f"no multipart upload {upload_id!r} in bucket {bucket!r}")
        return self._bucket_dir(bucket) / "multipart" / upload_id

    def _data_path(self, record_path: Path) -> Path:
        """A fresh name for an object's bytes: ``<h>.<writer id><random>.data``."""
        return record_path.with_name(f"{record_path.stem}.{self._writer.writer_id()}{secrets.token_hex(4)}.data")

    # -- blocking work (worker threads) ---------------------------------------------------

    def _put_sync(
        self, bucket: str, key: str, body: Body, content_md5: str, content_type: str,
        metadata: dict[str, str], if_absent: bool,
    ) -> str:
        md5 = hashlib.md5(body)
        if base64.b64encode(md5.digest()).decode("ascii") != content_md5:
            raise InvalidArgument(f"the body of {key!r} does not match its Content-MD5; nothing was stored")
        record_path = self._record_path(bucket, key)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        data_path = self._data_path(record_path)
        data_file = open(data_path, "xb")  # noqa: SIM115 - closed inside the block that removes it on failure
        etag = md5.hexdigest()
        with _removed_if_failed(data_path):
            with data_file:
                data_file.write(body)
                _flush_to_disk(data_file)
            self._commit(record_path, data_path, key, len(body), etag, content_type, metadata, if_absent)
        return etag

    def _commit(
        self, record_path: Path, data_path: Path, key: str, size: int, etag: str, content_type: str,
        metadata: dict[str, str], if_absent: bool,
    ) -> None:
        record = {"key": key, "size": size, "etag": etag, "content_type": content_type, "metadata": metadata,
                  "data": data_path.name}
        temp = _write_temp_json(record_path.parent, record, self._writer.writer_id())
        # Locked from reading the old record to deleting its data: two writers of one key (in this
        # process or another) would otherwise both delete the same old file and orphan one new one.
        with _directory_lock(record_path.parent):
            previous = _load_json(record_path)
            self._swap_record(record_path, temp, data_path, key, previous, if_absent)

    @staticmethod
    def _swap_record(
        record_path: Path, temp: Path, data_path: Path, key: str, previous: dict[str, Any] | None, if_absent: bool
    ) -> None:
        try:
            if if_absent:
                try:
                    os.link(temp, record_path)  # fails if the record exists: no replace, no race
                except FileExistsError:
                    raise Conflict(f"{key!r} already exists and overwrite is false; nothing was replaced") from None
            else:
                os.replace(temp, record_path)
                previous_data = previous and previous.get("data")
                if previous_data and previous_data != data_path.name:
                    (record_path.parent / previous_data).unlink(missing_ok=True)
        finally:
            temp.unlink(missing_ok=True)

    def _create_multipart_sync(self, bucket: str, key: str, content_type: str, metadata: dict[str, str]) -> str:
        check_key(key)
        upload_id = f"{self._writer.writer_id()}{secrets.token_hex(8)}"
        upload_dir = self._upload_dir(bucket, upload_id)
        upload_dir.mkdir(parents=True)
        try:
            _write_json_atomically(upload_dir / "upload.json", {"key": key, "content_type": content_type,
                                                               "metadata": metadata}, self._writer.writer_id())
        except BaseException:
            shutil.rmtree(upload_dir, ignore_errors=True)  # its id never reaches the caller, who could not abort it
            raise
        return upload_id

    def _upload_part_sync(self, bucket: str, upload_id: str, part_number: int, body: Body, content_md5: str) -> str:
        upload_dir = self._existing_upload(bucket, upload_id)
        md5 = hashlib.md5(body)
        if base64.b64encode(md5.digest()).decode("ascii") != content_md5:
            raise InvalidArgument(f"part {part_number} does not match its Content-MD5; nothing was stored")
        temp = upload_dir / f".{part_number:05d}.{self._writer.writer_id()}{secrets.token_hex(4)}.tmp"
        part_file = open(temp, "xb")  # noqa: SIM115 - closed inside the block that removes it on failure
        with _removed_if_failed(temp):
            with part_file:
                part_file.write(body)
                _flush_to_disk(part_file)
            os.replace(temp, upload_dir / f"{part_number:05d}.part")
        return md5.hexdigest()

    def _complete_sync(
        self, bucket: str, key: str, upload_id: str, parts: list[StoredPart], if_absent: bool
    ) -> str:
        upload_dir = self._existing_upload(bucket, upload_id)
        upload = _load_json(upload_dir / "upload.json") or {}
        if upload.get("key") != key:
            raise InvalidArgument(f"multipart upload {upload_id} belongs to key {upload.get('key')!r}, not {key!r}")
        numbers = [part.number for part in parts]
        if not parts or numbers != sorted(set(numbers)):
            raise InvalidArgument("parts must be listed once each, in ascending part-number order")
        record_path = self._record_path(bucket, key)
        record_path.parent.mkdir(parents=True, exist_ok=True)
        data_path = self._data_path(record_path)
        part_digests = bytearray()
        data_file = open(data_path, "xb")  # noqa: SIM115 - closed inside the block that removes it on failure
        with _removed_if_failed(data_path):
            with data_file:
                for part in parts:
                    part_path = upload_dir / f"{part.number:05d}.part"
                    digest = _md5_of_file(part_path)
                    if digest.hex() != part.etag:
                        raise InvalidArgument(f"part {part.number} has ETag {digest.hex()}, not {part.etag}")
                    part_digests += digest
                    with open(part_path, "rb") as part_file:
                        shutil.copyfileobj(part_file, data_file, _COPY_CHUNK)
                size = data_file.tell()
                _flush_to_disk(data_file)
            etag = f"{hashlib.md5(part_digests).hexdigest()}-{len(parts)}"
            self._commit(record_path, data_path, key, size, etag, upload["content_type"], upload["metadata"],
                         if_absent)
        shutil.rmtree(upload_dir, ignore_errors=True)
        return etag

    def _abort_sync(self, bucket: str, upload_id: str) -> None:
        with contextlib.suppress(NotFound):
            shutil.rmtree(self._upload_dir(bucket, upload_id), ignore_errors=True)

    def _list_uploads_sync(self, bucket: str) -> list[PendingUpload]:
        uploads_dir = self._bucket_dir(bucket) / "multipart"
        if not uploads_dir.is_dir():
            return []
        pending = []
        for upload_dir in sorted(uploads_dir.iterdir()):
            upload = _load_json(upload_dir / "upload.json")
            if upload is not None:
                pending.append(PendingUpload(upload["key"], upload_dir.name))
        return pending

    def _existing_upload(self, bucket: str, upload_id: str) -> Path:
        upload_dir = self._upload_dir(bucket, upload_id)
        if not upload_dir.is_dir():
            raise NotFound(f"no multipart upload {upload_id!r} in bucket {bucket!r} (completed or aborted?)")
        return upload_dir

    def _read_record(self, bucket: str, key: str) -> dict[str, Any] | None:
        return _load_json(self._record_path(bucket, key))

    def _read_sync(self, bucket: str, key: str) -> bytes:
        with self._open_data(bucket, key) as data:
            return data.read()

    def _open_data(self, bucket: str, key: str) -> BinaryIO:
        # A concurrent overwrite may delete the data file between reading the record and opening
        # it; the record read after that names the new file.
        for _ in range(3):
            record = self._read_record(bucket, key)
            if record is None:
                break
            with contextlib.suppress(FileNotFoundError):
                return open(self._record_path(bucket, key).parent / str(record["data"]), "rb")
        raise NotFound(f"no object {key!r} in bucket {bucket!r}")

    def _list_sync(self, bucket: str, prefix: str) -> list[ListedObject]:
        bucket_dir = self._bucket_dir(bucket)
        if not bucket_dir.is_dir():
            raise NotFound(f"no bucket {bucket!r} in {self.description}: nothing was ever stored in it")
        listed = []
        for record_path in (bucket_dir / "objects").glob("*/*.json"):
            record = _load_json(record_path)  # None: deleted by an overwrite since the glob
            if record is not None and str(record["key"]).startswith(prefix):
                listed.append(ListedObject(str(record["key"]), int(record["size"]), str(record["etag"])))
        return sorted(listed, key=lambda item: item.key.encode("utf-8"))


def _flush_to_disk(file: Any) -> None:
    file.flush()
    os.fsync(file.fileno())


def _md5_of_file(path: Path) -> bytes:
    md5 = hashlib.md5()
    with open(path, "rb") as file:
        while chunk := file.read(_COPY_CHUNK):
            md5.update(chunk)
    return md5.digest()


@contextlib.contextmanager
def _directory_lock(directory: Path) -> Iterator[None]:
    with open(directory / ".lock", "a") as lock_file:
        fcntl.flock(lock_file, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock_file, fcntl.LOCK_UN)


def _load_json(path: Path) -> dict[str, Any] | None:
    try:
        record: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
        return record
    except FileNotFoundError:
        return None
    except ValueError as error:  # written atomically by us, so only damage from outside gets here
        raise Unavailable(f"the local object store's record {path} is damaged ({error}); remove it") from None


def _write_temp_json(directory: Path, value: dict[str, Any], writer: str) -> Path:
    descriptor, name = tempfile.mkstemp(dir=directory, prefix=f".record-{writer}", suffix=".tmp")
    with _removed_if_failed(Path(name)), os.fdopen(descriptor, "w", encoding="utf-8") as file:
        json.dump(value, file, ensure_ascii=False)
        _flush_to_disk(file)
    return Path(name)


@contextlib.contextmanager
def _removed_if_failed(path: Path) -> Iterator[None]:
    """Delete ``path`` if the block fails: a write cut short (disk full) must not leave its bytes behind."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):  # the original failure is the one worth reporting
            path.unlink(missing_ok=True)
        raise


def _write_json_atomically(path: Path, value: dict[str, Any], writer: str) -> None:
    temp = _write_temp_json(path.parent, value, writer)
    os.replace(temp, path)
