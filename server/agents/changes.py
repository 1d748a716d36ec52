"""`ChangeFeed`: who wants to know when an agent, a query or a permission request changed (the MCP resources do).

The engine calls `changed` after each recorded change of one of them; listeners are
plain callables that must return at once (they schedule any slow work themselves), so the
engine never waits on a subscriber.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Literal

logger = logging.getLogger(__name__)

Kind = Literal["agent", "query", "approval"]
Listener = Callable[[Kind, str], None]


class ChangeFeed:
    def __init__(self) -> None:
        self._listeners: list[Listener] = []

    def listen(self, listener: Listener) -> Callable[[], None]:
        """Adds ``listener``; answers the function that removes it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def changed(self, kind: Kind, ident: str) -> None:
        for listener in list(self._listeners):
            try:
                listener(kind, ident)
            except Exception:  # a listener's fault never fails the engine's write
                logger.exception("a change listener failed on %s %s", kind, ident)
