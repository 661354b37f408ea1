"""Migration 0018 (receipts) on a database with finished jobs in it: each item that has an
outcome event gets its sequence from the log, so old jobs get receipts that verify; the
overview's trigger counts the new outcome as a deletion from then on."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Sum

from threads_app import audit
from threads_app.models import AuditEvent, BulkDeleteItem, DailyThreadActivity

BEFORE = ("threads_app", "0018_webhooks")
AFTER = ("threads_app", "0019_receipts")
Action = AuditEvent.Action
Outcome = AuditEvent.Outcome


def _migrate(target):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate([target])


@pytest.mark.django_db(transaction=True)
def test_items_finished_before_the_migration_get_their_outcome_events(user, api_key, make_thread):
    threads = [make_thread(api_key, label=f"old {n}") for n in range(4)]
    _migrate(BEFORE)
    try:
        old = MigrationExecutor(connection).loader.project_state([BEFORE]).apps
        Job = old.get_model("threads_app", "BulkDeleteJob")
        Item = old.get_model("threads_app", "BulkDeleteItem")
        job = Job.objects.create(created_by_id=user.pk, state="finished")
        rows = []
        for thread, outcome in zip(
            threads[:3], [Outcome.SUCCESS, Outcome.FAILED, None], strict=True
        ):
            intent = audit.record(
                action=Action.THREAD_DELETE_INTENT,
                outcome=Outcome.PENDING,
                actor=user,
                api_key=api_key,
                thread_id=thread.thread_id,
                details={"job": job.pk},
            )
            event = None
            if outcome is not None:
                event = audit.record(
                    action=Action.THREAD_DELETED,
                    outcome=outcome,
                    actor=user,
                    api_key=api_key,
                    thread_id=thread.thread_id,
                    http_status=200,
                    details={"intent": intent.sequence, "job": job.pk},
                )
            item = Item.objects.create(
                job_id=job.pk,
                tracked_thread_id=thread.pk,
                thread_id=thread.thread_id,
                outcome={Outcome.SUCCESS: "deleted", Outcome.FAILED: "failed"}.get(
                    outcome, "pending"
                ),
                intent_sequence=intent.sequence,
            )
            rows.append((item.pk, event.sequence if event else None))
        never = Item.objects.create(
            job_id=job.pk, tracked_thread_id=threads[3].pk, thread_id=threads[3].thread_id
        )
        rows.append((never.pk, None))
    finally:
        _migrate(AFTER)
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert [(pk, BulkDeleteItem.objects.get(pk=pk).outcome_sequence) for pk, _ in rows] == rows
    # The trigger counts the new outcome as a deletion; 0017's did not know it.
    before = DailyThreadActivity.objects.aggregate(n=Sum("deleted"))["n"] or 0
    audit.record(
        action=Action.THREAD_DELETED,
        outcome=Outcome.GONE_AFTER_INTERRUPT,
        api_key=api_key,
        thread_id=threads[3].thread_id,
        http_status=404,
    )
    assert DailyThreadActivity.objects.aggregate(n=Sum("deleted"))["n"] == before + 1
    assert audit.verify_chain().ok


@pytest.mark.django_db(transaction=True)
def test_going_back_restores_the_trigger_of_0015(api_key):
    _migrate(BEFORE)
    try:
        audit.record(
            action=Action.THREAD_DELETED,
            outcome=Outcome.GONE_AFTER_INTERRUPT,
            api_key=api_key,
            thread_id="thread_back",
        )
        assert (DailyThreadActivity.objects.aggregate(n=Sum("deleted"))["n"] or 0) == 0
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
