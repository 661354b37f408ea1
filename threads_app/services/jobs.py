"""Jobs over many threads: selections (the list's filter, frozen), the jobs they start, and
pausing, resuming and cancelling a job.

A job is rows (`BulkDeleteJob` and its items): this module makes and steers them, and never
does work proportional to a job's size: the worker fills a job's items from its source
(`services.bulk.run_bulk_delete`). It does not know the task backend either: `tasks.py`
gives it the one function that queues a job's run (`run_jobs_with`), so services never
import the task module (which imports them).
"""

from collections.abc import Callable
from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import (
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    RetentionPolicy,
    SavedView,
    Selection,
    Team,
)
from threads_app.selectors import ThreadFilters
from threads_app.services import approvals
from threads_app.services.refusals import NotAllowed, Refused

JobState = BulkDeleteJob.State
# Queues a run of the job (given its pk and origin); returns the task's id.
JobRunner = Callable[[int, Origin | None], str]
_runner: list[JobRunner] = []


def run_jobs_with(runner: JobRunner) -> None:
    """Set how a job's run is queued (`threads_app.tasks` does, when the app starts)."""
    _runner[:] = [runner]


def queue_job(job: BulkDeleteJob, *, origin: Origin | None, at_commit: bool = True) -> None:
    """Queue a run of the job once the current transaction commits (`at_commit`), or now,
    inside it (a resume, committed with the finding that the old run is gone); the job
    names its task from then on."""

    def enqueue() -> None:
        if not _runner:
            raise RuntimeError("No job runner: threads_app.tasks sets it when the app starts")
        task_id = _runner[0](job.pk, origin)
        # An immediate backend has run the job already, and named its task: kept as it is.
        BulkDeleteJob.objects.filter(pk=job.pk, task_id="").update(task_id=task_id)

    if at_commit:
        transaction.on_commit(enqueue)
    else:
        enqueue()


# --- Selections -------------------------------------------------------------------------


def create_selection(
    *, user: User, filters: ThreadFilters, saved_view: SavedView | None = None
) -> Selection:
    """Freeze the list's filter for the user: the threads matching it now, and none tracked
    later (`bound_pk`); `count` is how many of them the user may act on."""
    selection = Selection(
        created_by=user,
        filters=filters.to_data(),
        bound_pk=selectors.highest_thread_pk(),
        saved_view=saved_view,
    )
    selection.count = selectors.selection_threads(user, selection).count()
    selection.save()
    return selection


def start_selection_job(
    *,
    user: User,
    selection: Selection,
    action: str = "delete",
    typed_count: int,
    origin: Origin | None = None,
) -> BulkDeleteJob:
    """Start deleting (`action` "delete") or exporting ("export") the selection: a waiting
    job that the worker fills and runs. Nothing here depends on the selection's size (no
    count, no items). An export's request is audited (`export.requested`).

    Refused when the action is unknown (`unknown_action`), the selection is empty
    (`empty_selection`), `typed_count` is not its count (`count_mismatch`), or a job of it is
    still under way (`deletion_underway`); NotAllowed unless it is the user's selection. The
    caller checks for a recent authentication (a page: `recent_authentication_required`).
    A deletion that a team's approval rule covers waits for its owners' approval
    (`services.approvals`) instead of being queued; an export never does.
    """
    if not selectors.visible_selections(user).filter(pk=selection.pk).exists():
        raise NotAllowed("This selection is not yours.")
    if action not in BulkDeleteJob.Kind.values:
        raise Refused(f"Unknown action “{action}”: delete or export.", code="unknown_action")
    verb = "exported" if action == BulkDeleteJob.Kind.EXPORT else "deleted"
    if not selection.count:
        raise Refused(f"Nothing in this selection can be {verb}.", code="empty_selection")
    if typed_count != selection.count:
        raise Refused(
            f"Type the number of threads, {selection.count}, to confirm.",
            field="typed_count",
            code="count_mismatch",
        )
    exporting = action == BulkDeleteJob.Kind.EXPORT
    needed = [] if exporting else approvals.needed_for_selection(user, selection)
    with transaction.atomic():
        live = selection.jobs.select_for_update().filter(state__in=selectors.LIVE_JOB_STATES)
        if (underway := live.first()) is not None:
            doing = "exporting" if underway.kind == BulkDeleteJob.Kind.EXPORT else "deleting"
            raise Refused(f"A job is already {doing} this selection.", code="deletion_underway")
        job = BulkDeleteJob.objects.create(
            kind=action,
            created_by=user,
            state=JobState.QUEUED,
            selection=selection,
            team_id=_selection_team_id(user, selection),
            filled=False,
            bound_pk=selection.bound_pk,
        )
        if exporting:
            audit.record(
                action=AuditEvent.Action.EXPORT_REQUESTED,
                outcome=AuditEvent.Outcome.SUCCESS,
                actor=user,
                team=job.team,
                owner=user if job.team_id is None else None,
                origin=origin,
                details={"job": job.pk, "selection": selection.pk, "count": selection.count},
            )
        start_or_await(job, needed, actor=user, origin=origin)
    return job


def start_or_await(
    job: BulkDeleteJob, needed: approvals.Needed, *, actor: User, origin: Origin | None
) -> None:
    """Queue the new job, or make it wait for the approvals it `needed` (inside the
    transaction that made it)."""
    if needed:
        approvals.request_approvals(job, needed, actor=actor, origin=origin)
    else:
        queue_job(job, origin=origin)


