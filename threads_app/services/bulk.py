"""Bulk deletion: many threads deleted in one job, by a background task, a few at a time.

The job and its items are rows, so the progress page (after a reload, on any app instance)
reads where a job is from the database. A job is made by `start_bulk_delete` (ticked threads:
its items are made with it) or `services.jobs` (a selection, a retention policy: its items
are filled by the worker); once committed it is queued (`services.jobs.queue_job`), and a
`db_worker` process runs `run_bulk_delete`: nothing of the job outlives a request in the web
process, and the request that starts a job does no work proportional to its size.

The run first fills the job's items from its source, FILL_BATCH threads at a time in pk
order (each batch and the cursor saved together), then goes through the pending items in pk
order, a batch at a time, each through the steps of `services.deletions.delete_thread`:
every thread gets its own intent/outcome pair of audit events, and one failure never stops
the others. The item keeps its intent's sequence from the claim on (saved in the claim's
transaction), so a job whose worker died, or whose database connection was cut, can be
resumed exactly: a pending item with an intent is resolved by asking the upstream first
(`deletions.resolve_interrupted_deletion`), one without is sent as usual. How many DELETEs
are in flight is learnt from the answers (`services.concurrency`: start at 8, more while the
answers are fast, half on a 429, nothing sent before the Retry-After is over), in one budget
per key that every worker and job shares (`services.budget`); a 429 is not an outcome, its
DELETE is sent again. A job paused or cancelled stops sending at its next
batch; the deletions in flight get their outcomes first.

What does not depend on what a job does to its threads (the run's order, filling, batches,
the rate budget, committing outcomes, pause and cancel) is `JobRun`'s; a deletion is `_Run`,
an export `services.exports.ExportRun`.
"""

import logging
import queue
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple, TypeVar

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import F, QuerySet
from django.utils import timezone

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.models import (
    ITEM_OUTCOME_OF,
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    TrackedThread,
    WebhookEndpoint,
)
from threads_app.selectors import MAX_BULK_DELETE, BulkDeleteSelection
from threads_app.services import approvals, deletions, webhooks
from threads_app.services.budget import SharedConcurrency
from threads_app.services.concurrency import AdaptiveRun, run_adaptively
from threads_app.services.deletions import Deletion
from threads_app.services.jobs import queue_job, start_or_await
from threads_app.services.keys import client_for
from threads_app.services.refusals import Refused
from threads_app.services.transcripts import SnapshotFailed, deletion_snapshot
from threads_app.upstream import RateLimitedError, ThreadsClient

logger = logging.getLogger(__name__)

WORKERS = 8  # transcripts fetched, and interrupted deletions resolved, this many at a time
BATCH = 25  # intents recorded, and finished deletions saved, this many at a time
FILL_BATCH = 2000  # items a job's run makes from its source per transaction
SAVE_EVERY = 1.0  # seconds: finished deletions are saved at least this often (progress)
NOT_ALLOWED = "You may no longer delete this thread, so nothing was sent."

T = TypeVar("T")
ItemOutcome = BulkDeleteItem.Outcome  # what became of one thread of a job (its page shows it)
AuditOutcome = AuditEvent.Outcome  # what a deletion's audit event records
JobState = BulkDeleteJob.State


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
) -> BulkDeleteJob:
    """Create a job with one pending item per deletable ticked thread (at most
    MAX_BULK_DELETE: more are selected by filter, `services.jobs.start_selection_job`); queue
    its task once committed.

    Raises `NothingToDelete`. The threads the actor may not delete are left out, as the
    confirmation page said. With `snapshot`, each thread's transcript is saved with its
    deletion's audit event first; a thread whose transcript cannot be fetched is not deleted.
    A deletion that a team's approval rule covers waits for its owners' approval instead.
    """
    selection = selectors.bulk_delete_selection(actor, thread_ids)
    if selection.too_many or not selection.deletable:
        raise NothingToDelete(selection)
    needed = approvals.needed_for_threads(selection.deletable)
    with transaction.atomic():
        job = BulkDeleteJob.objects.create(
            created_by=actor,
            snapshot_before_delete=snapshot,
            state=JobState.QUEUED,
            total=len(selection.deletable),
        )
        BulkDeleteItem.objects.bulk_create(
            BulkDeleteItem(job=job, tracked_thread=thread, thread_id=thread.thread_id)
            for thread in selection.deletable
        )
        start_or_await(job, needed, actor=actor, origin=origin)
    return job


