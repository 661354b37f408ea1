"""One rate budget per key, shared by every worker and job (`services.budget`): a 429 that
one run sees pauses the others, the limit is halved once per congestion event, runs on one
key split its limit; and two real workers running two jobs on one key under the emulator's
rate limit finish both, adapting together."""

from datetime import timedelta

import pytest
from django.utils import timezone

from tests.selection_helpers import assert_deleted_once_each, many_threads, selection_job
from tests.worker_fixtures import wait_for
from threads_app.models import BulkDeleteJob, KeyRateBudget, KeyRateLease
from threads_app.services.budget import SharedConcurrency


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.django_db
def test_two_runs_on_one_key_share_its_limit_and_its_pauses(api_key, make_key, user):
    clock, wall_at = Clock(), timezone.now()

    def wall():
        return wall_at + timedelta(seconds=clock.now - 100.0)

    first = SharedConcurrency([api_key.pk], holder="one", clock=clock, wall=wall)
    assert first.limit == 8  # alone: the whole budget
    second = SharedConcurrency([api_key.pk], holder="two", clock=clock, wall=wall)
    first.sync()
    assert first.limit == second.limit == 4  # two runs: half each

    # A 429 seen by one: the budget halves and both pause for its Retry-After.
    first.on_rate_limited(2.0, now=clock.now, sent_at=clock.now - 0.1)
    assert KeyRateBudget.objects.get(pk=api_key.pk).limit == 4.0
    second.sync()
    assert not second.may_send(0, clock.now) and second.pause_until == pytest.approx(102.0)
    assert second.limit == 2
    # Another 429 for a call sent before that decrease: the same event, no second halving.
    second.on_rate_limited(2.0, now=clock.now, sent_at=clock.now - 0.2)
    assert KeyRateBudget.objects.get(pk=api_key.pk).limit == 4.0
    clock.now += 2.5
    assert second.may_send(0, clock.now)

    # Fast answers of both add up on the shared limit.
    for run in (first, second):
        for _ in range(40):
            run.on_success(0.01, now=clock.now + 10)  # past the calm after the decrease
        run.sync()
    assert KeyRateBudget.objects.get(pk=api_key.pk).limit > 4.0

    first.close()  # its lease goes: the other takes the whole budget
    second.sync()
    assert second.limit == int(KeyRateBudget.objects.get(pk=api_key.pk).limit)
    assert list(KeyRateLease.objects.values_list("holder", flat=True)) == ["two"]
    other_key = make_key(owner=user, secret="sk-test-another-project-0000000000")
    apart = SharedConcurrency([other_key.pk], holder="three", clock=clock, wall=wall)
    assert apart.limit == 8  # another key's budget is its own


@pytest.mark.django_db(transaction=True)
def test_two_workers_on_one_key_finish_two_jobs_under_its_rate_limit(
    user, api_key, emulator, start_worker
):
    spring = many_threads(emulator, api_key, 250, label="Spring")
    autumn = many_threads(emulator, api_key, 250, label="Autumn")
    emulator.set_latency(0.01)
    emulator.set_rate_limit(rate=60)
    first = selection_job(user, q="spring", count=250)
    second = selection_job(user, q="autumn", count=250)

    start_worker("left")
    start_worker("right")

    def both_finished():
        states = set(BulkDeleteJob.objects.values_list("state", flat=True))
        return states == {BulkDeleteJob.State.FINISHED}

    wait_for(both_finished, timeout=120, what="both jobs to finish")
    assert_deleted_once_each(first, spring, emulator)
    assert_deleted_once_each(second, autumn, emulator)
    workers = set(BulkDeleteJob.objects.values_list("worker_id", flat=True))
    assert workers == {"left", "right"}  # one job each, at the same time
    stats = emulator.stats()
    assert stats["rate_limited"] <= 0.15 * stats["requests"], stats
    budget = KeyRateBudget.objects.get(pk=api_key.pk)
    if stats["rate_limited"]:  # they met the limit (a busy machine may not): they adapted
        assert budget.decreased_at is not None and budget.limit < 64
    assert not KeyRateLease.objects.exists()  # both gave their lease back
