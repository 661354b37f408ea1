"""Response middleware: messages as htmx toasts, and no caching of signed-in pages."""

import json
from collections.abc import Callable
from typing import Any

from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse
from django.utils.cache import add_never_cache_headers


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
