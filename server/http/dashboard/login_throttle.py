"""Failed sign-ins slow the guesser down: after a few from one address, it must wait, longer each time.

Nothing sleeps. While an address is locked out its attempts are answered at once (429 with
Retry-After) without the token or code being looked at, so a guess costs the guesser time and
the server nothing, and no number of waiting requests can tie the server up. A success clears
the address's count; so does a long quiet spell.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from dataclasses import dataclass

from server.clock import Clock, SystemClock

FREE_FAILURES = 5          # a person mistyping the token a few times is not held up
FIRST_LOCKOUT_S = 5.0      # after the FREE_FAILURES-th failure; doubled by each further one
MAX_LOCKOUT_S = 900.0
FORGET_AFTER_S = 3600.0    # an address without a failure for this long starts afresh
MAX_ADDRESSES = 10_000     # the table stays small whatever the number of addresses guessing
IPV6_PREFIX = 64           # one host commonly holds a whole /64, so it counts as one address


@dataclass(slots=True)
class _Failures:
    count: int
    last_ms: int


class LoginThrottle:
    """Counts failed sign-ins per client address and says how long an address must still wait."""

    def __init__(self, clock: Clock | None = None) -> None:
        self._clock = clock or SystemClock()
        # Oldest failure first, so forgetting stale addresses reads from the front only.
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def retry_after_s(self, client: str) -> int:
        """Whole seconds ``client`` must wait before an attempt of its is checked; 0: it may try now."""
        failures = self._current(_address_of(client))
        if failures is None:
            return 0
        lockout_ms = _lockout_ms(failures.count)
        # Capped at the lockout itself, so a wall clock set back cannot lock anyone out for longer.
        wait_ms = min(failures.last_ms + lockout_ms - self._clock.now_ms(), lockout_ms)
        return math.ceil(wait_ms / 1000) if wait_ms > 0 else 0

    def failed(self, client: str) -> None:
        """Counts a wrong token or code from ``client``."""
        address, now = _address_of(client), self._clock.now_ms()
        failures = self._current(address)
        self._failures.pop(address, None)
        self._failures[address] = _Failures((failures.count if failures else 0) + 1, now)
        self._forget_stale(now)

    def succeeded(self, client: str) -> None:
        """``client`` signed in: its earlier failures no longer count."""
        self._failures.pop(_address_of(client), None)

    def _current(self, address: str) -> _Failures | None:
        failures = self._failures.get(address)
        if failures is None or self._clock.now_ms() - failures.last_ms > FORGET_AFTER_S * 1000:
            return None
        return failures

    def _forget_stale(self, now_ms: int) -> None:
        while self._failures:
            oldest = next(iter(self._failures.values()))
            if len(self._failures) <= MAX_ADDRESSES and now_ms - oldest.last_ms <= FORGET_AFTER_S * 1000:
                return
            self._failures.popitem(last=False)


def _lockout_ms(failures: int) -> int:
    if failures < FREE_FAILURES:
        return 0
    doublings = min(failures - FREE_FAILURES, 32)  # far past the cap already; keeps the power small
    return int(min(FIRST_LOCKOUT_S * 2 ** doublings, MAX_LOCKOUT_S) * 1000)


def _address_of(client: str) -> str:
    try:
        address = ipaddress.ip_address(client)
    except ValueError:  # no IP (a Unix socket, a test transport): one bucket per name
        return client
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/{IPV6_PREFIX}", strict=False))
    return str(address)
