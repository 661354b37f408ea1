"""Bulk deletion: many threads deleted in one job, a few at a time, away from the request.

The job and its items are rows, so the progress page (after a reload, on any app instance)
reads where a job is from the database. Each item goes through the steps of
`services.deletions.delete_thread`, a batch at a time (see `run_bulk_delete`): every thread gets
its own intent/outcome pair of audit events, and one failure never stops the others. Where a
job runs is the setting `BULK_DELETE_RUNNER`, the dotted path of a `Runner` `(job_id, *,
origin)`: by default a background thread; tests and the benchmark use `run_bulk_delete`
itself, which returns when the job is finished.
"""

import logging
import threading
import time
from collections.abc import Iterable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from typing import Protocol

from django.conf import settings
from django.contrib.auth.models import User
from django.db import connection, transaction
from django.utils import timezone
from django.utils.module_loading import import_string

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    RetentionPolicy,
    TrackedThread,
)
from threads_app.selectors import MAX_BULK_DELETE, BulkDeleteSelection
from threads_app.services import deletions
from threads_app.services.deletions import Deletion
from threads_app.services.keys import client_for
from threads_app.services.refusals import Refused
from threads_app.services.transcripts import SnapshotFailed, deletion_snapshot
from threads_app.upstream import ThreadsClient

logger = logging.getLogger(__name__)

WORKERS = 8  # deletions in flight at once
BATCH = 25  # intents recorded, and finished deletions saved, this many at a time
SAVE_EVERY = 1.0  # seconds: finished deletions are saved at least this often (progress)
NOT_ALLOWED = "You may no longer delete this thread, so nothing was sent."
DEFAULT_RUNNER = "threads_app.services.bulk.run_in_background"

ItemOutcome = BulkDeleteItem.Outcome  # what became of one thread of a job (its page shows it)
AuditOutcome = AuditEvent.Outcome  # what a deletion's audit event records
_ITEM_OUTCOME: dict[str, str] = {
    AuditOutcome.SUCCESS: ItemOutcome.DELETED,
    AuditOutcome.ALREADY_GONE: ItemOutcome.ALREADY_GONE,
    AuditOutcome.REFUSED: ItemOutcome.REFUSED,
    AuditOutcome.FAILED: ItemOutcome.FAILED,
}


class Runner(Protocol):
    """Where a job runs (the setting `BULK_DELETE_RUNNER` names one): returns at once, or when
    the job is finished."""

    def __call__(self, job_id: int, *, origin: Origin | None = None) -> None: ...


class NothingToDelete(Refused):
    """No job was started: none of the selected threads may be deleted. `.selection` says why."""

    def __init__(self, selection: BulkDeleteSelection) -> None:
        if selection.too_many:
            message = f"At most {MAX_BULK_DELETE} threads can be deleted in one go."
        else:
            message = "None of the selected threads can be deleted."
        super().__init__(message)
        self.selection = selection


def start_bulk_delete(
    *,
    actor: User,
    thread_ids: Iterable[str | int],
    origin: Origin | None = None,
    snapshot: bool = False,
    policy: RetentionPolicy | None = None,
) -> BulkDeleteJob:
    """Create a job with one pending item per deletable thread and start it once committed.

    Raises `NothingToDelete`. The threads the actor may not delete are left out, as the
    confirmation page said. With `snapshot`, each thread's transcript is saved with its
    deletion's audit event first; a thread whose transcript cannot be fetched is not deleted.
    A retention `policy` starting the job (with its setter as the actor) is kept on the job
    and named in each deletion's audit events (`BulkDeleteJob.audit_details`).
    """
    selection = selectors.bulk_delete_selection(actor, thread_ids)
    if selection.too_many or not selection.deletable:
        raise NothingToDelete(selection)
    runner: Runner = import_string(getattr(settings, "BULK_DELETE_RUNNER", DEFAULT_RUNNER))
    with transaction.atomic():
        job = BulkDeleteJob.objects.create(
            created_by=actor, snapshot_before_delete=snapshot, policy=policy
        )
        BulkDeleteItem.objects.bulk_create(
            BulkDeleteItem(job=job, tracked_thread=thread, thread_id=thread.thread_id)
            for thread in selection.deletable
        )
        transaction.on_commit(lambda: runner(job.pk, origin=origin))
    return job


