"""Forms for stored API keys: add and rotate. The secret is never rendered back."""

from typing import Any

from django import forms
from django.contrib.auth.models import User
from django.core.validators import RegexValidator

from threads_app import selectors
from threads_app.forms.base import Form
from threads_app.models import Team
from threads_app.services.keys import KeyUnverified
from threads_app.services.refusals import Refused


class _SecretForm(Form):
    """A secret to be checked against the upstream, with the way out when it is unreachable.

    The secret is never rendered back: after any error the user pastes it again.
    """

    secret = forms.CharField(
        label="Secret",
        min_length=12,
        max_length=500,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        validators=[
            RegexValidator(
                r"^[\x21-\x7e]+\Z",
                "An API key is one line of letters, digits and punctuation, without spaces.",
            )
        ],
        help_text="Stored encrypted and never shown again; only its last four characters are.",
    )
    save_unverified = forms.BooleanField(label="Save without verifying", required=False)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The checkbox is offered once the upstream could not be reached (or was ticked).
        self.offer_unverified = bool(self.is_bound and self.data.get("save_unverified"))

    def refuse(self, refusal: Refused) -> None:
        """Show the refusal; an unverified key also offers "save without verifying"."""
        super().refuse(refusal)
        if isinstance(refusal, KeyUnverified):
            self.offer_unverified = True


class KeyCreateForm(_SecretForm):
    label = forms.CharField(label="Label", max_length=100)
    team = forms.ModelChoiceField(
        label="Owner",
        queryset=Team.objects.none(),
        required=False,
        empty_label="Personal (only you)",
        help_text="Team keys can be added by the team's owners.",
    )

    field_order = ["label", "secret", "team", "save_unverified"]

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)
        team.queryset = selectors.owned_teams(user)


class KeyRotateForm(_SecretForm):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["secret"].label = "New secret"
