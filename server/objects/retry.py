"""Retrying object-store requests: tenacity, exponential backoff with full jitter, bounded attempts.

Only `Unavailable` is retried: stores raise it for connection errors, timeouts, 5xx and
throttling, and a permanent refusal (denied, no such bucket, bad key) for everything else.
`OutOfSpace` is the exception: no backoff frees a full disk (see its docstring).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception_type,
    retry_if_not_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from server.errors import Unavailable
from server.objects.store import OutOfSpace

logger = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    max_attempts: int
    initial_backoff_seconds: float
    max_backoff_seconds: float = 10.0


class AttemptCounter:
    """Counts the requests of one file that had to be sent again."""

    def __init__(self) -> None:
        self.retries = 0

    @property
    def attempts(self) -> int:
        """1 plus the number of retried requests, as reported per file."""
        return 1 + self.retries


async def with_retries(
    policy: RetryPolicy, what: str, operation: Callable[[], Awaitable[T]], counter: AttemptCounter
) -> T:
    """Await ``operation()``, again after a jittered backoff while it raises `Unavailable`, at most
    ``policy.max_attempts`` times in all; then the last error is raised, saying how many attempts it took."""

    def note_retry(state: RetryCallState) -> None:
        counter.retries += 1
        error = state.outcome.exception() if state.outcome else None
        logger.info("retrying %s in %.2fs (attempt %d of %d failed: %s)", what,
                    state.next_action.sleep if state.next_action else 0.0, state.attempt_number,
                    policy.max_attempts, error)

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts),
        # Full jitter: parallel uploads hit by the same fault spread their retries instead of returning together.
        wait=wait_random_exponential(multiplier=policy.initial_backoff_seconds, max=policy.max_backoff_seconds),
        retry=retry_if_exception_type(Unavailable) & retry_if_not_exception_type(OutOfSpace),
        before_sleep=note_retry,
        reraise=True,
    )
    try:
        async for attempt in retrying:
            with attempt:
                return await operation()
    except OutOfSpace:
        raise  # tried once, on purpose: "gave up after N attempts" would be untrue
    except Unavailable as error:
        if policy.max_attempts == 1:
            raise
        raise Unavailable(f"{error.message} (gave up after {policy.max_attempts} attempts)") from error
    raise AssertionError("tenacity ended without a result or an error")  # unreachable: reraise=True