def run_in_background(job_id: int, *, origin: Origin | None = None) -> None:
    """The default runner: the job in a daemon thread of this process."""

    def run() -> None:
        try:
            run_bulk_delete(job_id, origin=origin)
        finally:
            connection.close()

    threading.Thread(target=run, name=f"bulk-delete-{job_id}", daemon=True).start()


def run_bulk_delete(job_id: int, *, origin: Origin | None = None) -> None:
    """Delete the job's pending items, WORKERS requests at a time; return when it is finished.

    This thread keeps the database and the audit chain; the workers only talk to the
    upstream. Items go BATCH at a time through the steps of `services.deletions.delete_thread`:
    their threads are claimed and their intents appended at once (`deletions.begin_deletions`,
    committed) before any of their DELETEs is sent; then the actor's permission is checked
    once for the batch (a thread they may no longer delete gets a "not sent" outcome), and the
    workers send the others. The
    next batch starts while fewer than BATCH requests are left to send, so the workers never
    wait for it. Finished deletions are saved together (outcome events, thread states and
    item rows in one transaction) every BATCH items or SAVE_EVERY seconds: that is the
    progress the job page shows. Only pending items are sent, so running a job again
    finishes what an interrupted run left.
    """
    job = BulkDeleteJob.objects.select_related("created_by").get(pk=job_id)
    items = list(
        job.items.filter(outcome=ItemOutcome.PENDING).select_related(
            "tracked_thread__api_key__team"
        )
    )
    keys: dict[int, ApiKey] = {}  # one object per key: its "last used" is written once
    for item in items:
        if item.tracked_thread is not None:
            thread = item.tracked_thread
            thread.api_key = keys.setdefault(thread.api_key_id, thread.api_key)
    try:
        with ThreadPoolExecutor(WORKERS, thread_name_prefix=f"bulk-delete-{job_id}") as pool:
            run = _Run(job, origin=origin, pool=pool)
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

    def __init__(
        self, job: BulkDeleteJob, *, origin: Origin | None, pool: ThreadPoolExecutor
    ) -> None:
        self.job, self.actor, self.origin, self.pool = job, job.created_by, origin, pool
        self.clients: dict[int, ThreadsClient | Exception] = {}  # key pk: client, or its error
        # A future of `send_deletion`: its item, the item's thread and committed intent.
        self.sending: dict[Future[Deletion], tuple[BulkDeleteItem, TrackedThread, AuditEvent]]
        self.sending = {}
        self.pairs: list[tuple[AuditEvent, Deletion]] = []  # outcomes not recorded yet
        self.settled: list[BulkDeleteItem] = []  # items with their outcome set, not saved yet
        self.saved_at = time.monotonic()

    def start(self, batch: list[BulkDeleteItem]) -> None:
        """Send the batch's DELETEs, each once its intent is committed.

        The actor's permission is checked for the whole batch before the intents are recorded
        (a thread out of reach gets neither an intent nor a request, as with
        `delete_thread`), and again once they are committed, right before the DELETEs go to
        the workers: a thread that went out of reach in between gets a "not sent" outcome.
        """
        usable = self._usable_keys([item.tracked_thread for item in batch])
        candidates: list[tuple[BulkDeleteItem, TrackedThread, ThreadsClient]] = []
        for item in batch:
            thread = item.tracked_thread
            if thread is None:
                self._settle(
                    item, ItemOutcome.FAILED, "No longer tracked here, so nothing was sent."
                )
            elif thread.api_key_id not in usable:
                self._settle(item, ItemOutcome.FAILED, NOT_ALLOWED)
            elif isinstance(client := self._client(thread.api_key), Exception):
                self._settle(item, ItemOutcome.FAILED, _unexpected(item, client))
            else:
                candidates.append((item, thread, client))
        ready = []  # (item, thread, client, the transcript or "")
        threads = [thread for _, thread, _ in candidates]
        for (item, thread, client), snapshot in zip(
            candidates, self._snapshots(threads), strict=True
        ):
            if isinstance(snapshot, SnapshotFailed):
                self._settle(item, ItemOutcome.FAILED, str(snapshot))
            elif isinstance(snapshot, Exception):
                self._settle(item, ItemOutcome.FAILED, _unexpected(item, snapshot))
            else:
                ready.append((item, thread, client, snapshot))
        claims = deletions.begin_deletions(
            [(thread, text) for _, thread, _, text in ready],
            actor=self.actor,
            origin=self.origin,
            details=self.job.audit_details,
        )
        usable = self._usable_keys([thread for _, thread, _, _ in ready])
        for (item, thread, client, _), intent in zip(ready, claims, strict=True):
            if isinstance(intent, Refused):  # deleted, or being deleted, meanwhile: not sent
                already = isinstance(intent, deletions.AlreadyDeleted)
                outcome = ItemOutcome.ALREADY_GONE if already else ItemOutcome.FAILED
                self._settle(item, outcome, str(intent))
            elif thread.api_key_id in usable:
                future = self.pool.submit(deletions.send_deletion, thread, client=client)
                self.sending[future] = (item, thread, intent)
            else:
                self._finish(item, intent, Deletion.not_sent(thread, NOT_ALLOWED))

    def collect(self, *, timeout: float) -> None:
        """Take the DELETEs that finished (waiting up to `timeout` for a first one)."""
        done, _ = wait(self.sending, timeout=timeout, return_when=FIRST_COMPLETED)
        for future in done:
            item, thread, intent = self.sending.pop(future)
            try:
                deletion = future.result()
            except Exception as exc:
                message, error = _unexpected(item, exc), type(exc).__name__
                deletion = Deletion(thread, AuditOutcome.FAILED, message, details={"error": error})
            self._finish(item, intent, deletion)

    def save_due(self) -> bool:
        return bool(self.settled) and time.monotonic() - self.saved_at >= SAVE_EVERY

    def save(self) -> None:
        """Record the finished deletions' outcomes and save the settled items, together."""
        with transaction.atomic():
            deletions.record_deletions(
                self.pairs, actor=self.actor, origin=self.origin, details=self.job.audit_details
            )
            for item in self.settled:  # an UPDATE each: far cheaper than bulk_update's CASEs
                item.save(update_fields=["outcome", "message", "request_id", "finished_at"])
        self.pairs, self.settled, self.saved_at = [], [], time.monotonic()

    def _usable_keys(self, threads: Iterable[TrackedThread | None]) -> set[int]:
        """The pks of the threads' keys that the actor may use now: one query."""
        key_ids = {thread.api_key_id for thread in threads if thread is not None}
        if not key_ids:
            return set()
        usable = selectors.usable_keys(self.actor).filter(pk__in=key_ids)
        return set(usable.values_list("pk", flat=True))

    def _snapshots(self, threads: list[TrackedThread]) -> list[str | Exception]:
        """Each thread's transcript, or what fetching it raised (fetched by the workers); or
        "" when the job keeps none."""
        if not self.job.snapshot_before_delete:
            return [""] * len(threads)
        return list(self.pool.map(_snapshot, threads))

    def _client(self, api_key: ApiKey) -> ThreadsClient | Exception:
        """The key's client (one per key per run), or what creating it raised."""
        if api_key.pk not in self.clients:
            try:
                self.clients[api_key.pk] = client_for(api_key)
            except Exception as exc:
                self.clients[api_key.pk] = exc
        return self.clients[api_key.pk]

    def _finish(self, item: BulkDeleteItem, intent: AuditEvent, deletion: Deletion) -> None:
        self.pairs.append((intent, deletion))
        self._settle(item, _ITEM_OUTCOME[deletion.outcome], deletion.message, deletion.request_id)

    def _settle(
        self, item: BulkDeleteItem, outcome: str, message: str, request_id: str = ""
    ) -> None:
        item.outcome, item.message = outcome, message[:500]
        item.request_id, item.finished_at = request_id[:100], timezone.now()
        self.settled.append(item)


def _unexpected(item: BulkDeleteItem, exc: Exception) -> str:
    """Log what a bug raised while deleting the item's thread; the message for the item."""
    logger.error(
        "Bulk delete job %s: deleting %s failed", item.job_id, item.thread_id, exc_info=exc
    )
    error = type(exc).__name__
    return f"An unexpected error ({error}) stopped this deletion; see the server log."


def _snapshot(thread: TrackedThread) -> str | Exception:
    """A worker's task: the thread's transcript, or what fetching it raised."""
    try:
        return deletion_snapshot(thread)
    except Exception as exc:  # reported for this item alone by `_Run.start`
        return exc
    finally:
        connection.close()  # noting the key's result may have opened this worker's connection
