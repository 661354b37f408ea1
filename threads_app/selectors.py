"""Reads: what a user may see or use. Every object lookup in a view goes through here.

An object outside these querysets is a 404 for that user, on full pages and partials alike.
"""

import uuid
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from itertools import groupby
from typing import Any, ClassVar, TypedDict, cast

from allauth.account.internal.userkit import get_user_by_username
from allauth.mfa.models import Authenticator
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db import DatabaseError, connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import (
    Count,
    Exists,
    F,
    IntegerField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    Sum,
)
from django.db.models.functions import Coalesce
from django.db.models.lookups import GreaterThanOrEqual, LessThanOrEqual
from django.shortcuts import get_object_or_404
from django.utils import timezone
from django_tasks_db.compat import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from threads_app.models import (
    CREATED,
    LABEL_KEY,
    ApiKey,
    ApiToken,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    DailyThreadActivity,
    Invitation,
    JobApproval,
    Membership,
    RetentionPolicy,
    SavedView,
    Selection,
    Team,
    TrackedThread,
    WebhookDelivery,
    WebhookEndpoint,
    WorkerHeartbeat,
    normalise_identifier,
)
from threads_app.paging import Page, keyset_page
from threads_app.receipts import ReceiptLine
from threads_app.upstream import Thread

Role = Membership.Role
WRITER_ROLES = (Role.OWNER, Role.MEMBER)


class _TeamId(TypedDict):
    team_id: int


def _team_ids(user: User, roles: Iterable[str] | None = None) -> QuerySet[Membership, _TeamId]:
    memberships = Membership.objects.filter(user=user)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("team_id")


def visible_teams(user: User) -> QuerySet[Team]:
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)


def team_role(user: User, team: Team) -> str | None:
    """The user's role in the team, or None. Superusers act as owners everywhere."""
    if user.is_superuser:
        return Role.OWNER
    return Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()


def visible_keys(user: User) -> QuerySet[ApiKey]:
    """Keys whose label and hint the user may see (never their secrets)."""
    if user.is_superuser:
        return ApiKey.objects.all()
    return ApiKey.objects.filter(Q(owner=user) | Q(team__in=_team_ids(user)))


def usable_keys(user: User) -> QuerySet[ApiKey]:
    """Live keys the user may call the upstream with: their own, and teams they write in."""
    keys = ApiKey.objects.filter(revoked_at__isnull=True)
    if user.is_superuser:
        return keys
    return keys.filter(Q(owner=user) | Q(team__in=_team_ids(user, WRITER_ROLES)))


def manageable_keys(user: User) -> QuerySet[ApiKey]:
    """Keys the user may rotate or revoke: their own, and keys of teams they own."""
    if user.is_superuser:
        return ApiKey.objects.all()
    return ApiKey.objects.filter(Q(owner=user) | Q(team__in=_team_ids(user, [Role.OWNER])))


def visible_threads(user: User) -> QuerySet[TrackedThread]:
    threads = TrackedThread.objects.select_related("api_key", "api_key__team", "tracked_by")
    if user.is_superuser:
        return threads
    return threads.filter(Q(api_key__owner=user) | Q(api_key__team__in=_team_ids(user)))


def writable_threads(user: User) -> QuerySet[TrackedThread]:
    """Threads the user may edit, delete or untrack: those under keys they may use."""
    return visible_threads(user).filter(api_key__in=usable_keys(user))


def _audit_scope(user: User, *, no_team: int | None = None) -> Q:
    """What of the audit log a user may see: their teams', and their personal keys' (the rows
    whose team is `no_team`)."""
    return Q(team_id__in=_team_ids(user)) | Q(team_id=no_team, owner_id=user.pk)


def visible_audit_events(user: User) -> QuerySet[AuditEvent]:
    if user.is_superuser:
        return AuditEvent.objects.all()
    return AuditEvent.objects.filter(_audit_scope(user))


def _forbid_unless(allowed: bool, reason: str) -> None:
    """The one 403 of the lookups below: the object is in sight, the action is not allowed."""
    if not allowed:
        raise PermissionDenied(reason)


def get_visible_thread(user: User, pk: int) -> TrackedThread:
    return get_object_or_404(visible_threads(user), pk=pk)


def can_change_thread(user: User, thread: TrackedThread) -> bool:
    """Whoever may use a thread's key may change the thread (using it implies seeing it)."""
    return usable_keys(user).filter(pk=thread.api_key_id).exists()


def get_writable_thread(user: User, pk: int) -> TrackedThread:
    """404 when the user may not see the thread, 403 when they may only look at it."""
    thread = get_visible_thread(user, pk)
    _forbid_unless(
        can_change_thread(user, thread), "You may look at this thread but not change it."
    )
    return thread


def get_visible_key(user: User, pk: int) -> ApiKey:
    return get_object_or_404(visible_keys(user), pk=pk)


def get_manageable_key(user: User, pk: int) -> ApiKey:
    """404 when the user may not see the key, 403 when they may see but not manage it."""
    key = get_visible_key(user, pk)
    _forbid_unless(
        manageable_keys(user).filter(pk=key.pk).exists(),
        "Only the key's owner or a team owner can change this key.",
    )
    return key


def get_visible_team(user: User, pk: int) -> Team:
    return get_object_or_404(visible_teams(user), pk=pk)


# --- Access tokens of the automation API ------------------------------------------------------


def manageable_tokens(user: User) -> QuerySet[ApiToken]:
    """Tokens the user may see and revoke: their personal ones, and those of the teams they
    own (whoever made them). Superusers act as owners everywhere."""
    tokens = ApiToken.objects.select_related("created_by", "team")
    if user.is_superuser:
        return tokens
    mine = Q(team__isnull=True, created_by=user)
    return tokens.filter(mine | Q(team__in=_team_ids(user, [Role.OWNER])))


def get_manageable_token(user: User, pk: int) -> ApiToken:
    return get_object_or_404(manageable_tokens(user), pk=pk)


# --- Webhooks ---------------------------------------------------------------------------------


def visible_webhooks(user: User) -> QuerySet[WebhookEndpoint]:
    """Endpoints whose settings and deliveries the user may see: their own, and their
    teams' (any role). Never their secrets."""
    endpoints = WebhookEndpoint.objects.select_related("team", "owner")
    if user.is_superuser:
        return endpoints
    return endpoints.filter(Q(owner=user) | Q(team__in=_team_ids(user)))


def manageable_webhooks(user: User) -> QuerySet[WebhookEndpoint]:
    """Endpoints the user may change, rotate, delete and send again: their own, and those of
    the teams they own."""
    endpoints = WebhookEndpoint.objects.select_related("team", "owner")
    if user.is_superuser:
        return endpoints
    return endpoints.filter(Q(owner=user) | Q(team__in=_team_ids(user, [Role.OWNER])))


def may_manage_webhook(user: User, endpoint: WebhookEndpoint) -> bool:
    return manageable_webhooks(user).filter(pk=endpoint.pk).exists()


def get_visible_webhook(user: User, pk: int) -> WebhookEndpoint:
    return get_object_or_404(visible_webhooks(user), pk=pk)


def get_manageable_webhook(user: User, pk: int) -> WebhookEndpoint:
    """404 when the user may not see the endpoint, 403 when they may only look at it."""
    endpoint = get_visible_webhook(user, pk)
    _forbid_unless(
        may_manage_webhook(user, endpoint),
        "Only the team's owners (or the endpoint's owner) can change this endpoint.",
    )
    return endpoint


def get_manageable_delivery(user: User, pk: int) -> WebhookDelivery:
    """A delivery of an endpoint the user may manage: 404 out of sight, 403 to look only."""
    delivery = get_object_or_404(
        WebhookDelivery.objects.select_related("endpoint", "endpoint__team"),
        pk=pk,
        endpoint__in=visible_webhooks(user),
    )
    _forbid_unless(
        may_manage_webhook(user, delivery.endpoint),
        "Only the team's owners (or the endpoint's owner) can send this again.",
    )
    return delivery


RECENT_DELIVERIES = 50


def recent_deliveries(endpoint: WebhookEndpoint) -> list[WebhookDelivery]:
    """The endpoint's newest deliveries, each with its attempts (newest first)."""
    return list(
        endpoint.deliveries.prefetch_related("attempt_rows").order_by("-created_at", "-id")[
            :RECENT_DELIVERIES
        ]
    )


def enabled_webhooks(*, team_ids: set[int], owner_ids: set[int]) -> list[WebhookEndpoint]:
    """The enabled endpoints of these teams and of these users' own."""
    if not team_ids and not owner_ids:
        return []
    return list(
        WebhookEndpoint.objects.filter(
            Q(team_id__in=team_ids) | Q(owner_id__in=owner_ids), enabled=True
        )
    )


def due_webhook_delivery_ids(now: datetime) -> list[int]:
    return list(
        WebhookDelivery.objects.filter(
            status=WebhookDelivery.Status.PENDING, next_attempt_at__lte=now, endpoint__enabled=True
        )
        .order_by("next_attempt_at", "pk")
        .values_list("pk", flat=True)
    )


def webhook_owner_emails(endpoint: WebhookEndpoint) -> list[str]:
    """Whom to tell about the endpoint: the team's owners, or its own owner (with an email,
    active accounts only)."""
    if endpoint.team_id is not None:
        users = User.objects.filter(
            memberships__team_id=endpoint.team_id, memberships__role=Role.OWNER
        )
    else:
        users = User.objects.filter(webhook_endpoints=endpoint)
    emails = users.filter(is_active=True).exclude(email="").values_list("email", flat=True)
    return sorted(set(emails))


# --- Operations: what the health endpoint, the metrics and the worker read -------------------


def database_problem() -> str | None:
    """Why the app cannot use its database (unreachable, or migrations not applied), or None."""
    try:
        connection.ensure_connection()
        executor = MigrationExecutor(connection)
        pending = executor.migration_plan(executor.loader.graph.leaf_nodes())
    except DatabaseError:
        return "unreachable"
    return "migrations pending" if pending else None


class Health(TypedDict):
    """What the health endpoint tells a load balancer; nothing else."""

    database: str  # "ok" or "unreachable"
    migrations: str  # "applied", "pending" or "unknown" (the database is unreachable)
    worker_heartbeat_age_seconds: float | None  # None: no worker has beaten (or unknown)
    queue_depth: int | None  # None: unknown


def health() -> Health:
    problem = database_problem()
    if problem == "unreachable":
        return Health(
            database="unreachable",
            migrations="unknown",
            worker_heartbeat_age_seconds=None,
            queue_depth=None,
        )
    report = Health(
        database="ok",
        migrations="pending" if problem else "applied",
        worker_heartbeat_age_seconds=None,
        queue_depth=None,
    )
    try:  # with migrations pending, the tables may not be there yet
        report["worker_heartbeat_age_seconds"] = newest_heartbeat_age()
        report["queue_depth"] = queue_depth()
    except DatabaseError:
        pass
    return report


def newest_heartbeat_age(now: datetime | None = None) -> float | None:
    """Seconds since the most recent worker heartbeat, or None if no worker ever beat."""
    newest: datetime | None = WorkerHeartbeat.objects.aggregate(newest=Max("beat_at"))["newest"]
    if newest is None:
        return None
    return max(0.0, ((now or timezone.now()) - newest).total_seconds())


def live_worker_ids(*, lease_seconds: float) -> set[str]:
    """Workers that beat within the lease."""
    since = timezone.now() - timedelta(seconds=lease_seconds)
    return set(
        WorkerHeartbeat.objects.filter(beat_at__gte=since).values_list("worker_id", flat=True)
    )


def queue_depth() -> int:
    """Tasks ready to run now (queued, not waiting for a later time)."""
    return DBTaskResult.objects.ready().count()


def task_counts() -> dict[str, int]:
    """Background tasks by status (READY, RUNNING, SUCCESSFUL, FAILED)."""
    rows = DBTaskResult.objects.order_by().values_list("status").annotate(count=Count("pk"))
    return {status: 0 for status in TaskResultStatus.values} | dict(rows)


def bulk_delete_job_counts() -> dict[str, int]:
    """Bulk-delete jobs by state."""
    rows = BulkDeleteJob.objects.order_by().values_list("state").annotate(count=Count("pk"))
    return {state: 0 for state in BulkDeleteJob.State.values} | dict(rows)


# --- Teams: overview, members, keys, and who may manage them -----------------------------


def is_team_owner(user: User, team: Team) -> bool:
    return team_role(user, team) == Role.OWNER


# The two subqueries of the facts, built once: the user is loaded with them on every request,
# and building their filters anew each time cost a third of that query's time. (Annotating
# copies an expression before resolving it, so one instance serves every query.)
_STRICT_TEAM_NAME = Subquery(
    Team.objects.filter(
        owners_need_two_factor=True,
        memberships__user=OuterRef("pk"),
        memberships__role=Role.OWNER,
    )
    .order_by("name")
    .values("name")[:1]
)
_HAS_TOTP = Exists(Authenticator.objects.filter(user=OuterRef("pk"), type=Authenticator.Type.TOTP))


def with_two_factor_facts(users: QuerySet[User]) -> QuerySet[User]:
    """The users with what the two-factor check needs, read in the same query: the first team
    (by name) of theirs whose owners must use two-factor (`strict_team_name`, None if none)
    and whether they have an authenticator app (`has_totp`). The authentication backend loads
    the signed-in user this way, so the check on every page costs no query of its own."""
    return users.annotate(strict_team_name=_STRICT_TEAM_NAME, has_totp=_HAS_TOTP)


def _two_factor_facts(user: User) -> tuple[str | None, bool]:
    if not hasattr(user, "has_totp"):  # not loaded by the authentication backend
        user = with_two_factor_facts(User.objects.filter(pk=user.pk)).get()
    team: str | None = getattr(user, "strict_team_name", None)
    return team, bool(getattr(user, "has_totp", False))


def two_factor_required_by(user: User) -> str | None:
    """Why the user must use two-factor authentication (REQUIRE_2FA, or a team whose owners
    must), or None when nothing requires it."""
    if settings.REQUIRE_2FA:
        return "This site requires two-factor authentication for everyone."
    team, _ = _two_factor_facts(user)
    return f"{team} requires its owners to use two-factor authentication." if team else None


def has_two_factor(user: User) -> bool:
    return _two_factor_facts(user)[1]


def owners_without_two_factor(team: Team) -> QuerySet[User]:
    """The team's owners who have no authenticator app: those a rule requiring it of the
    team's owners would send to turn it on."""
    return (
        User.objects.filter(memberships__team=team, memberships__role=Role.OWNER)
        .exclude(_HAS_TOTP)
        .order_by("username")
    )


def teams_overview(user: User) -> QuerySet[Team]:
    """The user's teams with their own role (None for a superuser outside the team), member
    count and live key count."""
    my_role = Membership.objects.filter(team=OuterRef("pk"), user=user).values("role")[:1]
    # Re-filtered by pk: counting over visible_teams' own membership join would count 1.
    return Team.objects.filter(pk__in=visible_teams(user).values("pk")).annotate(
        my_role=Subquery(my_role),
        member_count=Count("memberships", distinct=True),
        live_key_count=Count(
            "api_keys", filter=Q(api_keys__revoked_at__isnull=True), distinct=True
        ),
    )


def team_members(team: Team) -> QuerySet[Membership]:
    return team.memberships.select_related("user").order_by("user__username")


def team_keys(user: User, team: Team) -> QuerySet[ApiKey]:
    """The team's keys as the user may see them (label, hint, use; never the secret)."""
    return visible_keys(user).filter(team=team).annotate(tracked_count=_tracked_threads())


def get_manageable_team(user: User, pk: int) -> Team:
    """404 when the user is not in the team, 403 when they are but not as an owner."""
    team = get_visible_team(user, pk)
    _forbid_unless(is_team_owner(user, team), "Only the team's owners can do this.")
    return team


def may_remove_member(user: User, membership: Membership) -> bool:
    """Owners remove anyone; everyone may remove themself (leave)."""
    return membership.user_id == user.pk or is_team_owner(user, membership.team)


def get_team_membership(team: Team, membership_pk: int) -> Membership:
    return get_object_or_404(team_members(team), pk=membership_pk)


def get_removable_membership(user: User, team: Team, membership_pk: int) -> Membership:
    """404 outside the (already visible) team, 403 for someone else's membership."""
    membership = get_team_membership(team, membership_pk)
    _forbid_unless(
        may_remove_member(user, membership), "Only the team's owners can remove other members."
    )
    return membership


# --- Invitations: the invitee's, and a team's pending ones ---------------------------------

PENDING = Invitation.Status.PENDING


def may_see_member_emails(user: User, team: Team) -> bool:
    """Members' emails are for the team's owners (and superusers) alone."""
    return is_team_owner(user, team)


def _unexpired() -> Q:
    return Q(expires_at__isnull=True) | Q(expires_at__gt=timezone.now())


def invitations_for(user: User) -> QuerySet[Invitation]:
    """Invitations addressed to the user, compared as log-in compares (any case): one to a
    username is theirs when it is their username, one to an email when it is their *email*.
    A username that looks like an email (made before the rule forbade "@") claims no email
    invitation. An expired one is nobody's."""
    # iexact: invitations sent before identifiers were lower-cased kept the username's case.
    addressed = Q(identifier__iexact=user.get_username()) & ~Q(identifier__contains="@")
    if user.email:
        addressed |= Q(identifier=normalise_identifier(user.email)) & Q(identifier__contains="@")
    return (
        Invitation.objects.filter(addressed)
        .filter(_unexpired())
        .select_related("team", "invited_by")
    )


