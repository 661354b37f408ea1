"""The rate-limit mode: per key, at most N requests in flight and R requests a second.

A key is the bearer token as sent (checked before authentication, as a gateway in front of the
API would; a request without one counts under the empty key). Over either limit the request is
answered at once with 429, a `Retry-After` in whole seconds (at least 1, as OpenAI's document
declares it) and OpenAI's error body (`type` "requests", `code` "rate_limit_exceeded").

The rate is a token bucket per key: it holds at most `max(1, R)` tokens (a burst of one
second's worth), refills at R a second, starts full, and each admitted request takes one. A
request finds the bucket empty: 429, Retry-After the time until the next token, rounded up.
The in-flight count of a key covers an admitted request from its arrival to its answer
(latency and hang faults included); over N: 429, Retry-After 1.
"""

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from emulator.protocol import ApiError


@dataclass(frozen=True)
class RateLimit:
    """The mode's settings; None is "no limit" (both None: the mode is off)."""

    max_in_flight: int | None = None
    rate: float | None = None

    def __post_init__(self) -> None:
        in_flight = self.max_in_flight
        if in_flight is not None and (
            not isinstance(in_flight, int) or isinstance(in_flight, bool) or in_flight < 1
        ):
            raise ValueError(f"max_in_flight must be a whole number >= 1, not {in_flight!r}")
        rate = self.rate
        if rate is not None and (
            not isinstance(rate, int | float)
            or isinstance(rate, bool)
            or not math.isfinite(rate)
            or rate <= 0
        ):
            raise ValueError(f"rate must be a number of requests a second > 0, not {rate!r}")

    @property
    def capacity(self) -> float:
        """How many tokens a key's bucket holds: one second's worth, at least 1."""
        return max(1.0, self.rate or 0.0)


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    """Admission per key under a `RateLimit`; thread-safe. `clock` is monotonic seconds."""

    def __init__(
        self, limit: RateLimit | None = None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._limit = limit or RateLimit()
        self._buckets: dict[str, _Bucket] = {}
        # Counted whether the mode is on or off, so that turning it on mid-flight is exact.
        self._in_flight: dict[str, int] = {}

    @property
    def limit(self) -> RateLimit:
        with self._lock:
            return self._limit

    def configure(self, limit: RateLimit) -> None:
        """Apply `limit` from now on; every bucket starts full again."""
        with self._lock:
            self._limit = limit
            self._buckets.clear()

    def admit(self, key: str) -> ApiError | None:
        """None: admitted, and `release(key)` must follow its answer. Else the 429 to send."""
        with self._lock:
            limit = self._limit
            in_flight = self._in_flight.get(key, 0)
            if limit.max_in_flight is not None and in_flight >= limit.max_in_flight:
                return _too_many(
                    f"Too many requests in flight for this key: limit {limit.max_in_flight}, "
                    f"in flight {in_flight}, requested 1.",
                    retry_after=1.0,
                )
            if limit.rate is not None:
                bucket = self._refilled(key, limit.rate, limit.capacity)
                if bucket.tokens < 1:
                    wait = (1 - bucket.tokens) / limit.rate
                    return _too_many(
                        f"Rate limit reached for requests per second (RPS) on this key: "
                        f"limit {limit.rate:g}, requested 1.",
                        retry_after=wait,
                    )
                bucket.tokens -= 1
            self._in_flight[key] = in_flight + 1
            return None

    def release(self, key: str) -> None:
        """An admitted request of `key` has been answered (or dropped)."""
        with self._lock:
            left = self._in_flight[key] - 1
            if left:
                self._in_flight[key] = left
            else:
                del self._in_flight[key]

    def _refilled(self, key: str, rate: float, capacity: float) -> _Bucket:
        now = self._clock()
        bucket = self._buckets.setdefault(key, _Bucket(capacity, now))
        bucket.tokens = min(capacity, bucket.tokens + (now - bucket.updated) * rate)
        bucket.updated = now
        return bucket


def _too_many(message: str, *, retry_after: float) -> ApiError:
    seconds = max(1, math.ceil(retry_after))
    return ApiError(
        429,
        f"{message} Please try again in {seconds}s.",
        code="rate_limit_exceeded",
        type="requests",
        headers=(("Retry-After", str(seconds)),),
    )
