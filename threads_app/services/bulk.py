"""Bulk deletion: many threads deleted in one job, by a background task, a few at a time.

The job and its items are rows, so the progress page (after a reload, on any app instance)
reads where a job is from the database. `start_bulk_delete` creates them and, once they are
committed, queues `threads_app.tasks.bulk_delete_task`, which a `db_worker` process runs:
nothing of the job outlives a request in the web process. The task runs `run_bulk_delete`.

Each item goes through the steps of `services.deletions.delete_thread`, a batch at a time:
every thread gets its own intent/outcome pair of audit events, and one failure never stops
the others. The item keeps its intent's sequence from the claim on (saved in the claim's
transaction), so a job whose worker died can be resumed exactly: a pending item with an
intent is resolved by asking the upstream first (`deletions.resolve_interrupted_deletion`),
one without is sent as usual. How many DELETEs are in flight is learnt from the answers
(`services.concurrency`: start at 8, more while the answers are fast, half on a 429, nothing
sent before the Retry-After is over); a 429 is not an outcome, its DELETE is sent again.
"""

import logging
import queue
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import NamedTuple

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

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
from threads_app.selectors import MAX_BULK_DELETE, BulkDeleteSelection, StuckJob
from threads_app.services import deletions
from threads_app.services.concurrency import AdaptiveConcurrency, run_adaptively
from threads_app.services.deletions import Deletion
from threads_app.services.keys import client_for
from threads_app.services.refusals import Refused
from threads_app.services.transcripts import SnapshotFailed, deletion_snapshot
from threads_app.upstream import RateLimitedError, ThreadsClient

logger = logging.getLogger(__name__)

WORKERS = 8  # transcripts fetched, and interrupted deletions resolved, this many at a time
BATCH = 25  # intents recorded, and finished deletions saved, this many at a time
SAVE_EVERY = 1.0  # seconds: finished deletions are saved at least this often (progress)
NOT_ALLOWED = "You may no longer delete this thread, so nothing was sent."
RESUMED_AFTER_WORKER_STOPPED = "Resumed after the worker stopped"
RESUMED_BY_COMMAND = "Resumed by an operator (manage.py resume_jobs)"

ItemOutcome = BulkDeleteItem.Outcome  # what became of one thread of a job (its page shows it)
AuditOutcome = AuditEvent.Outcome  # what a deletion's audit event records
JobState = BulkDeleteJob.State
_ITEM_OUTCOME: dict[str, str] = {
    AuditOutcome.SUCCESS: ItemOutcome.DELETED,
    AuditOutcome.ALREADY_GONE: ItemOutcome.ALREADY_GONE,
    AuditOutcome.REFUSED: ItemOutcome.REFUSED,
    AuditOutcome.FAILED: ItemOutcome.FAILED,
}

OriginData = dict[str, str | None]  # an Origin as a task's JSON argument


class NothingToDelete(Refused):
    """No job was started: none of the selected threads may be deleted. `.selection` says why."""

    default_code = "nothing_to_delete"

    def __init__(self, selection: BulkDeleteSelection) -> None:
        if selection.too_many:
            message = f"At most {MAX_BULK_DELETE} threads can be deleted in one go."
        else:
            message = "None of the selected threads can be deleted."
        super().__init__(message)
        self.selection = selection


class JobTakenOver(Exception):
    """This run's job is now another task's (it was resumed while this one still ran)."""


def start_bulk_delete(
    *,
    actor: User,
    thread_ids: Iterable[str | int],
    origin: Origin | None = None,
    snapshot: bool = False,
    policy: RetentionPolicy | None = None,
) -> BulkDeleteJob:
    """Create a job with one pending item per deletable thread; queue its task once committed.

    Raises `NothingToDelete`. The threads the actor may not delete are left out, as the
    confirmation page said. With `snapshot`, each thread's transcript is saved with its
    deletion's audit event first; a thread whose transcript cannot be fetched is not deleted.
    A retention `policy` starting the job (with its setter as the actor) is kept on the job
    and named in each deletion's audit events (`BulkDeleteJob.audit_details`).
    """
    selection = selectors.bulk_delete_selection(actor, thread_ids)
    if selection.too_many or not selection.deletable:
        raise NothingToDelete(selection)
    with transaction.atomic():
        job = BulkDeleteJob.objects.create(
            created_by=actor, snapshot_before_delete=snapshot, policy=policy
        )
        BulkDeleteItem.objects.bulk_create(
            BulkDeleteItem(job=job, tracked_thread=thread, thread_id=thread.thread_id)
            for thread in selection.deletable
        )
        transaction.on_commit(lambda: _enqueue(job.pk, origin=origin_data(origin)))
    return job


def origin_data(origin: Origin | None) -> OriginData | None:
    """The origin as the task's JSON argument (`origin_from_data` reads it back)."""
    return None if origin is None else asdict(origin)


