"""The honest outcome of a deletion interrupted by a worker crash (issue 18, item 2): when
the GET that resolves it answers 404, the thread is "gone, confirmed after an interrupted
deletion", neither "deleted" (no answer said so) nor "already gone" (the console's own
DELETE was most likely sent). A real `db_worker` is killed with -9 mid-job; the threads of
the deletions it left in flight are gone upstream (their DELETEs reached it), and a second
worker resolves them. Every place that counts outcomes counts the new one, and the job's
receipt proves it."""

import csv
import io
import time
from collections import Counter
from datetime import UTC
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.models import Sum

from tests.api_helpers import ApiClient, make_token
from tests.threads_helpers import body, url
from tests.worker_fixtures import wait_for
from threads_app import audit
from threads_app.models import (
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    DailyThreadActivity,
    TrackedThread,
)

Item = BulkDeleteItem.Outcome
Outcome = AuditEvent.Outcome
THREADS = 40
committed = pytest.mark.django_db(transaction=True)


@committed
def test_an_interrupted_deletion_found_gone_is_recorded_as_such_everywhere(
    user, user_client, api_key, make_thread, emulator, start_worker, settings, tmp_path
):
    settings.AUDIT_CHECKPOINT_FILE = str(tmp_path / "checkpoints.log")
    threads = [make_thread(api_key, label=f"Interrupted {n}") for n in range(THREADS)]
    emulator.set_latency(0.3)
    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})
    job = BulkDeleteJob.objects.get()

    doomed = start_worker("doomed")
    wait_for(
        lambda: job.items.filter(intent_sequence__isnull=False).count() >= 8,
        timeout=20,
        what="intents committed",
    )
    doomed.kill()
    interrupted = list(
        job.items.filter(outcome=Item.PENDING, intent_sequence__isnull=False).values_list(
            "thread_id", flat=True
        )
    )
    assert interrupted
    time.sleep(0.5)  # the DELETEs in flight reach the upstream after its latency
    for thread_id in interrupted:  # and those claimed but not sent yet: as if they had
        emulator.remove_thread(thread_id)
    emulator.set_latency(0)

    start_worker("survivor")
    wait_for(
        lambda: BulkDeleteJob.objects.get(pk=job.pk).state == BulkDeleteJob.State.FINISHED,
        timeout=30,
        what="the resumed job to finish",
    )
    job.refresh_from_db()

    # The items and their outcome events say it, and the items name those events.
    gone = job.items.filter(outcome=Item.GONE_AFTER_INTERRUPT)
    assert sorted(gone.values_list("thread_id", flat=True)) == sorted(interrupted)
    for item in gone:
        event = AuditEvent.objects.get(sequence=item.outcome_sequence)
        assert (event.action, event.outcome, event.http_status) == (
            AuditEvent.Action.THREAD_DELETED,
            Outcome.GONE_AFTER_INTERRUPT,
            404,
        )
        assert event.details["intent"] == item.intent_sequence
        assert "when checked after the interrupted deletion" in item.message
    outcomes = Counter(job.items.values_list("outcome", flat=True))
    assert outcomes == Counter(
        {Item.GONE_AFTER_INTERRUPT: len(interrupted), Item.DELETED: THREADS - len(interrupted)}
    )
    assert set(TrackedThread.objects.values_list("state", flat=True)) == {"deleted"}
    assert not AuditEvent.objects.filter(outcome=Outcome.ALREADY_GONE).exists()

    # The job's page and the API count it in its own words.
    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    label = "gone, confirmed after an interrupted deletion"
    assert f'<span class="badge gone_interrupted">{label}</span> {len(interrupted)}' in page
    api = ApiClient(make_token(user))
    counts = api.get(f"jobs/{job.pk}").json()["counts"]
    assert counts["gone_interrupted"] == len(interrupted)
    # The overview counts it as a deletion (the thread went), by the audit log's trigger.
    assert DailyThreadActivity.objects.aggregate(n=Sum("deleted"))["n"] == THREADS
    # The audit CSV says it in the page's words, and its machine name.
    export = b"".join(user_client.get(url("audit_export")).streaming_content).decode()
    rows = [row for row in csv.reader(io.StringIO(export)) if row[-1] == "gone_interrupted"]
    assert len(rows) == len(interrupted)
    assert all(row[4] == "Gone, confirmed after an interrupted deletion" for row in rows)
    # A repeated delete through the API answers with the recorded outcome.
    thread = TrackedThread.objects.get(thread_id=interrupted[0])
    repeated = api.delete(f"threads/{thread.pk}").json()
    assert (repeated["outcome"], repeated["repeated"]) == ("gone_interrupted", True)

    # The receipt says it too, and verifies.
    response = user_client.get(url("job_receipt_csv", job.pk))
    path = tmp_path / "receipt.csv"
    path.write_bytes(b"".join(response.streaming_content))
    lines = list(csv.DictReader(path.open(newline="")))[:-2]
    said = {line["thread_id"]: line for line in lines}
    for item in gone:
        event = AuditEvent.objects.get(sequence=item.outcome_sequence)
        line = said[item.thread_id]
        assert (line["outcome"], line["http_status"], line["event_hash"]) == (
            "gone_interrupted",
            "404",
            event.hash,
        )
        assert line["at"] == event.created_at.astimezone(UTC).isoformat()
    out = StringIO()
    call_command("verify_audit", "--receipt", str(path), stdout=out)
    assert f"{THREADS} lines, {THREADS} with their outcome events" in out.getvalue()
    assert audit.verify_chain().ok
