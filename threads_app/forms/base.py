"""What every form shares: labels without a suffix, refusals from services, POST binding; the
field of a username being chosen; and what filter forms share: a range of days, a username
field."""

from typing import Any

from django import forms
from django.http import HttpRequest, QueryDict

from threads_app.models import (
    USERNAME_HELP,
    USERNAME_MAX_LENGTH,
    normalise_username,
    validate_username,
)
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


class UsernameField(forms.CharField):
    """A username being chosen (a new account, or a rename), in any form: the rule of
    `models.validate_username`, on the name as `models.normalise_username` makes it. Whether
    it is taken is the form's or the service's to say (`selectors.username_taken`)."""

    default_validators = [validate_username]

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("label", "Username")
        kwargs.setdefault("help_text", USERNAME_HELP)
        # The length is the rule's to check (one message); the browser is told it too.
        attrs = {"autocomplete": "username", "maxlength": str(USERNAME_MAX_LENGTH)}
        kwargs.setdefault("widget", forms.TextInput(attrs=attrs))
        super().__init__(**kwargs)

    def to_python(self, value: Any) -> str:
        return normalise_username(super().to_python(value) or "")


def username_filter(label: str) -> forms.CharField:
    """A filter form's optional field for a username (any case; the selector matches it)."""
    return forms.CharField(
        label=label,
        required=False,
        max_length=150,
        widget=forms.TextInput(attrs={"placeholder": "username", "autocomplete": "off"}),
    )


class DateRangeForm(Form):
    """A filter form with a range of whole UTC days, `date_from` to `date_to`, both optional.

    Any date the fields accept (years 1 to 9999) can be filtered on, the last day included;
    the end may not come before the start.
    """

    date_from = forms.DateField(
        label="From (UTC)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To (UTC)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned
