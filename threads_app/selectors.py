"""Reads: what a user may see or use. Every object lookup in a view goes through here.

An object outside these querysets is a 404 for that user, on full pages and partials alike.
"""

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteItem,
    BulkDeleteJob,
    Membership,
    Team,
    TrackedThread,
)

Role = Membership.Role
WRITER_ROLES = (Role.OWNER, Role.MEMBER)


def _team_ids(user, roles=None):
    memberships = Membership.objects.filter(user=user)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("team_id")


def visible_teams(user):
    if user.is_superuser:
        return Team.objects.all()
    return Team.objects.filter(memberships__user=user)


def team_role(user, team):
    """The user's role in the team, or None. Superusers act as owners everywhere."""
    if user.is_superuser:
        return Role.OWNER
    return Membership.objects.filter(user=user, team=team).values_list("role", flat=True).first()


def visible_keys(user):
    """Keys whose label and hint the user may see (never their secrets)."""
    if user.is_superuser:
        return ApiKey.objects.all()
    return ApiKey.objects.filter(Q(owner=user) | Q(team__in=_team_ids(user)))


def usable_keys(user):
    """Live keys the user may call the upstream with: their own, and teams they write in."""
    keys = ApiKey.objects.filter(revoked_at__isnull=True)
    if user.is_superuser:
        return keys
    return keys.filter(Q(owner=user) | Q(team__in=_team_ids(user, WRITER_ROLES)))


def manageable_keys(user):
    """Keys the user may rotate or revoke: their own, and keys of teams they own."""
    if user.is_superuser:
        return ApiKey.objects.all()
    return ApiKey.objects.filter(Q(owner=user) | Q(team__in=_team_ids(user, [Role.OWNER])))


def visible_threads(user):
    threads = TrackedThread.objects.select_related("api_key", "api_key__team", "tracked_by")
    if user.is_superuser:
        return threads
    return threads.filter(Q(api_key__owner=user) | Q(api_key__team__in=_team_ids(user)))


def writable_threads(user):
    """Threads the user may edit, delete or untrack: those under keys they may use."""
    return visible_threads(user).filter(api_key__in=usable_keys(user))


def visible_audit_events(user):
    if user.is_superuser:
        return AuditEvent.objects.all()
    return AuditEvent.objects.filter(
        Q(team_id__in=_team_ids(user)) | Q(team_id__isnull=True, owner_id=user.pk)
    )


def get_visible_thread(user, pk):
    return get_object_or_404(visible_threads(user), pk=pk)


def can_change_thread(user, thread):
    """Whoever may use a thread's key may change the thread (using it implies seeing it)."""
    return usable_keys(user).filter(pk=thread.api_key_id).exists()


def get_writable_thread(user, pk):
    """404 when the user may not see the thread, 403 when they may only look at it."""
    thread = get_visible_thread(user, pk)
    if not can_change_thread(user, thread):
        raise PermissionDenied("You may look at this thread but not change it.")
    return thread


def get_visible_key(user, pk):
    return get_object_or_404(visible_keys(user), pk=pk)


def get_manageable_key(user, pk):
    """404 when the user may not see the key, 403 when they may see but not manage it."""
    key = get_visible_key(user, pk)
    if not manageable_keys(user).filter(pk=key.pk).exists():
        raise PermissionDenied("Only the key's owner or a team owner can change this key.")
    return key


def get_visible_team(user, pk):
    return get_object_or_404(visible_teams(user), pk=pk)


# --- Teams: overview, members, keys, and who may manage them -----------------------------


def is_team_owner(user, team):
    return team_role(user, team) == Role.OWNER


def teams_overview(user):
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


def team_members(team):
    return team.memberships.select_related("user").order_by("user__username")


def team_keys(user, team):
    """The team's keys as the user may see them (label, hint, use; never the secret)."""
    return visible_keys(user).filter(team=team).annotate(thread_count=Count("threads"))


def get_manageable_team(user, pk):
    """404 when the user is not in the team, 403 when they are but not as an owner."""
    team = get_visible_team(user, pk)
    if not is_team_owner(user, team):
        raise PermissionDenied("Only the team's owners can do this.")
    return team


def may_remove_member(user, membership):
    """Owners remove anyone; everyone may remove themself (leave)."""
    return membership.user_id == user.pk or is_team_owner(user, membership.team)


def get_team_membership(team, membership_pk):
    return get_object_or_404(team_members(team), pk=membership_pk)


def get_removable_membership(user, team, membership_pk):
    """404 outside the (already visible) team, 403 for someone else's membership."""
    membership = get_team_membership(team, membership_pk)
    if not may_remove_member(user, membership):
        raise PermissionDenied("Only the team's owners can remove other members.")
    return membership


# --- Bulk delete jobs ---------------------------------------------------------------------


def visible_bulk_delete_jobs(user):
    """A job is its creator's alone (superusers see all): it names threads of several keys."""
    jobs = BulkDeleteJob.objects.all()
    return jobs if user.is_superuser else jobs.filter(created_by=user)


def get_visible_bulk_delete_job(user, pk):
    return get_object_or_404(visible_bulk_delete_jobs(user), pk=pk)


MAX_BULK_DELETE = 500  # threads per bulk-delete job


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
        elif thread.state == TrackedThread.State.DELETED:
            deleted.append(thread)
        else:
            deletable.append(thread)
    return BulkDeleteSelection(
        requested, deletable, read_only, deleted, unknown=requested - len(visible)
    )


@dataclass(frozen=True)
class BulkDeleteProgress:
    """How far a job got: its items (with their threads) and the count of each outcome."""

    job: BulkDeleteJob
    items: list[BulkDeleteItem]

    @property
    def running(self) -> bool:
        return self.job.state == BulkDeleteJob.State.RUNNING

    @property
    def total(self) -> int:
        return len(self.items)

    @property
    def done(self) -> int:
        return sum(item.outcome != BulkDeleteItem.Outcome.PENDING for item in self.items)

    @property
    def counts(self) -> list[tuple[str, str, int]]:
        """(outcome, its label, how many items have it), for every outcome."""
        counts = Counter(item.outcome for item in self.items)
        return [(value, label, counts[value]) for value, label in BulkDeleteItem.Outcome.choices]

    @property
    def retryable(self) -> list[int]:
        """The tracked threads of a finished job that failed or were refused (to try again)."""
        if self.running:
            return []
        again = (BulkDeleteItem.Outcome.REFUSED, BulkDeleteItem.Outcome.FAILED)
        return [
            item.tracked_thread_id
            for item in self.items
            if item.outcome in again and item.tracked_thread_id is not None
        ]


def bulk_delete_progress(job: BulkDeleteJob) -> BulkDeleteProgress:
    return BulkDeleteProgress(job, list(job.items.select_related("tracked_thread")))


# --- Threads: the list's filters, and whether the upstream may be asked -----------------


# --- Keys: the key list, and teams whose keys a user may add --------------------------------


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
