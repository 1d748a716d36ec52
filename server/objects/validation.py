"""Checks every file of a batch before anything is uploaded, and turns the request into a plan.

A file that fails a check becomes a `FailedUpload` carrying the reason; the rest of the
batch is planned. A problem with the call as a whole (no files, a bad bucket or prefix,
too many files) raises instead: then nothing at all is uploaded.

Files are read only from inside the upload roots, judged after following every symlink,
and never from the server's own state (its data dir), even when that lies inside a root.
Two more rules keep secrets in place under the default root (the working directory):
the server's configuration file is never uploaded, under any name (recognised by its
device and inode, so symlinks and hard links to it are caught too), and neither is a
hidden file or anything in a hidden directory below a root (``.env``, ``.git/config``,
``.aws/credentials``) unless the operator sets ``upload_allow_hidden``. The roots' own
names do not count: a root inside a hidden directory was the operator's choice.
"""

from __future__ import annotations

import base64
import binascii
import mimetypes
import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from server.errors import Aborted, Forbidden, InvalidArgument, NotFound, SwitchboardError, TooLarge
from server.objects.models import BatchRequest, FailedUpload, FileSpec
from server.objects.naming import check_bucket, check_key, join_key
from server.objects.sources import FileSource, InlineSource, Source

METADATA_MAX_BYTES = 2048  # S3's limit on all user metadata of one object
_METADATA_NAME = re.compile(r"[a-z0-9][a-z0-9._-]*")
DEFAULT_BINARY_TYPE = "application/octet-stream"
DEFAULT_TEXT_TYPE = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class UploadLimits:
    roots: tuple[Path, ...]
    max_files: int
    max_file_bytes: int
    max_call_bytes: int
    max_inline_bytes: int
    max_concurrency: int
    private_dirs: tuple[Path, ...] = ()  # never uploaded from, even inside a root: the server's own state
    private_files: tuple[Path, ...] = ()  # never uploaded under any name: the server's configuration file
    allow_hidden: bool = False  # files whose path below their root has a part starting with "."


@dataclass(frozen=True, slots=True)
class PlannedUpload:
    index: int  # position in the request, so answers come back in request order
    label: str  # the source as the caller named it
    source: Source
    key: str
    size: int
    content_type: str
    metadata: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class BatchPlan:
    bucket: str
    planned: list[PlannedUpload]
    refused: list[tuple[int, FailedUpload]]  # (request index, why)


def plan_batch(request: BatchRequest, limits: UploadLimits, default_bucket: str | None) -> BatchPlan:
    """Check the call, then each file; blocking (it stats files), so run it in a worker thread."""
    bucket = _check_call(request, limits, default_bucket)
    places = _Places(tuple(root.resolve() for root in limits.roots),
                     tuple(private.resolve() for private in limits.private_dirs),
                     _identities(limits.private_files), limits.allow_hidden)
    planned: list[PlannedUpload] = []
    refused: list[tuple[int, FailedUpload]] = []
    destinations: dict[str, int] = {}
    call_bytes = 0
    for index, spec in enumerate(request.files):
        label = _label(spec, index)
        key: str | None = None
        try:
            source, default_key = _source(spec, index, places, limits)
            key = check_key(join_key(request.prefix, spec.key if spec.key is not None else default_key))
            if key in destinations:
                raise InvalidArgument(f"key {key!r} is already the destination of files[{destinations[key]}]")
            if call_bytes + source.size > limits.max_call_bytes:
                raise TooLarge(
                    f"uploading it would take this call past its limit of {limits.max_call_bytes} bytes; "
                    "split the batch"
                )
            planned.append(PlannedUpload(
                index, label, source, key, source.size, _content_type(spec, key), _check_metadata(spec.metadata)
            ))
            destinations[key] = index
            call_bytes += source.size
        except SwitchboardError as error:
            refused.append((index, FailedUpload(label, key, error.code, error.message, attempts=0)))
    return BatchPlan(bucket, planned, refused)


