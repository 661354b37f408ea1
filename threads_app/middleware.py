"""Middleware: messages as htmx toasts, no caching of signed-in pages, and two-factor
authentication for whoever must use it."""

import json
from collections.abc import Callable
from typing import Any

from django.contrib import messages
from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers

from threads_app import selectors, sso
from threads_app.views.htmx import go_to


class HtmxMessagesMiddleware:
    """Django messages for htmx requests travel as toasts in the HX-Trigger header."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if not getattr(request, "htmx", False) or 300 <= response.status_code < 400:
            return response
        if "HX-Redirect" in response or "HX-Location" in response:
            return response  # the next full page shows the messages
        toasts = [{"message": str(m), "tags": m.tags} for m in get_messages(request)]
        if not toasts:
            return response
        triggers: dict[str, Any] = {}
        if "HX-Trigger" in response:
            existing = response["HX-Trigger"]
            if existing.startswith("{"):
                triggers = json.loads(existing)
            else:
                triggers = {name.strip(): None for name in existing.split(",")}
        triggers["messages"] = toasts
        response["HX-Trigger"] = json.dumps(triggers)
        return response


class PrivatePagesMiddleware:
    """A signed-in user's pages are theirs alone: no shared cache keeps them, no browser
    stores them (`Cache-Control: private, no-store`, as `never_cache` sends)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if request.user.is_authenticated:
            add_never_cache_headers(response)
        return response


# The pages someone who must turn on two-factor authentication may still open: turning it on
# (with the reauthentication it may ask for), the recovery codes it then shows, and leaving.
TWO_FACTOR_ENROLMENT_PAGES = {
    "mfa_index",
    "mfa_activate_totp",
    "mfa_reauthenticate",
    "mfa_view_recovery_codes",
    "mfa_download_recovery_codes",
    "mfa_generate_recovery_codes",
    "account_reauthenticate",
    "account_logout",
}


class TwoFactorEnrolmentMiddleware:
    """Whoever must use two-factor authentication (REQUIRE_2FA, or an owner of a team whose
    owners must) and has not turned it on is sent to turn it on, from any page but those;
    a single sign-on log-in whose provider vouched for more than one factor counts as on."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)

    def process_view(
        self, request: HttpRequest, view: Callable[..., Any], args: Any, kwargs: Any
    ) -> HttpResponse | None:
        user = request.user
        if not user.is_authenticated:
            return None
        match = request.resolver_match
        if match is not None and match.url_name in TWO_FACTOR_ENROLMENT_PAGES:
            return None
        reason = selectors.two_factor_required_by(user)
        if (
            reason is None
            or selectors.has_two_factor(user)
            or sso.session_has_multi_factor(request)
        ):
            return None
        messages.warning(request, f"{reason} Turn it on to continue.")
        return go_to(request, "mfa_activate_totp")  # type: ignore[arg-type]