def invitation_for_link(token_hash: str) -> Invitation | None:
    """The pending, unexpired invitation an emailed link's token (its hash) stands for."""
    if not token_hash:
        return None
    return (
        Invitation.objects.filter(token_hash=token_hash, status=PENDING)
        .filter(_unexpired())
        .select_related("team", "invited_by")
        .first()
    )


def account_with_email(email: str) -> User | None:
    return User.objects.filter(email__iexact=email).order_by("pk").first()


def accounts_with_email(email: str) -> QuerySet[User]:
    return User.objects.filter(email__iexact=email).order_by("pk")


def linked_sso_providers(user: User) -> list[str]:
    """The single sign-on providers (OIDC_PROVIDERS ids) `user`'s account is linked to, the
    first linked first."""
    from allauth.socialaccount.models import SocialAccount

    linked = SocialAccount.objects.filter(user=user).order_by("pk")
    return list(linked.values_list("provider", flat=True))


def my_pending_invitations(user: User) -> QuerySet[Invitation]:
    return invitations_for(user).filter(status=PENDING).order_by("team__name", "id")


class _CountOf(Subquery):
    """The number of rows of a queryset, as a value inside another query."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) _counted)"
    output_field = IntegerField()


@dataclass(frozen=True)
class WaitingForYou:
    invitations: int  # pending team invitations addressed to the user
    approvals: int  # deletions waiting for an approval the user may give


def waiting_for(user: User) -> WaitingForYou:
    """What waits for the user's answer (the overview's notices), in one query."""
    row = (
        User.objects.filter(pk=user.pk)
        .values(
            invitations=_CountOf(my_pending_invitations(user).order_by().values("pk")),
            approvals=_CountOf(jobs_awaiting_approval(user).order_by().values("pk")),
        )
        .get()
    )
    return WaitingForYou(row["invitations"], row["approvals"])


def get_my_invitation(user: User, pk: int) -> Invitation:
    """404 for an invitation addressed to someone else, whoever is asking (superusers too)."""
    return get_object_or_404(invitations_for(user), pk=pk)


def team_pending_invitations(team: Team) -> QuerySet[Invitation]:
    return team.invitations.filter(status=PENDING).select_related("invited_by")


def get_team_invitation(team: Team, invitation_pk: int) -> Invitation:
    return get_object_or_404(team.invitations.all(), pk=invitation_pk)


def member_answering_to(team: Team, identifier: str) -> Membership | None:
    """The team's member an invitation to `identifier` would be for, if any (owners see them
    all anyway): the email's account for an email, the username's otherwise, in any case."""
    identifier = identifier.strip()
    if "@" in identifier:
        named = Q(user__email__iexact=identifier)
    else:
        named = Q(user__username__iexact=identifier)
    return team_members(team).filter(named).first()


# --- Accounts by username ------------------------------------------------------------------


def account_named(username: str) -> User | None:
    """The account log-in finds under `username`: allauth's rule (the username in any case,
    and exactly one such account), so whoever compares names here compares as log-in does."""
    return cast("User | None", get_user_by_username(username)) if username else None


def username_taken(username: str, *, other_than: User | None = None) -> bool:
    """Whether an account (other than `other_than`, being renamed) has this username in any
    case: the form-side twin of the database's unique index on LOWER(username)."""
    accounts = User.objects.filter(username__iexact=username)
    if other_than is not None:
        accounts = accounts.exclude(pk=other_than.pk)
    return accounts.exists()


# --- Jobs ---------------------------------------------------------------------------------

JobState = BulkDeleteJob.State
# The overview's card; a job awaiting approval also counts as "already deleting" a selection.
LIVE_JOB_STATES = (JobState.QUEUED, JobState.RUNNING, JobState.PAUSED, JobState.AWAITING_APPROVAL)


def visible_jobs(user: User) -> QuerySet[BulkDeleteJob]:
    """A job is its creator's, its team's owners', and the owners of every team whose approval
    it asked for (superusers see all): it names threads of several keys, so a team's other
    members do not see it. Whoever sees a job may pause, resume or cancel it."""
    jobs = BulkDeleteJob.objects.select_related(
        "created_by", "selection__saved_view", "policy", "team"
    )
    if user.is_superuser:
        return jobs
    owned = _team_ids(user, [Role.OWNER])
    asked = JobApproval.objects.filter(job=OuterRef("pk"), team__in=owned)
    return jobs.filter(Q(created_by=user) | Q(team__in=owned) | Exists(asked))


def approvals_open_to(user: User, *, now: datetime | None = None) -> QuerySet[JobApproval]:
    """The approvals still awaited, in time, that the user may give: of a team they own (any
    team for a superuser), for a job someone else asked for."""
    approvals = JobApproval.objects.filter(
        decision=JobApproval.Decision.WAITING,
        job__state=JobState.AWAITING_APPROVAL,
        job__approval_expires_at__gt=now or timezone.now(),
    ).exclude(job__created_by=user)
    if user.is_superuser:
        return approvals
    return approvals.filter(team__in=_team_ids(user, [Role.OWNER]))


def jobs_awaiting_approval(user: User) -> QuerySet[BulkDeleteJob]:
    """The jobs waiting for an approval this user may give, oldest request first."""
    mine = approvals_open_to(user).filter(job=OuterRef("pk"))
    return visible_jobs(user).filter(Exists(mine)).order_by("pk")


@dataclass(frozen=True)
class ApprovalRow:
    """One team's approval of a job, and the owners who may give it (not its requester)."""

    approval: JobApproval
    approvers: list[str]


@dataclass(frozen=True)
class ApprovalStatus:
    """A job's approvals, as its page shows them, and which of them this user may give."""

    rows: list[ApprovalRow]
    mine: list[JobApproval]  # those the user may give now

    @property
    def needed(self) -> bool:
        return bool(self.rows)


def approval_status(user: User, job: BulkDeleteJob) -> ApprovalStatus:
    """Three queries: the approvals, the owners of their teams, and which are the user's;
    none for a job that never asked for approval (the progress region polls this)."""
    if job.approval_expires_at is None:
        return ApprovalStatus([], [])
    approvals = list(job.approvals.select_related("decided_by"))
    owners = (
        Membership.objects.filter(
            team_id__in=[a.team_id for a in approvals if a.team_id], role=Role.OWNER
        )
        .exclude(user_id=job.created_by_id)
        .select_related("user")
        .order_by("user__username")
    )
    by_team: dict[int, list[str]] = {}
    for membership in owners:
        by_team.setdefault(membership.team_id, []).append(membership.user.get_username())
    mine = set(approvals_open_to(user).filter(job=job).values_list("pk", flat=True))
    return ApprovalStatus(
        [ApprovalRow(a, by_team.get(a.team_id or 0, [])) for a in approvals],
        [a for a in approvals if a.pk in mine],
    )


def selection_team_counts(
    user: User, selection: Selection, team_ids: Iterable[int]
) -> dict[int, int]:
    """How many of the selection's threads the user may delete are under each of these
    teams' keys (one GROUP BY)."""
    rows = (
        selection_threads(user, selection)
        .filter(api_key__team_id__in=list(team_ids))
        .order_by()
        .values_list("api_key__team_id")
        .annotate(count=Count("pk"))
    )
    return {team_id: count for team_id, count in rows}


def get_visible_job(user: User, pk: int) -> BulkDeleteJob:
    return get_object_or_404(visible_jobs(user), pk=pk)


def may_download_export(user: User, job: BulkDeleteJob) -> bool:
    """Whoever asked for the export, and the owners of its team (not a superuser as such)."""
    return job.created_by_id == user.pk or (job.team is not None and is_team_owner(user, job.team))


def get_downloadable_export(user: User, pk: int) -> BulkDeleteJob:
    """An export job whose file the user may download (404 out of sight, as any job; 403
    for anyone else who sees it)."""
    job = get_object_or_404(visible_jobs(user).filter(kind=BulkDeleteJob.Kind.EXPORT), pk=pk)
    _forbid_unless(
        may_download_export(user, job),
        "Only whoever asked for this export and its team's owners may download it.",
    )
    return job


@dataclass(frozen=True)
class ExportStatus:
    """An export job's file: until when it is offered, whether it is gone, and whether this
    user may download it."""

    expires_at: datetime | None
    expired: bool
    may_download: bool


def export_expires_at(job: BulkDeleteJob) -> datetime | None:
    """When the job's file stops being offered (None until it is written)."""
    if job.state != JobState.FINISHED or job.finished_at is None or not job.export_file:
        return None
    return job.finished_at + timedelta(days=settings.EXPORT_TTL_DAYS)