def requeue_job(job_id: int, *, task_id: str, state: str, origin: Origin | None, note: str) -> bool:
    """Queue a new run of a job whose task is gone (its worker stopped, or it raised), unless
    the job changed since it was found so (`task_id` and `state` as seen then): whether it
    was. The conditional UPDATE makes one resumer of many win; an older run of the job that
    still goes on stops at its next save (`JobTakenOver`). A waiting, running or failed job
    runs on; a paused or cancelled one gets a run that only resolves what was left between
    intent and outcome. With the database backend, call inside the transaction that found
    the old task gone (as the sweep does): the resume is then committed with that finding,
    or not at all."""
    stopped = state in (JobState.PAUSED, JobState.CANCELLED)
    resumed = BulkDeleteJob.objects.filter(pk=job_id, task_id=task_id, state=state).update(
        task_id="",
        state=state if stopped else JobState.QUEUED,
        finished_at=None,
        error="",
        resumed_at=timezone.now(),
        resume_count=F("resume_count") + 1,
        resume_note=note[:200],
    )
    if not resumed:
        return False
    queue_job(BulkDeleteJob.objects.get(pk=job_id), origin=origin, at_commit=False)
    logger.warning("Bulk delete job %s: %s", job_id, note)
    return True


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
    """Fill the job's items, then run its pending ones to an outcome each; return when it is
    finished, paused or cancelled.

    `task_id` is the task this run belongs to (None: a run outside any task, which takes the
    job as it is). A task's run first takes the job (`_take_job`); one that finds another
    task there returns at once, and one whose job is taken over while it runs stops at its
    next save (`JobTakenOver`). A paused or cancelled job's run only resolves what an earlier
    run left between intent and outcome, then leaves the job (its `task_id` emptied).

    Items interrupted between intent and outcome by an earlier run are resolved first,
    WORKERS at a time (`resolve_interrupted_deletion`: a GET, then the DELETE again only if
    the thread is still there). The others go BATCH at a time, in pk order, through the steps
    of `delete_thread`: their threads are claimed and their intents appended (with the
    intents' sequences on the items) and committed before any of their DELETEs is sent; the
    actor's permission is checked once for the batch (a thread they may no longer delete gets
    a "not sent" outcome), and the DELETEs are sent as `run_adaptively` allows. Finished
    deletions are saved together (outcome events, thread states, item rows and the job's
    `done` and `progress_at` in one transaction) every BATCH items or SAVE_EVERY seconds.
    """
    if task_id is None:
        BulkDeleteJob.objects.filter(pk=job_id, state=JobState.QUEUED).update(
            state=JobState.RUNNING
        )
    elif not _take_job(job_id, task_id=task_id, worker_id=worker_id):
        logger.warning("Bulk delete job %s is not task %s's: nothing done", job_id, task_id)
        return
    job = BulkDeleteJob.objects.select_related("created_by", "selection", "policy").get(pk=job_id)
    with ThreadPoolExecutor(WORKERS, thread_name_prefix=f"bulk-{job.kind}-{job_id}") as pool:
        _run_class(job)(job, origin=origin, pool=pool, task_id=task_id).run()
    mine = BulkDeleteJob.objects.filter(pk=job_id)
    if task_id is not None:
        mine = mine.filter(task_id=task_id)
    now = timezone.now()
    with transaction.atomic():
        if mine.filter(state=JobState.RUNNING).update(state=JobState.FINISHED, finished_at=now):
            _notify_finished(job)
            return
    # paused or cancelled: nothing runs the job now (resuming it queues a new run)
    mine.filter(state=JobState.PAUSED).update(task_id="")
    mine.filter(state=JobState.CANCELLED).update(task_id="", finished_at=now)


def _notify_finished(job: BulkDeleteJob) -> None:
    """`job.finished` to its creator's own endpoints and to those of every team whose
    threads it went through: its id, kind and outcome counts."""
    data = {
        "job_id": job.pk,
        "kind": job.kind,
        "state": JobState.FINISHED.value,
        "created_by": job.created_by.get_username(),
        "policy_id": job.policy_id,
        "outcomes": selectors.bulk_delete_outcome_counts(job.pk),
    }
    team_ids = (
        job.items.exclude(tracked_thread__api_key__team__isnull=True)
        .values_list("tracked_thread__api_key__team", flat=True)
        .distinct()
    )
    webhooks.notify_each(
        event=WebhookEndpoint.Event.JOB_FINISHED,
        notices=[
            webhooks.Notice(None, job.created_by_id, data),
            *(webhooks.Notice(team_id, None, data) for team_id in sorted(set(team_ids))),
        ],
    )


