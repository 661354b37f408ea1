"""Single sign-on through OpenID Connect (issue 20), against the real test provider
(tests/oidc_provider/: django-oauth-toolkit in a subprocess), with Django's test client for the
console and a `requests` session for the person's browser at the provider."""

import pytest
from django.contrib.auth import get_user_model

from tests.oidc_fixtures import PROVIDER_NAME, configure_sso, sso_log_in
from threads_app.models import AuditEvent

Action = AuditEvent.Action
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def sso(settings, oidc_provider):
    configure_sso(settings, oidc_provider)
    return oidc_provider


def _events(action):
    return list(AuditEvent.objects.filter(action=action).order_by("sequence"))


def test_the_log_in_page_offers_each_provider(client, sso):
    page = client.get("/accounts/login/").content.decode()
    assert f"Log in with {PROVIDER_NAME}" in page
    assert 'action="/accounts/oidc/test-sso/login/"' in page


def test_no_provider_no_button(client, settings):
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": []}}
    assert "Log in with" not in client.get("/accounts/login/").content.decode()


def test_first_log_in_provisions_the_account_and_lands_on_the_overview(client, sso):
    subject = sso.user("sso-kim", email="kim@corp.example", email_verified=True)
    response, _ = sso_log_in(client, "sso-kim")
    assert response.status_code == 302
    assert response["Location"] == "/overview/"
    user = get_user_model().objects.get(username="sso-kim")
    assert user.email == "kim@corp.example"
    assert not user.has_usable_password()
    assert client.get("/overview/").context["user"] == user
    [provisioned] = _events(Action.SSO_PROVISIONED)
    assert provisioned.details["subject"] == subject
    assert provisioned.details["provider"] == PROVIDER_NAME
    [logged_in] = _events(Action.LOGGED_IN)
    assert (logged_in.details["method"], logged_in.details["subject"]) == ("sso", subject)
    # The second log-in finds the same account: no second one.
    client.logout()
    response, _ = sso_log_in(client, "sso-kim")
    assert response["Location"] == "/overview/"
    assert get_user_model().objects.filter(email="kim@corp.example").count() == 1
    assert len(_events(Action.SSO_PROVISIONED)) == 1


@pytest.mark.parametrize(
    ("mode", "reason"),
    [
        ("bad_signature", "InvalidSignatureError"),
        ("wrong_audience", "InvalidAudienceError"),
        ("expired", "ExpiredSignatureError"),
        ("wrong_issuer", "InvalidIssuerError"),
        ("wrong_nonce", "nonce"),
    ],
)
def test_a_bad_id_token_is_refused(client, sso, mode, reason):
    sso.user("sso-bad")
    sso.misbehave(mode)
    response, _ = sso_log_in(client, "sso-bad")
    assert response.status_code == 401
    assert "Single sign-on did not work" in response.content.decode()
    assert "_auth_user_id" not in client.session
    assert not get_user_model().objects.filter(username="sso-bad").exists()
    [failed] = _events(Action.SSO_REFUSED)
    assert failed.outcome == AuditEvent.Outcome.FAILED
    assert reason in failed.details["reason"]
    assert failed.details["provider"] == PROVIDER_NAME


def test_a_replayed_state_is_refused(client, sso):
    sso.user("sso-replay")
    response, callback = sso_log_in(client, "sso-replay")
    assert response["Location"] == "/overview/"
    client.logout()
    replay = client.get(callback)
    assert replay.status_code == 401
    assert "_auth_user_id" not in client.session
    assert "used already" in _events(Action.SSO_REFUSED)[-1].details["reason"]


def test_a_callback_from_another_browser_is_refused(client, sso):
    """The state lives in the session that started the log-in: another session's callback
    (a link planted by an attacker) is refused."""
    from django.test import Client

    sso.user("sso-csrf")
    start = client.post("/accounts/oidc/test-sso/login/")
    import requests

    from tests.oidc_fixtures import provider_log_in

    back = provider_log_in(requests.Session(), start["Location"], "sso-csrf", "provider-password")
    victim = Client()
    assert victim.get(back.removeprefix("http://testserver")).status_code == 401


def test_an_unknown_provider_is_a_404(client, sso):
    assert client.post("/accounts/oidc/nobody/login/").status_code == 404
    assert client.get("/accounts/oidc/nobody/login/callback/").status_code == 404


def test_an_unreachable_provider_is_a_clear_error(client, settings, sso):
    import json

    from dashboard import sso as sso_settings

    apps = sso_settings.oidc_apps(
        json.dumps(
            [
                {
                    "id": "test-sso",
                    "name": "Down SSO",
                    "issuer": "http://127.0.0.1:9/o",
                    "client_id": "x",
                    "secret": "y",
                }
            ]
        )
    )
    settings.SOCIALACCOUNT_PROVIDERS = {"openid_connect": {"APPS": apps}}
    response = client.post("/accounts/oidc/test-sso/login/")
    assert response.status_code == 401
    assert "could not be reached" in response.content.decode()


def test_a_get_asks_to_confirm_first(client, sso):
    page = client.get("/accounts/oidc/test-sso/login/")
    assert page.status_code == 200
    assert "Continue to Test SSO" in page.content.decode()
