"""The one way a view answers: a page or its htmx partial, a redirect, a client event.

Every view renders through `render_page` and navigates through `go_to`, and names the events
it announces with `Event`, so the page/partial switch, `Vary: HX-Request` and the htmx
redirect live here alone (after django-htmx's example and Luke Plant's `for_htmx`).
"""

from enum import StrEnum
from typing import Any, cast

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render, resolve_url
from django.utils.cache import patch_vary_headers
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event
from django_htmx.middleware import HtmxDetails


class HtmxHttpRequest(HttpRequest):
    """A request as django-htmx's middleware leaves it (django-htmx's typing recipe)."""

    htmx: HtmxDetails


def htmx_of(request: HttpRequest) -> HtmxDetails:
    """`request.htmx`, which the middleware sets on every request (typed here once)."""
    return cast(HtmxHttpRequest, request).htmx


class Event(StrEnum):
    """Client events a response announces (`HX-Trigger`); regions listen `from:body`."""

    THREADS_CHANGED = "threadsChanged"


def render_page(
    request: HttpRequest,
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
    htmx = htmx_of(request)
    if partial and htmx and not htmx.history_restore_request:
        name += f"#{partial}"
    response = render(request, name, context, status=status)
    if partial:
        patch_vary_headers(response, ["HX-Request"])
    return response


def go_to(request: HttpRequest, to: str, *args: Any) -> HttpResponse:
    """Navigate to a URL or URL name: a full page load on the htmx path too (`HX-Redirect`)."""
    url = resolve_url(to, *args)
    return HttpResponseClientRedirect(url) if htmx_of(request) else redirect(url)


def announce(response: HttpResponse, event: Event) -> HttpResponse:
    """Add the client event to the response (`HX-Trigger`)."""
    return trigger_client_event(response, event.value)
