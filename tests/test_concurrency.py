"""services.concurrency: the AIMD rule (pure: the clock's readings are passed in) and the loop."""

import threading
import time

import pytest

from threads_app.services.concurrency import AdaptiveConcurrency, run_adaptively
from threads_app.upstream import RateLimitedError


def answered(controller, count, *, latency=0.05, now=0.0):
    for _ in range(count):
        controller.on_success(latency, now=now)


def too_many(retry_after=0.0):
    return RateLimitedError("Rate limit reached.", status=429, retry_after=retry_after)


# --- The rule -----------------------------------------------------------------------------------


def test_starts_at_8_and_sends_up_to_the_limit():
    controller = AdaptiveConcurrency()
    assert controller.limit == 8
    assert controller.may_send(0, now=0.0)
    assert controller.may_send(7, now=0.0)
    assert not controller.may_send(8, now=0.0)


def test_grows_by_one_per_limit_fast_answers():
    controller = AdaptiveConcurrency()
    answered(controller, 7)
    assert controller.limit == 8
    answered(controller, 1)
    assert controller.limit == 9
    answered(controller, 8)
    assert controller.limit == 9
    answered(controller, 1)
    assert controller.limit == 10


def test_never_grows_past_the_maximum():
    controller = AdaptiveConcurrency(start=3, maximum=4)
    answered(controller, 100)
    assert controller.limit == 4


def test_slow_answers_do_not_raise_it():
    controller = AdaptiveConcurrency(start=2)
    controller.on_success(0.1, now=0.0)  # the best so far; fast by definition
    controller.on_success(0.21, now=0.0)  # over 2x the best: slow
    controller.on_success(0.5, now=0.0)
    assert controller.limit == 2
    controller.on_success(0.2, now=0.0)  # 2x the best is still fast
    assert controller.limit == 3
    assert controller.best_latency == 0.1


def test_best_latency_is_the_lowest_seen():
    controller = AdaptiveConcurrency(start=1)
    controller.on_success(0.3, now=0.0)
    assert controller.limit == 2  # the first answer is its own best
    controller.on_success(0.1, now=0.0)
    assert controller.best_latency == 0.1
    answered(controller, 4, latency=0.25)  # slow next to 0.1
    assert controller.limit == 2


def test_a_429_halves_it_down_to_the_minimum():
    controller = AdaptiveConcurrency(start=9, minimum=2)
    limits = []
    for second in range(5):
        controller.on_rate_limited(1.0, now=float(second))
        limits.append(controller.limit)
    assert limits == [4, 2, 2, 2, 2]
    floor_one = AdaptiveConcurrency(start=3)
    floor_one.on_rate_limited(None, now=0.0)
    floor_one.on_rate_limited(None, now=1.0)
    assert floor_one.limit == 1


def test_one_decrease_per_congestion_event():
    controller = AdaptiveConcurrency(start=16)
    # Eight calls went out at t=1.0; the first 429 for them comes back at t=1.2.
    controller.on_rate_limited(1.0, now=1.2, sent_at=1.0)
    assert controller.limit == 8
    for _ in range(7):  # the others, answered 429 too: the same event
        controller.on_rate_limited(1.0, now=1.21, sent_at=1.0)
    assert controller.limit == 8
    assert controller.pause_until == pytest.approx(2.21)  # each extends the pause
    # A call sent after the decrease that still gets a 429 is news.
    controller.on_rate_limited(1.0, now=2.5, sent_at=2.3)
    assert controller.limit == 4


def test_retry_after_pauses_all_sending():
    controller = AdaptiveConcurrency()
    controller.on_rate_limited(2.0, now=10.0)
    assert not controller.may_send(0, now=10.0)
    assert not controller.may_send(0, now=11.99)
    assert controller.may_send(0, now=12.0)
    assert not controller.may_send(controller.limit, now=12.0)


def test_a_shorter_retry_after_does_not_cut_the_pause():
    controller = AdaptiveConcurrency()
    controller.on_rate_limited(5.0, now=0.0)
    controller.on_rate_limited(1.0, now=1.0, sent_at=0.0)
    assert controller.pause_until == 5.0


def test_no_retry_after_pauses_the_default():
    controller = AdaptiveConcurrency(default_pause=1.5)
    controller.on_rate_limited(None, now=3.0)
    assert controller.pause_until == 4.5
    zero = AdaptiveConcurrency()
    zero.on_rate_limited(0.0, now=3.0)
    assert zero.may_send(0, now=3.0)


def test_no_growth_for_a_calm_spell_after_a_decrease():
    controller = AdaptiveConcurrency(start=8, calm=5.0)
    controller.on_rate_limited(1.0, now=10.0)
    assert controller.limit == 4
    answered(controller, 40, now=14.9)
    assert controller.limit == 4
    answered(controller, 4, now=15.0)
    assert controller.limit == 5


