"""Background tasks, run by `manage.py db_worker`, and the worker's sweep.

Tasks use the django-tasks backport of Django 6's `django.tasks` (on Django 6 the import
becomes `from django.tasks import task`); the database backend (django-tasks-db) queues them
in the `DBTaskResult` table. A task's return value must be JSON: it is stored with its result.

This module alone knows how the backend keeps a task: its arguments (`task_kwargs`) and the
worker that ran it last (`task_worker`). Services never import it: it gives `services.jobs`
the function that queues a job's run (`run_jobs_with`, when the app starts).
"""

import logging
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import InterfaceError, OperationalError, connection, transaction
from django.db.models import Q
from django.utils import timezone
from django_tasks import TaskContext, task
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.models import BulkDeleteJob, WorkerHeartbeat
from threads_app.services import bulk, jobs, webhooks
from threads_app.services.approvals import expire_approvals
from threads_app.services.counts import fold_thread_counts
from threads_app.services.exports import remove_expired_exports
from threads_app.services.reconcile import reconcile_all
from threads_app.services.retention import enforce_retention
from threads_app.services.tokens import record_expired_tokens

logger = logging.getLogger(__name__)


RESUMED_AFTER_WORKER_STOPPED = "Resumed after the worker stopped"
RESUMED_BY_COMMAND = "Resumed by an operator (manage.py resume_jobs)"


class WorkerLost(Exception):
    """Recorded as the error of a task whose worker stopped beating while running it."""


@task()
def reconcile_all_task(*, batch_size: int = 200, workers: int = 4) -> dict[str, int]:
    """`services.reconcile.reconcile_all` in the background; its summary in numbers."""
    summary = reconcile_all(batch_size=batch_size, workers=workers)
    return {
        "checked": summary.checked,
        "gone": summary.gone,
        "skipped": summary.skipped,
        "keys_failing": len(summary.rejected_keys),
        "errors": len(summary.errors),
    }


@task()
def enforce_retention_task() -> dict[str, int]:
    """`services.retention.enforce_retention` in the background; what it did in numbers."""
    done = enforce_retention()
    return {
        "policies": len(done),
        "not_enforced": sum(bool(enforcement.not_enforced) for enforcement in done),
        "threads": sum(enforcement.count for enforcement in done),
        "jobs": sum(enforcement.job is not None for enforcement in done),
    }


DATABASE_RETRIES = 5  # runs of a job after its database connection was lost, in one task
DATABASE_RETRY_PAUSE = 1.0  # seconds before the first (doubling after each)


@task(takes_context=True)
def bulk_delete_task(
    context: TaskContext, *, job_id: int, origin: dict[str, Any] | None = None
) -> dict[str, int]:
    """`services.bulk.run_bulk_delete` for the job, as this task (see `sweep` for a worker
    that dies while running it). Its arguments are those queued before selections existed
    too (`job_id`, `origin` as `Origin.to_data`), so jobs queued before a deploy still run.

    A run whose database connection is lost (the server restarted, the connection killed)
    is run again on a new one, up to DATABASE_RETRIES times: what it left between intent and
    outcome is resolved upstream first, as after a worker's crash. If the run raises
    anything else, the job is failed with the error (its page shows it) and the task is
    recorded failed with it: never dropped silently."""
    result = context.task_result
    pause = DATABASE_RETRY_PAUSE
    for attempt in range(DATABASE_RETRIES + 1):
        try:
            bulk.run_bulk_delete(
                job_id,
                origin=Origin.from_data(origin),
                task_id=result.id,
                worker_id=task_worker(result),
            )
            break
        except (OperationalError, InterfaceError) as exc:
            if attempt == DATABASE_RETRIES:
                raise
            logger.warning("Bulk delete job %s lost its database connection: %s", job_id, exc)
            connection.close()  # the next query opens a new one
            time.sleep(pause)
            pause *= 2
        except Exception as exc:
            bulk.fail_job(job_id, exc, task_id=result.id)
            raise
    return selectors.bulk_delete_outcome_counts(job_id)


BULK_DELETE_TASK = bulk_delete_task.module_path


