"""Two-person approval of large deletions.

A team's owners may require that a deletion of more than N of the team's threads
(`Team.approval_threshold`) waits for another owner. A delete job started from a selection
or from ticked rows that involves more than N threads of such a team is made in state
AWAITING_APPROVAL, with one `JobApproval` per team whose rule applies, and is not queued: it
needs an approval from an owner of EVERY one of those teams (superusers act as owners), who
is not the job's requester (a superuser cannot approve their own job either). One owner of
several of the teams approves for each of them at once. The last approval queues the job;
one refusal cancels it; a request not fully approved within APPROVAL_LIFETIME expires (the
worker's sweep marks it, and an approval that comes too late is refused and marks it too).

Retention-policy jobs never wait: an owner set the policy, which is the approval.

Requests, approvals, refusals and expiries are audited in each team's log, with the job in
the details; the owners who may approve are emailed when it is requested.
"""

import logging
import smtplib
from collections import Counter
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.core.mail import send_mail
from django.db import transaction
from django.db.models import QuerySet
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import (
    AuditEvent,
    BulkDeleteJob,
    JobApproval,
    Membership,
    Selection,
    Team,
    TrackedThread,
    WebhookEndpoint,
)
from threads_app.services import webhooks
from threads_app.services.refusals import NotAllowed, Refused

logger = logging.getLogger(__name__)

APPROVAL_LIFETIME = timedelta(hours=72)
MAX_THRESHOLD = 2_147_483_647  # what the column holds
MAX_REASON = 500
Action = AuditEvent.Action
JobState = BulkDeleteJob.State
Decision = JobApproval.Decision
# (team, how many of its threads the job deletes): the approvals a job needs.
Needed = list[tuple[Team, int]]


# --- Which approvals a deletion needs -----------------------------------------------------


def _over_threshold(teams: Iterable[Team], counts: dict[int, int]) -> Needed:
    return [
        (team, counts[team.pk])
        for team in teams
        if team.approval_threshold is not None and counts.get(team.pk, 0) > team.approval_threshold
    ]


def needed_for_selection(user: User, selection: Selection) -> Needed:
    """The approvals deleting the selection needs: none (no query beyond one over the
    teams) unless a team of the user's keys has a rule below the selection's count; then one
    GROUP BY counts the selection's threads of those teams."""
    ruled = list(
        Team.objects.filter(
            approval_threshold__lt=selection.count,
            pk__in=selectors.usable_keys(user).values("team_id"),
        )
    )
    if not ruled:
        return []
    counts = selectors.selection_team_counts(user, selection, [team.pk for team in ruled])
    return _over_threshold(ruled, counts)


def needed_for_threads(threads: Iterable[TrackedThread]) -> Needed:
    """The approvals deleting these (ticked) threads needs."""
    counts = Counter(thread.api_key.team_id for thread in threads if thread.api_key.team_id)
    if not counts:
        return []
    ruled = Team.objects.filter(pk__in=list(counts), approval_threshold__isnull=False)
    return _over_threshold(ruled, dict(counts))


def request_approvals(
    job: BulkDeleteJob, needed: Needed, *, actor: User, origin: Origin | None
) -> None:
    """Make the new job wait for these approvals (inside the transaction that made it, which
    does not queue it): its state and expiry, an approval row, an audit event and a
    `job.needs_approval` webhook per team, and, once committed, an email to the owners who
    may approve."""
    now = timezone.now()
    job.state = JobState.AWAITING_APPROVAL
    job.approval_expires_at = now + APPROVAL_LIFETIME
    job.save(update_fields=["state", "approval_expires_at"])
    JobApproval.objects.bulk_create(
        JobApproval(
            job=job,
            team=team,
            team_name=team.name,
            threads=threads,
            threshold=team.approval_threshold or 0,
        )
        for team, threads in needed
    )
    audit.record_many(
        [
            _event(
                Action.JOB_APPROVAL_REQUESTED,
                job,
                team=team,
                actor=actor,
                origin=origin,
                threads=threads,
                threshold=team.approval_threshold,
            )
            for team, threads in needed
        ]
    )
    webhooks.notify_each(
        event=WebhookEndpoint.Event.JOB_NEEDS_APPROVAL,
        notices=[
            webhooks.Notice(
                team.pk,
                None,
                {
                    "job_id": job.pk,
                    "kind": job.kind,
                    "team_id": team.pk,
                    "threads": threads,
                    "threshold": team.approval_threshold,
                    "created_by": actor.get_username(),
                    "expires_at": job.approval_expires_at.isoformat(),
                },
            )
            for team, threads in needed
        ],
    )
    transaction.on_commit(lambda: _email_approvers(job, needed, actor=actor))


