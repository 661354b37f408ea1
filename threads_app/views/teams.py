"""Team pages: my teams, create a team, a team's members and keys, invitations, membership
changes, delete.

Member changes and invitations on the htmx path re-render the `#members` region; plain POSTs
redirect back to the team page with a message. Inviting answers the same whether or not an
account answers to the username or email.
"""

from functools import partial

from django.contrib import messages
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threads_app import selectors
from threads_app.accounts import recent_authentication_required
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.teams import (
    ApprovalRuleForm,
    InviteForm,
    RoleForm,
    TeamForm,
    TwoFactorRuleForm,
)
from threads_app.models import Membership, Team
from threads_app.services import teams as team_services
from threads_app.views.htmx import AuthenticatedHttpRequest, attempt, go_to, render_page, submit

TEAM_LIST, TEAM_DETAIL = "threads_app:team_list", "threads_app:team_detail"


@require_GET
def team_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    teams = selectors.teams_overview(request.user)
    return render_page(request, "team_list", {"nav": "teams", "teams": teams}, partial="teams")


@require_http_methods(["GET", "POST"])
def team_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form = TeamForm(posted(request))
    team = submit(
        request,
        form,
        lambda: team_services.create_team(
            actor=request.user, name=form.cleaned_data["name"], origin=Origin.from_request(request)
        ),
        done=lambda team: f"Team “{team}” created. You are its owner.",
    )
    if team:
        return go_to(request, TEAM_DETAIL, team.pk)
    return render_page(request, "team_create", {"nav": "teams", "form": form}, partial="form")


def _render_detail(
    request: AuthenticatedHttpRequest,
    team: Team,
    invite_form: InviteForm | None = None,
    undo: tuple[int, str] | None = None,
    approval_form: ApprovalRuleForm | None = None,
) -> HttpResponse:
    """The team page, or its `#members` region on the htmx path. `undo`: (membership pk,
    its previous role) after a role change, offered back in that member's row (a plain page
    gets it from the query string the change redirected to)."""
    user = request.user
    is_owner = selectors.is_team_owner(user, team)
    undo = undo or _undo_from(request)
    context = {
        "nav": "teams",
        "team": team,
        "is_owner": is_owner,
        "show_emails": selectors.may_see_member_emails(user, team),
        "members": selectors.team_members(team),
        "invitations": selectors.team_pending_invitations(team) if is_owner else [],
        "keys": selectors.team_keys(user, team),
        "invite_form": invite_form or InviteForm(),
        "approval_form": approval_form
        or ApprovalRuleForm(
            initial={
                "required": team.approval_threshold is not None,
                "threshold": team.approval_threshold,
            }
        ),
        "role_choices": Membership.Role.choices,
        # Only someone who uses two-factor may require it of the team's owners.
        "may_require_two_factor": selectors.has_two_factor(user),
        "undo_pk": undo[0] if undo and is_owner else None,
        "undo_role": Membership.Role(undo[1]) if undo and is_owner else None,
    }
    return render_page(request, "team_detail", context, partial="members")


UNDO = "undo"  # the team page's query parameter "<membership pk>:<previous role>"


def _undo_from(request: AuthenticatedHttpRequest) -> tuple[int, str] | None:
    """The role change to offer undoing, from `?undo=` (ignored unless well formed)."""
    pk, _, role = request.GET.get(UNDO, "").partition(":")
    if not pk.isdecimal() or len(pk) > 18 or role not in Membership.Role.values:
        return None
    return int(pk), role


def _after_member_change(request: AuthenticatedHttpRequest, team: Team) -> HttpResponse:
    if request.htmx:
        return _render_detail(request, team)
    return go_to(request, TEAM_DETAIL, team.pk)


@require_GET
def team_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    return _render_detail(request, selectors.get_visible_team(request.user, pk))


