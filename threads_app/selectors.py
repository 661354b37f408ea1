"""Reads: what a user may see or use. Every object lookup in a view goes through here.

An object outside these querysets is a 404 for that user, on full pages and partials alike.
"""

from dataclasses import dataclass
from itertools import groupby

from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Exists, F, OuterRef, Q, QuerySet, Subquery
from django.shortcuts import get_object_or_404

from threads_app.models import (
    ApiKey,
    AuditEvent,
    BulkDeleteJob,
    Invitation,
    Membership,
    Team,
    TrackedThread,
    normalise_identifier,
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


def is_team_owner(user: User, team: Team) -> bool:
    return team_role(user, team) == Role.OWNER


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
    return visible_keys(user).filter(team=team).annotate(thread_count=Count("threads"))


def get_manageable_team(user: User, pk: int) -> Team:
    """404 when the user is not in the team, 403 when they are but not as an owner."""
    team = get_visible_team(user, pk)
    if not is_team_owner(user, team):
        raise PermissionDenied("Only the team's owners can do this.")
    return team


def may_remove_member(user: User, membership: Membership) -> bool:
    """Owners remove anyone; everyone may remove themself (leave)."""
    return membership.user_id == user.pk or is_team_owner(user, membership.team)


def get_team_membership(team: Team, membership_pk: int) -> Membership:
    return get_object_or_404(team_members(team), pk=membership_pk)


def get_removable_membership(user: User, team: Team, membership_pk: int) -> Membership:
    """404 outside the (already visible) team, 403 for someone else's membership."""
    membership = get_team_membership(team, membership_pk)
    if not may_remove_member(user, membership):
        raise PermissionDenied("Only the team's owners can remove other members.")
    return membership


# --- Invitations: the invitee's, and a team's pending ones ---------------------------------

PENDING = Invitation.Status.PENDING


def may_see_member_emails(user: User, team: Team) -> bool:
    """Members' emails are for the team's owners (and superusers) alone."""
    return is_team_owner(user, team)


def invitations_for(user: User) -> QuerySet[Invitation]:
    """Invitations addressed to the user: their exact username, or their email (any case)."""
    identifiers = {normalise_identifier(user.get_username())}
    if user.email:
        identifiers.add(normalise_identifier(user.email))
    return Invitation.objects.filter(identifier__in=identifiers).select_related(
        "team", "invited_by"
    )


def my_pending_invitations(user: User) -> QuerySet[Invitation]:
    return invitations_for(user).filter(status=PENDING).order_by("team__name", "id")


def get_my_invitation(user: User, pk: int) -> Invitation:
    """404 for an invitation addressed to someone else, whoever is asking (superusers too)."""
    return get_object_or_404(invitations_for(user), pk=pk)


def team_pending_invitations(team: Team) -> QuerySet[Invitation]:
    return team.invitations.filter(status=PENDING).select_related("invited_by")


def get_team_invitation(team: Team, invitation_pk: int) -> Invitation:
    return get_object_or_404(team.invitations.all(), pk=invitation_pk)


def member_answering_to(team: Team, identifier: str) -> Membership | None:
    """The team's member with this username or email, if any (owners see them all anyway)."""
    identifier = identifier.strip()
    named = Q(user__username=identifier) | Q(user__email__iexact=identifier)
    return team_members(team).filter(named).first()


# --- Bulk delete jobs ---------------------------------------------------------------------


def visible_bulk_delete_jobs(user):
    """A job is its creator's alone (superusers see all): it names threads of several keys."""
    jobs = BulkDeleteJob.objects.all()
    return jobs if user.is_superuser else jobs.filter(created_by=user)


def get_visible_bulk_delete_job(user, pk):
    return get_object_or_404(visible_bulk_delete_jobs(user), pk=pk)


# --- Threads: the list's filters, and whether the upstream may be asked -----------------


# --- Keys: the key list, and teams whose keys a user may add --------------------------------


def listed_keys(user: User) -> QuerySet[ApiKey]:
    """Visible keys with their tracked-thread count and whether the user may manage them,
    in the list's order: personal keys first, then by team."""
    return (
        visible_keys(user)
        .select_related("team", "owner")
        .annotate(
            tracked_count=Count("threads", filter=~Q(threads__state=TrackedThread.State.DELETED)),
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
    """Threads still tracked under the key (a deleted thread no longer counts)."""
    return api_key.threads.exclude(state=TrackedThread.State.DELETED).count()


# --- Audit log: the page's filters and its links to tracked threads ------------------------
