"""Single sign-on through OpenID Connect (issue 20), against the real test provider
(tests/oidc_provider/: django-oauth-toolkit in a subprocess), with Django's test client for the
console and a `requests` session for the person's browser at the provider."""

import time
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests
from django.contrib.auth import get_user_model
from django.urls import reverse
from hypothesis import HealthCheck, Phase, example, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tests.conftest import authenticated_at
from tests.oidc_fixtures import PROVIDER_NAME, configure_sso, provider_log_in, sso_log_in
from tests.test_accounts import totp_code, turn_on_totp
from threads_app import audit
from threads_app.models import AuditEvent, Membership, Team, validate_username
from threads_app.services.sso import free_username
from threads_app.services.teams import change_role

Action = AuditEvent.Action
Role = Membership.Role
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


# --- SSO_REQUIRED_DOMAINS ------------------------------------------------------------------


@pytest.fixture
def corp_sso(settings, oidc_provider):
    configure_sso(settings, oidc_provider, SSO_REQUIRED_DOMAINS={"corp.example": "test-sso"})
    return oidc_provider


def _password_log_in(client, username, password):
    return client.post("/accounts/login/", {"login": username, "password": password})


@pytest.mark.parametrize("password", ["right-password-123", "a-wrong-one"])
def test_password_log_in_is_refused_for_the_domain_saying_where_to_go(
    client, corp_sso, django_user_model, password
):
    """Right or wrong password, the same answer: the refusal comes before the password is
    checked, so it confirms no password."""
    django_user_model.objects.create_user("pat", "Pat@Corp.Example", "right-password-123")
    response = _password_log_in(client, "PAT", password)
    assert response.status_code == 200
    assert "Your account logs in with Test SSO" in response.content.decode()
    assert "_auth_user_id" not in client.session
    [refused] = _events(Action.LOGIN_FAILED)
    assert refused.outcome == AuditEvent.Outcome.REFUSED
    assert (refused.actor_username, refused.details["reason"]) == ("pat", "sso_required")


def test_other_domains_still_log_in_by_password(client, corp_sso, django_user_model):
    django_user_model.objects.create_user("quinn", "quinn@elsewhere.example", "pw-quinn-12345")
    response = _password_log_in(client, "quinn", "pw-quinn-12345")
    assert response.status_code == 302
    assert client.session["_auth_user_id"]


def test_a_superuser_keeps_a_break_glass_password_log_in_and_it_is_audited(
    client, corp_sso, django_user_model
):
    django_user_model.objects.create_superuser("root", "root@corp.example", "glass-123456789")
    response = _password_log_in(client, "root", "glass-123456789")
    assert response.status_code == 302
    [glass] = _events(Action.BREAK_GLASS)
    assert (glass.actor_username, glass.details["required_provider"]) == ("root", PROVIDER_NAME)


def test_password_reset_is_refused_for_the_domain(client, corp_sso, django_user_model, mailoutbox):
    django_user_model.objects.create_user("pat", "pat@corp.example", "right-password-123")
    for email in ("pat@corp.example", "nobody@CORP.example"):  # the same, account or not
        response = client.post("/accounts/password/reset/", {"email": email})
        assert response.status_code == 200
        assert "Accounts at corp.example log in with Test SSO" in response.content.decode()
    assert mailoutbox == []
    assert [e.details["step"] for e in _events(Action.SSO_REFUSED)] == ["password_reset"] * 2
    response = client.post("/accounts/password/reset/", {"email": "pat@elsewhere.example"})
    assert response.status_code == 302


def test_the_domains_provider_takes_over_the_existing_account(client, corp_sso, django_user_model):
    pat = django_user_model.objects.create_user("pat", "pat@corp.example", "right-password-123")
    corp_sso.user("pat.idp", email="pat@corp.example", email_verified=True)
    response, _ = sso_log_in(client, "pat.idp")
    assert response["Location"] == "/overview/"
    assert client.session["_auth_user_id"] == str(pat.pk)
    [linked] = _events(Action.SSO_LINKED)
    assert linked.actor_username == "pat"
    assert not _events(Action.SSO_PROVISIONED)


