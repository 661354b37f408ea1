"""How django-allauth fits the dashboard: its adapters, and the rule for recent authentication.

- Nobody signs up on their own (administrators create accounts; an emailed invitation lets a
  new person choose a password, `services.teams.join_with_new_account`).
- A sensitive action needs a recent authentication: the password or a two-factor code within
  `ACCOUNT_REAUTHENTICATION_TIMEOUT` (15 minutes). The log-in counts, as does a
  reauthentication; allauth's own rule counts only reauthentications, so the adapter answers
  with this one for allauth's pages (two-factor settings) and for ours (`recent_authentication_
  required`).
"""

import time
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar, cast
from urllib.parse import urlencode

from allauth.account import app_settings as account_settings
from allauth.account.adapter import DefaultAccountAdapter, get_adapter
from allauth.account.auth_backends import AuthenticationBackend as AllauthBackend
from allauth.account.internal.flows.login import get_authentication_records
from allauth.core import context
from allauth.mfa.adapter import DefaultMFAAdapter
from allauth.mfa.models import Authenticator
from django.contrib import messages
from django.contrib.auth import REDIRECT_FIELD_NAME
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse

from threads_app import selectors
from threads_app.client_ip import client_ip
from threads_app.crypto import decrypt_secret, encrypt_secret
from threads_app.models import normalise_username, validate_username
from threads_app.views.htmx import AuthenticatedHttpRequest, go_to

V = TypeVar("V", bound=Callable[..., HttpResponse])


def recently_authenticated(request: HttpRequest) -> bool:
    """Whether the session's last password or code was entered within the timeout."""
    if not request.user.is_authenticated:
        return False
    records = get_authentication_records(request, request.user)
    times: list[float] = [
        r["at"] for r in records if isinstance(r, dict) and isinstance(r.get("at"), int | float)
    ]
    return bool(times) and time.time() - max(times) < account_settings.REAUTHENTICATION_TIMEOUT


def reauthentication_needed(request: AuthenticatedHttpRequest) -> HttpResponse | None:
    """None when the session authenticated recently; else the way to the reauthentication
    page (the password, or a code), back to this page after.

    A POST is not kept for replay (allauth could keep it in the session, API key secrets
    included): nothing is changed, and the page asks to submit again.
    """
    if recently_authenticated(request):
        return None
    if request.method == "POST":
        messages.info(request, "Confirm it is you, then do it again: nothing was changed.")
    methods = get_adapter(request).get_reauthentication_methods(request.user)
    if not methods:  # no password and no two-factor: nothing to confirm it with
        raise PermissionDenied("Set a password first (Forgot your password? on the log-in page).")
    back = request.get_full_path() if request.method == "GET" else request.path
    if request.htmx:
        back = request.htmx.current_url_abs_path or back
    return go_to(request, f"{methods[0]['url']}?{urlencode({REDIRECT_FIELD_NAME: back})}")


def recent_authentication_required(view: V) -> V:
    """The view (GET and POST) needs a recent authentication: see `reauthentication_needed`."""

    @wraps(view)
    def wrapper(request: AuthenticatedHttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        return reauthentication_needed(request) or view(request, *args, **kwargs)

    return cast(V, wrapper)


class AuthenticationBackend(AllauthBackend):  # type: ignore[misc]
    """allauth's, loading the signed-in user with the facts of the two-factor check that
    every page makes (`selectors.with_two_factor_facts`): that check needs no query."""

    def get_user(self, user_id: Any) -> User | None:
        users = selectors.with_two_factor_facts(User._default_manager.all())
        user = users.filter(pk=user_id).first()
        return user if user is not None and self.user_can_authenticate(user) else None


class AccountAdapter(DefaultAccountAdapter):  # type: ignore[misc]
    def is_open_for_signup(self, request: HttpRequest) -> bool:
        return False

    def clean_username(self, username: str, shallow: bool = False) -> str:
        """The usernames' one rule (`models.validate_username`), should sign-up be opened."""
        username = normalise_username(username)
        validate_username(username)
        return cast(str, super().clean_username(username, shallow=shallow))

    def get_client_ip(self, request: HttpRequest) -> str:
        """The address allauth's limits count by: the one the lockout and the audit read."""
        ip = client_ip(request)
        if not ip:
            raise PermissionDenied("Unable to determine client IP address")
        return ip

    def is_reauthentication_required(self, *, app: str, **kwargs: Any) -> bool:
        return not recently_authenticated(context.request)


class MFAAdapter(DefaultMFAAdapter):  # type: ignore[misc]
    """Two-factor secrets are encrypted as stored API keys are (CREDENTIAL_ENCRYPTION_KEYS;
    `manage.py rotate_encryption_keys` re-encrypts both)."""

    def encrypt(self, text: str) -> str:
        return encrypt_secret(text)

    def decrypt(self, encrypted_text: str) -> str:
        return decrypt_secret(encrypted_text)

    def can_delete_authenticator(self, authenticator: Authenticator) -> bool:
        """Whoever must use two-factor authentication cannot turn it off."""
        return selectors.two_factor_required_by(authenticator.user) is None