def queue_bulk_delete(job_id: int, origin: Origin | None) -> str:
    """Queue a run of the job: the id of its task (`services.jobs.queue_job` calls this)."""
    data = origin.to_data() if origin is not None else None
    return bulk_delete_task.enqueue(job_id=job_id, origin=data).id


@task()
def deliver_webhooks_task(*, delivery_ids: list[int]) -> dict[str, int]:
    """Try each delivery once (`services.webhooks.deliver`), one after the other; queue a
    task for each one to try again when its backoff is over (the database backend keeps a
    task until its `run_after`)."""
    retries = 0
    for delivery_id in delivery_ids:
        again = webhooks.deliver(delivery_id)
        if again is not None and deliver_webhooks_task.get_backend().supports_defer:
            deliver_webhooks_task.using(run_after=again).enqueue(delivery_ids=[delivery_id])
            retries += 1
    return {"deliveries": len(delivery_ids), "to_retry": retries}


def queue_deliveries(delivery_ids: list[int]) -> None:
    """Queue the deliveries' first attempt (`services.webhooks` calls this once committed)."""
    deliver_webhooks_task.enqueue(delivery_ids=delivery_ids)


def register() -> None:
    """Give `services.jobs` the way to queue a job's run, and `services.webhooks` the way to
    queue deliveries (the app's `ready` calls this)."""
    jobs.run_jobs_with(queue_bulk_delete)
    webhooks.queue_deliveries_with(queue_deliveries)


def task_kwargs(result: DBTaskResult[..., Any]) -> dict[str, Any]:
    """The keyword arguments a task was queued with."""
    kwargs = result.args_kwargs.get("kwargs", {})
    return kwargs if isinstance(kwargs, dict) else {}


def task_worker(result: Any) -> str:
    """The id of the worker that ran (or runs) a task last ("" if none has): a stored
    `DBTaskResult` or the running task's result."""
    return result.worker_ids[-1] if result.worker_ids else ""


def sweep() -> list[DBTaskResult[..., Any]]:
    """Fail the RUNNING tasks whose worker is gone; return them (the crash-safety hook).

    A task is abandoned when it started more than WORKER_LEASE_SECONDS ago and the worker
    that claimed it last has not beaten within that lease (killed with -9, its machine lost).
    It is marked FAILED with a `WorkerLost` error, once: the update is conditional on the
    task still being RUNNING from the same start, so two workers sweeping at once cannot both
    report it. An abandoned `bulk_delete_task` is resumed in the same transaction: its job
    notes "resumed after the worker stopped" and a new task is queued for it (any live worker
    takes it), so each abandoned job is resumed exactly once. Heartbeat rows older than the
    lease are then removed, the thread counters' shards folded (`fold_thread_counts`), the
    access tokens that expired since the last sweep audited (`record_expired_tokens`), the
    webhook deliveries whose task was lost queued again (`webhooks.take_overdue`), the
    deletions not approved in time expired (`expire_approvals`) and the expired exports'
    files removed (`remove_expired_exports`).
    Called by every `db_worker` between tasks (at most every WORKER_SWEEP_SECONDS); safe to
    call anywhere.
    """
    lease = settings.WORKER_LEASE_SECONDS
    now = timezone.now()
    cutoff = now - timedelta(seconds=lease)
    live = selectors.live_worker_ids(lease_seconds=lease)
    abandoned = []
    for result in DBTaskResult.objects.running().filter(
        Q(started_at__lt=cutoff) | Q(started_at__isnull=True)
    ):
        worker_id = task_worker(result)
        if worker_id in live:
            continue
        error = WorkerLost(
            f"Abandoned: worker {worker_id or '?'} stopped beating while running this task "
            f"(no heartbeat for {lease:g} s)."
        )
        claimed = DBTaskResult.objects.filter(
            pk=result.pk, status=TaskResultStatus.RUNNING, started_at=result.started_at
        )
        with transaction.atomic():
            if not claimed.update(
                status=TaskResultStatus.FAILED,
                finished_at=now,
                exception_class_path=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}",
                traceback=f"{WorkerLost.__module__}.{WorkerLost.__qualname__}: {error}\n",
                return_value=None,
            ):
                continue
            if result.task_path == BULK_DELETE_TASK:
                _resume_bulk_delete(result)
            result.refresh_from_db()
            logger.warning("Task %s (%s): %s", result.pk, result.task_path, error)
            abandoned.append(result)
    WorkerHeartbeat.objects.filter(beat_at__lt=cutoff).delete()
    fold_thread_counts()
    record_expired_tokens(now=now)
    if overdue := webhooks.take_overdue(now=now):
        queue_deliveries(overdue)
    expire_approvals(now=now)
    remove_expired_exports(now=now)
    return abandoned


