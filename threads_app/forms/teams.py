"""Forms for the team pages. Uniqueness, membership and invitation rules live in
services.teams."""

from django import forms

from threads_app.forms.base import Form
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