def origin_from_data(data: OriginData | None) -> Origin | None:
    if data is None:
        return None
    return Origin(ip=data.get("ip"), user_agent=data.get("user_agent") or "")


def _enqueue(job_id: int, *, origin: OriginData | None) -> str:
    """Queue a run of the job (which names no task); name the task on the job; return its id."""
    from threads_app.tasks import bulk_delete_task  # the task module imports this one

    result = bulk_delete_task.enqueue(job_id=job_id, origin=origin)
    # An immediate backend has run the job already, and named its task: kept as it is.
    BulkDeleteJob.objects.filter(pk=job_id, task_id="").update(task_id=result.id)
    return result.id


def resume_job(
    job_id: int, *, task_id: str, state: str, origin: OriginData | None, note: str
) -> str | None:
    """Queue a new run of a job whose task is gone (its worker stopped, or it raised), unless
    the job changed since it was found so (`task_id` and `state` as seen then): the new task's
    id, or None. The conditional UPDATE makes one resumer of many win; an older run of the
    job that still goes on stops at its next save (`JobTakenOver`). With the database
    backend, call inside the transaction that found the old task gone (as the sweep does):
    the resume is then committed with that finding, or not at all."""
    resumed = BulkDeleteJob.objects.filter(pk=job_id, task_id=task_id, state=state).update(
        task_id="",
        state=JobState.RUNNING,
        finished_at=None,
        error="",
        resumed_at=timezone.now(),
        resume_count=F("resume_count") + 1,
        resume_note=note[:200],
    )
    if not resumed:
        return None
    new_task_id = _enqueue(job_id, origin=origin)
    logger.warning("Bulk delete job %s: %s (task %s)", job_id, note, new_task_id)
    return new_task_id


def resume_stuck_job(stuck: StuckJob, *, note: str = RESUMED_BY_COMMAND) -> str | None:
    """Resume a job `selectors.stuck_bulk_delete_jobs` found (see `resume_job`)."""
    job = stuck.job
    return resume_job(job.pk, task_id=job.task_id, state=job.state, origin=stuck.origin, note=note)


def fail_job(job_id: int, error: BaseException, *, task_id: str | None = None) -> None:
    """Record that the job's run raised `error` (its task is recorded failed too): the job
    page shows it. A run that lost the job to a newer task records nothing."""
    jobs = BulkDeleteJob.objects.filter(pk=job_id, state=JobState.RUNNING)
    if task_id is not None:
        jobs = jobs.filter(task_id=task_id)
    jobs.update(
        state=JobState.FAILED, finished_at=timezone.now(), error=f"{type(error).__name__}: {error}"
    )


def run_bulk_delete(
    job_id: int,
    *,
    origin: Origin | None = None,
    task_id: str | None = None,
    worker_id: str = "",
) -> None:
    """Run the job's pending items to an outcome each; return when it is finished.

    `task_id` is the task this run belongs to (None: a run outside any task, which takes the
    job as it is). A task's run first takes the job (the job names that task, or none yet);
    one that finds another task there returns at once, and one whose job is taken over while
    it runs stops at its next save (`JobTakenOver`).

    Items interrupted between intent and outcome by an earlier run are resolved first,
    WORKERS at a time (`resolve_interrupted_deletion`: a GET, then the DELETE again only if
    the thread is still there). The others go BATCH at a time through the steps of
    `delete_thread`: their threads are claimed and their intents appended (with the intents'
    sequences on the items) and committed before any of their DELETEs is sent; the actor's
    permission is checked once for the batch (a thread they may no longer delete gets a
    "not sent" outcome), and the DELETEs are sent as `run_adaptively` allows. Finished
    deletions are saved together (outcome events, thread states, item rows and the job's
    `progress_at` in one transaction) every BATCH items or SAVE_EVERY seconds.
    """
    if task_id is not None and not _take_job(job_id, task_id=task_id, worker_id=worker_id):
        logger.warning("Bulk delete job %s is not task %s's: nothing done", job_id, task_id)
        return
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
    with ThreadPoolExecutor(WORKERS, thread_name_prefix=f"bulk-delete-{job_id}") as pool:
        run = _Run(job, origin=origin, pool=pool, task_id=task_id)
        run.resolve([item for item in items if item.intent_sequence is not None])
        run.send([item for item in items if item.intent_sequence is None])
    finished = BulkDeleteJob.objects.filter(pk=job_id, state=JobState.RUNNING)
    if task_id is not None:
        finished = finished.filter(task_id=task_id)
    finished.update(state=JobState.FINISHED, finished_at=timezone.now())


