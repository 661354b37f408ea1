"""Writes for teams, invitations and memberships: permission checks, the last-owner rule,
and audit.

Views hand in objects already scoped by selectors; the checks are repeated here because a
POST can be sent directly. Membership changes lock the team row first, so two owners
demoting each other at the same moment cannot leave a team without an owner.
"""

import hashlib
import secrets
from datetime import timedelta
from functools import partial

from django.contrib.auth import password_validation
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.mail import send_mail
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import (
    AuditEvent,
    Invitation,
    Membership,
    Team,
    TrackedThread,
    normalise_identifier,
    normalise_username,
    validate_username,
)
from threads_app.services.approvals import MAX_THRESHOLD
from threads_app.services.refusals import NotAllowed, Refused

Role = Membership.Role
Action = AuditEvent.Action
SUCCESS = AuditEvent.Outcome.SUCCESS
# How long an emailed invitation's link works.
INVITATION_LINK_LIFETIME = timedelta(days=7)


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


def _record_team_change(
    team: Team, action: str, *, actor: User, origin: Origin | None, **details: object
) -> None:
    """The audit row of a team write: a success, in the team's log."""
    audit.record(
        action=action, outcome=SUCCESS, actor=actor, team=team, origin=origin, details=details
    )


def create_team(*, actor: User, name: str, origin: Origin | None = None) -> Team:
    """Create a team with `actor` as its owner. Names are unique regardless of case."""
    name = name.strip()
    with transaction.atomic():
        team, created = Team.objects.get_or_create(name__iexact=name, defaults={"name": name})
        if not created:
            raise Refused(f"A team named “{team}” already exists.", field="name")
        Membership.objects.create(team=team, user=actor, role=Role.OWNER)
        _record_team_change(team, Action.TEAM_CREATED, actor=actor, origin=origin, name=team.name)
    return team


def _add_membership(team: Team, *, user: User, role: str) -> Membership | None:
    """The new membership, or None when the user already is a member."""
    membership, created = Membership.objects.get_or_create(
        team=team, user=user, defaults={"role": role}
    )
    return membership if created else None


def add_member(
    team: Team, *, actor: User, user: User, role: str, origin: Origin | None = None
) -> Membership:
    """Make `user` a member straight away: for the demo and the shell. The pages invite."""
    _require_owner(team, actor=actor)
    _check_role(role)
    with transaction.atomic():
        membership = _add_membership(team, user=user, role=role)
        if membership is None:
            raise Refused(f"{user} is already a member of {team}.")
        details = {"username": user.get_username(), "role": role}
        _record_team_change(team, Action.MEMBER_ADDED, actor=actor, origin=origin, **details)
    return membership


# --- Invitations --------------------------------------------------------------------------
# The owner's side never looks up a user: the answer, and the audit row, are the same
# whether or not an account answers to the identifier.


def invite_member(
    team: Team,
    *,
    actor: User,
    identifier: str,
    role: str,
    origin: Origin | None = None,
    site: str = "",
) -> Invitation:
    """Invite whoever logs in under `identifier` (a username, or an email in any case).

    An email also gets the invitation as a link (`site` is the dashboard's address the link
    starts with, e.g. "https://console.example.com"): it works once, until the invitation
    expires, and lets someone without an account choose a password and join.
    """
    _require_owner(team, actor=actor)
    _check_role(role)
    identifier = normalise_identifier(identifier)
    if not identifier:
        raise Refused("Enter a username or an email address.", field="identifier")
    if "@" in identifier:
        try:
            validate_email(identifier)
        except ValidationError:
            raise Refused(f"“{identifier}” is not an email address.", field="identifier") from None
    member = selectors.member_answering_to(team, identifier)
    if member is not None:
        raise Refused(
            f"{member.user} is already a member of {team} "
            f"(as {member.get_role_display().lower()}).",
            field="identifier",
        )
    pending = f"“{identifier}” already has a pending invitation to {team}."
    token = secrets.token_urlsafe(32) if "@" in identifier else ""
    with transaction.atomic():
        _close_expired(team, identifier, actor=actor, origin=origin)
        if selectors.team_pending_invitations(team).filter(identifier=identifier).exists():
            raise Refused(pending, field="identifier")
        try:
            with transaction.atomic():
                invitation = Invitation.objects.create(
                    team=team,
                    identifier=identifier,
                    role=role,
                    invited_by=actor,
                    token_hash=invitation_token_hash(token) if token else "",
                    expires_at=timezone.now() + INVITATION_LINK_LIFETIME if token else None,
                )
        except IntegrityError:  # the same invitation, sent a moment ago
            raise Refused(pending, field="identifier") from None
        _record_invitation(invitation, Action.INVITATION_SENT, actor=actor, origin=origin)
        if token:
            # Once committed: a rolled-back invitation sends nothing.
            transaction.on_commit(partial(_email_invitation, invitation, token=token, site=site))
    return invitation


