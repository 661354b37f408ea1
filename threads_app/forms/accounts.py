"""allauth's two-factor code forms (MFA_FORMS), held to the lockout: while it holds for the
account at this address, no code is checked at all, not even the right one
(threads_app/lockout.py). A wrong code is counted through allauth's `authentication_failed`
signal (threads_app/signals.py)."""

from typing import Any

from allauth.core import context
from allauth.mfa.base import forms as mfa_forms

from threads_app import lockout


class _HeldToLockout:
    user: Any
    reauthentication: bool

    def clean_code(self) -> str:
        lockout.refuse_code_if_locked(
            context.request, self.user, reauthentication=self.reauthentication
        )
        code: str = super().clean_code()  # type: ignore[misc]
        return code


class AuthenticateForm(_HeldToLockout, mfa_forms.AuthenticateForm):  # type: ignore[misc]
    """The log-in's second step: a TOTP or a recovery code."""

    reauthentication = False


class ReauthenticateForm(_HeldToLockout, mfa_forms.ReauthenticateForm):  # type: ignore[misc]
    """The reauthentication page's code, for a signed-in user."""

    reauthentication = True
