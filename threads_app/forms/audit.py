"""The audit log's filters: one form whose cleaned values are `selectors.AuditFilters`.

The query they imply is `selectors.filtered_audit_events`, which the page and the CSV share.
"""

from typing import cast

from django import forms
from django.contrib.auth.models import User
from django.http import QueryDict

from threads_app import selectors
from threads_app.forms.base import FilterBarForm, username_filter
from threads_app.models import ApiKey, AuditEvent, Team
from threads_app.selectors import AuditFilters


class AuditFilterForm(FilterBarForm):
    SEARCH = "thread"
    field_order = ["action", "actor", "team", "key", "outcome", "date_from", "date_to", "thread"]

    action = forms.ChoiceField(
        label="Action", required=False, choices=[("", "Any action"), *AuditEvent.Action.choices]
    )
    actor = username_filter("Actor")
    team = forms.ModelChoiceField(
        label="Team", required=False, queryset=Team.objects.none(), empty_label="Any team"
    )
    key = forms.ModelChoiceField(
        label="Key", required=False, queryset=ApiKey.objects.none(), empty_label="Any key"
    )
    outcome = forms.ChoiceField(
        label="Outcome",
        required=False,
        choices=[("", "Any outcome"), *AuditEvent.Outcome.choices],
    )
    thread = forms.CharField(
        label="Thread id",
        required=False,
        max_length=100,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "thread_…", "autocomplete": "off"}
        ),
    )

    def __init__(self, user: User, data: QueryDict | None = None) -> None:
        super().__init__(data)
        # Only what the user may see can be chosen; anything else is "not a valid choice".
        team = cast("forms.ModelChoiceField[Team]", self.fields["team"])
        team.queryset = selectors.visible_teams(user)
        key = cast("forms.ModelChoiceField[ApiKey]", self.fields["key"])
        key.queryset = selectors.visible_keys(user)

    def filters(self) -> AuditFilters | None:
        """The filters to apply, or None when any is invalid (the form carries the errors)."""
        if not self.is_valid():
            return None
        return AuditFilters(**self.cleaned_data)
