"""Forms for the team pages. Uniqueness, membership and invitation rules live in
services.teams."""

from typing import Any

from django import forms

from threads_app.forms.base import Form, UsernameField
from threads_app.models import Invitation, Membership, Team
from threads_app.services.approvals import MAX_THRESHOLD


class TeamForm(Form):
    name = forms.CharField(label="Team name", max_length=Team._meta.get_field("name").max_length)


class InviteForm(Form):
    identifier = forms.CharField(
        label="Username or email",
        max_length=Invitation._meta.get_field("identifier").max_length,
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    role = forms.ChoiceField(choices=Membership.Role.choices, initial=Membership.Role.MEMBER)


class TwoFactorRuleForm(Form):
    required = forms.BooleanField(label="Owners must use two-factor authentication", required=False)
    # Set by the confirmation page, which lists the owners a new rule sends to turn it on.
    confirmed = forms.BooleanField(required=False)


class ApprovalRuleForm(Form):
    """Two-person approval: whether deletions of more than `threshold` of the team's threads
    wait for a second owner."""

    required = forms.BooleanField(
        label="Deletions of more than N threads need a second owner", required=False
    )
    threshold = forms.IntegerField(
        label="N, the number of threads",
        required=False,
        min_value=1,
        max_value=MAX_THRESHOLD,
        widget=forms.NumberInput(attrs={"inputmode": "numeric"}),
        error_messages={
            "invalid": "Type a whole number of threads, such as 100.",
            "min_value": "Type a number of threads of at least 1.",
            "max_value": f"Type a number of threads of at most {MAX_THRESHOLD:,}.",
        },
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Its own ids: the team page also has the two-factor rule's "required" box.
        kwargs.setdefault("auto_id", "id_approval_%s")
        super().__init__(*args, **kwargs)

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("required") and cleaned.get("threshold") is None and not self.errors:
            self.add_error(
                "threshold", "Type the number of threads above which a deletion needs approval."
            )
        return cleaned

    @property
    def rule(self) -> int | None:
        """The threshold to set: None turns the rule off."""
        return self.cleaned_data["threshold"] if self.cleaned_data["required"] else None


class RoleForm(Form):
    role = forms.ChoiceField(choices=Membership.Role.choices)


class JoinForm(Form):
    """Someone new, following an emailed invitation: the account they want."""

    username = UsernameField()
    password1 = forms.CharField(
        label="Password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text="At least 8 characters, not a common one, not only digits.",
    )
    password2 = forms.CharField(
        label="Password (again)",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
    )

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if cleaned.get("password1") != cleaned.get("password2"):
            self.add_error("password2", "The two passwords differ.")
        return cleaned
