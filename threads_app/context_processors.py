"""What every page's links need to know of the signed-in user."""

from typing import Any

from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from threads_app import selectors


def abilities(request: HttpRequest) -> dict[str, Any]:
    """`may_add_threads`: whether the user has a key to create or import threads with (their
    own, or a team's where they are more than a viewer), so that pages offer "New thread" and
    "Import" only to those who can use them. Read only when a page asks (a view that knows it
    already passes its own value). An error page may render before the authentication
    middleware has run (a request for another host is a 400): no user then."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    return {"may_add_threads": SimpleLazyObject(lambda: selectors.usable_keys(user).exists())}
