"""Forms of selections and saved views: the typed count that confirms a deletion, and the
name (and team) of a saved view, and the reason given when refusing a deletion."""

from typing import Any, cast

from django import forms

from threads_app.forms.base import Form
from threads_app.models import SavedView, Team
from threads_app.services.approvals import MAX_REASON


class SelectionDeleteForm(Form):
    """Deleting a selection: its number of threads, typed (no other confirmation fits every
    size)."""

    typed_count = forms.IntegerField(
        label="Type the number of threads to delete",
        min_value=0,
        max_value=2**31 - 1,
        widget=forms.NumberInput(attrs={"autocomplete": "off", "inputmode": "numeric"}),
    )


class SelectionExportForm(SelectionDeleteForm):
    """Exporting a selection: its number of threads typed too (one path for every job of a
    selection); prefixed, as it shares the page with the deletion's form."""

    prefix = "export"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fields["typed_count"].label = "Type the number of threads to export"


class SavedViewForm(Form):
    """A name for the list's current filter and sort; shared with a team the user owns, or
    kept for themselves (no team). Posted with the list's filters, whose `team` is a filter:
    the team shared with is `share_with`."""

    name = forms.CharField(
        label="Name",
        max_length=SavedView._meta.get_field("name").max_length,
        error_messages={"required": "Give the view a name."},
    )
    share_with = forms.TypedChoiceField(
        label="Share with", required=False, coerce=int, empty_value=None
    )

    def __init__(self, teams: list[Team], *args: Any, **kwargs: Any) -> None:
        """`teams`: those the user owns (a view can be shared with them)."""
        super().__init__(*args, **kwargs)
        cast(forms.TypedChoiceField, self.fields["share_with"]).choices = [
            ("", "Only me"),
            *((team.pk, f"Team {team.name}") for team in teams),
        ]


class RefuseJobForm(Form):
    """Refusing a deletion awaiting approval: why (optional; it goes to the audit log)."""

    reason = forms.CharField(
        label="Why (optional, kept in the audit log)",
        required=False,
        max_length=MAX_REASON,
        widget=forms.Textarea(attrs={"rows": 3}),
    )
