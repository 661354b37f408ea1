"""A selection job of 2,000 threads whose worker's database connections are killed mid-job
(`pg_terminate_backend`, as a PostgreSQL restart or a failover does): the worker opens new
ones and runs the job on, resolving what it left between intent and outcome upstream first.
Each thread is deleted once, every intent has one outcome. PostgreSQL only (conftest.py)."""

import pytest
from django.db import connection

from tests.selection_helpers import (
    assert_deleted_once_each,
    many_threads,
    selection_job,
    wait_until_done_at_least,
)
from tests.worker_fixtures import wait_for
from threads_app.models import BulkDeleteJob

THREADS = 2000


def terminate_other_connections():
    """Kill every other connection to the test database; how many there were."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid <> pg_backend_pid()"
        )
        return cursor.fetchone()[0]


@pytest.mark.django_db(transaction=True)
def test_a_selection_job_survives_its_database_connections_killed(
    user, api_key, emulator, start_worker
):
    threads = many_threads(emulator, api_key, THREADS, label="Spring")
    emulator.set_latency(0.02)
    job = selection_job(user, q="spring", count=THREADS)

    worker = start_worker("steadfast")
    wait_until_done_at_least(job, 300)
    assert terminate_other_connections() >= 1
    wait_until_done_at_least(job, 1000)
    assert terminate_other_connections() >= 1  # twice: each loss is survived

    wait_for(
        lambda: BulkDeleteJob.objects.get(pk=job.pk).state == BulkDeleteJob.State.FINISHED,
        timeout=240,
        what="the job to finish",
    )
    assert_deleted_once_each(job, threads, emulator)
    assert job.resume_count == 0 and job.worker_id == "steadfast"  # the same worker ran on
    assert "lost its database connection" in worker.output
