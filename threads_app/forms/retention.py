"""The retention policy form: the days, and the button pressed (preview, enable, turn off)."""

from django import forms

from threads_app.forms.base import Form
from threads_app.models import RetentionPolicy

DEFAULT_DAYS = 90  # what the form proposes for a key without a policy


class RetentionPolicyForm(Form):
    PREVIEW, ENABLE, DISABLE = "preview", "enable", "disable"

    max_age_days = forms.IntegerField(
        label="Delete threads older than (days)",
        min_value=RetentionPolicy.MIN_DAYS,
        max_value=RetentionPolicy.MAX_DAYS,
        help_text=(
            "A thread's age counts from its creation in the Threads API, or from when it was "
            f"tracked here when that is not known. {RetentionPolicy.MIN_DAYS} to "
            f"{RetentionPolicy.MAX_DAYS} days."
        ),
    )
    # The days of the preview the page showed: enabling takes the same days.
    previewed_days = forms.IntegerField(required=False, widget=forms.HiddenInput)
    # The submit button pressed; none (a form sent some other way) previews.
    action = forms.ChoiceField(
        choices=[(PREVIEW, "Preview"), (ENABLE, "Save and enable"), (DISABLE, "Save, off")],
        required=False,
    )

    @property
    def saves(self) -> bool:
        """Whether the form, once valid, asks to save the policy (not just to preview it)."""
        return self.cleaned_data.get("action") in (self.ENABLE, self.DISABLE)

    @property
    def enables(self) -> bool:
        return self.cleaned_data.get("action") == self.ENABLE

    def preview_days(self) -> int | None:
        """The days to preview: those entered (when valid, whatever a service refused), or
        the initial ones."""
        if not self.is_bound:
            days = self.initial.get("max_age_days")
        elif "max_age_days" in self.errors:  # `errors` cleans the form once
            days = None
        else:
            days = self.cleaned_data.get("max_age_days")
        return days if isinstance(days, int) else None