def _take_job(job_id: int, *, task_id: str, worker_id: str) -> bool:
    jobs = BulkDeleteJob.objects.filter(
        pk=job_id, state=JobState.RUNNING, task_id__in=["", task_id]
    )
    return bool(jobs.update(task_id=task_id, worker_id=worker_id[:64], progress_at=timezone.now()))


class _Sending(NamedTuple):
    """An item whose intent is committed, and what its DELETE needs."""

    item: BulkDeleteItem
    thread: TrackedThread
    intent: AuditEvent
    client: ThreadsClient


class _Run:
    """The state of one `run_bulk_delete`: answers not yet saved, and how to send."""

    def __init__(
        self,
        job: BulkDeleteJob,
        *,
        origin: Origin | None,
        pool: ThreadPoolExecutor,
        task_id: str | None,
    ) -> None:
        self.job, self.actor, self.origin, self.pool = job, job.created_by, origin, pool
        self.task_id = task_id
        self.clients: dict[int, ThreadsClient | Exception] = {}  # key pk: client, or its error
        self.answers: queue.SimpleQueue[tuple[_Sending, Deletion]] = queue.SimpleQueue()
        self.pairs: list[tuple[AuditEvent, Deletion]] = []  # outcomes not recorded yet
        self.settled: list[BulkDeleteItem] = []  # items with their outcome set, not saved yet
        self.saved_at = time.monotonic()

    # --- items interrupted by an earlier run

    def resolve(self, items: Sequence[BulkDeleteItem]) -> None:
        """Resolve the items that have an intent but no outcome, WORKERS at a time."""
        if not items:
            return
        intents = AuditEvent.objects.in_bulk(
            [item.intent_sequence for item in items], field_name="sequence"
        )
        for item, settled in zip(
            items, self.pool.map(lambda item: self._resolve(item, intents), items), strict=True
        ):
            self._settle(item, *settled)
        self.save()

    def _resolve(
        self, item: BulkDeleteItem, intents: dict[int | None, AuditEvent]
    ) -> tuple[str, str, str]:
        """A worker's task: one interrupted item's (outcome, message, request id)."""
        try:
            thread, intent = item.tracked_thread, intents.get(item.intent_sequence)
            if thread is None or intent is None:
                return ItemOutcome.FAILED, "No longer tracked here; nothing was sent again.", ""
            try:
                deletion = deletions.resolve_interrupted_deletion(
                    thread, intent=intent, actor=self.actor, origin=self.origin
                )
            except Refused as refusal:  # its outcome is recorded already, or being recorded
                return _recorded_outcome(intent, refusal)
            return _ITEM_OUTCOME[deletion.outcome], deletion.message, deletion.request_id
        except Exception as exc:
            return ItemOutcome.FAILED, _unexpected(item, exc), ""
        finally:
            connection.close()

    # --- items not begun yet

    def send(self, items: Sequence[BulkDeleteItem]) -> None:
        """Claim, send and record the items, as many DELETEs in flight as the answers allow."""
        controller = AdaptiveConcurrency()
        adaptive = run_adaptively(self._sendings(items), self._send, controller)
        self._take_answers()
        for sending, error in adaptive.gave_up:  # 429 after 429: its intent gets an outcome
            name = sending.thread.label or sending.thread.thread_id
            self._finish(
                sending, Deletion.failed(sending.thread, f"Could not delete “{name}”", error)
            )
        if self.settled:
            self.save()
        logger.info(
            "Bulk delete job %s: %d DELETEs sent, %d answered 429, at most %d in flight",
            self.job.pk,
            adaptive.sent,
            adaptive.rate_limited,
            adaptive.peak_limit,
        )

    def _sendings(self, items: Sequence[BulkDeleteItem]) -> Iterator[_Sending]:
        """The items ready to send, a batch claimed at a time (read by `run_adaptively` as it
        has room, in this thread: the database work stays here); progress saved as it goes."""
        for start in range(0, len(items), BATCH):
            for sending in self._start(items[start : start + BATCH]):
                yield sending
                self._save_if_due()
            self._save_if_due()

    def _send(self, sending: _Sending) -> None:
        """A pool thread's call: the DELETE. A 429 is raised for `run_adaptively` to send it
        again after the pause; any other answer is queued for `save`."""
        try:
            deletion = deletions.send_deletion(sending.thread, client=sending.client)
        except Exception as exc:
            message, error = _unexpected(sending.item, exc), type(exc).__name__
            deletion = Deletion(
                sending.thread, AuditOutcome.FAILED, message, details={"error": error}
            )
        if isinstance(deletion.error, RateLimitedError):
            raise deletion.error
        self.answers.put((sending, deletion))

    def _start(self, batch: Sequence[BulkDeleteItem]) -> list[_Sending]:
        """Claim the batch's threads and commit their intents; return those to send.

        The actor's permission is checked for the whole batch before the intents are recorded
        (a thread out of reach gets neither an intent nor a request, as with
        `delete_thread`), and again once they are committed, right before the DELETEs are
        handed out: a thread that went out of reach in between gets a "not sent" outcome.
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
        claims = self._claim([(item, thread, text) for item, thread, _, text in ready])
        usable = self._usable_keys([thread for _, thread, _, _ in ready])
        sendings = []
        for (item, thread, client, _), intent in zip(ready, claims, strict=True):
            if isinstance(intent, Refused):  # deleted, or being deleted, meanwhile: not sent
                already = isinstance(intent, deletions.AlreadyDeleted)
                outcome = ItemOutcome.ALREADY_GONE if already else ItemOutcome.FAILED
                self._settle(item, outcome, str(intent))
            elif thread.api_key_id in usable:
                sendings.append(_Sending(item, thread, intent, client))
            else:
                self.pairs.append((intent, Deletion.not_sent(thread, NOT_ALLOWED)))
                self._settle(item, ItemOutcome.FAILED, NOT_ALLOWED)
        return sendings

    def _claim(
        self, ready: list[tuple[BulkDeleteItem, TrackedThread, str]]
    ) -> list[AuditEvent | Refused]:
        """`deletions.claim_deletions`, with each claimed item's intent sequence saved in the
        same transaction: after a crash, an item has an intent exactly when it says so."""
        with transaction.atomic(durable=True):
            claims = deletions.claim_deletions(
                [(thread, text) for _, thread, text in ready],
                actor=self.actor,
                origin=self.origin,
                details=self.job.audit_details,
            )
            for (item, _, _), intent in zip(ready, claims, strict=True):
                if isinstance(intent, AuditEvent):
                    item.intent_sequence = intent.sequence
                    BulkDeleteItem.objects.filter(pk=item.pk).update(
                        intent_sequence=intent.sequence
                    )
        return claims

    # --- saving

    def _take_answers(self) -> None:
        while True:
            try:
                sending, deletion = self.answers.get_nowait()
            except queue.Empty:
                return
            self._finish(sending, deletion)

    def _save_if_due(self) -> None:
        self._take_answers()
        due = time.monotonic() - self.saved_at >= SAVE_EVERY
        if len(self.settled) >= BATCH or (self.settled and due):
            self.save()

    def save(self) -> None:
        """Record the finished deletions' outcomes and save the settled items, together, with
        the job's `progress_at` (`JobTakenOver` if the job is another task's now)."""
        with transaction.atomic():
            jobs = BulkDeleteJob.objects.filter(pk=self.job.pk)
            if self.task_id is not None:
                jobs = jobs.filter(task_id=self.task_id)
            if not jobs.update(progress_at=timezone.now()):
                raise JobTakenOver(f"Bulk delete job {self.job.pk} was taken over by another task")
            deletions.record_deletions(
                self.pairs, actor=self.actor, origin=self.origin, details=self.job.audit_details
            )
            for item in self.settled:  # an UPDATE each: far cheaper than bulk_update's CASEs
                item.save(update_fields=["outcome", "message", "request_id", "finished_at"])
        self.pairs, self.settled, self.saved_at = [], [], time.monotonic()

    # --- helpers

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
        """The key's client (one per key per run; a 429 is this run's to handle), or what
        creating it raised."""
        if api_key.pk not in self.clients:
            try:
                self.clients[api_key.pk] = client_for(api_key, retry_rate_limited=False)
            except Exception as exc:
                self.clients[api_key.pk] = exc
        return self.clients[api_key.pk]

    def _finish(self, sending: _Sending, deletion: Deletion) -> None:
        self.pairs.append((sending.intent, deletion))
        outcome = _ITEM_OUTCOME[deletion.outcome]
        self._settle(sending.item, outcome, deletion.message, deletion.request_id)

    def _settle(
        self, item: BulkDeleteItem, outcome: str, message: str, request_id: str = ""
    ) -> None:
        item.outcome, item.message = outcome, message[:500]
        item.request_id, item.finished_at = request_id[:100], timezone.now()
        self.settled.append(item)


def _recorded_outcome(intent: AuditEvent, refusal: Refused) -> tuple[str, str, str]:
    """An interrupted item whose intent was answered meanwhile (or is being answered): the
    item takes the recorded outcome, and nothing new is recorded."""
    outcome = (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.THREAD_DELETED,
            thread_id=intent.thread_id,
            details__intent=intent.sequence,
        )
        .values_list("outcome", "request_id")
        .first()
    )
    if outcome is None:
        return ItemOutcome.FAILED, str(refusal), ""
    return _ITEM_OUTCOME[outcome[0]], f"{refusal} (its outcome was recorded before)", outcome[1]


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
    except Exception as exc:  # reported for this item alone by `_Run._start`
        return exc
    finally:
        connection.close()  # noting the key's result may have opened this worker's connection