def test_growth_credit_is_lost_on_a_decrease():
    controller = AdaptiveConcurrency(start=8, calm=0.0)
    answered(controller, 7)  # 7/8 of the next step
    controller.on_rate_limited(0.0, now=1.0)
    answered(controller, 3, now=1.0)  # 3/4 of a step at limit 4, not 7/8 + 3/4
    assert controller.limit == 4
    answered(controller, 1, now=1.0)
    assert controller.limit == 5


@pytest.mark.parametrize(
    "arguments",
    [
        {"start": 0, "minimum": 0},
        {"start": 1, "minimum": 2},
        {"start": 65},
        {"fast_factor": 0.5},
        {"calm": -1},
        {"default_pause": -1},
    ],
)
def test_bad_settings_are_refused(arguments):
    with pytest.raises(ValueError):
        AdaptiveConcurrency(**arguments)


# --- The loop -----------------------------------------------------------------------------------


class Recorder:
    """A `send` that records its calls and how many ran at once; `script` says, per item,
    what each of its calls does (an exception to raise, or a pause in seconds)."""

    def __init__(self, script=None, pause=0.005):
        self.script = {item: list(steps) for item, steps in (script or {}).items()}
        self.pause = pause
        self.calls = []
        self.running = 0
        self.most = 0
        self.lock = threading.Lock()

    def __call__(self, item):
        with self.lock:
            self.calls.append((item, time.monotonic()))
            self.running += 1
            self.most = max(self.most, self.running)
            steps = self.script.get(item)
            step = steps.pop(0) if steps else self.pause
        try:
            if isinstance(step, BaseException):
                raise step
            time.sleep(step)
        finally:
            with self.lock:
                self.running -= 1

    def items_sent(self):
        return [item for item, _ in self.calls]


def test_every_item_is_sent_once_within_the_limit():
    send = Recorder()
    controller = AdaptiveConcurrency(start=4, maximum=4)
    run = run_adaptively(range(40), send, controller)
    assert sorted(send.items_sent()) == list(range(40))
    assert send.most <= 4
    assert (run.sent, run.rate_limited, run.gave_up, run.rate_limited_share) == (40, 0, [], 0.0)
    assert run.peak_limit == 4


def test_the_limit_grows_while_answers_are_fast():
    controller = AdaptiveConcurrency(start=2, maximum=64)
    run = run_adaptively(range(60), Recorder(pause=0.002), controller)
    assert controller.limit > 2
    assert run.peak_limit == controller.limit


def test_a_rate_limited_item_is_sent_again_after_its_retry_after():
    send = Recorder(script={3: [too_many(retry_after=0.2)]})
    controller = AdaptiveConcurrency(start=2)
    run = run_adaptively(range(6), send, controller)
    assert sorted(send.items_sent()) == [0, 1, 2, 3, 3, 4, 5]
    assert (run.sent, run.rate_limited, run.gave_up) == (7, 1, [])
    assert run.rate_limited_share == pytest.approx(1 / 7)
    assert controller.limit == 1
    first, again = [moment for item, moment in send.calls if item == 3]
    assert again - first >= 0.2
    # Only calls sent before the 429 was seen went out in the pause; the item went again first.
    assert next(item for item, moment in send.calls if moment > first + 0.1) == 3


def test_an_item_is_given_up_after_max_attempts():
    errors = [too_many(), too_many(), too_many()]
    send = Recorder(script={"b": list(errors)})
    run = run_adaptively(["a", "b", "c"], send, AdaptiveConcurrency(), max_attempts=3)
    assert sorted(send.items_sent()) == ["a", "b", "b", "b", "c"]
    assert run.gave_up == [("b", errors[-1])]
    assert run.rate_limited == 3


def test_another_error_stops_the_sending_and_is_raised():
    send = Recorder(script={2: [KeyError("boom")]}, pause=0.05)
    with pytest.raises(KeyError, match="boom"):
        run_adaptively(range(100), send, AdaptiveConcurrency(start=2, maximum=2))
    assert len(send.calls) < 10
    assert send.running == 0  # what was in flight was waited for


def test_items_are_read_as_slots_free_up():
    taken = []

    def items():
        for item in range(10):
            taken.append(item)
            yield item

    send = Recorder()
    original = send.__call__

    def checked(item):
        assert len(taken) <= item + 2  # never more than the limit ahead of the calls
        original(item)

    run_adaptively(items(), checked, AdaptiveConcurrency(start=2, maximum=2))
    assert taken == list(range(10))


def test_max_attempts_must_allow_one():
    with pytest.raises(ValueError):
        run_adaptively([1], Recorder(), AdaptiveConcurrency(), max_attempts=0)
