"""allauth's password-reset form, refusing the email domains that log in through single
sign-on (SSO_REQUIRED_DOMAINS): their provider keeps their password."""

from allauth.account.forms import ResetPasswordForm as AllauthResetPasswordForm
from allauth.core import context
from django.core.exceptions import ValidationError

from threads_app.audit import Origin
from threads_app.services import sso


class ResetPasswordForm(AllauthResetPasswordForm):  # type: ignore[misc]
    def clean_email(self) -> str:
        email = str(self.cleaned_data["email"])
        refusal = sso.password_reset_refusal(
            email=email, origin=Origin.from_request(context.request)
        )
        if refusal:
            raise ValidationError(refusal, code="sso_required")
        return str(super().clean_email())
