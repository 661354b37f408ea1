"""How many upstream calls to keep in flight, learnt from the answers (AIMD, as TCP does).

`AdaptiveConcurrency` is the rule, pure: the caller passes the clock's readings (`now`, in
`time.monotonic()` seconds). `run_adaptively` is the loop that applies it: it sends items
through a thread pool, feeds every answer to the controller, and sends an item that got a 429
again once its Retry-After is over. The bulk delete and `bench/rate_limited.py` share it.
"""

import math
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import Generic, TypeVar

from threads_app.upstream import RateLimitedError

START = 8
MINIMUM = 1
MAXIMUM = 64
# An answer is fast when it took at most FAST_FACTOR times the best latency seen so far.
FAST_FACTOR = 2.0
# Seconds after a decrease in which the limit does not grow again.
CALM = 5.0
# How long to send nothing after a 429 without a (readable) Retry-After.
DEFAULT_PAUSE = 1.0
# An item is given up after this many 429s.
MAX_ATTEMPTS = 10

T = TypeVar("T")


class AdaptiveConcurrency:
    """The limit on calls in flight, and when sending must pause.

    The rule is AIMD (additive increase, multiplicative decrease), as in TCP's congestion
    control, with the server's Retry-After on top:

    - Start at `start` (8) in flight.
    - Additive increase: every fast answer adds 1/limit, so the limit grows by one for each
      `limit` fast answers (one per round trip at full use), up to `maximum`. An answer is
      fast when its latency is at most `fast_factor` (2) times the best latency seen so far;
      a slower one means the upstream queues our calls, and more of them would only wait.
    - Multiplicative decrease: a 429 halves the limit (rounded down, never below `minimum`).
      Once per congestion event: a 429 for a call sent before the last decrease was already
      paid for (TCP, too, halves once per window), it only extends the pause.
    - Calm: for `calm` (5) seconds after a decrease the limit does not grow. The server has
      just shown where its ceiling is; growing at once would find it again within a few round
      trips, and a rate limit (a token bucket) shows no latency before it answers 429.
    - Retry-After: after a 429, nothing is sent before `pause_until` = now + Retry-After
      (`default_pause`, 1 s, when the answer had none).

    Not thread-safe: one loop owns it (see `run_adaptively`).
    """

    def __init__(
        self,
        start: int = START,
        minimum: int = MINIMUM,
        maximum: int = MAXIMUM,
        *,
        fast_factor: float = FAST_FACTOR,
        calm: float = CALM,
        default_pause: float = DEFAULT_PAUSE,
    ) -> None:
        if not 1 <= minimum <= start <= maximum:
            raise ValueError("need 1 <= minimum <= start <= maximum")
        if fast_factor < 1 or calm < 0 or default_pause < 0:
            raise ValueError("need fast_factor >= 1, calm >= 0 and default_pause >= 0")
        self.minimum = minimum
        self.maximum = maximum
        self.fast_factor = fast_factor
        self.calm = calm
        self.default_pause = default_pause
        self.limit = start
        self.pause_until = -math.inf
        self.best_latency: float | None = None
        self._credit = 0.0  # fractions of one more call in flight, earned by fast answers
        self._decreased_at = -math.inf

    def __repr__(self) -> str:
        return f"<AdaptiveConcurrency limit={self.limit} pause_until={self.pause_until:g}>"

    def may_send(self, in_flight: int, now: float) -> bool:
        """Whether one more call may go out now, with `in_flight` calls unanswered."""
        return now >= self.pause_until and in_flight < self.limit

    def on_success(self, latency: float, *, now: float) -> None:
        """A call was answered (anything but a 429) after `latency` seconds."""
        if self.best_latency is None or latency < self.best_latency:
            self.best_latency = latency
        fast = latency <= self.fast_factor * self.best_latency
        if not fast or now < self._decreased_at + self.calm or self.limit >= self.maximum:
            return
        self._credit += 1 / self.limit
        if self._credit >= 1:
            self._credit -= 1
            self.limit += 1

    def on_rate_limited(
        self, retry_after: float | None, *, now: float, sent_at: float | None = None
    ) -> None:
        """A call was answered 429 with `retry_after` seconds (None: no Retry-After).

        `sent_at` is when that call went out; without it, the 429 counts as news.
        """
        pause = self.default_pause if retry_after is None else max(0.0, retry_after)
        self.pause_until = max(self.pause_until, now + pause)
        if sent_at is not None and sent_at <= self._decreased_at:
            return
        self.limit = max(self.minimum, self.limit // 2)
        self._credit = 0.0
        self._decreased_at = now


@dataclass
class AdaptiveRun(Generic[T]):
    """What `run_adaptively` did.

    `sent` counts calls (a 429 and the call that repeats it are two), `rate_limited` those
    answered 429, `peak_limit` the highest limit reached. `gave_up` holds the items that got
    `max_attempts` 429s, each with its last error: the caller still owes them an outcome.
    """

    sent: int = 0
    rate_limited: int = 0
    peak_limit: int = 0
    gave_up: list[tuple[T, RateLimitedError]] = field(default_factory=list)

    @property
    def rate_limited_share(self) -> float:
        return self.rate_limited / self.sent if self.sent else 0.0


@dataclass
class _Call(Generic[T]):
    item: T
    attempts: int  # 429s this item has had so far
    sent_at: float = 0.0


def run_adaptively(
    items: Iterable[T],
    send: Callable[[T], object],
    controller: AdaptiveConcurrency,
    *,
    max_attempts: int = MAX_ATTEMPTS,
    clock: Callable[[], float] = time.monotonic,
) -> AdaptiveRun[T]:
    """Call `send(item)` for every item, as many at once as `controller` allows.

    `items` is read lazily, one item per free slot. `send` runs in a pool thread; a
    `RateLimitedError` from it is fed to the controller (which pauses all sending for its
    Retry-After) and the item is queued to be sent again, before any new item, up to
    `max_attempts` 429s. Any other exception stops the sending: the calls in flight are
    waited for, then the first such exception is raised. What `send` returns is ignored:
    recording outcomes is its own business.
    """
    if max_attempts < 1:
        raise ValueError("max_attempts must be at least 1")
    run = AdaptiveRun[T](peak_limit=controller.limit)
    waiting = _Waiting(iter(items))
    in_flight: dict[Future[float], _Call[T]] = {}
    failure: Exception | None = None

    def timed(item: T) -> float:
        started = clock()
        send(item)
        return clock() - started

    with ThreadPoolExecutor(controller.maximum, thread_name_prefix="adaptive") as pool:
        while True:
            now = clock()
            while failure is None and controller.may_send(len(in_flight), now):
                call = waiting.next()
                if call is None:
                    break
                call.sent_at = now
                in_flight[pool.submit(timed, call.item)] = call
                run.sent += 1
            if not in_flight:
                if failure is not None or waiting.empty:
                    break
                time.sleep(max(0.0, controller.pause_until - now))  # paused, nothing to wait for
                continue
            timeout = controller.pause_until - now if now < controller.pause_until else None
            done, _ = wait(in_flight, timeout=timeout, return_when=FIRST_COMPLETED)
            now = clock()
            for future in done:
                call = in_flight.pop(future)
                try:
                    latency = future.result()
                except RateLimitedError as error:
                    run.rate_limited += 1
                    controller.on_rate_limited(error.retry_after, now=now, sent_at=call.sent_at)
                    call.attempts += 1
                    if call.attempts >= max_attempts:
                        run.gave_up.append((call.item, error))
                    else:
                        waiting.again(call)
                except Exception as error:
                    failure = failure or error
                else:
                    controller.on_success(latency, now=now)
            run.peak_limit = max(run.peak_limit, controller.limit)
    if failure is not None:
        raise failure
    return run


class _Waiting(Generic[T]):
    """What is left to send: items to send again (first), then the rest of the source."""

    def __init__(self, source: Iterator[T]) -> None:
        self._source = source
        self._again: deque[_Call[T]] = deque()
        self._exhausted = False

    @property
    def empty(self) -> bool:
        return self._exhausted and not self._again

    def again(self, call: _Call[T]) -> None:
        self._again.append(call)

    def next(self) -> _Call[T] | None:
        if self._again:
            return self._again.popleft()
        if not self._exhausted:
            try:
                return _Call(next(self._source), 0)
            except StopIteration:
                self._exhausted = True
        return None