def test_an_unverified_email_takes_over_nothing(client, corp_sso, django_user_model):
    pat = django_user_model.objects.create_user("pat", "pat@corp.example", "right-password-123")
    corp_sso.user("pat", email="pat@corp.example", email_verified=False)
    response, _ = sso_log_in(client, "pat")
    assert response["Location"] == "/overview/"
    new = django_user_model.objects.get(pk=client.session["_auth_user_id"])
    assert new != pat
    assert new.username == "pat-2"  # the username rules: a clash gets a variant
    assert new.email == ""  # not verified: not kept


def test_another_provider_cannot_log_in_the_domain(
    client, settings, oidc_provider, django_user_model
):
    configure_sso(settings, oidc_provider, SSO_REQUIRED_DOMAINS={"corp.example": "acme-okta"})
    oidc_provider.user("mal", email="ceo@corp.example", email_verified=True)
    response, _ = sso_log_in(client, "mal")
    assert response.status_code == 403
    assert "Accounts at corp.example log in with acme-okta" in response.content.decode()
    assert "_auth_user_id" not in client.session
    [refused] = _events(Action.SSO_REFUSED)
    assert refused.details["reason"] == "domain_requires_another_provider"
    assert not django_user_model.objects.filter(email="ceo@corp.example").exists()


@pytest.mark.parametrize(
    ("preferred", "expected"),
    [
        ("sam@corp.example", "sam"),  # never an "@"
        ("Sam Smith!", "Sam-Smith"),
        ("José Ñúñez", "Jose-Nunez"),  # ASCII only
        ("\uff4d\uff49\uff41", "mia"),  # full-width letters folded
        ("admin", "admin-2"),  # reserved: a variant, as a taken name gets
        ("", "sso-user"),
    ],
)
def test_usernames_follow_the_rules(client, sso, django_user_model, preferred, expected):
    sso.user("idp-user", preferred_username=preferred)
    response, _ = sso_log_in(client, "idp-user")
    assert response["Location"] == "/overview/"
    assert django_user_model.objects.get(pk=client.session["_auth_user_id"]).username == expected


def test_a_username_taken_in_another_case_gets_a_variant(client, sso, django_user_model):
    django_user_model.objects.create_user("Kim", "kim@x.example", "pw-kim-1234567")
    sso.user("idp-kim", preferred_username="kim")
    sso_log_in(client, "idp-kim")
    assert django_user_model.objects.get(pk=client.session["_auth_user_id"]).username == "kim-2"


# --- OIDC_TEAM_MAPPING ------------------------------------------------------------------------

MAPPING = [
    {"provider": "test-sso", "group": "eng", "team": "Engineering", "role": "member"},
    {"provider": "test-sso", "group": "eng-admins", "team": "Engineering", "role": "owner"},
    {"provider": "test-sso", "group": "ops", "team": "Operations", "role": "viewer"},
    {"provider": "another-idp", "group": "eng", "team": "Elsewhere", "role": "owner"},
]


@pytest.fixture
def mapped_sso(settings, oidc_provider):
    configure_sso(settings, oidc_provider, OIDC_TEAM_MAPPING=MAPPING)
    return oidc_provider


def _roles(user):
    return {
        (m.team.name, m.role, m.managed_by)
        for m in Membership.objects.filter(user=user).select_related("team")
    }


def membership_team(user):
    return Membership.objects.get(user=user).team_id


def _again(client, provider, username, **claims):
    provider.user(username, **claims)
    client.logout()
    response, _ = sso_log_in(client, username)
    assert response["Location"] == "/overview/"
    return get_user_model().objects.get(pk=client.session["_auth_user_id"])


