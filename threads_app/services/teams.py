"""Writes for teams and memberships: permission checks, the last-owner rule, and audit.

Views hand in objects already scoped by selectors; the checks are repeated here because a
POST can be sent directly. Membership changes lock the team row first, so two owners
demoting each other at the same moment cannot leave a team without an owner.
"""

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import AuditEvent, Membership, Team, TrackedThread
from threads_app.services.refusals import NotAllowed, Refused

Role = Membership.Role
Action = AuditEvent.Action
SUCCESS = AuditEvent.Outcome.SUCCESS


def _require_owner(team: Team, *, actor: User) -> None:
    if not selectors.is_team_owner(actor, team):
        raise NotAllowed("Only the team's owners can do this.")


def _check_role(role: str) -> None:
    if role not in Role.values:
        raise Refused(f"“{role}” is not a role; choose owner, member or viewer.", field="role")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _lock_team(team_id: int) -> Team:
    return Team.objects.select_for_update().get(pk=team_id)


def _locked(membership: Membership) -> Membership:
    """Lock the team, then re-read the membership: the rules see the current roles."""
    _lock_team(membership.team_id)
    return Membership.objects.select_related("user", "team").get(pk=membership.pk)


def _refuse_last_owner(membership: Membership, *, actor: User, consequence: str) -> None:
    if membership.role != Role.OWNER:
        return
    team = membership.team
    if team.memberships.filter(role=Role.OWNER).exclude(pk=membership.pk).exists():
        return
    who = "You are" if membership.user_id == actor.pk else f"{membership.user} is"
    raise Refused(
        f"{who} the last owner of {team}, so {consequence}: make another member an owner first."
    )


def create_team(*, actor: User, name: str, origin: Origin | None = None) -> Team:
    """Create a team with `actor` as its owner. Names are unique regardless of case."""
    name = name.strip()
    with transaction.atomic():
        team, created = Team.objects.get_or_create(name__iexact=name, defaults={"name": name})
        if not created:
            raise Refused(f"A team named “{team}” already exists.", field="name")
        Membership.objects.create(team=team, user=actor, role=Role.OWNER)
        audit.record(
            action=Action.TEAM_CREATED,
            outcome=SUCCESS,
            actor=actor,
            team=team,
            origin=origin,
            details={"name": team.name},
        )
    return team


def _find_user(identifier: str) -> User:
    """An existing user by exact username, else by email (case-insensitive)."""
    users = get_user_model().objects
    identifier = identifier.strip()
    user = users.filter(username=identifier).first()
    if user is not None:
        return user
    by_email = list(users.filter(email__iexact=identifier)[:2])
    if len(by_email) > 1:
        raise Refused(
            "Several users have this email address; add them by username.", field="identifier"
        )
    if not by_email:
        raise Refused(
            f"No user has the username or email “{identifier}”. "
            "They need an account before they can join.",
            field="identifier",
        )
    return by_email[0]


def add_member(
    team: Team, *, actor: User, identifier: str, role: str, origin: Origin | None = None
) -> Membership:
    """Add an existing user (by username or email) to the team with `role`."""
    _require_owner(team, actor=actor)
    _check_role(role)
    user = _find_user(identifier)
    with transaction.atomic():
        membership, created = Membership.objects.get_or_create(
            team=team, user=user, defaults={"role": role}
        )
        if not created:
            raise Refused(
                f"{user} is already a member of {team} "
                f"(as {membership.get_role_display().lower()}).",
                field="identifier",
            )
        audit.record(
            action=Action.MEMBER_ADDED,
            outcome=SUCCESS,
            actor=actor,
            team=team,
            origin=origin,
            details={"username": user.get_username(), "role": role},
        )
    return membership


def change_role(
    membership: Membership, *, actor: User, role: str, origin: Origin | None = None
) -> bool:
    """Give a member another role; returns False when it already was that role."""
    _require_owner(membership.team, actor=actor)
    _check_role(role)
    with transaction.atomic():
        membership = _locked(membership)
        old_role = membership.role
        if old_role == role:
            return False
        _refuse_last_owner(membership, actor=actor, consequence="cannot stop being an owner")
        membership.role = role
        membership.save(update_fields=["role"])
        audit.record(
            action=Action.MEMBER_ROLE_CHANGED,
            outcome=SUCCESS,
            actor=actor,
            team=membership.team,
            origin=origin,
            details={
                "username": membership.user.get_username(),
                "old_role": old_role,
                "new_role": role,
            },
        )
    return True


def remove_member(membership: Membership, *, actor: User, origin: Origin | None = None) -> None:
    """Remove a member, or let a member leave. Access ends with their next request, as every
    selector reads memberships afresh."""
    if not selectors.may_remove_member(actor, membership):
        raise NotAllowed("Only the team's owners can remove other members.")
    with transaction.atomic():
        membership = _locked(membership)
        leaving = membership.user_id == actor.pk
        consequence = "cannot leave" if leaving else "cannot be removed"
        _refuse_last_owner(membership, actor=actor, consequence=consequence)
        membership.delete()
        audit.record(
            action=Action.MEMBER_REMOVED,
            outcome=SUCCESS,
            actor=actor,
            team=membership.team,
            origin=origin,
            details={
                "username": membership.user.get_username(),
                "role": membership.role,
                "left": leaving,
            },
        )


def delete_team(team: Team, *, actor: User, origin: Origin | None = None) -> None:
    """Delete a team with no live keys and no tracked threads; its revoked keys go with it.

    Threads come first in the refusal: while a key is live its threads can be untracked or
    deleted in the dashboard; under a revoked key they are read-only.
    """
    _require_owner(team, actor=actor)
    with transaction.atomic():
        team = _lock_team(team.pk)
        threads = TrackedThread.objects.filter(api_key__team=team)
        live_threads = threads.filter(api_key__revoked_at__isnull=True).count()
        read_only_threads = threads.count() - live_threads
        live_keys = team.api_keys.filter(revoked_at__isnull=True).count()
        steps: list[str] = []
        if live_threads:
            steps.append(
                f"untrack or delete the {_count(live_threads, 'tracked thread')} under its keys"
            )
        if live_keys:
            steps.append(f"revoke its {_count(live_keys, 'live key')} on the Keys page")
        if read_only_threads:
            steps.append(
                "ask an administrator to remove the "
                f"{_count(read_only_threads, 'tracked thread')} left under its revoked keys"
            )
        if steps:
            raise Refused(f"{team} cannot be deleted yet: first {', then '.join(steps)}.")
        revoked_keys = team.api_keys.count()
        audit.record(
            action=Action.TEAM_DELETED,
            outcome=SUCCESS,
            actor=actor,
            team=team,
            origin=origin,
            details={"name": team.name, "revoked_keys_deleted": revoked_keys},
        )
        team.api_keys.all().delete()
        team.delete()
