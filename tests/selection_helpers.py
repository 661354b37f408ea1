"""What the crash tests of selection jobs share: many threads at once, a selection job of
them, and the checks that every thread was deleted once and every intent has one outcome."""

from collections import Counter
from datetime import UTC, datetime

from tests.conftest import TEST_KEY
from tests.worker_fixtures import wait_for
from threads_app import audit
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob, TrackedThread
from threads_app.selectors import ThreadFilters
from threads_app.services import jobs

Item = BulkDeleteItem.Outcome
Action = AuditEvent.Action


def many_threads(emulator, api_key, count, *, label):
    """`count` threads in the emulator, tracked under the key (one INSERT)."""
    rows = []
    for n in range(count):
        upstream = emulator.seed_thread(TEST_KEY)
        thread = TrackedThread(
            thread_id=upstream["id"],
            api_key=api_key,
            label=f"{label} {n}",
            tracked_by=api_key.owner,
            upstream_created_at=datetime.fromtimestamp(upstream["created_at"], tz=UTC),
        )
        thread.search_text = thread.build_search_text()  # as save() would
        rows.append(thread)
    return TrackedThread.objects.bulk_create(rows, batch_size=500)


def selection_job(user, *, q, count):
    """Select every thread whose label has `q` and start deleting them (queued)."""
    selection = jobs.create_selection(user=user, filters=ThreadFilters(q=q))
    assert selection.count == count
    return jobs.start_selection_job(user=user, selection=selection, typed_count=count)


def wait_until_done_at_least(job, done, *, timeout=60):
    wait_for(
        lambda: BulkDeleteJob.objects.get(pk=job.pk).done >= done,
        timeout=timeout,
        what=f"{done} items done",
    )


def assert_deleted_once_each(job, threads, emulator):
    """The job finished with one outcome per item; each thread got exactly one successful
    DELETE upstream; every intent has exactly one outcome; the audit chain verifies."""
    job.refresh_from_db()
    assert job.state == BulkDeleteJob.State.FINISHED
    assert job.total == job.done == len(threads)
    outcomes = Counter(job.items.values_list("outcome", flat=True))
    assert set(outcomes) <= {Item.DELETED, Item.ALREADY_GONE, Item.GONE_AFTER_INTERRUPT}, outcomes
    assert sum(outcomes.values()) == len(threads)
    assert set(
        TrackedThread.objects.filter(pk__in=[t.pk for t in threads]).values_list("state", flat=True)
    ) == {"deleted"}
    ids = {t.thread_id for t in threads}
    deleted = Counter(
        path.rsplit("/", 1)[1]
        for method, path, status in emulator.answer_log
        if method == "DELETE" and status == 200 and path.rsplit("/", 1)[1] in ids
    )
    assert deleted == Counter(dict.fromkeys(ids, 1))
    events = AuditEvent.objects.filter(details__job=job.pk)
    intents = dict.fromkeys(
        events.filter(action=Action.THREAD_DELETE_INTENT).values_list("sequence", flat=True), 0
    )
    for intent in events.filter(action=Action.THREAD_DELETED).values_list(
        "details__intent", flat=True
    ):
        intents[intent] += 1
    assert len(intents) == len(threads)
    assert set(intents.values()) == {1}
    assert audit.verify_chain().ok
