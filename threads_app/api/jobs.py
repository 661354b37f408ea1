"""The one place the API reaches background jobs: start a delete over ticked threads, a
job's status, cancel, approve or refuse, a finished job's receipt, an export's file (the
jobs of `services.jobs`, whatever selected their threads; approvals are
`services.approvals`)."""

from dataclasses import dataclass
from datetime import datetime

from django.db.models import Exists, OuterRef, QuerySet
from django.shortcuts import get_object_or_404

from threads_app import selectors
from threads_app.api.base import Principal
from threads_app.audit import Origin
from threads_app.models import BulkDeleteItem, BulkDeleteJob
from threads_app.services import approvals, bulk, exports, jobs, receipts
from threads_app.services.exports import ExportDownload
from threads_app.services.refusals import NotAllowed

Outcome = BulkDeleteItem.Outcome


@dataclass(frozen=True)
class JobItem:
    thread: int | None
    thread_id: str
    outcome: str
    message: str
    request_id: str


@dataclass(frozen=True)
class JobApprovalStatus:
    team: str
    threads: int
    decision: str  # "" (waiting), approved or refused
    decided_by: str
    decided_at: datetime | None


@dataclass(frozen=True)
class JobStatus:
    id: int
    kind: str
    # approval, queued, running, paused, cancelled, finished, failed or expired
    state: str
    total: int
    done: int
    counts: dict[str, int]
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    failure: str
    items: list[JobItem]
    approval_expires_at: datetime | None
    approvals: list[JobApprovalStatus]


def _visible_jobs(principal: Principal) -> QuerySet[BulkDeleteJob]:
    """The user's jobs; a team token's, only those whose every thread is the team's."""
    visible = selectors.visible_jobs(principal.user)
    if principal.team_id is None:
        return visible
    elsewhere = BulkDeleteItem.objects.filter(job=OuterRef("pk")).exclude(
        tracked_thread__api_key__team_id=principal.team_id
    )
    return visible.exclude(Exists(elsewhere))


def get_job(principal: Principal, pk: int) -> BulkDeleteJob:
    return get_object_or_404(_visible_jobs(principal), pk=pk)


def start_delete(*, principal: Principal, thread_ids: list[int], origin: Origin) -> BulkDeleteJob:
    """A delete job of the ticked threads the token may delete (the others are left out, as
    the confirmation page says); refused when none may be."""
    ids = thread_ids
    if principal.team_id is not None:
        in_team = selectors.visible_threads(principal.user).filter(
            pk__in=ids, api_key__team_id=principal.team_id
        )
        ids = list(in_team.values_list("pk", flat=True))
    try:
        if not ids:
            raise bulk.NothingToDelete(selectors.bulk_delete_selection(principal.user, ids))
        return bulk.start_bulk_delete(actor=principal.user, thread_ids=ids, origin=origin)
    except bulk.NothingToDelete as refusal:
        # As the pages answer: none of the threads named may be deleted by this user (403).
        raise NotAllowed(refusal.message, code=refusal.code) from None


def status(principal: Principal, job: BulkDeleteJob) -> JobStatus:
    """The job as the token's user sees it (its items: `selectors.job_thread_teams`)."""
    progress = selectors.job_progress(job, teams=selectors.job_thread_teams(principal.user, job))
    return JobStatus(
        id=job.pk,
        kind=job.kind,
        state=BulkDeleteJob.State.FAILED if progress.failed else job.state,
        total=progress.total,
        done=progress.done,
        counts={outcome: count for outcome, _label, count in progress.counts},
        created_by=job.created_by.get_username(),
        created_at=job.created_at,
        finished_at=job.finished_at,
        failure=progress.failure,
        items=[
            JobItem(
                item.tracked_thread_id,
                item.thread_id,
                item.outcome,
                item.message,
                item.request_id,
            )
            for item in progress.items
        ],
        approval_expires_at=job.approval_expires_at,
        approvals=[
            JobApprovalStatus(
                approval.team_name,
                approval.threads,
                approval.decision,
                approval.decided_by.get_username() if approval.decided_by else "",
                approval.decided_at,
            )
            for approval in job.approvals.select_related("decided_by")
        ],
    )


def export_download(*, principal: Principal, pk: int, origin: Origin) -> ExportDownload:
    """An export job's file, as the page's download: 404 for a job out of sight (or not an
    export), 403 unless the token's maker asked for it or owns its team."""
    job = get_object_or_404(_visible_jobs(principal).filter(kind=BulkDeleteJob.Kind.EXPORT), pk=pk)
    if not selectors.may_download_export(principal.user, job):
        raise NotAllowed(
            "Only whoever asked for this export and its team's owners may download it."
        )
    return exports.open_export(user=principal.user, job=job, origin=origin)


def cancel(*, principal: Principal, job: BulkDeleteJob) -> BulkDeleteJob:
    """Cancel a job that has not finished (`services.jobs.cancel_job`): nothing more is
    begun, the deletions in flight get their outcomes."""
    return jobs.cancel_job(user=principal.user, job=job)


def receipt(
    *, principal: Principal, job: BulkDeleteJob, format: receipts.Format, origin: Origin
) -> receipts.IssuedReceipt:
    """The job's receipt, to stream (`services.receipts.issue_receipt`: audited; refused
    until the job has finished)."""
    return receipts.issue_receipt(user=principal.user, job=job, format=format, origin=origin)


def approve(*, principal: Principal, job: BulkDeleteJob, origin: Origin) -> BulkDeleteJob:
    """Approve a job awaiting approval (`services.approvals.approve_job`); a team's token
    approves for its own team only."""
    return approvals.approve_job(
        user=principal.user, job=job, origin=origin, team_id=principal.team_id
    )


def refuse(
    *, principal: Principal, job: BulkDeleteJob, origin: Origin, reason: str
) -> BulkDeleteJob:
    """Refuse a job awaiting approval: it is cancelled and never runs."""
    return approvals.refuse_job(
        user=principal.user, job=job, origin=origin, reason=reason, team_id=principal.team_id
    )