def invitation_token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _close_expired(team: Team, identifier: str, *, actor: User, origin: Origin | None) -> None:
    """An expired invitation to the same address makes way for the new one (revoked, with
    `expired` in its audit row)."""
    expired = selectors.team_pending_invitations(team).filter(
        identifier=identifier, expires_at__lte=timezone.now()
    )
    for invitation in expired:
        _close(invitation, Invitation.Status.REVOKED, actor=actor, origin=origin, expired=True)


def _email_invitation(invitation: Invitation, *, token: str, site: str) -> None:
    path = reverse("threads_app:invitation_link", args=[token])
    context = {
        "invitation": invitation,
        "inviter": invitation.invited_by,
        "link": site.rstrip("/") + path,
    }
    send_mail(
        subject=f"[Threads Console] You are invited to join {invitation.team}",
        message=render_to_string("threads_app/email/invitation.txt", context),
        from_email=None,
        recipient_list=[invitation.identifier],
    )


def _record_invitation(
    invitation: Invitation,
    action: str,
    *,
    actor: User,
    origin: Origin | None,
    **details: object,
) -> None:
    """An invitation's audit row names it by the identifier typed, never by a user id."""
    _record_team_change(
        invitation.team,
        action,
        actor=actor,
        origin=origin,
        invitation=invitation.pk,
        identifier=invitation.identifier,
        role=invitation.role,
        **details,
    )


_ANSWERS = {
    Invitation.Status.ACCEPTED: ("accepted", Action.INVITATION_ACCEPTED),
    Invitation.Status.DECLINED: ("declined", Action.INVITATION_DECLINED),
    Invitation.Status.REVOKED: ("revoked", Action.INVITATION_REVOKED),
}


def _close(
    invitation: Invitation,
    status: Invitation.Status,
    *,
    actor: User,
    origin: Origin | None,
    **details: object,
) -> Invitation:
    """Lock and re-read the invitation; refuse unless it is still pending, else close it and
    record how. Runs inside the caller's transaction."""
    verb, action = _ANSWERS[status]
    invitation = Invitation.objects.select_for_update().select_related("team").get(pk=invitation.pk)
    if invitation.status != Invitation.Status.PENDING:
        was = invitation.get_status_display().lower()
        raise Refused(f"This invitation cannot be {verb}: it was {was} already.")
    invitation.status = status
    invitation.responded_at = timezone.now()
    invitation.save(update_fields=["status", "responded_at"])
    _record_invitation(invitation, action, actor=actor, origin=origin, **details)
    return invitation


def _require_invitee(invitation: Invitation, *, actor: User) -> None:
    if not selectors.invitations_for(actor).filter(pk=invitation.pk).exists():
        raise NotAllowed("Only the person invited can answer this invitation.")


def accept_invitation(
    invitation: Invitation, *, actor: User, origin: Origin | None = None
) -> tuple[Membership, bool]:
    """Join the team with the invited role. Returns the membership and whether it is new:
    someone already in the team keeps their role, and the invitation is closed all the same."""
    _require_invitee(invitation, actor=actor)
    with transaction.atomic():
        # A refusal to close (not pending any more) rolls the new membership back with it.
        team = invitation.team
        membership = _add_membership(team, user=actor, role=invitation.role)
        joined = membership is not None
        _close(
            invitation,
            Invitation.Status.ACCEPTED,
            actor=actor,
            origin=origin,
            already_member=not joined,
        )
    return membership or team.memberships.get(user=actor), joined


# Names nobody chooses for themselves: they would pass for the site's staff. Refused as a
# taken name is, so that "not available" never confirms that an account exists.
RESERVED_USERNAMES = frozenset(
    {"admin", "administrator", "root", "superuser", "staff", "support", "security", "system"}
)


def _unavailable(username: str) -> Refused:
    """The one answer for a name that is taken or reserved, suggesting a free one."""
    message = f"“{username}” is not available: choose another username"
    for _ in range(5):
        suggestion = f"{username[:140]}-{secrets.randbelow(9000) + 1000}"
        if not selectors.username_taken(suggestion):
            return Refused(f"{message}, such as “{suggestion}”.", field="username")
    return Refused(f"{message}.", field="username")


