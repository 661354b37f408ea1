"""The test OpenID Connect provider itself (tests/oidc_provider/): discovery, a whole
authorization-code flow with PKCE, the claims set per user, and each misbehaviour on demand.
The console's use of it is in tests/test_sso.py."""

import base64
import hashlib
import json
import secrets
import time
from urllib.parse import parse_qs, urlencode, urlsplit

import pytest
import requests

from tests.oidc_fixtures import provider_log_in

REDIRECT = "http://127.0.0.1:9/callback"


def _claims(id_token):
    payload = id_token.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def _flow(provider, username, password="provider-password"):
    provider.client("raw-client", "raw-secret", [REDIRECT])
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
    query = {
        "response_type": "code",
        "client_id": "raw-client",
        "redirect_uri": REDIRECT,
        "scope": "openid profile email",
        "state": "s1",
        "nonce": "n1",
        "code_challenge": challenge.decode(),
        "code_challenge_method": "S256",
    }
    back = provider_log_in(
        requests.Session(), f"{provider.issuer}/authorize/?{urlencode(query)}", username, password
    )
    params = parse_qs(urlsplit(back).query)
    assert params["state"] == ["s1"]
    token = requests.post(
        f"{provider.issuer}/token/",
        data={
            "grant_type": "authorization_code",
            "code": params["code"][0],
            "redirect_uri": REDIRECT,
            "client_id": "raw-client",
            "client_secret": "raw-secret",
            "code_verifier": verifier,
        },
        timeout=10,
    )
    token.raise_for_status()
    return token.json()["id_token"]


def test_discovery_names_its_endpoints(oidc_provider):
    config = requests.get(f"{oidc_provider.issuer}/.well-known/openid-configuration", timeout=10)
    assert config.json()["issuer"] == oidc_provider.issuer
    assert config.json()["jwks_uri"].startswith(oidc_provider.issuer)
    keys = requests.get(config.json()["jwks_uri"], timeout=10).json()["keys"]
    assert [key["kty"] for key in keys] == ["RSA"]


def test_a_code_flow_gives_an_id_token_with_the_claims_set(oidc_provider):
    sub = oidc_provider.user(
        "raw-sam", groups=["g1", "g2"], amr=["pwd", "mfa"], acr="high", email="s@x.example"
    )
    claims = _claims(_flow(oidc_provider, "raw-sam"))
    assert claims["sub"] == sub
    assert claims["aud"] == "raw-client"
    assert claims["nonce"] == "n1"
    assert claims["iss"] == oidc_provider.issuer
    assert (claims["groups"], claims["amr"], claims["acr"]) == (
        ["g1", "g2"],
        ["pwd", "mfa"],
        "high",
    )
    assert claims["preferred_username"] == "raw-sam"


@pytest.mark.parametrize(
    ("mode", "check"),
    [
        ("wrong_audience", lambda c: c["aud"] == "another-client"),
        ("expired", lambda c: c["exp"] < time.time()),
        ("wrong_nonce", lambda c: c["nonce"] != "n1"),
        ("wrong_issuer", lambda c: c["iss"] == "http://issuer.invalid"),
    ],
)
def test_misbehaviour_on_demand(oidc_provider, mode, check):
    oidc_provider.user("raw-mo")
    oidc_provider.misbehave(mode)
    assert check(_claims(_flow(oidc_provider, "raw-mo")))


def test_a_wrong_password_at_the_provider_is_refused(oidc_provider):
    oidc_provider.user("raw-wrong")
    with pytest.raises(AssertionError, match="refused"):
        _flow(oidc_provider, "raw-wrong", password="not-it")


def test_the_admin_api_needs_its_token(oidc_provider):
    base = oidc_provider.issuer.removesuffix("/o")
    response = requests.post(f"{base}/__admin__/misbehave", json={"mode": "expired"}, timeout=10)
    assert response.status_code == 401
    with pytest.raises(requests.HTTPError):
        oidc_provider.misbehave("not-a-mode")
