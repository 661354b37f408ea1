"""Receivers that turn account signals (allauth's, Django's, django-axes') into the sign-in
audit (services/accounts.py). Connected in `ThreadsAppConfig.ready`.

Only allauth's log-in signal counts as a log-in: `Client.force_login` in tests and the shell
send Django's, and they are not someone signing in.
"""

from collections.abc import Callable
from typing import Any

from allauth.account import signals as account_signals
from allauth.mfa import signals as mfa_signals
from allauth.mfa.models import Authenticator
from axes import signals as axes_signals
from django.contrib.auth import signals as auth_signals
from django.contrib.auth.models import User
from django.http import HttpRequest

from threads_app import sso
from threads_app.audit import Origin
from threads_app.models import AuditEvent
from threads_app.services import accounts
from threads_app.services import sso as sso_services

Action = AuditEvent.Action


def _origin(request: HttpRequest | None) -> Origin | None:
    return Origin.from_request(request) if request is not None else None


def _logged_in(request: HttpRequest, user: User, **kwargs: Any) -> None:
    sociallogin = kwargs.get("sociallogin")
    if sociallogin is not None:  # through a single sign-on provider
        sso.logged_in(request, user, sociallogin)
        return
    # Only a single sign-on log-in can vouch for the provider's second factor.
    request.session.pop(sso.MULTI_FACTOR_SESSION_KEY, None)
    required = sso_services.sso_only_provider(user) if user.is_superuser else None
    if required is not None:
        # A password log-in of an account whose domain uses single sign-on: break-glass.
        accounts.record_account_event(
            Action.BREAK_GLASS,
            user=user,
            origin=_origin(request),
            required_provider=sso_services.provider_name(required),
        )
    accounts.record_account_event(Action.LOGGED_IN, user=user, origin=_origin(request))


def _logged_out(request: HttpRequest, user: User | None, **kwargs: Any) -> None:
    if user is not None and user.is_authenticated:
        accounts.record_account_event(Action.LOGGED_OUT, user=user, origin=_origin(request))


def _login_failed(
    credentials: dict[str, Any], request: HttpRequest | None = None, **_: Any
) -> None:
    # The lockout's own signal records an attempt axes refused (or the one that locked).
    if request is not None and getattr(request, "axes_locked_out", False):
        return
    username = str(credentials.get("username") or "")
    accounts.record_failed_login(username=username, locked_out=False, origin=_origin(request))


def _locked_out(request: HttpRequest | None, username: str | None, **kwargs: Any) -> None:
    accounts.record_failed_login(username=username or "", locked_out=True, origin=_origin(request))


def _code_failed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    accounts.record_failed_login(
        username=user.get_username(),
        locked_out=False,
        origin=_origin(request),
        step="two-factor code",
    )


def _password_changed(request: HttpRequest, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.PASSWORD_CHANGED, user=user, origin=_origin(request))


def _password_reset(request: HttpRequest, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.PASSWORD_RESET, user=user, origin=_origin(request))


def _totp_changed(action: str) -> Callable[..., None]:
    """A receiver recording `action` for the TOTP authenticator: turning it on or off also
    creates or removes the recovery codes, and that is one event, not two."""

    def receiver(
        request: HttpRequest | None, user: User, authenticator: Authenticator, **kwargs: Any
    ) -> None:
        if authenticator.type == Authenticator.Type.TOTP:
            accounts.record_account_event(action, user=user, origin=_origin(request), kind="totp")

    return receiver


_enabled = _totp_changed(Action.TWO_FACTOR_ENABLED)
_removed = _totp_changed(Action.TWO_FACTOR_DISABLED)


def _codes_renewed(request: HttpRequest | None, user: User, **kwargs: Any) -> None:
    accounts.record_account_event(Action.RECOVERY_CODES_RENEWED, user=user, origin=_origin(request))


def connect() -> None:
    account_signals.user_logged_in.connect(_logged_in, dispatch_uid="audit_logged_in")
    auth_signals.user_logged_out.connect(_logged_out, dispatch_uid="audit_logged_out")
    auth_signals.user_login_failed.connect(_login_failed, dispatch_uid="audit_login_failed")
    axes_signals.user_locked_out.connect(_locked_out, dispatch_uid="audit_locked_out")
    mfa_signals.authentication_failed.connect(_code_failed, dispatch_uid="audit_code_failed")
    account_signals.password_changed.connect(_password_changed, dispatch_uid="audit_password")
    account_signals.password_set.connect(_password_changed, dispatch_uid="audit_password_set")
    account_signals.password_reset.connect(_password_reset, dispatch_uid="audit_reset")
    mfa_signals.authenticator_added.connect(_enabled, dispatch_uid="audit_2fa_added")
    mfa_signals.authenticator_removed.connect(_removed, dispatch_uid="audit_2fa_removed")
    mfa_signals.authenticator_reset.connect(_codes_renewed, dispatch_uid="audit_2fa_reset")
