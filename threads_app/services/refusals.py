"""The one exception family a service raises when it will not make a change.

Views catch `Refused` and show its message (a form's `refuse`, or a Django message); the
message is always safe to show: it never holds a secret. `NotAllowed` is also Django's
`PermissionDenied`, so a refusal of that kind that no view catches answers 403.
`code` is the refusal's stable machine name (the automation API's problem `type` is built
from it): a new kind of refusal passes its own.
"""

from django.core.exceptions import PermissionDenied


class Refused(Exception):
    """A change the service did not make, and why; `field` names the form field it concerns."""

    default_code = "refused"

    def __init__(self, message: str, *, field: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.code = code or self.default_code


class NotAllowed(Refused, PermissionDenied):
    """The actor may not do this (a POST sent past the page that would not offer it)."""

    default_code = "not_allowed"
