"""The one way a view answers: a page or its htmx partial, a redirect, a client event.

Every view renders through `render_page` and navigates through `go_to`, and names the events
it announces with `Event`, so the page/partial switch, `Vary: HX-Request` and the htmx
redirect live here alone (after django-htmx's example and Luke Plant's `for_htmx`).
"""

from collections.abc import Callable
from enum import StrEnum
from typing import Any, TypeVar

from django.contrib import messages
from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event
from django_htmx.middleware import HtmxDetails

from threads_app.forms.base import Form
from threads_app.services.refusals import Refused

T = TypeVar("T")


class HtmxHttpRequest(HttpRequest):
    """A request past the htmx middleware (django-htmx's typing recipe): the pages that need
    no login (an invitation's link, the demo's emails) take this one."""

    htmx: HtmxDetails


class AuthenticatedHttpRequest(HtmxHttpRequest):
    """A request past the login and htmx middleware: a signed-in user, and `htmx`.

    Every view is behind LoginRequiredMiddleware, so views annotate their request with this
    (django-htmx's typing recipe, plus the user).
    """

    user: User


class Event(StrEnum):
    """Client events a response announces (`HX-Trigger`); regions listen `from:body`."""

    THREADS_CHANGED = "threadsChanged"


def render_page(
    request: HtmxHttpRequest,
    template: str,
    context: dict[str, Any],
    *,
    partial: str | None = None,
    status: int = 200,
) -> HttpResponse:
    """`threads_app/<template>.html`, or only its `partial` for an htmx request.

    A history restore asks for the whole page. A URL that can answer with a partial varies
    on `HX-Request`, so a cache never serves the partial as the page.
    """
    name = f"threads_app/{template}.html"
    if partial and request.htmx and not request.htmx.history_restore_request:
        name += f"#{partial}"
    response = render(request, name, context, status=status)
    if partial:
        patch_vary_headers(response, ["HX-Request"])
    return response


def go_to(request: HtmxHttpRequest, to: str, *args: Any) -> HttpResponse:
    """Navigate to a URL or URL name: a full page load on the htmx path too (`HX-Redirect`)."""
    url = resolve_url(to, *args)
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def announce(response: HttpResponse, event: Event) -> HttpResponse:
    """Add the client event to the response (`HX-Trigger`)."""
    return trigger_client_event(response, event.value)


def attempt(request: HttpRequest, change: Callable[[], T], *, done: Callable[[T], str]) -> bool:
    """Make a change that needs no form: a service's refusal becomes an error message, its
    success the message `done(result)` says (none when it says ""). True when it was made.
    A form's change goes through `submit`."""
    try:
        result = change()
    except Refused as refusal:
        messages.error(request, str(refusal))
        return False
    if message := done(result):
        messages.success(request, message)
    return True


def submit(
    request: HttpRequest, form: Form, change: Callable[[], T], *, done: Callable[[T], str]
) -> T | None:
    """Make the change a valid form asks for (`change` reads `form.cleaned_data`): a service's
    refusal becomes the form's error (on its field, or above the form), its success the
    message `done(result)` says. The result, or None when the form is unbound, invalid or
    refused (the caller renders it again, with its errors): `change` returns what it made or
    changed, never None."""
    if not form.is_valid():
        return None
    try:
        result = change()
    except Refused as refusal:
        form.refuse(refusal)
        return None
    messages.success(request, done(result))
    return result