def test_groups_map_to_teams_and_roles_at_every_log_in(client, mapped_sso, make_user):
    colleague = make_user("colleague")
    engineering = Team.objects.create(name="Engineering")
    Membership.objects.create(team=engineering, user=colleague, role=Role.OWNER)

    user = _again(client, mapped_sso, "sso-eng", groups=["eng", "ops", "unmapped"])
    assert _roles(user) == {
        ("Engineering", Role.MEMBER, "test-sso"),
        ("Operations", Role.VIEWER, "test-sso"),  # made for the mapping
    }
    created = _events(Action.TEAM_CREATED)
    assert [(e.team_name, e.details["group"]) for e in created] == [("Operations", "ops")]

    user = _again(client, mapped_sso, "sso-eng", groups=["eng", "eng-admins"])
    assert _roles(user) == {("Engineering", Role.OWNER, "test-sso")}
    [changed] = _events(Action.MEMBER_ROLE_CHANGED)
    assert (changed.details["old_role"], changed.details["new_role"]) == ("member", "owner")
    assert changed.details["group"] == "eng-admins"
    [removed] = _events(Action.MEMBER_REMOVED)
    assert removed.team_name == "Operations"
    assert "groups claim" in removed.details["reason"]
    assert (removed.details["provider"], removed.details["via"]) == (PROVIDER_NAME, "sso_mapping")

    page = client.get(reverse("threads_app:team_detail", args=[membership_team(user)]))
    assert "from single sign-on" in page.content.decode()

    user = _again(client, mapped_sso, "sso-eng", groups=[])
    assert _roles(user) == set()


def test_memberships_made_by_hand_are_never_touched(client, mapped_sso, django_user_model):
    user = _again(client, mapped_sso, "sso-hand", groups=[])
    engineering = Team.objects.create(name="Engineering")
    Membership.objects.create(team=engineering, user=user, role=Role.VIEWER)
    user = _again(client, mapped_sso, "sso-hand", groups=["eng-admins"])
    assert _roles(user) == {("Engineering", Role.VIEWER, "")}
    user = _again(client, mapped_sso, "sso-hand", groups=[])
    assert _roles(user) == {("Engineering", Role.VIEWER, "")}
    page = client.get(reverse("threads_app:team_detail", args=[engineering.pk]))
    assert "from single sign-on" not in page.content.decode()
    assert not _events(Action.MEMBER_ADDED) and not _events(Action.MEMBER_REMOVED)


def test_a_role_changed_by_hand_leaves_the_mapping(client, mapped_sso, make_user):
    user = _again(client, mapped_sso, "sso-moved", groups=["eng", "eng-admins"])
    boss = make_user("boss")
    engineering = Team.objects.get(name="Engineering")
    Membership.objects.create(team=engineering, user=boss, role=Role.OWNER)
    membership = Membership.objects.get(user=user)
    change_role(membership, actor=boss, role=Role.VIEWER)
    user = _again(client, mapped_sso, "sso-moved", groups=[])
    assert _roles(user) == {("Engineering", Role.VIEWER, "")}


def test_the_mapping_never_removes_a_teams_last_owner(client, mapped_sso):
    user = _again(client, mapped_sso, "sso-owner", groups=["eng-admins"])
    assert _roles(user) == {("Engineering", Role.OWNER, "test-sso")}
    user = _again(client, mapped_sso, "sso-owner", groups=["eng"])  # a demotion: refused
    assert _roles(user) == {("Engineering", Role.OWNER, "test-sso")}
    user = _again(client, mapped_sso, "sso-owner", groups=[])  # a removal: refused
    assert _roles(user) == {("Engineering", Role.OWNER, "test-sso")}
    refused = [
        e
        for e in AuditEvent.objects.filter(outcome=AuditEvent.Outcome.REFUSED).order_by("sequence")
    ]
    assert [e.action for e in refused] == [Action.MEMBER_ROLE_CHANGED, Action.MEMBER_REMOVED]
    assert all("last owner of Engineering" in e.details["refusal"] for e in refused)
    assert all(e.details["subject"] and e.team_name == "Engineering" for e in refused)


def test_another_providers_rules_do_not_apply(client, mapped_sso):
    user = _again(client, mapped_sso, "sso-other", groups=["eng"])
    assert not Team.objects.filter(name="Elsewhere").exists()
    assert ("Engineering", Role.MEMBER, "test-sso") in _roles(user)


# --- two-factor and single sign-on ----------------------------------------------------------