def export_status(user: User, job: BulkDeleteJob, *, now: datetime | None = None) -> ExportStatus:
    expires_at = export_expires_at(job)
    expired = job.export_removed_at is not None or (
        expires_at is not None and expires_at <= (now or timezone.now())
    )
    return ExportStatus(expires_at, expired, may_download_export(user, job))


def live_jobs(user: User) -> list[BulkDeleteJob]:
    """The user's running, waiting and paused jobs (the overview's card), newest first."""
    return list(visible_jobs(user).filter(state__in=LIVE_JOB_STATES)[:10])


JOB_ITEMS_SHOWN = 100  # items a job's page lists (the failed and refused first)


@dataclass(frozen=True)
class JobProgress:
    """How far a job got: its counts, its rate and time left, and some of its items."""

    job: BulkDeleteJob
    outcome_counts: dict[str, int]
    items: list[BulkDeleteItem]  # up to JOB_ITEMS_SHOWN: failed and refused first
    # Why the job stopped short: the error its task raised ("" when none did).
    failure: str = ""
    now: datetime = field(default_factory=timezone.now)

    @property
    def running(self) -> bool:
        return self.job.state in BulkDeleteJob.ACTIVE_STATES and not self.failure

    @property
    def failed(self) -> bool:
        return bool(self.failure)

    @property
    def filling(self) -> bool:
        return not self.job.filled

    @property
    def total(self) -> int:
        return self.job.total

    @property
    def done(self) -> int:
        return self.job.done

    @property
    def counts(self) -> list[tuple[str, str, int]]:
        """(outcome, its label, how many items have it), for every outcome."""
        return [
            (value, label, self.outcome_counts.get(value, 0))
            for value, label in BulkDeleteItem.Outcome.choices
        ]

    @property
    def left(self) -> int:
        return max(self.total - self.done, 0)

    @property
    def rate(self) -> float | None:
        """Items done per second by the current run (None before it has done any)."""
        job = self.job
        if job.run_started_at is None or job.progress_at is None:
            return None
        seconds = (job.progress_at - job.run_started_at).total_seconds()
        done = job.done - job.run_done
        return done / seconds if seconds > 0 and done > 0 else None

    @property
    def seconds_left(self) -> int | None:
        """At the current rate, how long the rest takes (None when unknown or not running)."""
        rate = self.rate
        if not self.running or self.filling or rate is None:
            return None
        return round((self.total - self.done) / rate)

    @property
    def retryable(self) -> list[int]:
        """The tracked threads of a stopped job that failed or were refused (to try again),
        as many as a confirmation may hold."""
        if self.running:
            return []
        again = (BulkDeleteItem.Outcome.REFUSED, BulkDeleteItem.Outcome.FAILED)
        rows = (
            self.job.items.filter(outcome__in=again, tracked_thread__isnull=False)
            .order_by("pk")
            .values_list("tracked_thread_id", flat=True)
        )
        return [pk for pk in rows[:MAX_BULK_DELETE] if pk is not None]


def job_thread_teams(user: User, job: BulkDeleteJob) -> set[int] | None:
    """The teams whose threads the user may see among the job's items: None for every thread
    (its creator, a superuser, or an owner of the job's own team, whose threads are all that
    team's); else the teams they own. An owner who sees a job only because it asks their
    team's approval (its threads may be several teams') sees its counts, and their own
    teams' threads alone."""
    if user.is_superuser or job.created_by_id == user.pk:
        return None
    owned = set(_team_ids(user, [Role.OWNER]).values_list("team_id", flat=True))
    return None if job.team_id in owned else owned


def job_progress(job: BulkDeleteJob, *, teams: set[int] | None = None) -> JobProgress:
    """The job's counts and the items its page lists (of `teams`' threads only, unless None:
    `job_thread_teams`) and, if its task raised, the error: from the job, or (when the job
    could not record it) from its task's result. Three queries, whatever the job's size."""
    failure = job.error if job.state == JobState.FAILED else ""
    if job.state in BulkDeleteJob.ACTIVE_STATES:
        failure = _task_failure(job.task_id)
    Outcome = BulkDeleteItem.Outcome
    problems = (Outcome.FAILED, Outcome.REFUSED)
    items = job.items.select_related("tracked_thread").order_by("pk")
    if teams is not None:
        items = items.filter(tracked_thread__api_key__team_id__in=teams)
    shown = list(items.filter(outcome__in=problems)[:JOB_ITEMS_SHOWN])
    if len(shown) < JOB_ITEMS_SHOWN:
        rest = items.exclude(outcome__in=problems)
        shown += list(rest[: JOB_ITEMS_SHOWN - len(shown)])
    return JobProgress(job, bulk_delete_outcome_counts(job.pk), shown, failure)


MAX_BULK_DELETE = 500  # ticked threads per confirmation (a selection has no limit)


@dataclass(frozen=True)
class BulkDeleteSelection:
    """The threads a user asked to delete, sorted by what will happen to them."""

    requested: int  # distinct ids asked for
    deletable: list[TrackedThread] = field(default_factory=list)
    read_only: list[TrackedThread] = field(default_factory=list)  # visible, not deletable
    deleted: list[TrackedThread] = field(default_factory=list)  # nothing left to do
    unknown: int = 0  # ids the user cannot see (or that do not exist): counted, never named

    @property
    def too_many(self) -> bool:
        return self.requested > MAX_BULK_DELETE

    def by_key(self) -> list[tuple[ApiKey, int]]:
        """(key, number of deletable threads under it), by key label."""
        counts = Counter(thread.api_key for thread in self.deletable)
        return sorted(counts.items(), key=lambda pair: (pair[0].label, pair[0].pk))


def _distinct_ids(values: Iterable[str | int]) -> tuple[list[int], int]:
    """Distinct ids in the order given, and how many values were not ids."""
    ids: dict[int, None] = {}
    invalid = 0
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


def bulk_delete_selection(user: User, thread_ids: Iterable[str | int]) -> BulkDeleteSelection:
    """What deleting `thread_ids` (strings from a form) would do for this user."""
    ids, invalid = _distinct_ids(thread_ids)
    requested = len(ids) + invalid
    if requested > MAX_BULK_DELETE:
        return BulkDeleteSelection(requested)
    visible = list(visible_threads(user).filter(pk__in=ids).order_by("-pk"))
    writable = set(writable_threads(user).filter(pk__in=ids).values_list("pk", flat=True))
    deletable, read_only, deleted = [], [], []
    for thread in visible:
        if thread.pk not in writable:
            read_only.append(thread)
        elif thread.deletion_begun:
            deleted.append(thread)
        else:
            deletable.append(thread)
    return BulkDeleteSelection(
        requested, deletable, read_only, deleted, unknown=requested - len(visible)
    )


def task_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:  # no task yet, or another backend's (the immediate one runs at once)
        return None


def _task_failure(task_id: str) -> str:
    """The error of a database task that failed (its traceback's last line), else ""."""
    pk = task_uuid(task_id)
    if pk is None:
        return ""
    failed = DBTaskResult.objects.filter(pk=pk, status=TaskResultStatus.FAILED)
    row = failed.values_list("traceback", "exception_class_path").first()
    if row is None:
        return ""
    traceback, exception_class_path = row
    lines = traceback.strip().splitlines()
    return lines[-1] if lines else exception_class_path or "The task failed."


def bulk_delete_outcome_counts(job_id: int) -> dict[str, int]:
    """How many of the job's items have each outcome (pending included)."""
    rows = (
        BulkDeleteItem.objects.filter(job_id=job_id)
        .order_by()
        .values_list("outcome")
        .annotate(count=Count("pk"))
    )
    return {outcome: 0 for outcome in BulkDeleteItem.Outcome.values} | dict(rows)


RECEIPT_BATCH = 1000  # a receipt's items read, with their outcome events, per two queries


