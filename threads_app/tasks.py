"""Background tasks, run by `manage.py db_worker`, and the worker's sweep.

Tasks use the django-tasks backport of Django 6's `django.tasks` (on Django 6 the import
becomes `from django.tasks import task`); the database backend (django-tasks-db) queues them
in the `DBTaskResult` table. A task's return value must be JSON: it is stored with its result.
"""

import logging
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django_tasks import TaskContext, task
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from threads_app import selectors
from threads_app.models import BulkDeleteJob, WorkerHeartbeat
from threads_app.services import bulk
from threads_app.services.counts import fold_thread_counts
from threads_app.services.reconcile import reconcile_all
from threads_app.services.retention import enforce_retention
from threads_app.services.tokens import record_expired_tokens

logger = logging.getLogger(__name__)


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
        "threads": sum(len(enforcement.thread_ids) for enforcement in done),
        "jobs": sum(len(enforcement.jobs) for enforcement in done),
    }


@task(takes_context=True)
def bulk_delete_task(
    context: TaskContext, *, job_id: int, origin: bulk.OriginData | None = None
) -> dict[str, int]:
    """`services.bulk.run_bulk_delete` for the job, as this task (see `sweep` for a worker
    that dies while running it). If the run raises, the job is failed with the error (its
    page shows it) and the task is recorded failed with it: never dropped silently."""
    result = context.task_result
    worker_id = result.worker_ids[-1] if result.worker_ids else ""
    try:
        bulk.run_bulk_delete(
            job_id, origin=bulk.origin_from_data(origin), task_id=result.id, worker_id=worker_id
        )
    except Exception as exc:
        bulk.fail_job(job_id, exc, task_id=result.id)
        raise
    return selectors.bulk_delete_outcome_counts(job_id)


BULK_DELETE_TASK = bulk_delete_task.module_path


def sweep() -> list[DBTaskResult[..., Any]]:
    """Fail the RUNNING tasks whose worker is gone; return them (the crash-safety hook).

    A task is abandoned when it started more than WORKER_LEASE_SECONDS ago and the worker
    that claimed it last has not beaten within that lease (killed with -9, its machine lost).
    It is marked FAILED with a `WorkerLost` error, once: the update is conditional on the
    task still being RUNNING from the same start, so two workers sweeping at once cannot both
    report it. An abandoned `bulk_delete_task` is resumed in the same transaction: its job
    notes "resumed after the worker stopped" and a new task is queued for it (any live worker
    takes it), so each abandoned job is resumed exactly once. Heartbeat rows older than the
    lease are then removed, the thread counters' shards folded (`fold_thread_counts`) and the
    access tokens that expired since the last sweep audited (`record_expired_tokens`).
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
        worker_id = result.worker_ids[-1] if result.worker_ids else ""
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
    return abandoned


def _resume_bulk_delete(result: DBTaskResult[..., Any]) -> None:
    """Queue a new run of the abandoned task's job, if that task still ran it."""
    kwargs = result.args_kwargs.get("kwargs", {})
    bulk.resume_job(
        kwargs.get("job_id"),
        task_id=str(result.pk),
        state=BulkDeleteJob.State.RUNNING,
        origin=kwargs.get("origin"),
        note=bulk.RESUMED_AFTER_WORKER_STOPPED,
    )
