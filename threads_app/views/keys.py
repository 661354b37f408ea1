"""Stored API keys: list, add, rotate, revoke. The secret never travels back to a browser."""

from functools import partial

from django.http import HttpResponse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods

from threads_app import selectors
from threads_app.accounts import recent_authentication_required
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.keys import KeyCreateForm, KeyRotateForm
from threads_app.services import keys as key_service
from threads_app.views.htmx import (
    AuthenticatedHttpRequest,
    Event,
    announce,
    attempt,
    go_to,
    render_page,
    submit,
)

KEY_LIST = "threads_app:key_list"


@require_GET
def key_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    groups = selectors.key_groups(request.user)
    return render_page(request, "key_list", {"nav": "keys", "groups": groups}, partial="keys")


# The secret never reaches an error report: neither the POST field nor this frame's locals.
@sensitive_post_parameters("secret")
@require_http_methods(["GET", "POST"])
@recent_authentication_required
@sensitive_variables()  # innermost: it hides the locals of the function it wraps
def key_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    actor = request.user
    form = KeyCreateForm(actor, posted(request))
    data = form.cleaned_data if form.is_valid() else {}
    added = submit(
        request,
        form,
        lambda: key_service.add_key(
            actor=actor,
            label=data["label"],
            secret=data["secret"],
            team=data["team"],
            verify=not data["save_unverified"],
            origin=Origin.from_request(request),
        ),
        done=lambda api_key: (
            f"Added the key “{api_key.label}”"
            + (" without verifying it." if data["save_unverified"] else ".")
        ),
    )
    if added:
        return go_to(request, KEY_LIST)
    return render_page(request, "key_create", {"nav": "keys", "form": form}, partial="form")


# The secret never reaches an error report: neither the POST field nor this frame's locals.
@sensitive_post_parameters("secret")
@require_http_methods(["GET", "POST"])
@recent_authentication_required
@sensitive_variables()  # innermost: it hides the locals of the function it wraps
def key_rotate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    api_key = selectors.get_manageable_key(actor, pk)
    form = KeyRotateForm(posted(request))
    verify = form.is_valid() and not form.cleaned_data["save_unverified"]
    rotated = submit(
        request,
        form,
        lambda: key_service.rotate_key(
            api_key,
            actor=actor,
            secret=form.cleaned_data["secret"],
            verify=verify,
            origin=Origin.from_request(request),
        ),
        done=lambda key: (
            f"Rotated the key “{key.label}”"
            + ("." if verify else " without verifying the new secret.")
        ),
    )
    if rotated:
        return go_to(request, KEY_LIST)
    context = {
        "nav": "keys",
        "api_key": api_key,
        "form": form,
        "tracked_count": selectors.tracked_thread_count(api_key),
    }
    return render_page(request, "key_rotate", context, partial="form")


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def key_revoke(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation page. POST: revoke; the htmx path swaps the key's row."""
    actor = request.user
    api_key = selectors.get_manageable_key(actor, pk)
    if request.method == "GET":
        count = selectors.tracked_thread_count(api_key)
        context = {"nav": "keys", "api_key": api_key, "tracked_count": count}
        return render_page(request, "key_revoke", context, partial="confirm")
    attempt(
        request,
        partial(key_service.revoke_key, api_key, actor=actor, origin=Origin.from_request(request)),
        done=lambda threads: (
            f"Revoked the key “{api_key.label}”; its tracked threads "
            f"({threads}) stay listed, read-only."
        ),
    )
    if not request.htmx:
        return go_to(request, KEY_LIST)
    row = selectors.listed_keys(actor).get(pk=api_key.pk)
    response = render_page(request, "key_list", {"key": row}, partial="key-row")
    return announce(response, Event.THREADS_CHANGED)