def receipt_lines(job: BulkDeleteJob) -> Iterator[ReceiptLine]:
    """Every item of the job, in pk order, with its outcome's audit event: RECEIPT_BATCH
    items and their events at a time (events by sequence, a unique index), so a receipt of
    any size streams. Only what is known: an item without an outcome event says why."""
    items = job.items.order_by("pk").values_list(
        "pk",
        "thread_id",
        "outcome",
        "message",
        "finished_at",
        "intent_sequence",
        "outcome_sequence",
    )
    last, number = 0, 0
    while batch := list(items.filter(pk__gt=last)[:RECEIPT_BATCH]):
        last = batch[-1][0]
        sequences = [row[6] for row in batch if row[6] is not None]
        events = {
            row[0]: row
            for row in AuditEvent.objects.filter(sequence__in=sequences).values_list(
                "sequence", "hash", "created_at", "http_status", "request_id"
            )
        }
        for _pk, thread_id, outcome, message, finished_at, intent, sequence in batch:
            number += 1
            event = events.get(sequence) if sequence is not None else None
            when: datetime | None
            if event is not None:
                _, hash_, when, status, request_id = event
                note = message
            else:
                sequence, hash_, status, request_id = None, "", None, ""
                when, note = finished_at, _unrecorded_note(outcome, message, intent)
            yield ReceiptLine(
                job=job.pk,
                line=number,
                thread_id=thread_id,
                outcome=outcome,
                http_status=status,
                request_id=request_id,
                at=when.astimezone(UTC).isoformat() if when is not None else "",
                intent_sequence=intent,
                event_sequence=sequence,
                event_hash=hash_,
                note=note,
            )


def _unrecorded_note(outcome: str, message: str, intent: int | None) -> str:
    """What a receipt says of an item whose outcome has no audit event."""
    if outcome == BulkDeleteItem.Outcome.PENDING:
        if intent is None:
            return "Not reached: nothing was sent for this thread."
        return f"Requested (event #{intent}); no outcome is recorded for it."
    no_event = "No outcome event is recorded for it."
    return f"{message} {no_event}" if message else no_event


# --- Threads: the list's filters, and whether the upstream may be asked -----------------


STATES = TrackedThread.State
ALL_STATES = "all"  # the list's state filter: every state, deleted included
# The list's sorts: the key names of each order, its last one unique (the page cursor).
NEWEST, OLDEST, LABEL_AZ = "newest", "oldest", "label"
SORTS: dict[str, tuple[str, str]] = {
    NEWEST: ("-created", "-pk"),
    OLDEST: ("created", "pk"),
    LABEL_AZ: ("label_key", "pk"),
}
# On SQLite a search of 3 characters or more first asks the FTS5 trigram table for the ids
# matching anywhere (at most this many, plus one). Up to this many, the list reads just those
# rows; more, and the term is common enough that walking the list's index in its order finds
# a page of matches soon. (PostgreSQL's planner makes that choice itself, from its statistics
# and the pg_trgm index.) Trigrams need 3 characters: shorter searches read rows in order.
SEARCH_IDS_MAX = 1000
TRIGRAM = 3


@dataclass(frozen=True)
class ThreadFilters:
    """What the thread list is narrowed to and sorted by (the filter form's cleaned values).

    No `state` means every state but deleted (a thread being deleted is listed, as such: its
    deletion may fail and leave it active); `ALL_STATES` means every state. `tracked_by` is a
    username (any case). The dates are whole UTC days of a thread's creation (`CREATED`),
    both included.
    """

    q: str = ""
    key_id: int | None = None
    team_id: int | None = None
    tracked_by: str = ""
    state: str = ""
    date_from: date | None = None
    date_to: date | None = None
    sort: str = NEWEST

    # ThreadFilters field: the list's query parameter (and `to_data` key) for it.
    PARAMETERS: ClassVar[dict[str, str]] = {
        "q": "q",
        "key_id": "key",
        "team_id": "team",
        "tracked_by": "tracked_by",
        "state": "state",
        "date_from": "date_from",
        "date_to": "date_to",
        "sort": "sort",
    }

    def to_data(self) -> dict[str, str | int]:
        """The filters as JSON data, keyed by the list's query parameters, defaults left out:
        what a selection or saved view stores, and (urlencoded) the list's URL for them."""
        data: dict[str, str | int] = {}
        for name, parameter in self.PARAMETERS.items():
            value = getattr(self, name)
            if value in (None, "") or (name == "sort" and value == NEWEST):
                continue
            data[parameter] = value.isoformat() if isinstance(value, date) else value
        return data

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> "ThreadFilters":
        """The filters `to_data` made (ValueError for data it cannot have made)."""
        unknown = set(data) - set(cls.PARAMETERS.values())
        if unknown:
            raise ValueError(f"Unknown filters: {', '.join(sorted(unknown))}")

        def number(name: str) -> int | None:
            value = data.get(name)
            if value is None:
                return None
            if not isinstance(value, int) or isinstance(value, bool):
                raise ValueError(f"{name} must be an id")
            return value

        def text(name: str) -> str:
            value = data.get(name) or ""
            if not isinstance(value, str):
                raise ValueError(f"{name} must be text")
            return value

        def day(name: str) -> date | None:
            value = text(name)
            return date.fromisoformat(value) if value else None

        return cls(
            q=text("q"),
            key_id=number("key"),
            team_id=number("team"),
            tracked_by=text("tracked_by"),
            state=text("state"),
            date_from=day("date_from"),
            date_to=day("date_to"),
            sort=text("sort") or NEWEST,
        )


def _sortable(threads: QuerySet[TrackedThread]) -> QuerySet[TrackedThread]:
    """The list's sort keys on each row: `created` and `label_key` (the indexed expressions)."""
    return threads.annotate(created=CREATED, label_key=LABEL_KEY)


def _search_table_ids(text: str, *, limit: int) -> list[int]:
    """Ids of the threads whose search text contains `text` (3 characters or more), from
    SQLite's FTS5 trigram table: a quoted phrase matches it as a substring."""
    phrase = '"' + text.replace('"', '""') + '"'
    table = TrackedThread.SEARCH_TABLE
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT rowid FROM {table} WHERE {table} MATCH %s LIMIT %s",  # noqa: S608
            [phrase, limit],
        )
        return [row[0] for row in cursor.fetchall()]


def _search_ids(q: str) -> list[int] | None:
    """The ids of every thread whose search text contains `q`, when SQLite's trigram table can
    tell (3 characters or more) and they are at most SEARCH_IDS_MAX; else None (PostgreSQL's
    planner uses its own index; a short or common term is found reading rows in order)."""
    text = q.lower()
    if not text or connection.vendor != "sqlite" or len(text) < TRIGRAM:
        return None
    ids = _search_table_ids(text, limit=SEARCH_IDS_MAX + 1)
    return None if len(ids) > SEARCH_IDS_MAX else ids


def filtered_threads(user: User, filters: ThreadFilters) -> QuerySet[TrackedThread]:
    """The threads the list shows: visible to the user and matching every filter, with their
    sort keys (`_sortable`); not yet ordered."""
    return _filtered(user, filters, _search_ids(filters.q))


def _filtered(
    user: User, filters: ThreadFilters, search_ids: list[int] | None
) -> QuerySet[TrackedThread]:
    """`filtered_threads`, given `_search_ids(filters.q)`."""
    threads = _sortable(visible_threads(user))
    if filters.q:  # the row's own text decides (the ids come from an index of the same text)
        threads = threads.filter(search_text__contains=filters.q.lower())
    if search_ids is not None:
        threads = threads.filter(pk__in=search_ids)
    if filters.key_id:
        threads = threads.filter(api_key_id=filters.key_id)
    if filters.team_id:
        threads = threads.filter(api_key__team_id=filters.team_id)
    if filters.tracked_by:
        tracker = User.objects.filter(username__iexact=filters.tracked_by).order_by("pk")
        threads = threads.filter(tracked_by_id=Subquery(tracker.values("pk")[:1]))
    if filters.date_from is not None:
        start = datetime.combine(filters.date_from, time.min, UTC)
        threads = threads.filter(GreaterThanOrEqual(CREATED, start))
    if filters.date_to is not None:
        # Up to the day's last microsecond: its next midnight does not exist after 9999-12-31.
        end = datetime.combine(filters.date_to, time.max, UTC)
        threads = threads.filter(LessThanOrEqual(CREATED, end))
    if not filters.state:
        return threads.exclude(state=TrackedThread.State.DELETED)
    if filters.state != ALL_STATES:
        threads = threads.filter(state=filters.state)
    return threads


# --- Selections: the list's filter, frozen ------------------------------------------------

NOTHING_TO_DO = (TrackedThread.State.DELETED, TrackedThread.State.DELETING)
SELECTION_PREVIEW_ROWS = 50
READ_ONLY = "read-only to you (a team you view, or a revoked key): left out"
ALREADY_DELETED = "already deleted, or being deleted: nothing to do"


@dataclass(frozen=True)
class Exclusion:
    """Threads matching a selection's filter that it leaves out, and why."""

    reason: str
    count: int


@dataclass(frozen=True)
class SelectionPreview:
    """What acting on a selection covers: how many threads, per key, team and state (labels
    with counts, largest first), what it leaves out and why, and its first rows."""

    count: int
    excluded: list[Exclusion]
    by_key: list[tuple[str, int]]
    by_team: list[tuple[str, int]]
    by_state: list[tuple[str, int]]
    first_rows: list[TrackedThread]


