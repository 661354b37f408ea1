"""Forms for the team pages. Uniqueness, membership and invitation rules live in
services.teams."""

from typing import Any

from django import forms

from threads_app.forms.base import Form, UsernameField
from threads_app.models import Invitation, Membership, Team


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
