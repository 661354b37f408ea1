"""Access tokens of the automation API: the list with the form that makes one (the new token
is shown once, in the answer to that POST, never in a URL), and revoke."""

from functools import partial

from django.http import HttpResponse
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_http_methods

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.tokens import TokenCreateForm
from threads_app.services import tokens as token_service
from threads_app.views.htmx import AuthenticatedHttpRequest, attempt, go_to, render_page, submit

TOKEN_LIST = "threads_app:token_list"  # noqa: S105 (a URL name, not a secret)


@require_http_methods(["GET", "POST"])
@sensitive_variables()
def token_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    actor = request.user
    form = TokenCreateForm(actor, posted(request))
    data = form.cleaned_data if form.is_valid() else {}
    made = submit(
        request,
        form,
        lambda: token_service.create_token(
            actor=actor,
            label=data["label"],
            scopes=data["scopes"],
            days=data["days"],
            team=data["team"],
            origin=Origin.from_request(request),
        ),
        done=lambda made: f"Made the token “{made[0].label}”. Copy it now: it is not shown again.",
    )
    context = {
        "nav": "account",
        "form": TokenCreateForm(actor) if made else form,
        "new_token": made[1] if made else None,
        "tokens": selectors.manageable_tokens(actor).order_by("-created_at", "-id"),
        "now": timezone.now(),
    }
    # Never stored by a browser or cache (PrivatePagesMiddleware): the answer holds the token.
    return render_page(request, "token_list", context, partial="tokens")


@require_http_methods(["GET", "POST"])
def token_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation. POST: revoke, back to the list."""
    actor = request.user
    token = selectors.get_manageable_token(actor, pk)
    if request.method == "GET":
        return render_page(
            request, "token_revoke", {"nav": "account", "token": token}, partial="confirm"
        )
    attempt(
        request,
        partial(
            token_service.revoke_token, token, actor=actor, origin=Origin.from_request(request)
        ),
        done=lambda revoked: f"Revoked the token “{revoked.label}”: it no longer works.",
    )
    return go_to(request, TOKEN_LIST)