def _run_class(job: BulkDeleteJob) -> "type[JobRun]":
    """How the job's kind runs: deleting here, exporting in `services.exports` (which builds
    on this module's `JobRun`, hence imported here, when an export runs)."""
    if job.kind == BulkDeleteJob.Kind.EXPORT:
        from threads_app.services.exports import ExportRun

        return ExportRun
    return _Run


def _take_job(job_id: int, *, task_id: str, worker_id: str) -> bool:
    """Make the job this task's: one waiting or running with no task or this one (it runs
    now), or one paused or cancelled that names this task (to resolve what was left)."""
    now, worker = timezone.now(), worker_id[:64]
    jobs = BulkDeleteJob.objects.filter(pk=job_id)
    taken = jobs.filter(state__in=BulkDeleteJob.ACTIVE_STATES, task_id__in=["", task_id]).update(
        state=JobState.RUNNING,
        task_id=task_id,
        worker_id=worker,
        progress_at=now,
        run_started_at=now,
        run_done=F("done"),
    )
    stopped = (JobState.PAUSED, JobState.CANCELLED)
    return bool(
        taken
        or jobs.filter(state__in=stopped, task_id=task_id).update(worker_id=worker, progress_at=now)
    )


def job_source(job: BulkDeleteJob) -> QuerySet[TrackedThread] | None:
    """The threads the job's run fills its items from (None: its items came with it): its
    selection's, or its retention policy's as of the job's start; none above its bound."""
    if job.filled or job.bound_pk is None:
        return None
    if job.selection is not None:
        threads = selectors.selection_threads(job.created_by, job.selection)
    elif job.policy is not None:
        threads = selectors.retention_candidates(
            job.policy.api_key, max_age_days=job.policy.max_age_days, now=job.created_at
        ).filter(api_key__in=selectors.usable_keys(job.created_by))
    else:
        return None
    return threads.filter(pk__lte=job.bound_pk)


class _Sending(NamedTuple):
    """An item whose intent is committed, and what its DELETE needs."""

    item: BulkDeleteItem
    thread: TrackedThread
    intent: AuditEvent
    client: ThreadsClient