def _selection_team_id(user: User, selection: Selection) -> int | None:
    """The team a selection is narrowed to (by team, or by one of its keys), if any."""
    filters = selectors.selection_filters(selection)
    if filters.team_id is not None:
        return filters.team_id
    if filters.key_id is not None:
        key = selectors.visible_keys(user).filter(pk=filters.key_id).first()
        return key.team_id if key is not None else None
    return None


def start_policy_job(
    policy: RetentionPolicy, *, bound_pk: int, as_of: datetime, origin: Origin | None
) -> BulkDeleteJob:
    """Start enforcing a retention policy: one job, in its setter's name, that the worker
    fills with the key's threads older than the policy allows as of `as_of` (kept as the
    job's `created_at`, which the fill reads), up to `bound_pk`."""
    assert policy.set_by is not None  # `retention_not_enforced` says why a policy has none
    with transaction.atomic():
        job = BulkDeleteJob.objects.create(
            created_by=policy.set_by,
            state=JobState.QUEUED,
            policy=policy,
            team_id=policy.api_key.team_id,
            filled=False,
            bound_pk=bound_pk,
        )
        BulkDeleteJob.objects.filter(pk=job.pk).update(created_at=as_of)
        job.created_at = as_of
        queue_job(job, origin=origin)
    return job


# --- Pause, resume, cancel --------------------------------------------------------------


def _check_may_steer(user: User, job: BulkDeleteJob) -> None:
    if not selectors.visible_jobs(user).filter(pk=job.pk).exists():
        raise NotAllowed("You may not change this job.")


def pause_job(*, user: User, job: BulkDeleteJob) -> BulkDeleteJob:
    """Pause a waiting or running job: its run stops after the batch in hand (the deletions
    in flight get their outcomes). A waiting job's queued task then does nothing."""
    _check_may_steer(user, job)
    jobs = BulkDeleteJob.objects.filter(pk=job.pk)
    paused = jobs.filter(state=JobState.QUEUED).update(state=JobState.PAUSED, task_id="") or (
        jobs.filter(state=JobState.RUNNING).update(state=JobState.PAUSED)
    )
    if not paused:
        raise Refused("Only a waiting or running job can be paused.", code="job_not_running")
    job.refresh_from_db()
    return job


def resume_job(*, user: User, job: BulkDeleteJob, origin: Origin | None = None) -> BulkDeleteJob:
    """Resume a paused job whose run has stopped: a new run is queued, which first resolves
    anything left between intent and outcome."""
    _check_may_steer(user, job)
    with transaction.atomic():
        resumed = BulkDeleteJob.objects.filter(pk=job.pk, state=JobState.PAUSED, task_id="")
        if not resumed.update(state=JobState.QUEUED):
            job.refresh_from_db()
            if job.state == JobState.PAUSED:
                raise Refused(
                    "The job is still finishing the deletions it had begun: try again in a moment.",
                    code="job_stopping",
                )
            raise Refused("Only a paused job can be resumed.", code="job_not_paused")
        queue_job(job, origin=origin)
    job.refresh_from_db()
    return job


def cancel_job(*, user: User, job: BulkDeleteJob) -> BulkDeleteJob:
    """Cancel a job that has not finished (or still awaits approval): nothing more is begun,
    the deletions in flight get their outcomes, and the threads not reached stay as they
    are."""
    _check_may_steer(user, job)
    jobs, now = BulkDeleteJob.objects.filter(pk=job.pk), timezone.now()
    idle = jobs.filter(state__in=[JobState.QUEUED, JobState.PAUSED, JobState.AWAITING_APPROVAL])
    interrupted = job.items.filter(
        outcome=BulkDeleteItem.Outcome.PENDING, intent_sequence__isnull=False
    )
    if not interrupted.exists():  # a queued task has nothing to resolve: it is let go
        idle = idle.filter(Q(state=JobState.QUEUED) | Q(task_id=""))
        stopped = idle.update(state=JobState.CANCELLED, task_id="", finished_at=now)
    else:  # its queued run resolves them first, then leaves it
        stopped = 0
    stopped = stopped or jobs.filter(
        state__in=[JobState.QUEUED, JobState.RUNNING, JobState.PAUSED]
    ).update(state=JobState.CANCELLED)
    if not stopped:
        raise Refused("The job has already ended.", code="job_ended")
    job.refresh_from_db()
    return job


# --- Saved views ------------------------------------------------------------------------


def save_view(
    *, user: User, name: str, filters: ThreadFilters, team: Team | None = None
) -> SavedView:
    """Name the list's filter and sort: the user's own, or (an owner's) shared with a team."""
    if team is not None and not selectors.owned_teams(user).filter(pk=team.pk).exists():
        raise NotAllowed("Only the team's owners can share a view with it.", code="not_owner")
    views = selectors.saved_views(user).filter(team=team)
    if team is None:
        views = views.filter(created_by=user)
    if views.filter(name__iexact=name).exists():
        raise Refused(f"There is already a view named “{name}”.", field="name", code="duplicate")
    return SavedView.objects.create(
        name=name, created_by=user, team=team, filters=filters.to_data()
    )


def remove_saved_view(*, user: User, view: SavedView) -> None:
    """Remove a saved view: its creator, or an owner of the team it is shared with."""
    if not selectors.may_remove_saved_view(user, view):
        raise NotAllowed("Only its creator or the team's owners can remove this view.")
    view.delete()
