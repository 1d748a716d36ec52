"""Checks on what callers hand the memory store, and the limits they hold it to. Each failure
names the field, what was wrong, and what is accepted."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from server.errors import InvalidArgument, TooLarge


@dataclass(frozen=True, slots=True)
class MemoryLimits:
    """What one call may write or get back."""

    max_value_bytes: int  # one serialised value
    max_ttl_seconds: int
    max_batch_bytes: int  # the serialised values of one batch together
    max_answer_bytes: int  # the values one search answer carries together


# Entries one batch write or import chunk holds at most.
BATCH_MAX = 10_000
NAME_MAX_CHARS = 256
TAG_MAX_CHARS = 64
TAGS_MAX = 32


def check_name(field: str, value: object) -> str:
    """A namespace or key: 1..256 printable characters."""
    if not isinstance(value, str):
        raise InvalidArgument(f"{field} must be a string of 1..{NAME_MAX_CHARS} printable characters")
    if not 1 <= len(value) <= NAME_MAX_CHARS:
        raise InvalidArgument(f"{field} must be 1..{NAME_MAX_CHARS} characters long; got {len(value)}")
    if not value.isprintable():
        raise InvalidArgument(f"{field} {value!r} contains a non-printable character (control, newline, tab...)")
    return value


LIST_LIMIT_MAX = 1000


def check_limit(limit: object) -> None:
    """How many entries one list, export page or text search answers with: 1..1000."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= LIST_LIMIT_MAX:
        raise InvalidArgument(f"limit must be a whole number in 1..{LIST_LIMIT_MAX}; got {limit!r}")


SEARCH_TEXT_MAX_CHARS = 4096


def check_search_text(field: str, text: object) -> None:
    """A key glob or text to look for: at most 4,096 characters of Unicode text (SQLite refuses far
    longer patterns as too complex, and cannot take a lone surrogate)."""
    if text is None or text == "":
        return
    if not isinstance(text, str):
        raise InvalidArgument(f"{field} must be a string")
    if len(text) > SEARCH_TEXT_MAX_CHARS:
        raise InvalidArgument(f"{field} must be at most {SEARCH_TEXT_MAX_CHARS} characters; got {len(text)}")
    check_unicode(field, text)


def check_unicode(field: str, text: str) -> None:
    """Text SQLite and the embedder can take: no lone surrogate (half of a UTF-16 pair)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidArgument(f"{field} holds a lone surrogate, which is not Unicode text") from None


def check_tags(tags: Iterable[object]) -> tuple[str, ...]:
    """Up to 32 distinct tags, each 1..64 printable characters; order kept, duplicates dropped."""
    if not tags:
        return ()
    checked = tuple(dict.fromkeys(check_tag(tag) for tag in tags))
    if len(checked) > TAGS_MAX:
        raise InvalidArgument(f"at most {TAGS_MAX} tags are accepted; got {len(checked)}")
    return checked


def check_tag(tag: object) -> str:
    if not isinstance(tag, str) or not 1 <= len(tag) <= TAG_MAX_CHARS or not tag.isprintable():
        raise InvalidArgument(f"tag {tag!r} is not accepted: tags are 1..{TAG_MAX_CHARS} printable characters")
    return tag


def check_ttl(ttl_seconds: object, max_ttl_seconds: int) -> int | None:
    """Seconds to live: None or 0 means no expiry; otherwise 1..max."""
    if ttl_seconds is None or ttl_seconds == 0:
        return None
    if isinstance(ttl_seconds, bool) or not isinstance(ttl_seconds, int):
        raise InvalidArgument(f"ttl must be a whole number of seconds (0 or absent: no expiry); got {ttl_seconds!r}")
    if ttl_seconds < 0:
        raise InvalidArgument(f"ttl must not be negative; got {ttl_seconds} (use 0 or omit it for no expiry)")
    if ttl_seconds > max_ttl_seconds:
        raise InvalidArgument(f"ttl {ttl_seconds}s exceeds the configured maximum of {max_ttl_seconds}s")
    return ttl_seconds


def check_version(field: str, version: object) -> int | None:
    if version is None:
        return None
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        raise InvalidArgument(f"{field} must be a whole number >= 0 (0 means 'only if absent'); got {version!r}")
    return version


# Built once: json.dumps with options constructs a new encoder on every call, which dominated batch writes.
_COMPACT_JSON = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def encode_tags(tags: tuple[str, ...]) -> str:
    return _COMPACT_JSON.encode(tags) if tags else "[]"


def decode_tags(text: str) -> tuple[str, ...]:
    return tuple(json.loads(text)) if text != "[]" else ()


def encode_value(value: Any, max_bytes: int) -> tuple[str, int]:
    """Canonical JSON text of ``value`` and its size in bytes; refuses what JSON cannot carry."""
    try:
        text = _COMPACT_JSON.encode(value)
    except RecursionError:
        raise InvalidArgument("value is nested too deeply to store; flatten it (a few hundred levels at most)") from None
    except (TypeError, ValueError) as error:
        raise InvalidArgument(
            f"value must be a JSON value (string, number, bool, null, list, object): {error}"
        ) from None
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as error:
        bad = text[error.start:error.end].encode("unicode_escape").decode("ascii")
        raise InvalidArgument(
            f"value holds a lone surrogate ({bad}), which is not Unicode text; send the character whole "
            "(both halves of a surrogate pair) or base64-encode binary data"
        ) from None
    if size > max_bytes:
        raise TooLarge(f"value is {size} bytes serialised; the limit is {max_bytes} bytes")
    return text, size
