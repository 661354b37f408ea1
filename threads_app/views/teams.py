"""Team pages: my teams, create a team, a team's members and keys, membership changes, delete.

Member changes on the htmx path re-render the `#members` region; plain POSTs redirect back
to the team page with a message.
"""

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.forms.teams import AddMemberForm, RoleForm, TeamForm
from threads_app.models import Membership
from threads_app.services import teams as team_services


def _template(request, page, partial):
    name = f"threads_app/{page}.html"
    return f"{name}#{partial}" if request.htmx else name


def _redirect(request, url):
    """Navigate away: a full page load on the htmx path too."""
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _detail_url(team):
    return reverse("threads_app:team_detail", args=[team.pk])


def _error(exc):
    return " ".join(exc.messages)


@require_GET
def team_list(request):
    teams = selectors.teams_overview(request.user)
    return render(
        request, _template(request, "team_list", "teams"), {"nav": "teams", "teams": teams}
    )


@require_http_methods(["GET", "POST"])
def team_create(request):
    form = TeamForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            team = team_services.create_team(
                request.user, form.cleaned_data["name"], origin=Origin.from_request(request)
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            messages.success(request, f"Team “{team}” created. You are its owner.")
            return _redirect(request, _detail_url(team))
    return render(
        request, _template(request, "team_create", "form"), {"nav": "teams", "form": form}
    )


def _render_detail(request, team, add_form=None):
    """The team page, or its `#members` region on the htmx path."""
    user = request.user
    context = {
        "nav": "teams",
        "team": team,
        "is_owner": selectors.is_team_owner(user, team),
        "members": selectors.team_members(team),
        "keys": selectors.team_keys(user, team),
        "add_form": add_form or AddMemberForm(),
        "role_choices": Membership.Role.choices,
    }
    return render(request, _template(request, "team_detail", "members"), context)


def _after_member_change(request, team):
    if request.htmx:
        return _render_detail(request, team)
    return redirect(_detail_url(team))


@require_GET
def team_detail(request, pk):
    return _render_detail(request, selectors.get_visible_team(request.user, pk))


@require_POST
def team_member_add(request, pk):
    team = selectors.get_manageable_team(request.user, pk)
    form = AddMemberForm(request.POST)
    if form.is_valid():
        try:
            membership = team_services.add_member(
                request.user, team, origin=Origin.from_request(request), **form.cleaned_data
            )
        except ValidationError as exc:
            form.add_error(None, exc)
        else:
            role = membership.get_role_display().lower()
            messages.success(request, f"{membership.user} added to {team} as {role}.")
            return _after_member_change(request, team)
    return _render_detail(request, team, add_form=form)


@require_POST
def team_member_role(request, pk, membership_pk):
    team = selectors.get_manageable_team(request.user, pk)
    membership = selectors.get_team_membership(team, membership_pk)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a role: owner, member or viewer.")
        return _after_member_change(request, team)
    role = form.cleaned_data["role"]
    try:
        changed = team_services.change_role(
            request.user, membership, role, origin=Origin.from_request(request)
        )
    except ValidationError as exc:
        messages.error(request, _error(exc))
    else:
        if changed:
            label = Membership.Role(role).label.lower()
            messages.success(request, f"{membership.user}'s role in {team} is now {label}.")
    return _after_member_change(request, team)


@require_http_methods(["GET", "POST"])
def team_member_remove(request, pk, membership_pk):
    team = selectors.get_visible_team(request.user, pk)
    membership = selectors.get_removable_membership(request.user, team, membership_pk)
    leaving = membership.user_id == request.user.pk
    if request.method == "GET":
        return render(
            request,
            "threads_app/team_member_remove.html",
            {"nav": "teams", "team": team, "membership": membership, "leaving": leaving},
        )
    try:
        team_services.remove_member(request.user, membership, origin=Origin.from_request(request))
    except ValidationError as exc:
        messages.error(request, _error(exc))
        return _after_member_change(request, team)
    if leaving:
        messages.success(request, f"You left {team}.")
        return _redirect(request, reverse("threads_app:team_list"))
    messages.success(request, f"{membership.user} was removed from {team}.")
    return _after_member_change(request, team)


@require_http_methods(["GET", "POST"])
def team_delete(request, pk):
    team = selectors.get_manageable_team(request.user, pk)
    if request.method == "GET":
        return render(request, "threads_app/team_delete.html", {"nav": "teams", "team": team})
    try:
        team_services.delete_team(request.user, team, origin=Origin.from_request(request))
    except ValidationError as exc:
        messages.error(request, _error(exc))
        return _redirect(request, _detail_url(team))
    messages.success(request, f"Team “{team}” was deleted.")
    return _redirect(request, reverse("threads_app:team_list"))
