"""Crash safety: a bulk delete whose worker is killed with -9 mid-job finishes on another.

The job runs in a real `db_worker` subprocess against the test database (SQLite or
PostgreSQL) and the in-process emulator, with latency and a rate limit so that it takes a few
seconds. The worker is killed once some items are done but not all; a second worker sweeps
the first one's task after the lease (WORKER_LEASE_SECONDS, 2 s in tests), resumes the job,
resolves the deletions the first left between intent and outcome by asking the upstream
first, and sends the rest.
"""

import time
from collections import Counter
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from tests.threads_helpers import body, url
from tests.worker_fixtures import wait_for
from threads_app import audit, tasks
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob, TrackedThread
from threads_app.services import bulk

Action = AuditEvent.Action
Item = BulkDeleteItem.Outcome
THREADS = 120
committed = pytest.mark.django_db(transaction=True)


def done(job):
    return job.items.exclude(outcome=Item.PENDING).count()


def one_outcome_per_intent():
    """{intent sequence: its outcome events}; every intent must have exactly one."""
    events = AuditEvent.objects.order_by("sequence")
    intents = {e.sequence: [] for e in events if e.action == Action.THREAD_DELETE_INTENT}
    for event in events.filter(action=Action.THREAD_DELETED):
        intents[event.details["intent"]].append(event)
    return intents


@committed
def test_a_bulk_delete_whose_worker_is_killed_finishes_on_another(
    user_client, api_key, make_thread, emulator, start_worker
):
    threads = [make_thread(api_key, label=f"Crash {n}") for n in range(THREADS)]
    emulator.set_latency(0.08)
    emulator.set_rate_limit(rate=50)  # and some 429s on the way: sent again, not failed
    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})
    job = BulkDeleteJob.objects.get()
    first_task = job.task_id

    doomed = start_worker("doomed")
    deadline = time.monotonic() + 20
    while done(job) < 10:
        assert time.monotonic() < deadline, "the job did not get going"
        time.sleep(0.02)
    doomed.kill()  # kill -9, mid-job
    done_at_kill = done(job)
    interrupted = job.items.filter(outcome=Item.PENDING, intent_sequence__isnull=False).count()
    assert 10 <= done_at_kill < THREADS
    assert interrupted > 0  # intents committed, outcomes unknown

    survivor = start_worker("survivor")
    wait_for(
        lambda: BulkDeleteJob.objects.get(pk=job.pk).state == BulkDeleteJob.State.FINISHED,
        timeout=25,
        what="the resumed job to finish",
    )
    job.refresh_from_db()

    # Every item has exactly one outcome, and every thread is gone.
    assert (
        Counter(job.items.values_list("outcome", flat=True))
        - Counter({Item.DELETED: THREADS, Item.GONE_AFTER_INTERRUPT: THREADS})
        == Counter()
    )
    assert not job.items.filter(outcome=Item.PENDING).exists()
    assert set(TrackedThread.objects.values_list("state", flat=True)) == {"deleted"}
    # Upstream, each thread got exactly one successful DELETE (429s and 404s aside).
    deleted = Counter(
        path.rsplit("/", 1)[1]
        for method, path, status in emulator.answer_log
        if method == "DELETE" and status == 200
    )
    assert deleted == Counter({t.thread_id: 1 for t in threads})
    # Every intent has exactly one outcome; the interrupted ones were resolved (GET first).
    pairs = one_outcome_per_intent()
    assert len(pairs) == THREADS
    assert all(len(outcomes) == 1 for outcomes in pairs.values())
    resolved = [o for [o] in pairs.values() if "resolved" in o.details]
    assert len(resolved) == interrupted
    assert {o.details["resolved"] for o in resolved} <= {"checked", "sent again"}
    # A check that found the thread gone says so: not "already gone" (its DELETE was sent).
    assert {o.outcome for o in resolved if o.details["resolved"] == "checked"} <= {
        AuditEvent.Outcome.GONE_AFTER_INTERRUPT
    }
    assert audit.verify_chain().ok

    # The first task was swept as lost; the second, queued by the sweep, finished the job.
    lost = DBTaskResult.objects.get(pk=first_task)
    assert lost.status == TaskResultStatus.FAILED
    assert lost.exception_class_path == "threads_app.tasks.WorkerLost"

    # Its result is saved just after the job is: wait for it.
    def resumed_result():
        result = DBTaskResult.objects.get(pk=job.task_id)
        return result if result.status != TaskResultStatus.RUNNING else None

    resumed = wait_for(resumed_result, what="the resumed task's result")
    assert resumed.status == TaskResultStatus.SUCCESSFUL
    assert (job.worker_id, job.resume_count) == ("survivor", 1)
    assert job.resume_note == tasks.RESUMED_AFTER_WORKER_STOPPED
    assert "Abandoned: worker doomed" in survivor.output

    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert "Resumed after the worker stopped, at <time" in page
    assert f"{THREADS} of {THREADS} threads done" in page and "Finished" in page


def _raise_at_once(monkeypatch):
    def send(self, items):
        raise RuntimeError("the upstream caught fire")

    monkeypatch.setattr(bulk._Run, "send", send)


@committed
def test_a_bulk_task_that_raises_fails_the_job_and_its_page_shows_the_error(
    user_client, api_key, make_thread, emulator, immediate_tasks, monkeypatch
):
    threads = [make_thread(api_key, label=f"Doomed {n}") for n in range(3)]
    _raise_at_once(monkeypatch)

    user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})

    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.FAILED
    assert job.error == "RuntimeError: the upstream caught fire"
    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert "Stopped by an error" in page and 'role="alert"' in page
    assert "<code>RuntimeError: the upstream caught fire</code>" in page
    assert "hx-trigger" not in page and 'http-equiv="refresh"' not in page
    assert emulator.request_log == []


