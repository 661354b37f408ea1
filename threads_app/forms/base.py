"""What every form shares: labels without a suffix, refusals from services, POST binding."""

from typing import Any

from django import forms
from django.http import HttpRequest, QueryDict

from threads_app.services.refusals import Refused


def posted(request: HttpRequest) -> QueryDict | None:
    """The data a form is bound to: the POST on a POST, nothing (an unbound form) otherwise."""
    return request.POST if request.method == "POST" else None


class Form(forms.Form):
    """The base of every form here: labels without a colon, and `refuse` for services' no."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)

    def refuse(self, refusal: Refused) -> None:
        """Show why a service refused the change: on its field, or above the form."""
        field = refusal.field if refusal.field in self.fields else None
        self.add_error(field, refusal.message)