@pytest.mark.parametrize(
    ("claims", "acr_values", "satisfied"),
    [
        ({"amr": ["pwd", "mfa"]}, [], True),
        ({"amr": ["pwd"]}, [], False),
        ({"acr": "phr"}, ["phr"], True),
        ({"acr": "low"}, ["phr"], False),
        ({}, [], False),
    ],
)
def test_the_providers_second_factor_satisfies_require_2fa(
    client, settings, oidc_provider, claims, acr_values, satisfied
):
    configure_sso(settings, oidc_provider, REQUIRE_2FA=True, SSO_MFA_ACR_VALUES=acr_values)
    oidc_provider.user("sso-2fa", **claims)
    response, _ = sso_log_in(client, "sso-2fa")
    assert response["Location"] == "/overview/"
    page = client.get("/overview/")
    if satisfied:
        assert page.status_code == 200
    else:
        assert page["Location"] == reverse("mfa_activate_totp")  # the console's own
    [logged_in] = _events(Action.LOGGED_IN)
    assert logged_in.details["multi_factor"] is satisfied


@pytest.mark.parametrize(("amr", "satisfied"), [(["mfa"], True), (["pwd"], False)])
def test_the_providers_second_factor_satisfies_the_owners_rule(
    client, settings, oidc_provider, amr, satisfied
):
    configure_sso(settings, oidc_provider, OIDC_TEAM_MAPPING=MAPPING)
    Team.objects.create(name="Engineering", owners_need_two_factor=True)
    oidc_provider.user("sso-boss", groups=["eng-admins"], amr=amr)
    sso_log_in(client, "sso-boss")
    page = client.get("/overview/")
    assert (page.status_code == 200) is satisfied


@pytest.mark.parametrize(("amr", "asks_for_a_code"), [(["mfa"], False), (["pwd"], True)])
def test_an_account_with_its_own_two_factor(client, sso, amr, asks_for_a_code):
    sso.user("sso-totp", amr=["pwd"])
    sso_log_in(client, "sso-totp")
    user = get_user_model().objects.get(username="sso-totp")
    client.force_login(user)
    secret = turn_on_totp(client)
    client.logout()
    sso.user("sso-totp", amr=amr)
    response, _ = sso_log_in(client, "sso-totp")
    if not asks_for_a_code:
        assert response["Location"] == "/overview/"
        return
    assert response["Location"] == reverse("mfa_authenticate")
    assert "_auth_user_id" not in client.session
    done = client.post(reverse("mfa_authenticate"), {"code": totp_code(secret)})
    assert done["Location"] == "/overview/"
    assert _events(Action.LOGGED_IN)[-1].details["method"] == "sso"


def test_reauthentication_goes_through_the_provider(client, sso):
    """An account without a password confirms it is them by logging in at its provider."""
    sso.user("sso-reauth")
    sso_log_in(client, "sso-reauth")
    user = get_user_model().objects.get(username="sso-reauth")
    authenticated_at(client.session, user, time.time() - 3600)
    response = client.get(reverse("threads_app:key_create"))
    login_url = f"/accounts/oidc/test-sso/login/?next={quote('/keys/new/', safe='')}"
    assert response["Location"] == login_url
    start = client.post(login_url)
    back = provider_log_in(requests.Session(), start["Location"], "sso-reauth", "provider-password")
    assert client.get(back.removeprefix("http://testserver"))["Location"] == "/keys/new/"
    assert client.get("/keys/new/").status_code == 200


def test_a_turned_off_account_cannot_log_in_through_its_provider(client, mapped_sso):
    """Taking access away at once: the account turned off here, whatever the provider says."""
    user = _again(client, mapped_sso, "sso-gone", groups=["eng"])
    user.is_active = False
    user.save()
    client.logout()
    response, _ = sso_log_in(client, "sso-gone")
    assert response["Location"] == reverse("account_inactive")
    assert "_auth_user_id" not in client.session
    assert _roles(user) == {("Engineering", Role.MEMBER, "test-sso")}  # no mapping applied
    assert audit.verify_chain().ok


@given(st.text(max_size=300))
@hypothesis_settings(max_examples=200, deadline=None)
def test_any_preferred_username_gives_one_the_rules_accept(hint):
    """Whatever the provider sends as preferred_username, the account's name follows the
    username rules (no "@", ASCII letters, digits and . _ + -, at most 150 characters)."""
    name = free_username(hint)
    validate_username(name)
    assert "@" not in name


CALLBACK_PARAMS = st.dictionaries(
    st.sampled_from(["state", "code", "error", "error_description", "iss", "session_state"]),
    st.text(max_size=40) | st.sampled_from(["access_denied", "", "\x00", "%ff"]),
    max_size=5,
)