def _resume_bulk_delete(result: DBTaskResult[..., Any]) -> None:
    """Queue a new run of the abandoned task's job, if that task still ran it."""
    kwargs = task_kwargs(result)
    job_id = kwargs.get("job_id")
    if not isinstance(job_id, int):
        return
    job = BulkDeleteJob.objects.filter(pk=job_id, task_id=str(result.pk)).first()
    if job is None:
        return
    bulk.requeue_job(
        job.pk,
        task_id=job.task_id,
        state=job.state,
        origin=Origin.from_data(kwargs.get("origin")),
        note=RESUMED_AFTER_WORKER_STOPPED,
    )


@dataclass(frozen=True)
class StuckJob:
    """A job that nothing is running: why, and how many items are still pending. `origin`
    is what its last task was given, if that was a database task (a resumed run records the
    same)."""

    job: BulkDeleteJob
    reason: str
    pending: int
    origin: Origin | None = None


def stuck_jobs(*, lease_seconds: float) -> list[StuckJob]:
    """Jobs not ended that no task will take further: their task is gone or ended, or its
    worker stopped beating for `lease_seconds` (a paused or cancelled job only while it
    names a task: one whose run stopped is not stuck); and failed jobs that still have
    pending items. A job whose task waits in the queue, or runs on a live worker, is not."""
    State = BulkDeleteJob.State
    jobs = list(
        BulkDeleteJob.objects.filter(
            Q(state__in=[State.QUEUED, State.RUNNING, State.FAILED])
            | Q(state__in=[State.PAUSED, State.CANCELLED], task_id__gt="")
        ).order_by("pk")
    )
    pending = {job.pk: n for job in jobs for n in [_pending(job)]}
    task_ids = [pk for pk in (selectors.task_uuid(job.task_id) for job in jobs) if pk is not None]
    task_results = {str(r.pk): r for r in DBTaskResult.objects.filter(pk__in=task_ids)}
    live = selectors.live_worker_ids(lease_seconds=lease_seconds)
    stuck = []
    for job in jobs:
        result = task_results.get(job.task_id)
        origin = Origin.from_data(task_kwargs(result).get("origin")) if result else None
        reason = _why_stuck(job, result, live, pending=pending[job.pk])
        if reason:
            stuck.append(StuckJob(job, reason, pending[job.pk], origin))
    return stuck


def _pending(job: BulkDeleteJob) -> int:
    """Items not done yet (a job not filled yet counts as having some)."""
    return max(job.total - job.done, 0 if job.filled else 1)


def _why_stuck(
    job: BulkDeleteJob, result: DBTaskResult[..., Any] | None, live: set[str], *, pending: int
) -> str:
    if job.state == BulkDeleteJob.State.FAILED:
        return f"its task failed ({job.error})" if pending else ""
    if result is None:
        return "no task runs it"
    if result.status == TaskResultStatus.READY:
        return ""
    if result.status == TaskResultStatus.RUNNING:
        worker = task_worker(result) or "?"
        return "" if worker in live else f"its worker {worker} stopped beating"
    return f"its task ended ({result.status.lower()}) before the job did"


def resume_stuck_job(stuck: StuckJob, *, note: str = RESUMED_BY_COMMAND) -> bool:
    """Resume a job `stuck_jobs` found (`services.bulk.requeue_job`): whether it was (not
    when it changed meanwhile)."""
    job = stuck.job
    return bulk.requeue_job(
        job.pk, task_id=job.task_id, state=job.state, origin=stuck.origin, note=note
    )
