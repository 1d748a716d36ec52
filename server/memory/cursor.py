"""The paging cursor of `MemoryStore.list_page`: where the last page ended, as opaque text.

A cursor is the namespace and the last key of a page, as JSON in URL-safe base64. It carries
the namespace so that a cursor passed to a listing of another namespace is refused instead of
silently paging from the wrong place, and the key itself (not an offset) so that entries
written or deleted between two pages neither repeat nor skip the rest.
"""

from __future__ import annotations

import base64
import binascii
import json

from server.errors import InvalidArgument

# A cursor holds a namespace and a key (256 characters each at most), base64-encoded.
CURSOR_MAX_CHARS = 4096


def encode_cursor(namespace: str, last_key: str) -> str:
    raw = json.dumps([namespace, last_key], ensure_ascii=False).encode("utf-8")
    return base64.urlsafe_b64encode(raw).decode("ascii")


def decode_cursor(cursor: str, namespace: str) -> str:
    """The last key of the page ``cursor`` ended, checked to come from a listing of ``namespace``."""
    try:
        if len(cursor) > CURSOR_MAX_CHARS:
            raise ValueError
        cursor_namespace, last_key = json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
        if not isinstance(cursor_namespace, str) or not isinstance(last_key, str):
            raise ValueError
        last_key.encode("utf-8")  # a lone surrogate cannot be a key this server wrote
    except (ValueError, TypeError, UnicodeError, binascii.Error, RecursionError):
        raise InvalidArgument(
            "cursor is not one this server issued; pass next_cursor from the previous list result unchanged"
        ) from None
    if cursor_namespace != namespace:
        raise InvalidArgument(
            f"cursor belongs to a listing of namespace {cursor_namespace!r}, not {namespace!r}"
        )
    return last_key
