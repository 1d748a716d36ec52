"""Text that is not valid Unicode: lone surrogates.

A JSON string may carry an unpaired UTF-16 surrogate (``"\\ud800"``), typically from a client
that cut a string in the middle of an emoji. Python keeps it in a ``str``, but it has no UTF-8
form: SQLite, the object store and the answer's own encoding all fail on it, far from the
argument that brought it in. So it is refused at the door, naming the argument.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

_SURROGATE = re.compile("[\ud800-\udfff]")


def lone_surrogate(arguments: Mapping[str, Any]) -> str | None:
    """Where the first lone surrogate is in ``arguments`` (values and object keys, however
    nested), as a problem statement; None if there is none."""
    # Iterative, not recursive: a value may be nested as deep as the client's JSON allows.
    pending: list[tuple[str, Any]] = [(key, value) for key, value in arguments.items()]
    for key, _ in pending:
        if isinstance(key, str) and (found := _SURROGATE.search(key)):
            return _problem(f"argument name {key!r}", found)
    while pending:
        path, value = pending.pop()
        if isinstance(value, str):
            # isascii() reads a flag CPython keeps on every string: most text is skipped at no cost.
            if not value.isascii() and (found := _SURROGATE.search(value)):
                return _problem(path, found)
        elif isinstance(value, list):
            pending.extend((f"{path}[{index}]", item) for index, item in enumerate(value))
        elif isinstance(value, dict):
            for key, item in value.items():
                if not isinstance(key, str):
                    continue
                if found := _SURROGATE.search(key):
                    return _problem(f"a key in {path}", found)
                pending.append((f"{path}.{key}" if key.isidentifier() else f"{path}[{key!r}]", item))
    return None


def _problem(where: str, found: re.Match[str]) -> str:
    return (
        f"{where} contains a lone surrogate (U+{ord(found.group()):04X}) at character {found.start()}; "
        "text must be valid Unicode"
    )
