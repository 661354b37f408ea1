"""The form that makes an access token of the automation API."""

from typing import Any

from django import forms
from django.contrib.auth.models import User

from threads_app import selectors
from threads_app.forms.base import Form
from threads_app.models import ApiToken, Team


class TokenCreateForm(Form):
    label = forms.CharField(label="Label", max_length=100, help_text="What the token is for.")
    scopes = forms.MultipleChoiceField(
        label="Scopes",
        choices=ApiToken.Scope.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one scope."},
    )
    days = forms.IntegerField(
        label="Expires in (days)",
        min_value=1,
        max_value=ApiToken.MAX_DAYS,
        initial=ApiToken.DEFAULT_DAYS,
        help_text=f"At most {ApiToken.MAX_DAYS} days.",
    )
    team = forms.ModelChoiceField(
        label="Acts as",
        queryset=Team.objects.none(),
        required=False,
        empty_label="You (a personal token)",
        help_text="A team token acts in the team only; its owners make and revoke them.",
    )

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)
        team.queryset = selectors.owned_teams(user)
