"""Bulk deletion: many threads deleted in one job, a few at a time, away from the request.

The job and its items are rows, so the progress page (after a reload, on any app instance)
reads where a job is from the database. Each item goes through the steps of
`services.deletions.delete_thread`, a batch at a time (see `run_bulk_delete`): every thread gets
its own intent/outcome pair of audit events, and one failure never stops the others. Where a
job runs is the setting `BULK_DELETE_RUNNER`, the dotted path of a callable `(job_id, origin)`:
by default a background thread; tests and the benchmark use `run_bulk_delete` itself, which
returns when the job is finished.
"""

import logging
import threading
import time
from collections import Counter
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from threads_app import audit, selectors
from threads_app.models import AuditEvent, BulkDeleteItem, BulkDeleteJob, TrackedThread
from threads_app.services import deletions
from threads_app.services.deletions import Deletion
from threads_app.services.keys import client_for
from threads_app.services.transcripts import SnapshotFailed, deletion_snapshot

logger = logging.getLogger(__name__)

MAX_THREADS = 500  # per job
WORKERS = 8  # deletions in flight at once
BATCH = 25  # intents recorded, and finished deletions saved, this many at a time
SAVE_EVERY = 1.0  # seconds: finished deletions are saved at least this often (progress)
NOT_ALLOWED = "You may no longer delete this thread, so nothing was sent."
DEFAULT_RUNNER = "threads_app.services.bulk.run_in_background"

Item = BulkDeleteItem.Outcome
Outcome = AuditEvent.Outcome
_ITEM_OUTCOME = {
    Outcome.SUCCESS: Item.DELETED,
    Outcome.ALREADY_GONE: Item.ALREADY_GONE,
    Outcome.REFUSED: Item.REFUSED,
    Outcome.FAILED: Item.FAILED,
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


def start_bulk_delete(user, thread_ids, origin=None, snapshot=False):
    """Create a job with one pending item per deletable thread and start it once committed.

    Raises `NothingToDelete`. The threads the user may not delete are left out, as the
    confirmation page said. With `snapshot`, each thread's transcript is saved with its
    deletion's audit event first; a thread whose transcript cannot be fetched is not deleted.
    """
    selection = select_threads(user, thread_ids)
    if selection.too_many or not selection.deletable:
        raise NothingToDelete(selection)
    runner = import_string(getattr(settings, "BULK_DELETE_RUNNER", DEFAULT_RUNNER))
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
    """Delete the job's pending items, WORKERS requests at a time; return when it is finished.

    This thread keeps the database and the audit chain; the workers only talk to the
    upstream. Items go BATCH at a time through the steps of `services.deletions.delete_thread`:
    their intents are appended at once (`audit.record_many`, committed) before any of their
    DELETEs is sent; then the user's permission is checked once for the batch (a thread they
    may no longer delete gets a "not sent" outcome), and the workers send the others. The
    next batch starts while fewer than BATCH requests are left to send, so the workers never
    wait for it. Finished deletions are saved together (outcome events, thread states and
    item rows in one transaction) every BATCH items or SAVE_EVERY seconds: that is the
    progress the job page shows. Only pending items are sent, so running a job again
    finishes what an interrupted run left.
    """
    job = BulkDeleteJob.objects.select_related("created_by").get(pk=job_id)
    items = list(
        job.items.filter(outcome=Item.PENDING).select_related("tracked_thread__api_key__team")
    )
    keys = {}  # one object per key, so its "last used" is written once, not once per item
    for item in items:
        if item.tracked_thread is not None:
            thread = item.tracked_thread
            thread.api_key = keys.setdefault(thread.api_key_id, thread.api_key)
    try:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix=f"bulk-delete-{job_id}") as pool:
            run = _Run(job, origin, pool)
            while items or run.sending:
                if items and len(run.sending) < BATCH:
                    run.start(items[:BATCH])
                    del items[:BATCH]
                if run.sending:
                    run.collect(timeout=SAVE_EVERY)
                if len(run.settled) >= BATCH or not run.sending or run.save_due():
                    run.save()
    finally:
        BulkDeleteJob.objects.filter(pk=job_id).update(
            state=BulkDeleteJob.State.FINISHED, finished_at=timezone.now()
        )