def _check_call(request: BatchRequest, limits: UploadLimits, default_bucket: str | None) -> str:
    if not 1 <= len(request.files) <= limits.max_files:
        raise InvalidArgument(f"files must hold 1..{limits.max_files} entries; got {len(request.files)}")
    if not 1 <= request.max_concurrency <= limits.max_concurrency:
        raise InvalidArgument(
            f"max_concurrency must be 1..{limits.max_concurrency} (the server's limit); got {request.max_concurrency}"
        )
    if request.prefix:
        try:
            check_key(request.prefix)
        except InvalidArgument as error:
            raise InvalidArgument(f"prefix: {error.message}") from None
    bucket = request.bucket or default_bucket
    if bucket is None:
        raise InvalidArgument("no bucket: pass bucket, or set SWITCHBOARD_S3_BUCKET on the server")
    return check_bucket(bucket)


def _label(spec: FileSpec, index: int) -> str:
    if spec.path is not None:
        return spec.path
    if spec.text is not None:
        return f"files[{index}].content"
    if spec.base64 is not None:
        return f"files[{index}].content_base64"
    return f"files[{index}]"


@dataclass(frozen=True, slots=True)
class _Places:
    """The upload roots and the private directories, resolved once per batch."""

    roots: tuple[Path, ...]
    private: tuple[Path, ...]
    private_files: frozenset[tuple[int, int]]  # (device, inode) of each that exists now
    allow_hidden: bool


def _identities(paths: Sequence[Path]) -> frozenset[tuple[int, int]]:
    """(device, inode) of each file that exists: the same file whatever name, link or hard link reaches it.
    Looked up per batch, so a config file created after start-up is protected too."""
    found = set()
    for path in paths:
        try:
            status = os.stat(path)
        except OSError:
            continue
        found.add((status.st_dev, status.st_ino))
    return frozenset(found)


def _hidden_part(resolved: Path, roots: Sequence[Path]) -> str | None:
    """The first name starting with '.' between the file and the nearest root holding it, if any."""
    nearest = max((root for root in roots if resolved.is_relative_to(root)), key=lambda root: len(root.parts))
    return next((part for part in resolved.relative_to(nearest).parts if part.startswith(".")), None)


def _source(spec: FileSpec, index: int, places: _Places, limits: UploadLimits) -> tuple[Source, str]:
    """The bytes to upload and the key they get when the caller names none."""
    given = [name for name, value in (("path", spec.path), ("content", spec.text), ("content_base64", spec.base64))
             if value is not None]
    if len(given) != 1:
        raise InvalidArgument(f"files[{index}] needs exactly one of path, content or content_base64; got "
                              f"{', '.join(given) or 'none'}")
    if spec.path is not None:
        return _file_source(spec.path, places, limits.max_file_bytes)
    if spec.text is not None:
        try:
            data = spec.text.encode("utf-8")
        except UnicodeEncodeError:
            raise InvalidArgument(
                f"files[{index}] content holds a lone surrogate, which is not Unicode text; send binary data as "
                "content_base64"
            ) from None
    else:
        try:
            data = base64.b64decode(spec.base64 or "", validate=True)
        except binascii.Error as error:
            raise InvalidArgument(f"content_base64 is not valid base64 ({error})") from None
    if len(data) > limits.max_inline_bytes:
        raise TooLarge(f"inline content is {len(data)} bytes; the limit is {limits.max_inline_bytes} "
                       "(write it to a file and pass its path)")
    if spec.key is None:
        raise InvalidArgument("inline content needs a key")
    return InlineSource(data), spec.key


