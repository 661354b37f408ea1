"""Django messages for htmx requests travel as toasts in the HX-Trigger header."""

import json
from collections.abc import Callable
from typing import Any

from django.contrib.messages import get_messages
from django.http import HttpRequest, HttpResponse


class HtmxMessagesMiddleware:
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
