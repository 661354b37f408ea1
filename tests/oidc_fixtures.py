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
