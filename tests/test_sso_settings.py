"""The single sign-on variables (dashboard/sso.py): what each accepts, and a clear refusal
naming the variable for anything else (the app does not start half-configured)."""

import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from dashboard import sso

GOOD = {
    "id": "acme-okta",
    "name": "Acme Okta",
    "issuer": "https://acme.okta.example/",
    "client_id": "console",
    "secret": "s3cret",
}


def test_a_provider_becomes_an_allauth_app_with_pkce_and_the_default_scopes():
    [app] = sso.oidc_apps(json.dumps([GOOD]))
    assert app["provider_id"] == "acme-okta"
    assert app["name"] == "Acme Okta"
    assert (app["client_id"], app["secret"]) == ("console", "s3cret")
    assert app["settings"]["server_url"] == "https://acme.okta.example"
    assert app["settings"]["oauth_pkce_enabled"] is True
    assert app["settings"]["scope"] == ["openid", "profile", "email", "groups"]
    assert sso.oidc_apps("") == []


def test_pkce_and_scopes_can_be_set():
    [app] = sso.oidc_apps(json.dumps([{**GOOD, "pkce": False, "scopes": ["openid"]}]))
    assert app["settings"]["oauth_pkce_enabled"] is False
    assert app["settings"]["scope"] == ["openid"]


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("{", "not valid JSON"),
        ("{}", "JSON list"),
        ("[1]", "JSON object"),
        (json.dumps([{**GOOD, "extra": 1}]), "unknown keys"),
        (json.dumps([{**GOOD, "id": "Acme Okta"}]), "lower-case"),
        (json.dumps([GOOD, GOOD]), "used twice"),
        (json.dumps([{**GOOD, "issuer": "http://idp.example"}]), "https://"),
        (json.dumps([{**GOOD, "issuer": "idp.example"}]), "https://"),
        (json.dumps([{**GOOD, "issuer": "https://["}]), "not a URL"),
        (json.dumps([{**GOOD, "issuer": "https://idp.example:99999"}]), "not a URL"),
        (json.dumps([{**GOOD, "issuer": "https://idp.example:x"}]), "not a URL"),
        (json.dumps([{**GOOD, "client_id": ""}]), "'client_id'"),
        (json.dumps([{**GOOD, "name": 3}]), "'name'"),
        (json.dumps([{**GOOD, "scopes": ["email"]}]), "'openid'"),
        (json.dumps([{**GOOD, "scopes": "openid"}]), "list of strings"),
        (json.dumps([{**GOOD, "pkce": "yes"}]), "true or false"),
    ],
)
def test_bad_providers_are_refused(raw, message):
    with pytest.raises(ImproperlyConfigured, match="OIDC_PROVIDERS") as error:
        sso.oidc_apps(raw)
    assert message in str(error.value)


def test_http_issuers_only_on_loopback():
    [app] = sso.oidc_apps(json.dumps([{**GOOD, "issuer": "http://127.0.0.1:8100/o"}]))
    assert app["settings"]["server_url"] == "http://127.0.0.1:8100/o"


def test_required_domains():
    assert sso.required_domains(
        " Corp.Example=acme-okta, @b.example=acme-okta ", {"acme-okta"}
    ) == {
        "corp.example": "acme-okta",
        "b.example": "acme-okta",
    }
    assert sso.required_domains("", set()) == {}


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("corp.example", "domain=provider-id"),
        ("corp=acme-okta", "domain=provider-id"),
        ("corp.example=other", "not in OIDC_PROVIDERS"),
        ("a.example=acme-okta,A.example=acme-okta", "named twice"),
    ],
)
def test_bad_required_domains_are_refused(raw, message):
    with pytest.raises(ImproperlyConfigured, match="SSO_REQUIRED_DOMAINS") as error:
        sso.required_domains(raw, {"acme-okta"})
    assert message in str(error.value)


RULE = {"provider": "acme-okta", "group": "eng-admins", "team": "Engineering", "role": "owner"}


def test_team_mapping():
    assert sso.team_mapping(json.dumps([RULE]), {"acme-okta"}) == [RULE]
    assert sso.team_mapping("", {"acme-okta"}) == []


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("[", "not valid JSON"),
        (json.dumps([{**RULE, "extra": "x"}]), "exactly provider, group, team and role"),
        (json.dumps([{**RULE, "provider": "other"}]), "not in OIDC_PROVIDERS"),
        (json.dumps([{**RULE, "role": "admin"}]), "role must be one of"),
        (json.dumps([{**RULE, "team": " "}]), "'team'"),
    ],
)
def test_bad_team_mappings_are_refused(raw, message):
    with pytest.raises(ImproperlyConfigured, match="OIDC_TEAM_MAPPING") as error:
        sso.team_mapping(raw, {"acme-okta"})
    assert message in str(error.value)


def test_acr_values():
    assert sso.acr_values(" phr, urn:mace:incommon:iap:silver ,") == [
        "phr",
        "urn:mace:incommon:iap:silver",
    ]


def test_the_csp_form_action_allows_each_issuers_origin():
    apps = sso.oidc_apps(
        json.dumps(
            [
                GOOD,
                {**GOOD, "id": "b", "issuer": "https://acme.okta.example/tenant2"},
                {**GOOD, "id": "c", "issuer": "http://127.0.0.1:8100/o"},
            ]
        )
    )
    assert sso.issuer_origins(apps) == ["http://127.0.0.1:8100", "https://acme.okta.example"]


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(["id", "name", "issuer", "client_id", "secret", "scopes", "pkce"])
            | st.sampled_from(["provider", "group", "team", "role"])
            | st.text(max_size=8),
            children,
            max_size=7,
        )
    ),
    max_leaves=20,
)


ISSUERS = st.sampled_from(["https://[", "https://a:x", "http://[::1]:8/o", "https://é.example"])


@given(
    st.one_of(
        st.text(max_size=200),
        JSON.map(json.dumps),
        st.builds(
            lambda issuer, extra: json.dumps([{**GOOD, **extra, "issuer": issuer}]),
            ISSUERS | st.text(max_size=30),
            st.dictionaries(st.sampled_from(list(GOOD)), JSON),
        ),
    )
)
@hypothesis_settings(max_examples=300, deadline=None)
def test_any_value_is_used_or_refused_by_name(raw):
    """Whatever an operator writes, each reader returns a usable value or stops the start
    with ImproperlyConfigured naming its variable: never another exception."""
    for name, read in [
        ("OIDC_PROVIDERS", sso.oidc_apps),
        ("SSO_REQUIRED_DOMAINS", lambda r: sso.required_domains(r, {"acme-okta"})),
        ("OIDC_TEAM_MAPPING", lambda r: sso.team_mapping(r, {"acme-okta"})),
    ]:
        try:
            read(raw)
        except ImproperlyConfigured as error:
            assert name in str(error)
    assert all(value.strip() == value and value for value in sso.acr_values(raw))