@committed
def test_a_job_whose_task_failed_unrecorded_shows_the_task_s_error(
    user_client, api_key, make_thread, emulator
):
    thread = make_thread(api_key, label="Queued")
    user_client.post(url("thread_bulk_delete"), {"thread": [thread.pk]})
    job = BulkDeleteJob.objects.get()
    # The task failed without a word on the job (say, the database went away as it raised).
    DBTaskResult.objects.filter(pk=job.task_id).update(
        status=TaskResultStatus.FAILED,
        exception_class_path="builtins.MemoryError",
        traceback="Traceback (most recent call last):\n  ...\nMemoryError: out of memory\n",
    )

    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert "Stopped by an error" in page
    assert "<code>MemoryError: out of memory</code>" in page


@committed
def test_a_running_job_page_reloads_itself_without_javascript(user_client, api_key, make_thread):
    thread = make_thread(api_key, label="Queued")
    user_client.post(url("thread_bulk_delete"), {"thread": [thread.pk]})
    page = body(user_client.get(url("bulk_delete_job", BulkDeleteJob.objects.get().pk)))
    assert '<noscript><meta http-equiv="refresh" content="5"></noscript>' in page
    assert 'hx-trigger="every 1s"' in page


@committed
def test_resume_jobs_lists_stuck_jobs_and_resumes_them(
    user_client, api_key, make_thread, emulator, settings, monkeypatch
):
    threads = [make_thread(api_key, label=f"Stuck {n}") for n in range(4)]
    queued_tasks = settings.TASKS
    settings.TASKS = {"default": {"BACKEND": "django_tasks.backends.immediate.ImmediateBackend"}}
    with monkeypatch.context() as patch:
        _raise_at_once(patch)
        user_client.post(url("thread_bulk_delete"), {"thread": [t.pk for t in threads]})
    job = BulkDeleteJob.objects.get()
    assert job.state == BulkDeleteJob.State.FAILED
    settings.TASKS = queued_tasks  # resumed jobs go to the queue

    out = StringIO()
    with pytest.raises(CommandError, match="1 stuck job"):
        call_command("resume_jobs", stdout=out)
    assert (
        f"Job #{job.pk} (failed, 4 pending): its task failed "
        "(RuntimeError: the upstream caught fire)"
    ) in out.getvalue()

    [listed] = tasks.stuck_jobs(lease_seconds=settings.WORKER_LEASE_SECONDS)
    out = StringIO()
    call_command("resume_jobs", "--resume", stdout=out)
    job.refresh_from_db()
    assert f"resumed: task {job.task_id}" in out.getvalue()
    assert (job.state, job.resume_note, job.resume_count) == (
        BulkDeleteJob.State.QUEUED,
        tasks.RESUMED_BY_COMMAND,
        1,
    )
    queued = DBTaskResult.objects.get(pk=job.task_id)
    assert queued.status == TaskResultStatus.READY
    # The origin comes from the last database task's arguments: the first ran inline here.
    assert queued.args_kwargs["kwargs"] == {"job_id": job.pk, "origin": None}
    call_command("resume_jobs", stdout=(out := StringIO()))  # queued: not stuck
    assert "No stuck bulk-delete jobs." in out.getvalue()
    assert not tasks.resume_stuck_job(listed)  # resumed meanwhile: not again

    bulk.run_bulk_delete(job.pk, task_id=job.task_id, worker_id="inline")  # as the worker would
    job.refresh_from_db()
    assert job.state == BulkDeleteJob.State.FINISHED
    assert set(job.items.values_list("outcome", flat=True)) == {Item.DELETED}
    page = body(user_client.get(url("bulk_delete_job", job.pk)))
    assert "Resumed by an operator (manage.py resume_jobs), at <time" in page


@pytest.mark.django_db
def test_the_sweep_resumes_an_abandoned_bulk_job_once(user, api_key, make_thread, settings):
    settings.WORKER_LEASE_SECONDS = 30
    job = BulkDeleteJob.objects.create(created_by=user)
    origin = {"ip": "198.51.100.7", "user_agent": "curl"}
    task = tasks.bulk_delete_task.enqueue(job_id=job.pk, origin=origin)
    BulkDeleteJob.objects.filter(pk=job.pk).update(task_id=task.id)
    DBTaskResult.objects.filter(pk=task.id).update(  # its worker died two minutes ago
        status=TaskResultStatus.RUNNING,
        started_at=timezone.now() - timedelta(seconds=120),
        worker_ids=["dead"],
    )

    [swept] = tasks.sweep()

    assert str(swept.pk) == task.id and swept.status == TaskResultStatus.FAILED
    job.refresh_from_db()
    assert (job.resume_count, job.resume_note) == (1, tasks.RESUMED_AFTER_WORKER_STOPPED)
    assert job.resumed_at is not None and job.state == BulkDeleteJob.State.QUEUED
    resumed = DBTaskResult.objects.get(pk=job.task_id)
    assert resumed.status == TaskResultStatus.READY
    assert resumed.args_kwargs["kwargs"] == {"job_id": job.pk, "origin": origin}
    assert tasks.sweep() == []  # once only
    assert DBTaskResult.objects.filter(task_path=tasks.BULK_DELETE_TASK).count() == 2
    assert tasks.stuck_jobs(lease_seconds=30) == []  # queued: not stuck
