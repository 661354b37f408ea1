"""The audit log's filters: one form, and the one queryset the page and the CSV export share."""

from datetime import UTC, datetime, time, timedelta

from django import forms

from threads_app import selectors
from threads_app.models import ApiKey, AuditEvent, Team


def _start_of_day(day):
    return datetime.combine(day, time.min, tzinfo=UTC)


class AuditFilterForm(forms.Form):
    action = forms.ChoiceField(
        label="Action", required=False, choices=[("", "Any action"), *AuditEvent.Action.choices]
    )
    actor = forms.CharField(
        label="Actor",
        required=False,
        max_length=150,
        widget=forms.TextInput(attrs={"placeholder": "username", "autocomplete": "off"}),
    )
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
    date_from = forms.DateField(
        label="From (UTC)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To (UTC)", required=False, widget=forms.DateInput(attrs={"type": "date"})
    )
    thread = forms.CharField(
        label="Thread id",
        required=False,
        max_length=100,
        widget=forms.TextInput(
            attrs={"type": "search", "placeholder": "thread_…", "autocomplete": "off"}
        ),
    )

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, label_suffix="", **kwargs)
        # Only what the user may see can be chosen; anything else is "not a valid choice".
        self.fields["team"].queryset = selectors.visible_teams(user)
        self.fields["key"].queryset = selectors.visible_keys(user)

    def clean(self):
        cleaned = super().clean()
        date_from, date_to = cleaned.get("date_from"), cleaned.get("date_to")
        if date_from and date_to and date_from > date_to:
            self.add_error("date_to", "The end date is before the start date.")
        return cleaned

    def apply(self, events):
        data = self.cleaned_data
        if data["action"]:
            events = events.filter(action=data["action"])
        if data["actor"]:
            events = events.filter(actor_username__iexact=data["actor"])
        if data["team"]:
            events = events.filter(team_id=data["team"].pk)
        if data["key"]:
            events = events.filter(api_key_id=data["key"].pk)
        if data["outcome"]:
            events = events.filter(outcome=data["outcome"])
        if data["date_from"]:
            events = events.filter(created_at__gte=_start_of_day(data["date_from"]))
        if data["date_to"]:
            # The end date is inclusive: everything before the next day's midnight.
            end = _start_of_day(data["date_to"] + timedelta(days=1))
            events = events.filter(created_at__lt=end)
        if data["thread"]:
            events = events.filter(thread_id__icontains=data["thread"])
        return events


def filtered_audit_events(user, params):
    """The audit events the user may see, narrowed by `params`: returns (form, queryset).

    Invalid filters (a key or team the user cannot see, dates the wrong way round) match
    nothing rather than being silently dropped; the form carries the errors.
    """
    form = AuditFilterForm(user, params)
    # The pre-deletion transcript can be large and neither the page nor the CSV shows it.
    events = selectors.visible_audit_events(user).defer("snapshot")
    if not form.is_valid():
        return form, events.none()
    return form, form.apply(events)
