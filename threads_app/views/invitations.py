"""The invitee's side of team invitations: the list of their pending ones, accept, decline.

Invitations are found by the logged-in user's username or email; anyone else's is a 404,
superusers included. Accepting goes to the team's page, declining back to the list (a full
page load on the htmx path too, so the message shows on the page it is about).
"""

from functools import partial

from django.contrib import messages
from django.http import HttpResponse
from django.views.decorators.http import require_GET, require_POST

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.services import teams as team_services
from threads_app.services.refusals import Refused
from threads_app.views.htmx import AuthenticatedHttpRequest, attempt, go_to, render_page

INVITATION_LIST = "threads_app:invitation_list"


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
