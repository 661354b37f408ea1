"""Migration 0014 (selections) on a database with jobs in it: each job made before it gets
its `total` and `done` from its items, and runs on as before."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from threads_app.models import BulkDeleteJob

BEFORE = ("threads_app", "0015_imported_activity")
AFTER = ("threads_app", "0016_selections")


@pytest.mark.django_db(transaction=True)
def test_jobs_made_before_the_migration_are_counted(user, api_key, make_thread):
    threads = [make_thread(api_key, label=f"old {n}") for n in range(3)]
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    try:
        old = executor.loader.project_state([BEFORE]).apps
        Job, Item = (
            old.get_model("threads_app", "BulkDeleteJob"),
            old.get_model("threads_app", "BulkDeleteItem"),
        )
        job = Job.objects.create(created_by_id=user.pk, state="running")
        empty = Job.objects.create(created_by_id=user.pk, state="finished")
        for thread, outcome in zip(threads, ["deleted", "failed", "pending"], strict=True):
            Item.objects.create(
                job_id=job.pk,
                tracked_thread_id=thread.pk,
                thread_id=thread.thread_id,
                outcome=outcome,
            )
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate([AFTER])
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    migrated = BulkDeleteJob.objects.get(pk=job.pk)
    assert (migrated.total, migrated.done, migrated.state) == (3, 2, "running")
    assert (migrated.filled, migrated.selection, migrated.kind) == (True, None, "delete")
    assert migrated.audit_details == {"job": job.pk}
    assert (
        BulkDeleteJob.objects.get(pk=empty.pk).total,
        BulkDeleteJob.objects.get(pk=empty.pk).done,
    ) == (0, 0)