def selection_filters(selection: Selection) -> ThreadFilters:
    return ThreadFilters.from_data(selection.filters)


def highest_thread_pk() -> int:
    """The bound a selection made now gets: threads tracked later never join it."""
    return TrackedThread.objects.aggregate(top=Max("pk"))["top"] or 0


def _selection_matches(user: User, selection: Selection) -> QuerySet[TrackedThread]:
    """The visible threads matching the selection's filter, tracked before it was made."""
    filters = selection_filters(selection)
    return filtered_threads(user, filters).filter(pk__lte=selection.bound_pk)


def selection_threads(user: User, selection: Selection) -> QuerySet[TrackedThread]:
    """The threads of the selection the user may act on (delete): under a key they may use,
    and neither deleted nor being deleted. Not ordered."""
    threads = _selection_matches(user, selection).filter(api_key__in=usable_keys(user))
    return threads.exclude(state__in=NOTHING_TO_DO)


def visible_selections(user: User) -> QuerySet[Selection]:
    """A selection is its creator's (superusers see all)."""
    selections = Selection.objects.select_related("saved_view")
    return selections if user.is_superuser else selections.filter(created_by=user)


def get_visible_selection(user: User, pk: int) -> Selection:
    return get_object_or_404(visible_selections(user), pk=pk)


def _ranked(counts: Counter[str]) -> list[tuple[str, int]]:
    return sorted(counts.items(), key=lambda pair: (-pair[1], pair[0]))


def selection_preview(user: User, selection: Selection) -> SelectionPreview:
    """The selection's preview in four queries, whatever its size: one GROUP BY key and state
    over the matching threads (the breakdowns and exclusions come from its rows), the keys
    (with their teams, and whether the user may use them), and the first rows in the list's
    order."""
    grouped = (
        _selection_matches(user, selection)
        .order_by()
        .values_list("api_key_id", "state")
        .annotate(count=Count("pk"))
    )
    keys, usable = thread_list_keys(user)
    by_pk = {key.pk: key for key in keys}
    labels = dict(TrackedThread.State.choices)
    by_key: Counter[str] = Counter()
    by_team: Counter[str] = Counter()
    by_state: Counter[str] = Counter()
    read_only = already = 0
    for key_id, state, count in grouped:
        if key_id not in usable:
            read_only += count
        elif state in NOTHING_TO_DO:
            already += count
        else:
            key = by_pk[key_id]
            by_key[f"{key.label} ({key.hint})"] += count
            by_team[key.team.name if key.team is not None else "Personal keys"] += count
            by_state[labels.get(state, state)] += count
    excluded = [
        Exclusion(reason, count)
        for reason, count in ((READ_ONLY, read_only), (ALREADY_DELETED, already))
        if count
    ]
    order = SORTS.get(selection_filters(selection).sort, SORTS[NEWEST])
    first = selection_threads(user, selection).only(*THREAD_LIST_COLUMNS).order_by(*order)
    return SelectionPreview(
        count=sum(by_state.values()),
        excluded=excluded,
        by_key=_ranked(by_key),
        by_team=_ranked(by_team),
        by_state=_ranked(by_state),
        first_rows=list(first[:SELECTION_PREVIEW_ROWS]),
    )


def saved_views(user: User) -> QuerySet[SavedView]:
    """The user's own saved views and those shared with their teams (superusers: all)."""
    views = SavedView.objects.select_related("team", "created_by")
    if user.is_superuser:
        return views
    return views.filter(Q(created_by=user, team=None) | Q(team__in=_team_ids(user)))


def get_saved_view(user: User, pk: int) -> SavedView:
    return get_object_or_404(saved_views(user), pk=pk)


def may_remove_saved_view(
    user: User, view: SavedView, *, owned_team_ids: set[int] | None = None
) -> bool:
    """Its creator, and for a shared one the team's owners (and superusers). `owned_team_ids`:
    the teams the user owns, when already known (a list of views asks once)."""
    if user.is_superuser or view.created_by_id == user.pk:
        return True
    if view.team_id is None:
        return False
    if owned_team_ids is None:
        owned_team_ids = set(owned_teams(user).values_list("pk", flat=True))
    return view.team_id in owned_team_ids


def get_removable_saved_view(user: User, pk: int) -> SavedView:
    """404 when the user does not see the view, 403 when they may not remove it."""
    view = get_saved_view(user, pk)
    _forbid_unless(
        may_remove_saved_view(user, view), "Only its creator or the team's owners can remove it."
    )
    return view


def filter_keys(user: User) -> QuerySet[ApiKey]:
    """The keys the list's filter form offers (those the user may see, with their team): all
    the form and the list's query read of them (`ThreadFilterForm`, `thread_list_page`)."""
    return (
        visible_keys(user)
        .select_related("team")
        .only("pk", "label", "hint", "revoked_at", "team", "team__name")
    )


def thread_list_keys(user: User) -> tuple[list[ApiKey], set[int]]:
    """`filter_keys`, with their threads per state (`count_<state>`, the list page's count),
    and the pks of those the user may use (change threads under). One query."""
    usable = usable_keys(user).filter(pk=OuterRef("pk"))
    rows = filter_keys(user).annotate(**_per_state_counts()).annotate(usable=Exists(usable))
    keys = list(rows)
    return [*keys], {key.pk for key in keys if key.usable}


def _tracked_threads() -> Coalesce:
    """A key's tracked threads (every state but deleted), from its counters: the one
    definition the keys page, the team page, the overview and the revoke page share."""
    return Coalesce(
        Sum("thread_counts__threads", filter=~Q(thread_counts__state=STATES.DELETED)), 0
    )


def _per_state_counts() -> dict[str, Coalesce]:
    """A key's threads in each state (`count_<state>`), from the counters the database keeps
    (`ThreadCount`): the one definition of "threads under a key" every page shows."""
    return {
        f"count_{state}": Coalesce(
            Sum("thread_counts__threads", filter=Q(thread_counts__state=state)), 0
        )
        for state in STATES.values
    }


LIST_COUNT_MAX = 1000  # a search or typed filter's matches are counted up to this many


@dataclass(frozen=True)
class ListCount:
    """How many threads the list's filters select: `exact`, or more than `threads`."""

    threads: int
    exact: bool = True


def thread_list_count(
    user: User, filters: ThreadFilters, *, keys: Iterable[ApiKey], page: Page
) -> ListCount | None:
    """The list's "N threads" when it costs no query: filtered by key, team and state only,
    the sum of the keys' counters (`thread_list_keys`); a single page, its rows. None when
    it takes a query of its own (`count_matching_threads`, which the page asks for apart)."""
    if not (filters.q or filters.tracked_by or filters.date_from or filters.date_to):
        states = {
            "": [state for state in STATES.values if state != STATES.DELETED],
            ALL_STATES: list(STATES.values),
        }.get(filters.state, [filters.state])
        return ListCount(
            sum(
                getattr(key, f"count_{state}")
                for key in keys
                if filters.key_id in (None, key.pk) and filters.team_id in (None, key.team_id)
                for state in states
            )
        )
    if page.newer is None and page.older is None:
        return ListCount(len(page.rows))
    return None


def count_matching_threads(user: User, filters: ThreadFilters) -> ListCount:
    """The threads a search or typed filter selects, counted up to LIST_COUNT_MAX: one query
    that stops there, however many match."""
    found = filtered_threads(user, filters).order_by().values("pk")[: LIST_COUNT_MAX + 1].count()
    return ListCount(min(found, LIST_COUNT_MAX), exact=found <= LIST_COUNT_MAX)


# The columns the list page shows of a thread and its key and tracker: the others (search
# text, tool resources, the key's secret, the user's password...) are neither read nor decoded.
THREAD_LIST_COLUMNS = (
    "thread_id",
    "label",
    "metadata",
    "state",
    "tracked_at",
    "upstream_created_at",
    "api_key__label",
    "api_key__hint",
    "api_key__failing",
    "api_key__revoked_at",
    "api_key__team__name",
    "tracked_by__username",
)


def thread_list_page(
    user: User,
    filters: ThreadFilters,
    *,
    keys: Iterable[ApiKey],
    size: int,
    before: int | None = None,
    after: int | None = None,
) -> Page:
    """The page of the list that the filters, sort and cursor select.

    `keys` are the keys the user may see (already fetched, with their team id). A user's
    threads are read key by key, each through its own index, so a user with few threads in a
    large table pays for their rows only; a superuser's keys are everyone's, so they are read
    key by key only when a key or team filter picks a few. A search whose few matches the
    trigram table names (`_search_ids`) reads those rows alone.
    """
    search_ids = _search_ids(filters.q)
    chosen = [
        key.pk
        for key in keys
        if filters.key_id in (None, key.pk) and filters.team_id in (None, key.team_id)
    ]
    narrowed = filters.key_id is not None or filters.team_id is not None
    by_key = search_ids is None and (narrowed or not user.is_superuser)
    return keyset_page(
        _filtered(user, filters, search_ids).only(*THREAD_LIST_COLUMNS),
        size=size,
        order=SORTS.get(filters.sort, SORTS[NEWEST]),
        before=before,
        after=after,
        partitions=("api_key_id", chosen) if by_key else None,
        cursor_rows=_sortable(visible_threads(user)),
    )


