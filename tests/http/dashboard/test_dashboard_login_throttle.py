"""The dashboard's sign-in throttle on its own, on a clock the test moves: what counts as one address,
how long a lockout lasts, and that its memory stays bounded (the HTTP side is in
tests/http/dashboard/test_dashboard_http.py)."""

from __future__ import annotations

from server.http.dashboard.login_throttle import (
    FIRST_LOCKOUT_S,
    FORGET_AFTER_S,
    FREE_FAILURES,
    MAX_ADDRESSES,
    MAX_LOCKOUT_S,
    LoginThrottle,
)
from tests.manual_clock import ManualClock


def fail(throttle: LoginThrottle, client: str, times: int) -> None:
    for _ in range(times):
        throttle.failed(client)


def test_an_ipv6_host_counts_as_its_64_and_a_mapped_ipv4_as_the_ipv4() -> None:
    throttle = LoginThrottle(ManualClock())
    fail(throttle, "2001:db8:1:2::1", FREE_FAILURES - 1)
    throttle.failed("2001:db8:1:2:ffff::9")  # another address of the same /64
    assert throttle.retry_after_s("2001:db8:1:2::77") == FIRST_LOCKOUT_S
    assert throttle.retry_after_s("2001:db8:1:3::1") == 0
    fail(throttle, "::ffff:192.0.2.7", FREE_FAILURES)
    assert throttle.retry_after_s("192.0.2.7") == FIRST_LOCKOUT_S
    assert throttle.retry_after_s("192.0.2.8") == 0


def test_the_lockout_doubles_up_to_its_cap_and_a_quiet_spell_forgets() -> None:
    clock = ManualClock()
    throttle = LoginThrottle(clock)
    fail(throttle, "192.0.2.1", FREE_FAILURES + 2)
    assert throttle.retry_after_s("192.0.2.1") == 4 * FIRST_LOCKOUT_S
    fail(throttle, "192.0.2.1", 1000)
    assert throttle.retry_after_s("192.0.2.1") == MAX_LOCKOUT_S
    clock.advance(-86_400)  # the wall clock set back a day does not lock anyone out for a day
    assert throttle.retry_after_s("192.0.2.1") == MAX_LOCKOUT_S
    clock.advance(86_400 + FORGET_AFTER_S + 1)
    assert throttle.retry_after_s("192.0.2.1") == 0
    throttle.failed("192.0.2.1")  # counted afresh: one failure, no lockout
    assert throttle.retry_after_s("192.0.2.1") == 0


def test_guesses_from_more_addresses_than_it_keeps_forget_the_oldest() -> None:
    throttle = LoginThrottle(ManualClock())
    fail(throttle, "198.51.100.1", FREE_FAILURES)
    for n in range(MAX_ADDRESSES):
        throttle.failed(f"10.{n // 65536}.{n // 256 % 256}.{n % 256}")
    assert throttle.retry_after_s("198.51.100.1") == 0  # the oldest entry went to make room
    fail(throttle, "10.0.0.0", FREE_FAILURES - 1)  # those it kept are still counted
    assert throttle.retry_after_s("10.0.0.0") == FIRST_LOCKOUT_S
