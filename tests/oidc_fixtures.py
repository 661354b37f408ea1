"""The test OpenID Connect provider (tests/oidc_provider/) as fixtures, and the browser-less
walk through its log-in: the console's test client on one side, a `requests` session (the
person's browser at the provider) on the other."""

import re
from urllib.parse import urlsplit

import pytest
import requests

from tests.oidc_provider.process import start_provider


@pytest.fixture(scope="session")
def oidc_provider_server():
    """One provider process for the whole session."""
    with start_provider() as provider:
        yield provider


@pytest.fixture
def oidc_provider(oidc_provider_server):
    """The session's provider, behaving."""
    oidc_provider_server.misbehave("")
    yield oidc_provider_server
    oidc_provider_server.misbehave("")


def provider_log_in(browser: requests.Session, url: str, username: str, password: str) -> str:
    """Follow the provider's authorization `url` as `username` (logging in there if asked);
    return the URL the provider sends the person back to (the console's callback)."""
    response = browser.get(url, allow_redirects=False, timeout=10)
    if response.status_code == 302 and "/accounts/login/" in response.headers["Location"]:
        login_url = requests.compat.urljoin(url, response.headers["Location"])
        form = browser.get(login_url, timeout=10)
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        assert token, form.text
        next_url = urlsplit(login_url).query.split("next=", 1)[1]
        response = browser.post(
            login_url,
            data={
                "csrfmiddlewaretoken": token.group(1),
                "username": username,
                "password": password,
                "next": requests.utils.unquote(next_url),
            },
            headers={"Referer": login_url},
            allow_redirects=False,
            timeout=10,
        )
        assert response.status_code == 302, "the provider refused the log-in"
        response = browser.get(
            requests.compat.urljoin(url, response.headers["Location"]),
            allow_redirects=False,
            timeout=10,
        )
    assert response.status_code == 302, response.text[:500]
    return str(response.headers["Location"])


CONSOLE_CLIENT_ID = "threads-console"
CONSOLE_CLIENT_SECRET = "console-client-secret-for-tests"  # the provider's, not a Threads key
PROVIDER_ID = "test-sso"
PROVIDER_NAME = "Test SSO"


def configure_sso(settings, provider, *, base_url="http://testserver", **extra):
    """Point the console's settings at `provider` (as OIDC_PROVIDERS would) and register the
    console there as a client, with its callback under `base_url`; `extra` sets the other
    single sign-on settings (SSO_REQUIRED_DOMAINS, OIDC_TEAM_MAPPING, SSO_MFA_ACR_VALUES)."""
    import json

    from dashboard import sso

    entry = {
        "id": PROVIDER_ID,
        "name": PROVIDER_NAME,
        "issuer": provider.issuer,
        "client_id": CONSOLE_CLIENT_ID,
        "secret": CONSOLE_CLIENT_SECRET,
    }
    settings.SOCIALACCOUNT_PROVIDERS = {
        "openid_connect": {
            **settings.SOCIALACCOUNT_PROVIDERS["openid_connect"],
            "APPS": sso.oidc_apps(json.dumps([entry])),
        }
    }
    settings.SSO_REQUIRED_DOMAINS = {}
    settings.OIDC_TEAM_MAPPING = []
    settings.SSO_MFA_ACR_VALUES = []
    for name, value in extra.items():
        setattr(settings, name, value)
    provider.client(
        CONSOLE_CLIENT_ID,
        CONSOLE_CLIENT_SECRET,
        [f"{base_url}/accounts/oidc/{PROVIDER_ID}/login/callback/"],
    )


def sso_log_in(client, username, password="provider-password", browser=None):
    """Log in to the console (Django's test `client`) through the provider as `username`;
    returns (the console's answer to the callback, the callback URL that was used)."""
    start = client.post(f"/accounts/oidc/{PROVIDER_ID}/login/")
    assert start.status_code == 302, start.content[:500]
    back = provider_log_in(browser or requests.Session(), start["Location"], username, password)
    assert back.startswith("http://testserver/"), back
    callback = back.removeprefix("http://testserver")
    return client.get(callback), callback
