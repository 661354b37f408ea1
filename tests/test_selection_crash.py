"""Crash safety of a selection job at 2,000 threads: its worker killed with -9 mid-job, the
job is resumed by another worker's sweep, with every thread deleted once and every intent
given one outcome. (The worker's database connection killed mid-job: PostgreSQL only,
tests/test_selection_crash_postgres.py.)"""

import pytest

from tests.selection_helpers import (
    assert_deleted_once_each,
    many_threads,
    selection_job,
    wait_until_done_at_least,
)
from tests.worker_fixtures import wait_for
from threads_app import tasks
from threads_app.models import BulkDeleteItem, BulkDeleteJob

THREADS = 2000
Item = BulkDeleteItem.Outcome


@pytest.mark.django_db(transaction=True)
def test_a_2000_thread_selection_job_whose_worker_is_killed_finishes_on_another(
    user, api_key, emulator, start_worker
):
    threads = many_threads(emulator, api_key, THREADS, label="Campaign")
    emulator.set_latency(0.02)
    emulator.set_rate_limit(rate=400)  # and some 429s on the way: sent again, not failed
    job = selection_job(user, q="campaign", count=THREADS)

    doomed = start_worker("doomed")
    wait_until_done_at_least(job, 300)
    doomed.kill()  # kill -9, mid-job
    job.refresh_from_db()
    assert job.filled and job.total == THREADS and 300 <= job.done < THREADS
    interrupted = job.items.filter(outcome=Item.PENDING, intent_sequence__isnull=False).count()
    assert interrupted > 0  # intents committed, outcomes unknown

    survivor = start_worker("survivor")
    wait_for(
        lambda: BulkDeleteJob.objects.get(pk=job.pk).state == BulkDeleteJob.State.FINISHED,
        timeout=240,
        what="the resumed job to finish",
    )
    assert_deleted_once_each(job, threads, emulator)
    assert (job.worker_id, job.resume_count) == ("survivor", 1)
    assert job.resume_note == tasks.RESUMED_AFTER_WORKER_STOPPED
    assert "Abandoned: worker doomed" in survivor.output
