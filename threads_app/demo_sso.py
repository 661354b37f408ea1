"""The demo's single sign-on (`manage.py demo --sso`, which `make demo` runs): the test
OpenID Connect provider (tests/oidc_provider/, django-oauth-toolkit) in a subprocess, with one
user, sso-sam, in the group demo-team-members, which OIDC_TEAM_MAPPING makes a member of
"Demo team". The log-in page then offers "Log in with Demo SSO".

The provider is the tests' own (a real one, on loopback, with a fresh key and database each
start): the demo needs no network and no configuration.
"""

import json
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dashboard import sso

PROVIDER_ID = "demo-sso"
PROVIDER_NAME = "Demo SSO"
USERNAME = "sso-sam"
PASSWORD = "sso-sam-password"  # noqa: S105  (the demo provider's made-up password)
GROUP = "demo-team-members"
TEAM = "Demo team"
CLIENT_ID = "threads-console-demo"


@contextmanager
def demo_sso(settings: Any, base_urls: list[str]) -> Iterator[Any]:
    """Start the provider, register the console served at `base_urls` with it, create
    sso-sam, and point `settings` (Django's, or pytest-django's fixture) at it; stop it after.
    Yields the provider (`tests.oidc_provider.process.Provider`)."""
    from tests.oidc_provider.process import start_provider

    secret = secrets.token_urlsafe(24)
    with start_provider() as provider:
        provider.client(
            CLIENT_ID,
            secret,
            [
                f"{base.rstrip('/')}/accounts/oidc/{PROVIDER_ID}/login/callback/"
                for base in base_urls
            ],
        )
        provider.user(
            USERNAME,
            password=PASSWORD,
            groups=[GROUP],
            email="sam@sso.demo.example",
            email_verified=True,
            name="Sam (SSO)",
        )
        entry = {
            "id": PROVIDER_ID,
            "name": PROVIDER_NAME,
            "issuer": provider.issuer,
            "client_id": CLIENT_ID,
            "secret": secret,
        }
        apps = sso.oidc_apps(json.dumps([entry]))
        settings.SOCIALACCOUNT_PROVIDERS = {
            "openid_connect": {**settings.SOCIALACCOUNT_PROVIDERS["openid_connect"], "APPS": apps}
        }
        policy = settings.CONTENT_SECURITY_POLICY
        directives = {**policy["DIRECTIVES"]}
        directives["form-action"] = [*directives["form-action"], *sso.issuer_origins(apps)]
        settings.CONTENT_SECURITY_POLICY = {**policy, "DIRECTIVES": directives}
        settings.OIDC_TEAM_MAPPING = [
            {"provider": PROVIDER_ID, "group": GROUP, "team": TEAM, "role": "member"}
        ]
        yield provider
