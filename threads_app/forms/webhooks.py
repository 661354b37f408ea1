"""The forms of webhook endpoints: register one (for you or a team you own), and change one."""

from typing import Any

from django import forms
from django.contrib.auth.models import User

from threads_app import selectors
from threads_app.forms.base import Form
from threads_app.models import Team, WebhookEndpoint


class WebhookEditForm(Form):
    url = forms.URLField(
        label="URL",
        max_length=500,
        assume_scheme="https",
        help_text="https:// only, on a public address. Sent a POST per event, signed.",
        widget=forms.URLInput(attrs={"placeholder": "https://example.com/hooks/threads"}),
    )
    description = forms.CharField(
        label="Description", max_length=200, required=False, help_text="What receives these."
    )
    events = forms.MultipleChoiceField(
        label="Events",
        choices=WebhookEndpoint.Event.choices,
        widget=forms.CheckboxSelectMultiple,
        error_messages={"required": "Choose at least one event."},
    )
    enabled = forms.BooleanField(
        label="Enabled",
        required=False,
        help_text="A disabled endpoint is sent nothing (what it still had to get fails).",
    )


class WebhookCreateForm(WebhookEditForm):
    team = forms.ModelChoiceField(
        label="For",
        queryset=Team.objects.none(),
        required=False,
        empty_label="You (your personal keys)",
        help_text="A team's endpoint gets the team's events; its owners manage it.",
    )

    def __init__(self, user: User, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        del self.fields["enabled"]
        team = self.fields["team"]
        assert isinstance(team, forms.ModelChoiceField)
        team.queryset = selectors.owned_teams(user)