@given(params=CALLBACK_PARAMS, real_state=st.booleans())
@hypothesis_settings(  # the provider's set-up is the same for every example
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
def test_any_callback_is_refused_cleanly(sso, params, real_state):
    """Whatever comes back to the callback (a forged or mangled state, a random code, an
    error), the answer is a page saying so, never a server error, and nobody is logged in.
    With the log-in's own state, a random code goes to the real token endpoint, which
    refuses it."""
    from django.test import Client

    browser = Client()
    if real_state:
        start = browser.post("/accounts/oidc/test-sso/login/")
        params = {**params, "state": parse_qs(urlsplit(start["Location"]).query)["state"][0]}
    response = browser.get("/accounts/oidc/test-sso/login/callback/", params)
    assert response.status_code in {302, 401}
    if response.status_code == 302:  # an error the provider sent: "access_denied" is a cancel
        assert response["Location"] == reverse("socialaccount_login_cancelled")
    assert "_auth_user_id" not in browser.session


def test_providers_come_from_the_environment_only(client, sso, django_user_model):
    """A SocialApp row (made in a shell: the admin offers none) is not offered nor usable."""
    from allauth.socialaccount.models import SocialApp

    SocialApp.objects.create(
        provider="openid_connect",
        provider_id="rogue",
        name="Rogue SSO",
        client_id="x",
        settings={"server_url": "http://127.0.0.1:9/o"},
    )
    assert "Rogue SSO" not in client.get("/accounts/login/").content.decode()
    assert client.post("/accounts/oidc/rogue/login/").status_code == 404
    admin = django_user_model.objects.create_superuser("root", "root@x.example", "pw-root-123")
    client.force_login(admin)
    assert client.get("/admin/socialaccount/socialapp/").status_code == 404
    assert client.get("/admin/socialaccount/socialaccount/").status_code == 200


@pytest.mark.parametrize("pkce", [True, False])
def test_the_authorization_request(client, settings, oidc_provider, pkce):
    """What goes to the provider's authorization endpoint (from discovery): the code flow,
    the scopes, a nonce and a state, and PKCE (S256) unless turned off."""
    configure_sso(settings, oidc_provider)
    app = settings.SOCIALACCOUNT_PROVIDERS["openid_connect"]["APPS"][0]
    app["settings"]["oauth_pkce_enabled"] = pkce
    start = client.post("/accounts/oidc/test-sso/login/")
    url = urlsplit(start["Location"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == f"{oidc_provider.issuer}/authorize/"
    query = parse_qs(url.query)
    assert query["response_type"] == ["code"]
    assert query["client_id"] == ["threads-console"]
    assert set(query["scope"][0].split()) == {"openid", "profile", "email", "groups"}
    assert len(query["nonce"][0]) >= 32 and len(query["state"][0]) >= 16
    assert ("code_challenge" in query) is pkce
    if pkce:
        assert query["code_challenge_method"] == ["S256"]
    again = parse_qs(urlsplit(client.post("/accounts/oidc/test-sso/login/")["Location"]).query)
    assert again["nonce"] != query["nonce"] and again["state"] != query["state"]


CLAIM_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=2)
    ),
    max_leaves=6,
)


@given(
    claims=st.fixed_dictionaries(
        {},
        optional={
            name: CLAIM_VALUES
            for name in ("groups", "amr", "acr", "preferred_username", "email", "email_verified")
        },
    )
)
@example(  # once a server error: allauth sliced a preferred_username that was an object
    claims={"preferred_username": {"a": 1}, "email": ["x@y.example"], "email_verified": "yes"}
)
@hypothesis_settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],  # a log-in a try: no slow shrinking
)
def test_any_claims_log_in_or_are_refused_cleanly(settings, oidc_provider, claims):
    """Whatever types the provider's claims have, the log-in completes (the odd values
    ignored) or is refused with a page: never a server error."""
    from django.test import Client

    configure_sso(
        settings,
        oidc_provider,
        OIDC_TEAM_MAPPING=MAPPING,
        SSO_REQUIRED_DOMAINS={"corp.example": "test-sso"},
    )
    oidc_provider.user("sso-fuzz", **claims)
    response, _ = sso_log_in(Client(), "sso-fuzz")
    assert response.status_code in {302, 403}
