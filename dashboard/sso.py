"""Single sign-on settings read from the environment (README, "Single sign-on (OpenID Connect)").

Each reader takes the variable's raw text and returns what settings.py keeps, or raises
ImproperlyConfigured naming the variable and what is wrong: a bad value stops the start, it is
never half-used.
"""

import json
import re
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

PROVIDER_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,49}$")
ROLES = ("owner", "member", "viewer")
DEFAULT_SCOPES = ["openid", "profile", "email", "groups"]


def _json(name: str, raw: str, kind: type) -> Any:
    try:
        value = json.loads(raw)
    except ValueError as error:
        raise ImproperlyConfigured(f"{name} is not valid JSON: {error}.") from None
    if not isinstance(value, kind):
        raise ImproperlyConfigured(f"{name} must be a JSON {kind.__name__}.")
    return value


def _text(name: str, where: str, entry: dict[str, Any], key: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise ImproperlyConfigured(f"{name}: {where} needs {key!r} (a non-empty string).")
    return value.strip()


def oidc_apps(raw: str) -> list[dict[str, Any]]:
    """OIDC_PROVIDERS: a JSON list of {id, name, issuer, client_id, secret, scopes?, pkce?},
    as django-allauth's `openid_connect` apps."""
    name = "OIDC_PROVIDERS"
    if not raw.strip():
        return []
    apps: list[dict[str, Any]] = []
    for index, entry in enumerate(_json(name, raw, list)):
        where = f"entry {index + 1}"
        if not isinstance(entry, dict):
            raise ImproperlyConfigured(f"{name}: {where} must be a JSON object.")
        unknown = set(entry) - {"id", "name", "issuer", "client_id", "secret", "scopes", "pkce"}
        if unknown:
            raise ImproperlyConfigured(f"{name}: {where} has unknown keys {sorted(unknown)}.")
        provider_id = _text(name, where, entry, "id")
        if not PROVIDER_ID.match(provider_id):
            raise ImproperlyConfigured(
                f"{name}: {where}'s id must be lower-case letters, digits and dashes "
                "(it is part of the redirect URI)."
            )
        if provider_id in {app["provider_id"] for app in apps}:
            raise ImproperlyConfigured(f"{name}: the id {provider_id!r} is used twice.")
        issuer = _text(name, where, entry, "issuer").rstrip("/")
        try:
            url = urlsplit(issuer)
            url.port  # noqa: B018  (reading it checks it)
        except ValueError:
            raise ImproperlyConfigured(f"{name}: {where}'s issuer is not a URL.") from None
        loopback = url.hostname in {"127.0.0.1", "localhost", "::1"}
        if not url.hostname or not (url.scheme == "https" or (url.scheme == "http" and loopback)):
            raise ImproperlyConfigured(
                f"{name}: {where}'s issuer must be an https:// URL (http:// only on loopback)."
            )
        scopes = entry.get("scopes", DEFAULT_SCOPES)
        if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
            raise ImproperlyConfigured(f"{name}: {where}'s scopes must be a list of strings.")
        if "openid" not in scopes:
            raise ImproperlyConfigured(f"{name}: {where}'s scopes must include 'openid'.")
        pkce = entry.get("pkce", True)
        if not isinstance(pkce, bool):
            raise ImproperlyConfigured(f"{name}: {where}'s pkce must be true or false.")
        apps.append(
            {
                "provider_id": provider_id,
                "name": _text(name, where, entry, "name"),
                "client_id": _text(name, where, entry, "client_id"),
                "secret": str(entry.get("secret", "")),
                "settings": {
                    "server_url": issuer,
                    "scope": scopes,
                    "oauth_pkce_enabled": pkce,
                    # The claims are read from the ID token alone, whose signature, issuer,
                    # audience, expiry and nonce are checked (threads_app/sso.py).
                    "fetch_userinfo": False,
                },
            }
        )
    return apps


def issuer_origins(apps: list[dict[str, Any]]) -> list[str]:
    """The providers' origins, which the CSP's form-action must allow: the log-in page's
    buttons post here, and the answer redirects there (browsers check form-action on it)."""
    origins = []
    for app in apps:
        url = urlsplit(app["settings"]["server_url"])
        origins.append(f"{url.scheme}://{url.netloc}")
    return sorted(set(origins))


def required_domains(raw: str, provider_ids: set[str]) -> dict[str, str]:
    """SSO_REQUIRED_DOMAINS: `domain=provider-id` pairs, comma-separated."""
    name = "SSO_REQUIRED_DOMAINS"
    domains: dict[str, str] = {}
    for pair in filter(None, (p.strip() for p in raw.split(","))):
        domain, sep, provider_id = (part.strip() for part in pair.partition("="))
        domain = domain.lower().lstrip("@")
        if not sep or not domain or "@" in domain or "." not in domain:
            raise ImproperlyConfigured(f"{name}: {pair!r} is not domain=provider-id.")
        if provider_id not in provider_ids:
            raise ImproperlyConfigured(f"{name}: {provider_id!r} is not in OIDC_PROVIDERS.")
        if domain in domains:
            raise ImproperlyConfigured(f"{name}: {domain!r} is named twice.")
        domains[domain] = provider_id
    return domains


def team_mapping(raw: str, provider_ids: set[str]) -> list[dict[str, str]]:
    """OIDC_TEAM_MAPPING: a JSON list of {provider, group, team, role}."""
    name = "OIDC_TEAM_MAPPING"
    if not raw.strip():
        return []
    rules: list[dict[str, str]] = []
    for index, entry in enumerate(_json(name, raw, list)):
        where = f"entry {index + 1}"
        if not isinstance(entry, dict):
            raise ImproperlyConfigured(f"{name}: {where} must be a JSON object.")
        if set(entry) != {"provider", "group", "team", "role"}:
            raise ImproperlyConfigured(
                f"{name}: {where} must have exactly provider, group, team and role."
            )
        rule = {key: _text(name, where, entry, key) for key in entry}
        if rule["provider"] not in provider_ids:
            raise ImproperlyConfigured(f"{name}: {rule['provider']!r} is not in OIDC_PROVIDERS.")
        if rule["role"] not in ROLES:
            raise ImproperlyConfigured(f"{name}: {where}'s role must be one of {ROLES}.")
        rules.append(rule)
    return rules


def acr_values(raw: str) -> list[str]:
    """SSO_MFA_ACR_VALUES: comma-separated `acr` values that mean more than one factor."""
    return [value.strip() for value in raw.split(",") if value.strip()]
