"""Retry policy: which responses are retried, how long to wait, and when to give up."""

from __future__ import annotations

import enum
import random
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime


class Action(enum.Enum):
    """What the client does with an HTTP status."""

    OK = "ok"  # 2xx: parse the body
    NOT_FOUND = "not_found"  # 404: the session has no run; final, not an error
    RETRY = "retry"  # 429 and 5xx gateway/server errors: back off and try again
    AUTH = "auth"  # 401/403: the token is refused; stop the whole load
    FAIL = "fail"  # anything else (400, 422, 3xx, ...): retrying will not help


RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def classify_status(status: int) -> Action:
    """Map an HTTP status to what the client should do with it."""
    if 200 <= status < 300:
        return Action.OK
    if status == 404:
        return Action.NOT_FOUND
    if status in (401, 403):
        return Action.AUTH
    if status in RETRY_STATUSES:
        return Action.RETRY
    return Action.FAIL


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How often and how patiently one session is retried.

    `max_retries` counts retries after the first attempt. Waits grow exponentially from `backoff_base`
    up to `backoff_max` with equal jitter (half fixed, half random) so that many sessions failing
    together do not retry in lockstep. A server's `Retry-After` is honoured up to `retry_after_max`.
    `budget_seconds` bounds the total time spent on one session, waits included.
    """

    max_retries: int = 5
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    retry_after_max: float = 60.0
    budget_seconds: float = 300.0

    def __post_init__(self) -> None:
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")
        if self.backoff_base < 0 or self.backoff_max < 0 or self.retry_after_max < 0:
            raise ValueError("backoff and Retry-After limits must be >= 0")

    def delay(self, retry_number: int, retry_after: float | None, rng: random.Random) -> float:
        """Seconds to wait before retry number `retry_number` (1 for the first retry)."""
        if retry_after is not None:
            return float(min(max(retry_after, 0.0), self.retry_after_max))
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (retry_number - 1))
        return float(ceiling / 2 + rng.uniform(0, ceiling / 2))


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Seconds to wait from a `Retry-After` header: delta-seconds or an HTTP date; None if absent or bad."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - (now or datetime.now(UTC))).total_seconds(), 0.0)


@dataclass(frozen=True, slots=True)
class CircuitBreaker:
    """When the client stops the whole load because the API has stopped answering.

    The rule: the breaker trips when the last `failures` attempts in a row, across all sessions, got no
    usable answer, and at least `seconds` have passed since the last usable answer (or, before any, since
    the client's first attempt). An attempt without a usable answer is one the client would retry: 429,
    500/502/503/504, a timeout, a reset or short body, a non-JSON or truncated 200. Any other answer (2xx,
    404, other 4xx) resets the count. Both conditions are needed: the count alone would stop a load on a
    blip that 16 concurrent sessions see at once; the time alone would stop a slow but working API.
    With the defaults, an API answering only errors is given up on after about 30 s instead of every
    session being retried to exhaustion (about 72 minutes for 5,000 sessions at the default retries).
    """

    failures: int = 50
    seconds: float = 30.0

    def __post_init__(self) -> None:
        if self.failures < 1:
            raise ValueError("the circuit breaker's failures must be >= 1 (pass no breaker to turn it off)")
        if self.seconds < 0:
            raise ValueError("the circuit breaker's seconds must be >= 0")

    def trips(self, failures_in_a_row: int, seconds_without_answer: float) -> bool:
        """Whether a run of `failures_in_a_row` unusable attempts over that many seconds stops the load."""
        return failures_in_a_row >= self.failures and seconds_without_answer >= self.seconds
