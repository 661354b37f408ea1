"""Forms for stored API keys: add and rotate. The secret is never rendered back."""

from django import forms
from django.core.validators import RegexValidator

from threads_app.models import Membership, Team
from threads_app.services.keys import KeyUnverified


class _SecretForm(forms.Form):
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

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("label_suffix", "")
        super().__init__(*args, **kwargs)
        # The checkbox is offered once the upstream could not be reached (or was ticked).
        self.offer_unverified = bool(self.is_bound and self.data.get("save_unverified"))

    def refuse(self, error):
        """Show why the service refused the change (a KeyChangeRefused)."""
        self.add_error(None, str(error))
        if isinstance(error, KeyUnverified):
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

    def __init__(self, user, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if user.is_superuser:
            teams = Team.objects.all()
        else:
            teams = Team.objects.filter(
                memberships__user=user, memberships__role=Membership.Role.OWNER
            )
        self.fields["team"].queryset = teams


class KeyRotateForm(_SecretForm):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["secret"].label = "New secret"
