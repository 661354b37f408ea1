"""Migration 0021 (exports) on a database with jobs and audit events in it: the jobs keep
what they were (deletions, with no export file), the audit chain still verifies, and an
export can be started and run on the migrated schema."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from threads_app import audit
from threads_app.models import AuditEvent, BulkDeleteJob
from threads_app.selectors import ThreadFilters
from threads_app.services import bulk, jobs

BEFORE = ("threads_app", "0020_approvals")
AFTER = ("threads_app", "0021_exports")


def migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)


@pytest.mark.django_db(transaction=True)
def test_jobs_made_before_the_migration_stay_deletions_and_exports_run_after_it(
    user, api_key, make_thread, settings, tmp_path
):
    settings.STORAGES = {
        **settings.STORAGES,
        "exports": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        },
    }
    threads = [make_thread(api_key, label=f"old {n}") for n in range(2)]
    audit.record(action=AuditEvent.Action.KEY_ADDED, outcome="success", actor=user)
    migrate([BEFORE])
    try:
        old = MigrationExecutor(connection).loader.project_state([BEFORE]).apps
        Job, Item = (
            old.get_model("threads_app", "BulkDeleteJob"),
            old.get_model("threads_app", "BulkDeleteItem"),
        )
        job = Job.objects.create(created_by_id=user.pk, state="finished", total=2, done=2)
        for thread in threads:
            Item.objects.create(
                job_id=job.pk,
                tracked_thread_id=thread.pk,
                thread_id=thread.thread_id,
                outcome="deleted",
            )
    finally:
        migrate([AFTER])
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    migrated = BulkDeleteJob.objects.get(pk=job.pk)
    assert (migrated.kind, migrated.state, migrated.total, migrated.done) == (
        "delete",
        "finished",
        2,
        2,
    )
    assert (migrated.export_file, migrated.export_size, migrated.export_removed_at) == (
        "",
        None,
        None,
    )
    assert set(migrated.items.values_list("outcome", flat=True)) == {"deleted"}
    assert audit.verify_chain().ok

    selection = jobs.create_selection(user=user, filters=ThreadFilters(q="old"))
    export = jobs.start_selection_job(
        user=user, selection=selection, action="export", typed_count=2
    )
    bulk.run_bulk_delete(export.pk)
    export.refresh_from_db()
    assert export.state == "finished" and export.export_size
    assert set(export.items.values_list("outcome", flat=True)) == {"exported"}
    assert audit.verify_chain().ok