def unreachable_reason(thread: TrackedThread) -> str | None:
    """Why the upstream is not asked about this thread, or None."""
    if thread.state == TrackedThread.State.DELETED:
        return "This thread was deleted; the Threads API no longer has it."
    if thread.state == TrackedThread.State.DELETING:
        return (
            "This thread is being deleted; the Threads API is not asked about it until the "
            "deletion's outcome is known."
        )
    if thread.api_key.is_revoked:
        return (
            f"Its key “{thread.api_key.label}” is revoked, so the dashboard no longer calls "
            "the Threads API with it."
        )
    return None


def live_fields(live: Thread, *, checked_at: datetime) -> dict[str, Any]:
    """What a tracked thread remembers of the live one (`checked_at`: when it was seen)."""
    return {
        "upstream_created_at": datetime.fromtimestamp(live.created_at, tz=UTC),
        "metadata": live.metadata,
        "tool_resources": live.tool_resources,
        "last_checked_at": checked_at,
    }


def refreshed_fields(
    thread: TrackedThread, live: Thread | None, *, checked_at: datetime
) -> dict[str, Any]:
    """The tracked thread's new cached fields after a check: `live` is the upstream's answer,
    None when it said 404. A thread the upstream has is active again; one it lost is gone
    (a deleted thread stays deleted)."""
    State = TrackedThread.State
    if live is None:
        state = State.GONE if thread.state == State.ACTIVE else thread.state
        return {"state": state, "last_checked_at": checked_at}
    state = State.ACTIVE if thread.state == State.GONE else thread.state
    return {**live_fields(live, checked_at=checked_at), "state": state}


# --- Keys: the key list, and teams whose keys a user may add --------------------------------


def listed_keys(user: User) -> QuerySet[ApiKey]:
    """Visible keys with their tracked-thread count and whether the user may manage them,
    in the list's order: personal keys first, then by team."""
    return (
        visible_keys(user)
        .select_related("team", "owner")
        .annotate(
            tracked_count=_tracked_threads(),
            can_manage=Exists(manageable_keys(user).filter(pk=OuterRef("pk"))),
        )
        .order_by(F("team__name").asc(nulls_first=True), "owner_id", "label", "id")
    )


@dataclass(frozen=True)
class KeyGroup:
    """A heading of the key list (a team, or someone's personal keys) and its keys."""

    title: str
    keys: list[ApiKey]


def _key_group_title(user: User, key: ApiKey) -> str:
    if key.team is not None:
        return key.team.name
    if key.owner_id == user.pk or key.owner is None:
        return "Personal"
    return f"Personal: {key.owner.get_username()}"


def key_groups(user: User) -> list[KeyGroup]:
    """The key list: `listed_keys` grouped under their team or owner."""
    return [
        KeyGroup(title, list(keys))
        for title, keys in groupby(listed_keys(user), key=lambda key: _key_group_title(user, key))
    ]


def owned_teams(user: User) -> QuerySet[Team]:
    """Teams whose keys the user may add: the teams they own (every team for a superuser)."""
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user, memberships__role=Role.OWNER)


def tracked_thread_count(api_key: ApiKey) -> int:
    """Threads still tracked under the key (a deleted thread no longer counts), as
    `_tracked_threads` counts them."""
    count: int = ApiKey.objects.filter(pk=api_key.pk).aggregate(n=_tracked_threads())["n"]
    return count


# --- Audit log: the page's filters and its links to tracked threads ------------------------


@dataclass(frozen=True)
class AuditFilters:
    """What the audit log is narrowed to (the filter form's cleaned values); empty: anything.

    The dates are whole UTC days, both included.
    """

    action: str = ""
    actor: str = ""  # a username, any case
    team: Team | None = None
    key: ApiKey | None = None
    outcome: str = ""
    date_from: date | None = None
    date_to: date | None = None
    thread: str = ""  # part of a thread id, any case


def filtered_audit_events(user: User, filters: AuditFilters | None) -> QuerySet[AuditEvent]:
    """The audit events the user may see that match `filters`, newest first, without their
    transcripts (large, and neither the page nor the CSV shows them).

    `None` (filters that could not be read) matches nothing, rather than being dropped.
    """
    events = visible_audit_events(user).defer("snapshot").order_by("-sequence")
    if filters is None:
        return events.none()
    if filters.action:
        events = events.filter(action=filters.action)
    if filters.actor:
        # The account log-in finds under that name: its events, even those recorded under an
        # earlier username, and nobody else's. No such account (deleted): the name recorded.
        account = account_named(filters.actor)
        if account is not None:
            events = events.filter(actor_id=account.pk)
        else:
            events = events.filter(actor_username__iexact=filters.actor)
    if filters.team is not None:
        events = events.filter(team_id=filters.team.pk)
    if filters.key is not None:
        events = events.filter(api_key_id=filters.key.pk)
    if filters.outcome:
        events = events.filter(outcome=filters.outcome)
    if filters.date_from is not None:
        events = events.filter(created_at__gte=datetime.combine(filters.date_from, time.min, UTC))
    if filters.date_to is not None:
        # Up to the day's last microsecond: its next midnight does not exist after 9999-12-31.
        events = events.filter(created_at__lte=datetime.combine(filters.date_to, time.max, UTC))
    if filters.thread:
        events = events.filter(thread_id__icontains=filters.thread)
    return events


def recorded_deletion(thread: TrackedThread) -> AuditEvent | None:
    """The outcome event of the deletion that removed the thread (deleted, already gone
    upstream, or gone after an interrupted deletion), if the audit log has one: what a
    repeated delete answers."""
    removed = AuditEvent.REMOVED_OUTCOMES
    return (
        AuditEvent.objects.filter(
            action=AuditEvent.Action.THREAD_DELETED,
            api_key_id=thread.api_key_id,
            thread_id=thread.thread_id,
            outcome__in=removed,
        )
        .defer("snapshot")
        .order_by("-sequence")
        .first()
    )


def with_snapshot_flag(events: QuerySet[AuditEvent]) -> QuerySet[AuditEvent]:
    """`has_snapshot` on each event: whether it keeps a transcript (without reading it)."""
    return events.annotate(has_snapshot=~Q(snapshot=""))


def tracked_thread_pks(user: User, events: Iterable[AuditEvent]) -> dict[tuple[int, str], int]:
    """{(key pk, thread id): tracked thread pk} for the events' threads that are still tracked
    (not deleted) and visible to the user: one query."""
    thread_ids = {event.thread_id for event in events if event.thread_id}
    if not thread_ids:
        return {}
    rows = (
        visible_threads(user)
        .filter(thread_id__in=thread_ids)
        .exclude(state=TrackedThread.State.DELETED)
        .values_list("api_key_id", "thread_id", "pk")
    )
    return {(key_id, thread_id): pk for key_id, thread_id, pk in rows}


def deletion_partners(user: User, events: Iterable[AuditEvent]) -> dict[int, AuditEvent]:
    """{sequence: partner} for the events that are half of a deletion: an intent's outcome
    (whose details name the intent's sequence) and an outcome's intent, among `events` or,
    when not there, from the user's visible log (one query; none when all are there)."""
    Action = AuditEvent.Action
    events = list(events)
    by_sequence = {event.sequence: event for event in events}
    intents = {e.sequence for e in events if e.action == Action.THREAD_DELETE_INTENT}
    outcomes = {
        e.sequence: e.details.get("intent")
        for e in events
        if e.action == Action.THREAD_DELETED and isinstance(e.details.get("intent"), int)
    }
    partners: dict[int, AuditEvent] = {}
    for sequence, intent in outcomes.items():
        if intent in by_sequence:
            partners[sequence], partners[intent] = by_sequence[intent], by_sequence[sequence]
    missing_outcomes = intents - set(partners)
    missing_intents = {intent for sequence, intent in outcomes.items() if sequence not in partners}
    if not (missing_outcomes or missing_intents):
        return partners
    found = with_snapshot_flag(visible_audit_events(user).defer("snapshot")).filter(
        Q(action=Action.THREAD_DELETED, details__intent__in=sorted(missing_outcomes))
        | Q(action=Action.THREAD_DELETE_INTENT, sequence__in=missing_intents)
    )
    for event in found:
        if event.action == Action.THREAD_DELETED:
            partners[event.details["intent"]] = event
        else:
            partner = next(s for s, intent in outcomes.items() if intent == event.sequence)
            partners[partner] = event
    return partners