class _Run:
    """The state of one `run_bulk_delete`: requests in flight, and results not yet saved."""

    def __init__(self, job, origin, pool):
        self.job, self.user, self.origin, self.pool = job, job.created_by, origin, pool
        self.clients = {}  # key pk: its client, or what creating it raised
        self.sending = {}  # future of `send_deletion`: (item, its committed intent)
        self.pairs = []  # (intent, Deletion) whose outcome is not recorded yet
        self.settled = []  # items with their outcome set, not saved yet
        self.saved_at = time.monotonic()

    def start(self, batch):
        """Send the batch's DELETEs, each once its intent is committed.

        The user's permission is checked for the whole batch before the intents are recorded
        (a thread out of reach gets neither an intent nor a request, as with
        `delete_thread`), and again once they are committed, right before the DELETEs go to
        the workers: a thread that went out of reach in between gets a "not sent" outcome.
        """
        usable = self._usable_keys(batch)
        candidates = []
        for item in batch:
            thread = item.tracked_thread
            if thread is None:
                self._settle(item, Item.FAILED, "No longer tracked here, so nothing was sent.")
            elif thread.api_key_id not in usable:
                self._settle(item, Item.FAILED, NOT_ALLOWED)
            elif isinstance(client := self._client(thread.api_key), Exception):
                self._settle(item, Item.FAILED, _unexpected(item, client))
            else:
                candidates.append(item)
        ready = []  # (item, its transcript or "")
        for item, snapshot in zip(candidates, self._snapshots(candidates), strict=True):
            if isinstance(snapshot, SnapshotFailed):
                self._settle(item, Item.FAILED, str(snapshot))
            elif isinstance(snapshot, Exception):
                self._settle(item, Item.FAILED, _unexpected(item, snapshot))
            else:
                ready.append((item, snapshot))
        intents = audit.record_many(
            [
                deletions.deletion_intent(
                    item.tracked_thread, actor=self.user, origin=self.origin, snapshot=text
                )
                for item, text in ready
            ],
            durable=True,
        )
        usable = self._usable_keys([item for item, _ in ready])
        for (item, _), intent in zip(ready, intents, strict=True):
            thread = item.tracked_thread
            if thread.api_key_id in usable:
                client = self._client(thread.api_key)
                future = self.pool.submit(deletions.send_deletion, thread, client=client)
                self.sending[future] = (item, intent)
            else:
                self._finish(item, intent, Deletion.not_sent(thread, NOT_ALLOWED))

    def collect(self, timeout):
        """Take the DELETEs that finished (waiting up to `timeout` for a first one)."""
        done, _ = wait(self.sending, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            item, intent = self.sending.pop(future)
            try:
                deletion = future.result()
            except Exception as exc:
                message, error = _unexpected(item, exc), type(exc).__name__
                deletion = Deletion(
                    item.tracked_thread, Outcome.FAILED, message, details={"error": error}
                )
            self._finish(item, intent, deletion)

    def save_due(self):
        return self.settled and time.monotonic() - self.saved_at >= SAVE_EVERY

    def save(self):
        """Record the finished deletions' outcomes and save the settled items, together."""
        with transaction.atomic():
            deletions.record_deletions(self.pairs, actor=self.user, origin=self.origin)
            for item in self.settled:  # an UPDATE each: far cheaper than bulk_update's CASEs
                item.save(update_fields=["outcome", "message", "request_id", "finished_at"])
        self.pairs, self.settled, self.saved_at = [], [], time.monotonic()

    def _usable_keys(self, items):
        """The pks of the items' keys that the user may use now: one query."""
        key_ids = {item.tracked_thread.api_key_id for item in items if item.tracked_thread}
        if not key_ids:
            return set()
        usable = selectors.usable_keys(self.user).filter(pk__in=key_ids)
        return set(usable.values_list("pk", flat=True))

    def _snapshots(self, items):
        """Each item's transcript, or what fetching it raised (fetched by the workers); or ""."""
        if not self.job.snapshot_before_delete:
            return [""] * len(items)
        return list(self.pool.map(_snapshot, [item.tracked_thread for item in items]))

    def _client(self, api_key):
        """The key's client (one per key per run), or what creating it raised."""
        if api_key.pk not in self.clients:
            try:
                self.clients[api_key.pk] = client_for(api_key)
            except Exception as exc:
                self.clients[api_key.pk] = exc
        return self.clients[api_key.pk]

    def _finish(self, item, intent, deletion):
        self.pairs.append((intent, deletion))
        self._settle(item, _ITEM_OUTCOME[deletion.outcome], deletion.message, deletion.request_id)

    def _settle(self, item, outcome, message, request_id=""):
        item.outcome, item.message = outcome, message[:500]
        item.request_id, item.finished_at = request_id[:100], timezone.now()
        self.settled.append(item)


def _unexpected(item, exc):
    """Log what a bug raised while deleting the item's thread; the message for the item."""
    logger.error(
        "Bulk delete job %s: deleting %s failed", item.job_id, item.thread_id, exc_info=exc
    )
    error = type(exc).__name__
    return f"An unexpected error ({error}) stopped this deletion; see the server log."


def _snapshot(thread):
    """A worker's task: the thread's transcript, or what fetching it raised."""
    try:
        return deletion_snapshot(thread)
    except Exception as exc:  # reported for this item alone by `_Run.start`
        return exc
    finally:
        connection.close()  # noting the key's result may have opened this worker's connection
