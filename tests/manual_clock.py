"""The clock tests move by hand, so expiry is tested without sleeping."""

from __future__ import annotations


class ManualClock:
    """A clock that only moves when told to (a `server.clock.Clock`)."""

    def __init__(self, start_ms: int = 1_700_000_000_000) -> None:
        self._now_ms = start_ms

    def now_ms(self) -> int:
        return self._now_ms

    def advance(self, seconds: float) -> None:
        self._now_ms += int(seconds * 1000)