class JobRun:
    """One run of a job, whatever its kind: what every kind shares (filling the items from
    the job's source, reading them back a batch at a time, sending under the keys' shared
    rate budget, committing outcomes with the job's `done`, noticing a pause or a cancel, and
    the order of it all in `run`). A kind says what is done to its threads (`send`), and
    may first `recover` what a crashed run left and `finish` once every item is done."""

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
        self.keys: dict[int, ApiKey] = {}  # one object per key: its "last used" written once
        self.stopping = False  # paused or cancelled: no new batch is begun

    def run(self) -> None:
        """Recover, fill, send the pending items, finish: each step only while the job is
        neither paused nor cancelled (a stopped job's run only recovers)."""
        self.stopping = self.job.state not in BulkDeleteJob.ACTIVE_STATES
        self.recover()
        if not self.stopping:
            self.fill()
        if not self.stopping:
            self.send(self.pending_batches())
        if not self.stopping:
            self.finish()

    def recover(self) -> None:
        """Set right what an earlier run of the job left half done (nothing by default)."""

    def send(self, batches: Iterable[list[BulkDeleteItem]]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        """Once every item has its outcome (nothing by default)."""

    def budgeted(self, calls: Iterable[T], send: Callable[[T], object]) -> AdaptiveRun[T]:
        """`run_adaptively` over the calls, in the shared rate budget of the keys of the
        job's pending items (`services.budget`), logged."""
        key_ids = (
            self.job.items.filter(outcome=ItemOutcome.PENDING, tracked_thread__isnull=False)
            .order_by()
            .values_list("tracked_thread__api_key_id", flat=True)
            .distinct()
        )
        controller = SharedConcurrency(key_ids, holder=f"job {self.job.pk} {self.task_id}")
        try:
            adaptive = run_adaptively(calls, send, controller)
        finally:
            controller.close()
        logger.info(
            "Bulk %s job %s: %d sent, %d of them answered 429, at most %d in flight",
            self.job.kind,
            self.job.pk,
            adaptive.sent,
            adaptive.rate_limited,
            adaptive.peak_limit,
        )
        return adaptive

    def commit(self, items: Sequence[BulkDeleteItem], record: Callable[[], object]) -> None:
        """Save the items' outcomes, with `record()` (what else goes with them) and the job's
        `done` and `progress_at`, in one transaction (`JobTakenOver` if the job is another
        task's now); note whether it was paused or cancelled meanwhile."""
        with transaction.atomic():
            done = F("done") + len(items)
            if not self._mine().update(done=done, progress_at=timezone.now()):
                raise JobTakenOver(f"Bulk job {self.job.pk} was taken over by another task")
            self._check_state()
            record()
            fields = ["outcome", "message", "request_id", "finished_at", "outcome_sequence"]
            for item in items:  # an UPDATE each: far cheaper than bulk_update's CASEs
                item.save(update_fields=fields)

    def mark(
        self,
        item: BulkDeleteItem,
        outcome: str,
        message: str,
        request_id: str = "",
        event_sequence: int | None = None,
    ) -> None:
        """Set the item's outcome, saved by `commit` (`event_sequence`: its outcome event, when
        that is recorded already; a deletion's `commit` notes it for those it records)."""
        item.outcome, item.message = outcome, message[:500]
        item.request_id, item.finished_at = request_id[:100], timezone.now()
        item.outcome_sequence = event_sequence

    def client(self, api_key: ApiKey) -> ThreadsClient | Exception:
        """The key's client (one per key per run; a 429 is this run's to handle), or what
        creating it raised."""
        if api_key.pk not in self.clients:
            try:
                self.clients[api_key.pk] = client_for(api_key, retry_rate_limited=False)
            except Exception as exc:
                self.clients[api_key.pk] = exc
        return self.clients[api_key.pk]

    def usable_keys(self, threads: Iterable[TrackedThread | None]) -> set[int]:
        """The pks of the threads' keys that the actor may use now: one query."""
        key_ids = {thread.api_key_id for thread in threads if thread is not None}
        if not key_ids:
            return set()
        usable = selectors.usable_keys(self.actor).filter(pk__in=key_ids)
        return set(usable.values_list("pk", flat=True))

    # --- the job's items, from its source, and read back a batch at a time

    def fill(self) -> None:
        """Make the job's items from its source (`job_source`), FILL_BATCH threads at a time
        in pk order: each batch's items, the cursor and `total` are saved together, so a run
        that stops anywhere is continued by the next from where it was."""
        source = job_source(self.job)
        if source is None:
            return
        rows = source.order_by("pk").values_list("pk", "thread_id")
        while not self.job.filled and not self.stopping:
            with transaction.atomic():
                batch = list(rows.filter(pk__gt=self.job.fill_cursor)[:FILL_BATCH])
                BulkDeleteItem.objects.bulk_create(
                    BulkDeleteItem(job=self.job, tracked_thread_id=pk, thread_id=thread_id)
                    for pk, thread_id in batch
                )
                self.job.filled = len(batch) < FILL_BATCH
                if batch:
                    self.job.fill_cursor = batch[-1][0]
                updated = self._mine().update(
                    filled=self.job.filled,
                    fill_cursor=self.job.fill_cursor,
                    total=F("total") + len(batch),
                    progress_at=timezone.now(),
                )
                if not updated:
                    raise JobTakenOver(f"Bulk delete job {self.job.pk} was taken over")
                self._check_state()

    def interrupted(self) -> list[BulkDeleteItem]:
        """The items an earlier run left between intent and outcome (a few at most: those in
        flight or claimed when it stopped)."""
        items = self.job.items.filter(outcome=ItemOutcome.PENDING, intent_sequence__isnull=False)
        return self._shared_keys(list(items.select_related("tracked_thread__api_key__team")))

    def batch_size(self) -> int:
        """Items read, and begun, together."""
        return BATCH

    def pending_batches(self) -> Iterator[list[BulkDeleteItem]]:
        """The items not begun yet, `batch_size()` at a time in pk order, read as they are
        needed (a job of any size is never all in memory); none once the job is paused or
        cancelled."""
        pending = self.job.items.filter(
            outcome=ItemOutcome.PENDING, intent_sequence__isnull=True
        ).select_related("tracked_thread__api_key__team", "tracked_thread__tracked_by")
        last = 0
        while not self.stopping:
            batch = list(pending.filter(pk__gt=last).order_by("pk")[: self.batch_size()])
            if not batch:
                return
            last = batch[-1].pk
            yield self._shared_keys(batch)

    def _shared_keys(self, items: list[BulkDeleteItem]) -> list[BulkDeleteItem]:
        for item in items:
            if item.tracked_thread is not None:
                thread = item.tracked_thread
                thread.api_key = self.keys.setdefault(thread.api_key_id, thread.api_key)
        return items

    def _mine(self) -> QuerySet[BulkDeleteJob]:
        jobs = BulkDeleteJob.objects.filter(pk=self.job.pk)
        return jobs if self.task_id is None else jobs.filter(task_id=self.task_id)

    def _check_state(self) -> None:
        """Note whether the job was paused or cancelled (its run then stops at the next batch)."""
        state = BulkDeleteJob.objects.filter(pk=self.job.pk).values_list("state", flat=True)
        self.stopping = state.first() not in BulkDeleteJob.ACTIVE_STATES


class _Run(JobRun):
    """A deletion's run: answers not yet saved, and how to send."""

    def __init__(
        self,
        job: BulkDeleteJob,
        *,
        origin: Origin | None,
        pool: ThreadPoolExecutor,
        task_id: str | None,
    ) -> None:
        super().__init__(job, origin=origin, pool=pool, task_id=task_id)
        self.answers: queue.SimpleQueue[tuple[_Sending, Deletion]] = queue.SimpleQueue()
        self.pairs: list[tuple[AuditEvent, Deletion]] = []  # outcomes not recorded yet
        self.settled: list[BulkDeleteItem] = []  # items with their outcome set, not saved yet
        self.saved_at = time.monotonic()

    def recover(self) -> None:
        self.resolve(self.interrupted())

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
    ) -> tuple[str, str, str, int | None]:
        """A worker's task: one interrupted item's (outcome, message, request id, outcome
        event's sequence)."""
        try:
            thread, intent = item.tracked_thread, intents.get(item.intent_sequence)
            if thread is None or intent is None:
                message = "No longer tracked here; nothing was sent again."
                return ItemOutcome.FAILED, message, "", None
            try:
                deletion = deletions.resolve_interrupted_deletion(
                    thread,
                    intent=intent,
                    actor=self.actor,
                    origin=self.origin,
                    details=self.job.audit_details,
                )
            except Refused as refusal:  # its outcome is recorded already, or being recorded
                return _recorded_outcome(intent, refusal)
            outcome = ITEM_OUTCOME_OF[deletion.outcome]
            return outcome, deletion.message, deletion.request_id, deletion.event_sequence
        except Exception as exc:
            return ItemOutcome.FAILED, unexpected(item, exc), "", None
        finally:
            connection.close()

    # --- items not begun yet

    def send(self, batches: Iterable[list[BulkDeleteItem]]) -> None:
        """Claim, send and record the batches' items, as many DELETEs in flight as the answers
        allow."""
        adaptive = self.budgeted(self._sendings(batches), self._send)
        self._take_answers()
        for sending, error in adaptive.gave_up:  # 429 after 429: its intent gets an outcome
            name = sending.thread.label or sending.thread.thread_id
            self._finish(
                sending, Deletion.failed(sending.thread, f"Could not delete “{name}”", error)
            )
        if self.settled:
            self.save()

    def _sendings(self, batches: Iterable[list[BulkDeleteItem]]) -> Iterator[_Sending]:
        """The items ready to send, a batch claimed at a time (read by `run_adaptively` as it
        has room, in this thread: the database work stays here); progress saved as it goes.
        A batch claimed is sent whole, even if the job is paused meanwhile."""
        for batch in batches:
            for sending in self._start(batch):
                yield sending
                self._save_if_due()
            self._save_if_due()

    def _send(self, sending: _Sending) -> None:
        """A pool thread's call: the DELETE. A 429 is raised for `run_adaptively` to send it
        again after the pause; any other answer is queued for `save`."""
        try:
            deletion = deletions.send_deletion(sending.thread, client=sending.client)
        except Exception as exc:
            message, error = unexpected(sending.item, exc), type(exc).__name__
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
        usable = self.usable_keys([item.tracked_thread for item in batch])
        candidates: list[tuple[BulkDeleteItem, TrackedThread, ThreadsClient]] = []
        for item in batch:
            thread = item.tracked_thread
            if thread is None:
                self._settle(
                    item, ItemOutcome.FAILED, "No longer tracked here, so nothing was sent."
                )
            elif thread.api_key_id not in usable:
                self._settle(item, ItemOutcome.FAILED, NOT_ALLOWED)
            elif isinstance(client := self.client(thread.api_key), Exception):
                self._settle(item, ItemOutcome.FAILED, unexpected(item, client))
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
                self._settle(item, ItemOutcome.FAILED, unexpected(item, snapshot))
            else:
                ready.append((item, thread, client, snapshot))
        claims = self._claim([(item, thread, text) for item, thread, _, text in ready])
        usable = self.usable_keys([thread for _, thread, _, _ in ready])
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
        the job's `done` and `progress_at` (`JobTakenOver` if the job is another task's now);
        note whether it was paused or cancelled meanwhile."""
        self.commit(self.settled, self._record_outcomes)
        self.pairs, self.settled, self.saved_at = [], [], time.monotonic()

    def _record_outcomes(self) -> None:
        """Record the finished deletions' outcomes, and note on each settled item its outcome
        event (what its receipt line names)."""
        outcomes = deletions.record_deletions(
            self.pairs, actor=self.actor, origin=self.origin, details=self.job.audit_details
        )
        recorded = {
            intent.sequence: event.sequence
            for (intent, _), event in zip(self.pairs, outcomes, strict=True)
        }
        for item in self.settled:
            if item.intent_sequence in recorded:
                item.outcome_sequence = recorded[item.intent_sequence]

    # --- helpers

    def _snapshots(self, threads: list[TrackedThread]) -> list[str | Exception]:
        """Each thread's transcript, or what fetching it raised (fetched by the workers); or
        "" when the job keeps none."""
        if not self.job.snapshot_before_delete:
            return [""] * len(threads)
        return list(self.pool.map(_snapshot, threads))

    def _finish(self, sending: _Sending, deletion: Deletion) -> None:
        self.pairs.append((sending.intent, deletion))
        outcome = ITEM_OUTCOME_OF[deletion.outcome]
        self._settle(sending.item, outcome, deletion.message, deletion.request_id)

    def _settle(
        self,
        item: BulkDeleteItem,
        outcome: str,
        message: str,
        request_id: str = "",
        event_sequence: int | None = None,
    ) -> None:
        self.mark(item, outcome, message, request_id, event_sequence)
        self.settled.append(item)


def _recorded_outcome(intent: AuditEvent, refusal: Refused) -> tuple[str, str, str, int | None]:
    """An interrupted item whose intent was answered meanwhile (or is being answered): the
    item takes the recorded outcome, and nothing new is recorded."""
    outcome = (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.THREAD_DELETED,
            thread_id=intent.thread_id,
            details__intent=intent.sequence,
        )
        .values_list("outcome", "request_id", "sequence")
        .first()
    )
    if outcome is None:
        return ItemOutcome.FAILED, str(refusal), "", None
    recorded, request_id, sequence = outcome
    message = f"{refusal} (its outcome was recorded before)"
    return ITEM_OUTCOME_OF[recorded], message, request_id, sequence


def unexpected(
    item: BulkDeleteItem, exc: Exception, *, doing: str = "deleting", what: str = "deletion"
) -> str:
    """Log what a bug raised while working on the item's thread; the message for the item."""
    logger.error("Bulk job %s: %s %s failed", item.job_id, doing, item.thread_id, exc_info=exc)
    error = type(exc).__name__
    return f"An unexpected error ({error}) stopped this {what}; see the server log."


def _snapshot(thread: TrackedThread) -> str | Exception:
    """A worker's task: the thread's transcript, or what fetching it raised."""
    try:
        return deletion_snapshot(thread)
    except Exception as exc:  # reported for this item alone by `_Run._start`
        return exc
    finally:
        connection.close()  # noting the key's result may have opened this worker's connection