# --- Retention policies: what a policy would delete, and whether it may be enforced ---------


RETENTION_PREVIEW = 50  # threads a policy's preview lists (it counts them all)
RETAINABLE_STATES = (TrackedThread.State.ACTIVE, TrackedThread.State.GONE)  # may be deleted


def retention_candidates(
    api_key: ApiKey, *, max_age_days: int, now: datetime | None = None
) -> QuerySet[TrackedThread]:
    """The key's threads a policy of `max_age_days` deletes, oldest first: neither deleted
    nor being deleted, and created more than that many days ago.

    A thread's age counts from its creation upstream (`upstream_created_at`) or, where that
    is not known, from when the dashboard began tracking it (`tracked_at`): a thread is never
    tracked before it exists, so the fallback can make a thread look younger than it is,
    never older; a policy never deletes a thread too early. `counted_from` on each thread is
    the time its age counts from.
    """
    cutoff = (now or timezone.now()) - timedelta(days=max_age_days)
    return (
        TrackedThread.objects.filter(api_key=api_key, state__in=RETAINABLE_STATES)
        .annotate(counted_from=Coalesce("upstream_created_at", "tracked_at"))
        .filter(counted_from__lt=cutoff)
        .order_by("counted_from", "pk")
    )


@dataclass(frozen=True)
class RetentionPreview:
    """What a policy of `max_age_days` would delete now: how many threads, and the first."""

    max_age_days: int
    cutoff: datetime  # threads created before this go
    count: int
    first: list[TrackedThread]  # the oldest RETENTION_PREVIEW of them

    @property
    def more(self) -> int:
        """How many are not listed."""
        return self.count - len(self.first)


def retention_preview(
    api_key: ApiKey, *, max_age_days: int, now: datetime | None = None
) -> RetentionPreview:
    now = now or timezone.now()
    threads = retention_candidates(api_key, max_age_days=max_age_days, now=now)
    return RetentionPreview(
        max_age_days,
        now - timedelta(days=max_age_days),
        threads.count(),
        list(threads[:RETENTION_PREVIEW]),
    )


def retention_policy(api_key: ApiKey) -> RetentionPolicy | None:
    """The key's policy, if one was ever set."""
    return RetentionPolicy.objects.select_related("set_by").filter(api_key=api_key).first()


def enabled_retention_policies() -> QuerySet[RetentionPolicy]:
    return RetentionPolicy.objects.filter(enabled=True).select_related(
        "api_key__team", "api_key__owner", "set_by"
    )


def retention_not_enforced(policy: RetentionPolicy) -> str | None:
    """Why the policy cannot be enforced now, or None: the key is revoked, or whoever set the
    policy may no longer manage or use the key (left the team, lost the owner's role)."""
    key = policy.api_key
    if key.is_revoked:
        return "The key is revoked, so no thread is deleted with it."
    setter = policy.set_by
    if setter is None:
        return "The account of whoever set it is gone. An owner of the key must save it again."
    may_manage = manageable_keys(setter).filter(pk=key.pk).exists()
    if not (setter.is_active and may_manage and usable_keys(setter).filter(pk=key.pk).exists()):
        return (
            f"{setter.get_username()}, who set it, may no longer manage this key. "
            "An owner of the key must save it again."
        )
    return None


# --- Overview: the first page after logging in ---------------------------------------------

OVERVIEW_DAYS = 30  # the activity chart's days, and how long a key may go unused


@dataclass(frozen=True)
class KeyFigures:
    """A visible key, its tracked threads per state, and why it needs attention ("" if not)."""

    key: ApiKey
    counts: dict[str, int]  # every state, 0 included
    attention: str = ""

    @property
    def tracked(self) -> int:
        """Threads still tracked (a deleted thread no longer counts)."""
        return sum(n for state, n in self.counts.items() if state != STATES.DELETED)


@dataclass(frozen=True)
class DayActivity:
    day: date
    created: int = 0
    imported: int = 0
    deleted: int = 0


@dataclass(frozen=True)
class Overview:
    keys: list[KeyFigures]
    days: list[DayActivity]  # OVERVIEW_DAYS of them, oldest first, today last

    @property
    def totals(self) -> dict[str, int]:
        return {state: sum(k.counts[state] for k in self.keys) for state in STATES.values}

    @property
    def tracked(self) -> int:
        return sum(k.tracked for k in self.keys)

    @property
    def needing_attention(self) -> list[KeyFigures]:
        return [k for k in self.keys if k.attention]

    @property
    def created(self) -> int:
        return sum(day.created for day in self.days)

    @property
    def imported(self) -> int:
        return sum(day.imported for day in self.days)

    @property
    def deleted(self) -> int:
        return sum(day.deleted for day in self.days)


def _key_attention(key: ApiKey, now: datetime) -> str:
    """Why a live key needs looking at: the upstream rejects it, or nothing used it for
    OVERVIEW_DAYS (a key added less long ago and not used yet is not late)."""
    if key.is_revoked:
        return ""
    if key.failing:
        return f"Failing: {key.last_error}" if key.last_error else "Failing"
    cutoff = now - timedelta(days=OVERVIEW_DAYS)
    if key.last_used_at is None and key.created_at < cutoff:
        return f"Never used since it was added {(now - key.created_at).days} days ago"
    if key.last_used_at is not None and key.last_used_at < cutoff:
        return f"Unused for {(now - key.last_used_at).days} days"
    return ""


def overview(user: User, *, now: datetime | None = None, team_id: int | None = None) -> Overview:
    """What the user may see, summed up in two queries: their visible keys with the count of
    their threads in each state (from the counters the database keeps, `ThreadCount`: a few
    rows a key, however many threads it has), and the threads created and deleted per day
    over the last OVERVIEW_DAYS days (from `DailyThreadActivity`, which the database keeps
    from the audit log: a row a day and scope), both scoped as the audit log is.

    A deletion counts when its outcome removed the thread (deleted, or already gone); the
    days are whole UTC days, today included. `team_id` narrows it to one team (a team's
    access token).
    """
    now = now or timezone.now()
    keys = visible_keys(user) if team_id is None else visible_keys(user).filter(team_id=team_id)
    figures = [
        KeyFigures(
            key,
            {state: getattr(key, f"count_{state}") for state in STATES.values},
            _key_attention(key, now),
        )
        for key in keys.select_related("team")
        .defer("secret_encrypted", "fingerprint")
        .annotate(**_per_state_counts())
        .order_by(F("team__name").asc(nulls_first=True), "label", "id")
    ]
    return Overview(figures, _activity(user, now.date(), team_id))


@dataclass(frozen=True)
class Setup:
    """A new user's first steps, and which are done: the overview's checklist, shown until
    every step is. `can_create`: the user has a live key they may create threads with."""

    has_key: bool
    has_threads: bool
    has_team: bool
    can_create: bool

    @property
    def steps_done(self) -> int:
        return self.has_key + self.has_threads + self.has_team

    @property
    def done(self) -> bool:
        return self.steps_done == 3


def setup(user: User, summary: Overview) -> Setup:
    """`Setup` from the overview's figures and one query: a key is any the user may see, a
    thread any ever tracked under one (deleted ones too), and a team one where someone else
    is a member or invited."""
    teams = _team_ids(user)
    facts = (
        User.objects.filter(pk=user.pk)
        .values(
            can_create=Exists(usable_keys(user)),
            teammates=Exists(Membership.objects.filter(team__in=teams).exclude(user=user)),
            invited=Exists(Invitation.objects.filter(team__in=teams, status=PENDING)),
        )
        .get()
    )
    return Setup(
        has_key=bool(summary.keys),
        has_threads=any(sum(figures.counts.values()) for figures in summary.keys),
        has_team=bool(facts["teammates"] or facts["invited"]),
        can_create=bool(facts["can_create"]),
    )


def _activity(user: User, today: date, team_id: int | None) -> list[DayActivity]:
    first = today - timedelta(days=OVERVIEW_DAYS - 1)
    rows = DailyThreadActivity.objects.filter(day__gte=first)
    if not user.is_superuser:
        rows = rows.filter(_audit_scope(user, no_team=DailyThreadActivity.NO_TEAM))
    if team_id is not None:
        rows = rows.filter(team_id=team_id)
    per_day = {
        day: (created, imported, deleted)
        for day, created, imported, deleted in rows.order_by()
        .values_list("day")
        .annotate(Sum("created"), Sum("imported"), Sum("deleted"))
    }
    return [
        DayActivity(day, *per_day.get(day, (0, 0, 0)))
        for day in (first + timedelta(days=n) for n in range(OVERVIEW_DAYS))
    ]
