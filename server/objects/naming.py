"""Which bucket names and keys are accepted: S3's own rules, plus no path tricks in keys.

A key becomes a path segment in the local store and a URL path in S3, so ``..``
segments and a leading ``/`` are refused outright rather than normalised.
"""

from __future__ import annotations

import re

from server.errors import InvalidArgument

KEY_MAX_BYTES = 1024  # S3's limit on a key, in UTF-8 bytes
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def check_bucket(bucket: object) -> str:
    """An S3 bucket name: 3..63 lowercase letters, digits, dots and hyphens, no ``..``."""
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidArgument(
            f"bucket {bucket!r} is not a valid bucket name: 3..63 lowercase letters, digits, '.' and '-', "
            "starting and ending with a letter or digit"
        )
    return bucket


def check_key(key: str) -> str:
    """An object key: 1..1024 UTF-8 bytes of printable characters, no leading '/', no '..' segment."""
    if not key:
        raise InvalidArgument("key must not be empty")
    if not key.isprintable():  # first: a lone surrogate is not printable, and cannot be encoded below
        raise InvalidArgument(f"key {key!r} contains a non-printable character (control, newline, tab...)")
    size = len(key.encode("utf-8"))
    if size > KEY_MAX_BYTES:
        raise InvalidArgument(f"key is {size} bytes in UTF-8; the limit is {KEY_MAX_BYTES}")
    if key.startswith("/"):
        raise InvalidArgument(f"key {key!r} starts with '/'; keys are relative, e.g. 'reports/summary.md'")
    if ".." in key.split("/"):
        raise InvalidArgument(f"key {key!r} has a '..' segment, which is not accepted")
    return key


def join_key(prefix: str, key: str) -> str:
    """``prefix`` is a folder: 'runs/42' and 'a.txt' give 'runs/42/a.txt'."""
    if not prefix:
        return key
    return prefix + key if prefix.endswith("/") else f"{prefix}/{key}"
