"""The one lockout (django-axes) for every secret typed at a log-in: passwords and two-factor
codes alike.

- The username axes counts is the one log-in finds: normalised as usernames are and
  lower-cased (allauth compares usernames with `str.lower`), so `Viewer1` and `VIEWER1` share
  `viewer1`'s count (`axes_username`, `AXES_USERNAME_CALLABLE`).
- A wrong code (TOTP or recovery code, at the log-in's second step or on the reauthentication
  page) is a failed log-in for axes, counted per username and client address with the
  passwords' policy (`code_failed`, on allauth's `authentication_failed` signal). When the
  lockout holds, no code is even checked (`refuse_code_if_locked`, from the code forms), and a
  pending log-in is dropped: the password is asked again, which the lockout refuses too.

Failures reach axes as Django's `user_login_failed` signal, as a wrong password does; the
sign-in audit (threads_app/signals.py) records them from the same signal, and the lockout
from axes' `user_locked_out`.
"""

from typing import Any

from allauth.account.internal.stagekit import clear_login
from axes.handlers.proxy import AxesProxyHandler
from django.contrib.auth import signals as auth_signals
from django.contrib.auth.base_user import AbstractBaseUser
from django.core.exceptions import ValidationError
from django.http import HttpRequest

from threads_app.models import normalise_username

# The steps a failure is recorded at (the audit's "step").
PASSWORD = "password"  # noqa: S105 (a step's name, not a password)
CODE = "two-factor code"
REAUTHENTICATION_CODE = "reauthentication code"
LOCKED_MESSAGE = "Too many failed attempts: try again in 15 minutes."


def axes_username(request: HttpRequest | None, credentials: dict[str, Any] | None) -> str | None:
    """The username axes counts for these credentials, as log-in compares it (lower-cased,
    after the usernames' normalisation: `models.normalise_username`).

    Only the credentials are read, never the request's body: axes passes them wherever it
    counts or checks, and a body may not even decode.
    """
    username = (credentials or {}).get("username")
    return normalise_username(username).lower() if isinstance(username, str) else None


def _credentials(user: AbstractBaseUser, step: str) -> dict[str, Any]:
    return {"username": user.get_username(), "step": step}


def _failed(request: HttpRequest, user: AbstractBaseUser, step: str) -> None:
    """Tell axes (and the audit) of a failure at `step`; drop a pending log-in once locked."""
    auth_signals.user_login_failed.send(
        sender=__name__, credentials=_credentials(user, step), request=request
    )
    if getattr(request, "axes_locked_out", False) and step == CODE:
        clear_login(request)


def code_failed(request: HttpRequest, user: AbstractBaseUser, *, reauthentication: bool) -> None:
    """A wrong two-factor code (or recovery code) was entered for `user`."""
    _failed(request, user, REAUTHENTICATION_CODE if reauthentication else CODE)


def refuse_code_if_locked(
    request: HttpRequest, user: AbstractBaseUser, *, reauthentication: bool
) -> None:
    """ValidationError, without checking the code, when the lockout holds for `user` at this
    address; the refusal is recorded as a locked-out attempt."""
    step = REAUTHENTICATION_CODE if reauthentication else CODE
    if AxesProxyHandler.is_allowed(request, _credentials(user, step)):
        return
    # As axes' own backend does for a password: mark the request, then report the attempt.
    request.axes_locked_out = True  # type: ignore[attr-defined]
    _failed(request, user, step)
    raise ValidationError(LOCKED_MESSAGE, code="locked_out")
