"""The invitee's side of team invitations: the list of their pending ones, accept, decline,
and the link an emailed invitation holds.

Invitations are found by the logged-in user's username or email; anyone else's is a 404,
superusers included. Accepting goes to the team's page, declining back to the list (a full
page load on the htmx path too, so the message shows on the page it is about).

The link needs no login: someone without an account chooses a username and password there
and joins; someone with one logs in first and answers as above.
"""

from functools import partial

from allauth.account.internal.flows.login import record_authentication
from allauth.core import ratelimit
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_not_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.teams import JoinForm
from threads_app.models import AuditEvent
from threads_app.services import accounts as account_services
from threads_app.services import teams as team_services
from threads_app.services.refusals import Refused
from threads_app.views.htmx import (
    AuthenticatedHttpRequest,
    attempt,
    go_to,
    render_page,
    submit,
)

INVITATION_LIST = "threads_app:invitation_list"
JOIN_LIMITED = (
    "Too many tries through this link or from your address: nothing was created. "
    "Wait an hour, then try again."
)


@require_GET
def invitation_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    invitations = selectors.my_pending_invitations(request.user)
    return render_page(request, "invitation_list", {"invitations": invitations})


@require_POST
def invitation_accept(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    invitation = selectors.get_my_invitation(actor, pk)
    try:
        membership, joined = team_services.accept_invitation(
            invitation, actor=actor, origin=Origin.from_request(request)
        )
    except Refused as exc:
        messages.error(request, str(exc))
        return go_to(request, INVITATION_LIST)
    team, role = membership.team, membership.get_role_display().lower()
    if joined:
        messages.success(request, f"You joined {team} as {role}.")
    else:
        messages.info(request, f"You already are a member of {team} (as {role}).")
    return go_to(request, "threads_app:team_detail", team.pk)


@require_POST
def invitation_decline(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    invitation = selectors.get_my_invitation(actor, pk)
    origin = Origin.from_request(request)
    decline = partial(team_services.decline_invitation, invitation, actor=actor, origin=origin)
    attempt(request, decline, done=lambda _: f"You declined the invitation to {invitation.team}.")
    return go_to(request, INVITATION_LIST)


@login_not_required
@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def invitation_link(request: HttpRequest, token: str) -> HttpResponse:
    """An emailed invitation's link: a 404 page once used, revoked or expired."""
    invitation = selectors.invitation_for_link(team_services.invitation_token_hash(token))
    template = "threads_app/invitation_link.html"
    if invitation is None:
        return render(request, template, {"invitation": None}, status=404)
    context: dict[str, object] = {"invitation": invitation, "team": invitation.team}
    user = request.user
    if user.is_authenticated:
        context["addressed"] = selectors.invitations_for(user).filter(pk=invitation.pk).exists()
        return render(request, template, context)
    if selectors.account_with_email(invitation.identifier) is not None:
        return render(request, template, {**context, "has_account": True})
    # Every try counts, per link and per client address (ACCOUNT_RATE_LIMITS["invitation_join"],
    # in the cache all instances share): a link's holder cannot go through usernames.
    if request.method == "POST" and not ratelimit.consume(
        request, action="invitation_join", key=invitation.token_hash
    ):
        context |= {"form": JoinForm(), "limited": JOIN_LIMITED}
        return render(request, template, context, status=429)
    form = JoinForm(posted(request))
    origin = Origin.from_request(request)
    role = invitation.get_role_display().lower()
    new_user = submit(
        request,
        form,
        lambda: team_services.join_with_new_account(
            invitation,
            username=form.cleaned_data["username"],
            password=form.cleaned_data["password1"],
            origin=origin,
        ),
        done=lambda _: f"Welcome! You joined {invitation.team} as {role}.",
    )
    if new_user is None:
        return render(request, template, {**context, "form": form})
    login(request, new_user, backend="threads_app.accounts.AuthenticationBackend")
    record_authentication(request, new_user, method="password")
    account_services.record_account_event(
        AuditEvent.Action.LOGGED_IN, user=new_user, origin=origin, via="invitation"
    )
    return redirect("threads_app:team_detail", invitation.team_id)