@require_POST
def team_invite(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    team = selectors.get_manageable_team(actor, pk)
    form = InviteForm(posted(request))
    invited = submit(
        request,
        form,
        lambda: team_services.invite_member(
            team,
            actor=actor,
            identifier=form.cleaned_data["identifier"],
            role=form.cleaned_data["role"],
            origin=Origin.from_request(request),
            site=request.build_absolute_uri("/"),
        ),
        done=lambda invitation: (
            f"Invitation to {team} sent to “{invitation.identifier}” as "
            f"{invitation.get_role_display().lower()}."
        ),
    )
    if invited:
        return _after_member_change(request, team)
    return _render_detail(request, team, invite_form=form)


@require_POST
def team_invitation_revoke(
    request: AuthenticatedHttpRequest, pk: int, invitation_pk: int
) -> HttpResponse:
    actor = request.user
    team = selectors.get_manageable_team(actor, pk)
    invitation = selectors.get_team_invitation(team, invitation_pk)
    origin = Origin.from_request(request)
    revoke = partial(team_services.revoke_invitation, invitation, actor=actor, origin=origin)
    attempt(
        request, revoke, done=lambda _: f"The invitation of “{invitation.identifier}” was revoked."
    )
    return _after_member_change(request, team)


@require_POST
def team_two_factor_rule(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    team = selectors.get_manageable_team(actor, pk)
    form = TwoFactorRuleForm(posted(request))
    valid = form.is_valid()
    required = valid and form.cleaned_data["required"]
    confirmed = valid and form.cleaned_data["confirmed"]
    turning_on = required and not team.owners_need_two_factor
    if turning_on and not confirmed and selectors.has_two_factor(actor):
        # First the owners it will send to turn it on, and a confirmation. (Whoever has no
        # two-factor is refused by the service, below.)
        affected = selectors.owners_without_two_factor(team)
        context = {"nav": "teams", "team": team, "affected": affected}
        return render_page(request, "team_two_factor_confirm", context)
    origin = Origin.from_request(request)
    change = partial(
        team_services.set_owners_need_two_factor,
        team,
        actor=actor,
        required=required,
        origin=origin,
    )
    verb = "must" if required else "no longer must"
    attempt(
        request,
        change,
        done=lambda changed: (
            f"{team}'s owners {verb} use two-factor authentication." if changed else ""
        ),
    )
    return go_to(request, TEAM_DETAIL, team.pk)


@require_POST
def team_approval_rule(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Turn two-person approval of large deletions on (with its number) or off. An invalid
    number answers the team page again, with the form's errors."""
    actor = request.user
    team = selectors.get_manageable_team(actor, pk)
    form = ApprovalRuleForm(posted(request))
    changed = submit(
        request,
        form,
        lambda: team_services.set_approval_threshold(
            team, actor=actor, threshold=form.rule, origin=Origin.from_request(request)
        ),
        done=lambda changed: (
            f"Deletions of more than {form.rule} of {team}'s threads now need a second owner."
            if form.rule
            else f"Deletions of {team}'s threads no longer need a second owner."
        ),
    )
    if changed is None:
        return _render_detail(request, team, approval_form=form)
    return go_to(request, TEAM_DETAIL, team.pk)


@require_POST
def team_member_role(
    request: AuthenticatedHttpRequest, pk: int, membership_pk: int
) -> HttpResponse:
    actor = request.user
    team = selectors.get_manageable_team(actor, pk)
    membership = selectors.get_team_membership(team, membership_pk)
    form = RoleForm(posted(request))
    if not form.is_valid():
        messages.error(request, "Choose a role: owner, member or viewer.")
        return _after_member_change(request, team)
    role = form.cleaned_data["role"]
    previous = membership.role
    label = Membership.Role(role).label.lower()
    origin = Origin.from_request(request)
    change = partial(team_services.change_role, membership, actor=actor, role=role, origin=origin)
    changed = attempt(
        request,
        change,
        done=lambda changed: (
            f"{membership.user}'s role in {team} is now {label}." if changed else ""
        ),
    )
    if not changed or previous == role:
        return _after_member_change(request, team)
    if request.htmx:
        return _render_detail(request, team, undo=(membership.pk, previous))
    undo = f"?{UNDO}={membership.pk}:{previous}"
    return go_to(request, reverse(TEAM_DETAIL, args=[team.pk]) + undo)


@require_http_methods(["GET", "POST"])
def team_member_remove(
    request: AuthenticatedHttpRequest, pk: int, membership_pk: int
) -> HttpResponse:
    actor = request.user
    team = selectors.get_visible_team(actor, pk)
    membership = selectors.get_removable_membership(actor, team, membership_pk)
    leaving = membership.user_id == actor.pk
    if request.method == "GET":
        context = {"nav": "teams", "team": team, "membership": membership, "leaving": leaving}
        return render_page(request, "team_member_remove", context, partial="confirm")
    origin = Origin.from_request(request)
    removed = attempt(
        request,
        partial(team_services.remove_member, membership, actor=actor, origin=origin),
        done=lambda _: (
            f"You left {team}." if leaving else f"{membership.user} was removed from {team}."
        ),
    )
    if removed and leaving:
        return go_to(request, TEAM_LIST)
    return _after_member_change(request, team)


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def team_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    team = selectors.get_manageable_team(actor, pk)
    if request.method == "GET":
        return render_page(request, "team_delete", {"nav": "teams", "team": team})
    origin = Origin.from_request(request)
    deleted = attempt(
        request,
        partial(team_services.delete_team, team, actor=actor, origin=origin),
        done=lambda _: f"Team “{team}” was deleted.",
    )
    return go_to(request, TEAM_LIST) if deleted else go_to(request, TEAM_DETAIL, team.pk)