def _event(
    action: str,
    job: BulkDeleteJob,
    *,
    team: Team | None,
    actor: User | None,
    origin: Origin | None,
    **details: object,
) -> AuditEvent:
    return audit.event(
        action=action,
        outcome=AuditEvent.Outcome.SUCCESS,
        actor=actor,
        team=team,
        origin=origin,
        details={"job": job.pk, **details},
    )


def _email_approvers(job: BulkDeleteJob, needed: Needed, *, actor: User) -> None:
    """One email to each owner (with an address) who may approve: the teams, the threads
    and the job's page. Nothing secret: no key, no token. A mail server that fails is
    logged; the request stands (the job list shows it to the owners)."""
    teams: dict[str, list[tuple[Team, int]]] = {}
    owners = Membership.objects.filter(
        team__in=[team for team, _ in needed], role=Membership.Role.OWNER
    ).exclude(user=actor)
    counts = {team.pk: (team, threads) for team, threads in needed}
    for membership in owners.select_related("user").order_by("team__name"):
        if address := membership.user.email.strip():
            teams.setdefault(address.lower(), []).append(counts[membership.team_id])
    path = reverse("threads_app:bulk_delete_job", args=[job.pk])
    for address, theirs in teams.items():
        context = {"job": job, "requester": actor, "teams": theirs, "path": path}
        try:
            send_mail(
                subject=f"[Threads Console] Approve a deletion: job #{job.pk}",
                message=render_to_string("threads_app/email/approval_request.txt", context),
                from_email=None,
                recipient_list=[address],
            )
        except (OSError, smtplib.SMTPException) as error:
            logger.warning("Job %s: the approval email was not sent: %s", job.pk, error)


# --- Approve, refuse, expire ----------------------------------------------------------------


def _check_not_requester(user: User, job: BulkDeleteJob, *, now: datetime) -> None:
    """Refuse the job's requester (superusers too); then expire the request if it is late,
    committed before anything is refused (call outside a transaction)."""
    if job.created_by_id == user.pk:
        raise NotAllowed(
            "You asked for this deletion: another owner must approve or refuse it.",
            code="self_approval",
        )
    expire_approvals(now=now, jobs=BulkDeleteJob.objects.filter(pk=job.pk))


def _waiting_job(job: BulkDeleteJob) -> BulkDeleteJob:
    """The job, locked, if it still waits for approval; refused otherwise."""
    locked = BulkDeleteJob.objects.select_for_update().get(pk=job.pk)
    if locked.state == JobState.EXPIRED:
        raise Refused(
            "This request expired: nobody approved it within 72 hours. Ask for the deletion "
            "again if it is still needed.",
            code="approval_expired",
        )
    if locked.state != JobState.AWAITING_APPROVAL:
        raise Refused(
            f"This job is not awaiting approval (it is {locked.get_state_display().lower()}).",
            code="job_not_awaiting_approval",
        )
    return locked


def _mine(
    user: User, job: BulkDeleteJob, *, now: datetime, team_id: int | None
) -> list[JobApproval]:
    """The job's waiting approvals the user may give (locked), narrowed to one team's for a
    team's access token; NotAllowed when there is none."""
    mine = selectors.approvals_open_to(user, now=now).filter(job=job)
    if team_id is not None:
        mine = mine.filter(team_id=team_id)
    approvals = list(mine.select_for_update(of=("self",)).select_related("team"))
    if not approvals:
        raise NotAllowed(
            "Only an owner of a team whose approval this job waits for can approve or refuse it.",
            code="not_owner",
        )
    return approvals


