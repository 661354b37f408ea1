"""Migration 0020 (two-person approval) on a database with teams and jobs in it: every team
keeps the rule off, every job keeps its state and needed no approval, and a job from before
it runs on as before. Runs on SQLite and (DATABASE_URL) PostgreSQL."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from threads_app.models import BulkDeleteJob, JobApproval, Team
from threads_app.services import approvals, bulk

BEFORE = ("threads_app", "0019_receipts")
AFTER = ("threads_app", "0020_approvals")


@pytest.mark.django_db(transaction=True)
def test_teams_and_jobs_made_before_the_migration_need_no_approval(
    user, make_key, make_thread, emulator
):
    thread = make_thread(make_key(owner=user), label="before")
    executor = MigrationExecutor(connection)
    executor.migrate([BEFORE])
    try:
        old = executor.loader.project_state([BEFORE]).apps
        OldTeam, Job, Item = (
            old.get_model("threads_app", name)
            for name in ("Team", "BulkDeleteJob", "BulkDeleteItem")
        )
        team = OldTeam.objects.create(name="Before", owners_need_two_factor=True)
        queued = Job.objects.create(created_by_id=user.pk, state="queued", total=1)
        Item.objects.create(
            job_id=queued.pk, tracked_thread_id=thread.pk, thread_id=thread.thread_id
        )
        finished = Job.objects.create(created_by_id=user.pk, state="finished")
    finally:  # through AFTER to the latest schema
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
    assert AFTER in MigrationExecutor(connection).loader.applied_migrations

    migrated = Team.objects.get(pk=team.pk)
    assert (migrated.approval_threshold, migrated.owners_need_two_factor) == (None, True)
    for job, state in ((queued, "queued"), (finished, "finished")):
        row = BulkDeleteJob.objects.get(pk=job.pk)
        assert (row.state, row.approval_expires_at) == (state, None)
    assert not JobApproval.objects.exists()
    assert approvals.expire_approvals() == 0  # nothing from before waits, nothing expires

    # The job queued before the deploy runs on: its thread is deleted.
    bulk.run_bulk_delete(queued.pk)
    ran = BulkDeleteJob.objects.get(pk=queued.pk)
    assert (ran.state, ran.done, ran.items.get().outcome) == ("finished", 1, "deleted")