def join_with_new_account(
    invitation: Invitation,
    *,
    username: str,
    password: str,
    origin: Origin | None = None,
) -> User:
    """Someone without an account, holding an emailed invitation's link: create their
    account (the invited email, the username and password they chose) and join the team with
    the invited role. Refused when the username breaks the rule (`models.validate_username`)
    or is not available, or the password is too weak.

    A name taken (in any case) and a reserved one get the same answer, with a free name to
    try: the link's holder learns that this name cannot be had, not that an account has it.
    """
    username = normalise_username(username)
    try:
        validate_username(username)
    except ValidationError as exc:
        raise Refused(" ".join(exc.messages), field="username") from None
    if username.lower() in RESERVED_USERNAMES or selectors.username_taken(username):
        raise _unavailable(username)
    candidate = User(username=username, email=invitation.identifier)
    try:
        password_validation.validate_password(password, candidate)
    except ValidationError as exc:
        raise Refused(" ".join(exc.messages), field="password1") from None
    with transaction.atomic():
        if selectors.account_with_email(invitation.identifier) is not None:
            raise Refused("An account has this email already: log in to accept.")
        try:
            with transaction.atomic():
                user = User.objects.create_user(username, invitation.identifier, password)
        except IntegrityError:  # the same name (any case), taken a moment ago
            raise _unavailable(username) from None
        _add_membership(invitation.team, user=user, role=invitation.role)
        _close(invitation, Invitation.Status.ACCEPTED, actor=user, origin=origin, new_account=True)
    return user


def decline_invitation(
    invitation: Invitation, *, actor: User, origin: Origin | None = None
) -> Invitation:
    _require_invitee(invitation, actor=actor)
    with transaction.atomic():
        return _close(invitation, Invitation.Status.DECLINED, actor=actor, origin=origin)


def revoke_invitation(
    invitation: Invitation, *, actor: User, origin: Origin | None = None
) -> Invitation:
    _require_owner(invitation.team, actor=actor)
    with transaction.atomic():
        return _close(invitation, Invitation.Status.REVOKED, actor=actor, origin=origin)


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
        # A role chosen by hand is the owners' from now on: no team mapping changes it back.
        membership.managed_by = ""
        membership.save(update_fields=["role", "managed_by"])
        details = {
            "username": membership.user.get_username(),
            "old_role": old_role,
            "new_role": role,
        }
        _record_team_change(
            membership.team, Action.MEMBER_ROLE_CHANGED, actor=actor, origin=origin, **details
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
        details = {
            "username": membership.user.get_username(),
            "role": membership.role,
            "left": leaving,
        }
        _record_team_change(
            membership.team, Action.MEMBER_REMOVED, actor=actor, origin=origin, **details
        )


def _set_team_rule(
    team: Team,
    *,
    field: str,
    value: object,
    action: str,
    detail: str,
    actor: User,
    origin: Origin | None,
) -> bool:
    """Set one of the team's rules (a field), audited with its new value (as `detail`);
    False when it already was so."""
    with transaction.atomic():
        team = _lock_team(team.pk)
        if getattr(team, field) == value:
            return False
        setattr(team, field, value)
        team.save(update_fields=[field])
        _record_team_change(team, action, actor=actor, origin=origin, **{detail: value})
    return True


def set_owners_need_two_factor(
    team: Team, *, actor: User, required: bool, origin: Origin | None = None
) -> bool:
    """Make the team's owners use two-factor authentication, or not; False when it already
    was so. An owner without it is asked to turn it on at their next page. Only someone who
    uses it may require it (else they would lock themselves out of every page at once)."""
    _require_owner(team, actor=actor)
    if required and not selectors.has_two_factor(actor):
        raise Refused(
            "Set up two-factor for your account first: only someone who uses it may require it.",
            code="two_factor_first",
        )
    return _set_team_rule(
        team,
        field="owners_need_two_factor",
        value=required,
        action=Action.TEAM_TWO_FACTOR_RULE,
        detail="required",
        actor=actor,
        origin=origin,
    )


def set_approval_threshold(
    team: Team, *, actor: User, threshold: int | None, origin: Origin | None = None
) -> bool:
    """Make deletions of more than `threshold` of the team's threads wait for another
    owner's approval (`services.approvals`), or (None) stop asking; False when it already
    was so. Jobs already waiting keep waiting under the rule they were asked under."""
    _require_owner(team, actor=actor)
    if threshold is not None and not 1 <= threshold <= MAX_THRESHOLD:
        raise Refused(
            f"The number of threads must be a whole number from 1 to {MAX_THRESHOLD:,}.",
            field="threshold",
            code="invalid_threshold",
        )
    return _set_team_rule(
        team,
        field="approval_threshold",
        value=threshold,
        action=Action.TEAM_APPROVAL_RULE,
        detail="threshold",
        actor=actor,
        origin=origin,
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
        details = {"name": team.name, "revoked_keys_deleted": revoked_keys}
        _record_team_change(team, Action.TEAM_DELETED, actor=actor, origin=origin, **details)
        team.api_keys.all().delete()
        team.delete()