def approve_job(
    *, user: User, job: BulkDeleteJob, origin: Origin | None = None, team_id: int | None = None
) -> BulkDeleteJob:
    """Approve the job for every team it waits for that the user owns (only `team_id`'s,
    when given: a team's access token). The last approval it needs queues it; its deletions
    are then the requester's, as when a job needs no approval.

    NotAllowed: the requester (`self_approval`), or no such team (`not_owner`); Refused:
    expired (`approval_expired`), or not waiting (`job_not_awaiting_approval`)."""
    return _decide(user=user, job=job, decision=Decision.APPROVED, origin=origin, team_id=team_id)


def refuse_job(
    *,
    user: User,
    job: BulkDeleteJob,
    origin: Origin | None = None,
    reason: str = "",
    team_id: int | None = None,
) -> BulkDeleteJob:
    """Refuse the job (for the teams the user owns among those it waits for): it is
    cancelled and never runs. The same refusals as `approve_job`, and `reason_too_long`."""
    reason = reason.strip()
    if len(reason) > MAX_REASON:
        raise Refused(
            f"Keep the reason to at most {MAX_REASON} characters.",
            field="reason",
            code="reason_too_long",
        )
    return _decide(
        user=user,
        job=job,
        decision=Decision.REFUSED,
        origin=origin,
        team_id=team_id,
        reason=reason,
    )


_DECISION_ACTION: dict[str, str] = {
    Decision.APPROVED: Action.JOB_APPROVED,
    Decision.REFUSED: Action.JOB_APPROVAL_REFUSED,
}


def _decide(
    *,
    user: User,
    job: BulkDeleteJob,
    decision: str,
    origin: Origin | None,
    team_id: int | None,
    reason: str = "",
) -> BulkDeleteJob:
    """Record the user's decision for each of their approvals the job waits for, audited; a
    refusal cancels the job, the last approval queues it."""
    from threads_app.services.jobs import queue_job  # jobs starts the jobs this module holds

    now = timezone.now()
    _check_not_requester(user, job, now=now)
    with transaction.atomic():
        job = _waiting_job(job)
        approvals = _mine(user, job, now=now, team_id=team_id)
        JobApproval.objects.filter(pk__in=[a.pk for a in approvals]).update(
            decision=decision, decided_by=user, decided_at=now, reason=reason
        )
        details = {"reason": reason} if decision == Decision.REFUSED else {}
        audit.record_many(
            [
                _event(
                    _DECISION_ACTION[decision],
                    job,
                    team=approval.team,
                    actor=user,
                    origin=origin,
                    threads=approval.threads,
                    **details,
                )
                for approval in approvals
            ]
        )
        if decision == Decision.REFUSED:
            job.state, job.finished_at = JobState.CANCELLED, now
            job.save(update_fields=["state", "finished_at"])
        elif not job.approvals.filter(decision=Decision.WAITING).exists():
            job.state = JobState.QUEUED
            job.save(update_fields=["state"])
            # The run's deletions are the requester's; the approver's address is in the
            # approval's event, not in theirs.
            queue_job(job, origin=None)
    job.refresh_from_db()
    return job


def expire_approvals(
    *, now: datetime | None = None, jobs: QuerySet[BulkDeleteJob] | None = None
) -> int:
    """Expire the requests not fully approved in time (of `jobs`, a queryset, when given):
    each job once (a conditional UPDATE), with an event per team whose approval it still
    awaited. How many expired. Run by the worker's sweep, and by an approval found late."""
    now = now or timezone.now()
    overdue = (jobs if jobs is not None else BulkDeleteJob.objects.all()).filter(
        state=JobState.AWAITING_APPROVAL, approval_expires_at__lte=now
    )
    count = 0
    for job in overdue.select_related("created_by"):
        with transaction.atomic():
            if not BulkDeleteJob.objects.filter(pk=job.pk, state=JobState.AWAITING_APPROVAL).update(
                state=JobState.EXPIRED, finished_at=now
            ):
                continue
            waiting = job.approvals.filter(decision=Decision.WAITING).select_related("team")
            audit.record_many(
                [
                    _event(
                        Action.JOB_APPROVAL_EXPIRED,
                        job,
                        team=approval.team,
                        actor=None,
                        origin=None,
                        threads=approval.threads,
                        requested_by=job.created_by.get_username(),
                    )
                    for approval in waiting
                ]
            )
            count += 1
    return count