def _file_source(path_text: str, places: _Places, max_file_bytes: int) -> tuple[FileSource, str]:
    if not path_text or "\x00" in path_text:
        raise InvalidArgument("path must be a non-empty file path")
    roots = places.roots
    path = Path(path_text)
    if not path.is_absolute():
        path = roots[0] / path  # relative paths mean "in the first upload root"
    try:
        resolved = path.resolve(strict=True)
    except FileNotFoundError:
        raise NotFound(f"{path_text} does not exist") from None
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop
        raise InvalidArgument(f"{path_text} cannot be resolved: {error}") from None
    root = next((root for root in roots if resolved.is_relative_to(root)), None)
    if root is None:
        shown = ", ".join(str(r) for r in roots)
        raise Forbidden(f"{path_text} resolves to {resolved}, outside the upload roots ({shown}); "
                        "only files under SWITCHBOARD_UPLOAD_ROOTS can be uploaded")
    if any(resolved.is_relative_to(private) for private in places.private):
        raise Forbidden(f"{path_text} is part of the server's own state (its data dir); it cannot be uploaded")
    try:
        status = os.stat(resolved)
    except OSError as error:
        raise Forbidden(f"{path_text} cannot be examined: {error.strerror}") from None
    if (status.st_dev, status.st_ino) in places.private_files:
        raise Forbidden(f"{path_text} is the server's configuration file, which may hold its token and keys; "
                        "it is never uploaded")
    if not places.allow_hidden and (hidden := _hidden_part(resolved, roots)) is not None:
        raise Forbidden(f"{path_text} is hidden or in a hidden directory ({hidden!r}); hidden files (.env, .git/, "
                        ".aws/ ...) are not uploaded unless the operator sets SWITCHBOARD_UPLOAD_ALLOW_HIDDEN=true")
    if not stat.S_ISREG(status.st_mode):
        raise InvalidArgument(f"{path_text} is not a regular file")
    if not os.access(resolved, os.R_OK):
        raise Forbidden(f"{path_text} is not readable by the server")
    if status.st_size > max_file_bytes:
        raise TooLarge(f"{path_text} is {status.st_size} bytes; the limit per file is {max_file_bytes}")
    source = FileSource.of(resolved, status)
    return source, resolved.relative_to(root).as_posix()


def _content_type(spec: FileSpec, key: str) -> str:
    if spec.content_type:
        if not spec.content_type.isprintable() or not spec.content_type.isascii():
            raise InvalidArgument(f"content_type {spec.content_type!r} must be printable ASCII, e.g. 'text/csv'")
        return spec.content_type
    guessed, _ = mimetypes.guess_type(key, strict=False)
    if guessed:
        return guessed
    return DEFAULT_TEXT_TYPE if spec.text is not None else DEFAULT_BINARY_TYPE


def _check_metadata(metadata: Mapping[str, str]) -> dict[str, str]:
    """S3 user metadata: lower-cased names (S3 lower-cases them anyway), printable ASCII values, 2 KiB in all."""
    checked: dict[str, str] = {}
    for name, value in metadata.items():
        lowered = name.lower()
        if not _METADATA_NAME.fullmatch(lowered):
            raise InvalidArgument(f"metadata name {name!r} must be letters, digits, '.', '_' or '-'")
        if not isinstance(value, str) or not value.isascii() or not value.isprintable():
            raise InvalidArgument(f"metadata {name!r} must be a printable ASCII string")
        checked[lowered] = value
    size = sum(len(name) + len(value) for name, value in checked.items())
    if size > METADATA_MAX_BYTES:
        raise TooLarge(f"metadata is {size} bytes; S3 allows {METADATA_MAX_BYTES}")
    return checked


def refused_for_all_or_nothing(planned: Sequence[PlannedUpload]) -> list[tuple[int, FailedUpload]]:
    """With all_or_nothing and an invalid file, every valid file is reported as not attempted."""
    return [
        (p.index, FailedUpload(p.label, p.key, Aborted.code,
                               "not uploaded: all_or_nothing is set and another file of the batch is invalid", 0))
        for p in planned
    ]
