"""Bulk deletion: many threads deleted in one job, a few at a time, away from the request.

The job and its items are rows, so the progress page (after a reload, on any app instance)
reads where a job is from the database. Each item goes through `services.threads.delete_thread`:
every thread gets its own intent/outcome pair of audit events, and one failure never stops the
others. Where a job runs is the setting `BULK_DELETE_RUNNER`, the dotted path of a callable
`(job_id, origin)`: by default a background thread; tests and the benchmark use
`run_bulk_delete` itself, which returns when the job is finished.
"""

import logging
import queue
import threading
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from threads_app import selectors
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob, TrackedThread
from threads_app.services import threads as thread_services
from threads_app.services.transcripts import SnapshotFailed

logger = logging.getLogger(__name__)

MAX_THREADS = 500  # per job
WORKERS = 8  # deletions in flight at once
DEFAULT_RUNNER = "threads_app.services.bulk.run_in_background"

Item = BulkDeleteItem.Outcome
_ITEM_OUTCOME = {
    AuditEvent.Outcome.SUCCESS: Item.DELETED,
    AuditEvent.Outcome.ALREADY_GONE: Item.ALREADY_GONE,
    AuditEvent.Outcome.REFUSED: Item.REFUSED,
    AuditEvent.Outcome.FAILED: Item.FAILED,
}


@dataclass(frozen=True)
class Selection:
    """The threads a user asked to delete, sorted by what will happen to them."""

    requested: int  # distinct ids asked for
    deletable: list = field(default_factory=list)
    read_only: list = field(default_factory=list)  # visible, but the user may not delete them
    deleted: list = field(default_factory=list)  # already deleted: nothing left to do
    unknown: int = 0  # ids the user cannot see (or that do not exist): counted, never named

    @property
    def too_many(self):
        return self.requested > MAX_THREADS

    def by_key(self):
        """(key, number of deletable threads under it), by key label."""
        counts = Counter(thread.api_key for thread in self.deletable)
        return sorted(counts.items(), key=lambda pair: (pair[0].label, pair[0].pk))


def _parse_ids(values):
    """Distinct ids in the order given, and how many values were not ids."""
    ids, invalid = {}, 0
    for value in values:
        try:
            number = int(value)
        except (TypeError, ValueError):
            number = 0
        if 0 < number < 2**63:  # what a primary key column can hold
            ids[number] = None
        else:
            invalid += 1
    return list(ids), invalid


def select_threads(user, thread_ids):
    """What deleting `thread_ids` (strings from a form) would do for this user."""
    ids, invalid = _parse_ids(thread_ids)
    requested = len(ids) + invalid
    if requested > MAX_THREADS:
        return Selection(requested)
    visible = list(selectors.visible_threads(user).filter(pk__in=ids).order_by("-pk"))
    writable = set(selectors.writable_threads(user).filter(pk__in=ids).values_list("pk", flat=True))
    deletable, read_only, deleted = [], [], []
    for thread in visible:
        if thread.pk not in writable:
            read_only.append(thread)
        elif thread.state == TrackedThread.State.DELETED:
            deleted.append(thread)
        else:
            deletable.append(thread)
    return Selection(requested, deletable, read_only, deleted, unknown=requested - len(visible))


class NothingToDelete(Exception):
    """No job was started: none of the selected threads may be deleted. `.selection` says why."""

    def __init__(self, selection):
        super().__init__("None of the selected threads can be deleted.")
        self.selection = selection


@dataclass(frozen=True)
class Origin:
    """Where a job was started from, for its audit events: shaped like a request for
    `audit.record`, which reads only `META` (the client IP and user agent)."""

    META: dict

    @classmethod
    def of(cls, request):
        if request is None:
            return None
        names = ("REMOTE_ADDR", "HTTP_USER_AGENT")
        return cls({name: request.META[name] for name in names if name in request.META})


def start_bulk_delete(user, thread_ids, request=None, snapshot=False):
    """Create a job with one pending item per deletable thread and start it once committed.

    Raises `NothingToDelete`. The threads the user may not delete are left out, as the
    confirmation page said. With `snapshot`, each thread's transcript is saved with its
    deletion's audit event first; a thread whose transcript cannot be fetched is not deleted.
    """
    selection = select_threads(user, thread_ids)
    if selection.too_many or not selection.deletable:
        raise NothingToDelete(selection)
    runner = import_string(getattr(settings, "BULK_DELETE_RUNNER", DEFAULT_RUNNER))
    origin = Origin.of(request)
    with transaction.atomic():
        job = BulkDeleteJob.objects.create(created_by=user, snapshot_before_delete=snapshot)
        BulkDeleteItem.objects.bulk_create(
            BulkDeleteItem(job=job, tracked_thread=thread, thread_id=thread.thread_id)
            for thread in selection.deletable
        )
        transaction.on_commit(lambda: runner(job.pk, origin))
    return job


def run_in_background(job_id, origin=None):
    """The default runner: the job in a daemon thread of this process."""

    def run():
        try:
            run_bulk_delete(job_id, origin)
        finally:
            connection.close()

    threading.Thread(target=run, name=f"bulk-delete-{job_id}", daemon=True).start()


def run_bulk_delete(job_id, origin=None):
    """Delete the job's pending items, WORKERS at a time; return when the job is finished.

    Only pending items are sent, so running a job again finishes what an interrupted run left.
    """
    job = BulkDeleteJob.objects.select_related("created_by").get(pk=job_id)
    pending = queue.SimpleQueue()
    items = job.items.filter(outcome=Item.PENDING).select_related("tracked_thread__api_key__team")
    keys = {}  # one object per key, so its "last used" is written once, not once per item
    for item in items:
        if item.tracked_thread is not None:
            thread = item.tracked_thread
            thread.api_key = keys.setdefault(thread.api_key_id, thread.api_key)
        pending.put(item)

    def work():
        try:
            while True:
                try:
                    item = pending.get_nowait()
                except queue.Empty:
                    return
                _run_item(job, item, origin)
        finally:
            connection.close()  # this worker thread's own connection

    try:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix=f"bulk-delete-{job_id}") as pool:
            workers = [pool.submit(work) for _ in range(WORKERS)]
        for worker in workers:
            worker.result()  # re-raises what escaped a worker (only a failed save can)
    finally:
        BulkDeleteJob.objects.filter(pk=job_id).update(
            state=BulkDeleteJob.State.FINISHED, finished_at=timezone.now()
        )


def _run_item(job, item, origin):
    """Delete one item's thread and save its outcome; the other items go on whatever happens."""
    thread = item.tracked_thread
    request_id = ""
    if thread is None:
        outcome, message = Item.FAILED, "No longer tracked here, so nothing was sent."
    else:
        try:
            deletion = thread_services.delete_thread(
                job.created_by, thread, request=origin, snapshot=job.snapshot_before_delete
            )
        except SnapshotFailed as exc:
            outcome, message = Item.FAILED, str(exc)
        except PermissionDenied:
            outcome = Item.FAILED
            message = "You may no longer delete this thread, so nothing was sent."
        except Exception as exc:
            logger.exception("Bulk delete job %s: deleting %s failed", item.job_id, item.thread_id)
            outcome, error = Item.FAILED, type(exc).__name__
            message = f"An unexpected error ({error}) stopped this deletion; see the server log."
        else:
            outcome, message = _ITEM_OUTCOME[deletion.outcome], deletion.message
            request_id = deletion.request_id
    BulkDeleteItem.objects.filter(pk=item.pk).update(
        outcome=outcome,
        message=message[:500],
        request_id=request_id[:100],
        finished_at=timezone.now(),
    )
