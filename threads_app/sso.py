"""How django-allauth's `openid_connect` provider fits the dashboard (README, "Single sign-on").

allauth does most of the work (discovery, the authorization-code flow with PKCE and state, the
ID token's issuer, audience and expiry). This module makes it strict where allauth is lenient
and adds the dashboard's rules:

- The ID token's signature is always checked against the provider's keys (allauth skips it
  when the token came straight from the token endpoint, which the standard allows), a nonce is
  sent with each log-in and must come back in the token, and the discovery document must name
  the configured issuer.
- An email domain in SSO_REQUIRED_DOMAINS belongs to its provider: another provider's
  log-in with such an email is refused, and that provider's log-in may take over an existing
  account of that email (the provider vouches for it).
- Accounts are provisioned on a first log-in (services/sso.py: username rules, audit), without
  a password; the team mapping and the two-factor facts are applied at every log-in
  (signals.py).
"""

import hmac
import secrets
from typing import Any

import requests
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.mfa.stages import AuthenticateStage
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.adapter import get_adapter as get_social_adapter
from allauth.socialaccount.helpers import render_authentication_error
from allauth.socialaccount.internal import jwtkit, statekit
from allauth.socialaccount.models import SocialApp, SocialLogin
from allauth.socialaccount.providers.oauth2.client import OAuth2Error
from allauth.socialaccount.providers.oauth2.views import OAuth2CallbackView, OAuth2LoginView
from allauth.socialaccount.providers.openid_connect import provider as oidc_provider
from allauth.socialaccount.providers.openid_connect import views as oidc_views
from django.contrib.auth.decorators import login_not_required
from django.contrib.auth.models import User
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render

from threads_app.audit import Origin
from threads_app.services import sso as sso_services

# Standard claims allauth copies onto the account as text.
STRING_CLAIMS = (
    "preferred_username",
    "email",
    "name",
    "given_name",
    "family_name",
    "picture",
    "user_id",
)


class TokenRejected(OAuth2Error):  # type: ignore[misc]
    """An ID token (or discovery document) the console will not accept; the message is safe
    to show and to audit."""


class OIDCAdapter(oidc_views.OpenIDConnectOAuth2Adapter):  # type: ignore[misc]
    """allauth's adapter, checking every ID token's signature and nonce, and the issuer."""

    expected_nonce: str | None = None

    @property
    def openid_config(self) -> dict[str, Any]:
        try:
            config: dict[str, Any] = super().openid_config
        except ValueError:  # not JSON
            raise TokenRejected("The provider's discovery document is not JSON.") from None
        configured = self.get_provider().app.settings["server_url"].rstrip("/")
        if str(config.get("issuer", "")).rstrip("/") != configured:
            raise TokenRejected("The provider's discovery document names another issuer.")
        return config

    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: Any, **kwargs: Any
    ) -> Any:
        if not kwargs["response"].get("id_token"):
            raise TokenRejected("The provider sent no ID token.")
        return super().complete_login(request, app, token, **kwargs)

    def _decode_id_token(self, app: SocialApp, id_token: str) -> dict[str, Any]:
        try:
            claims: dict[str, Any] = jwtkit.verify_and_decode(
                credential=id_token,
                keys_url=self.openid_config["jwks_uri"],
                issuer=self.openid_config["issuer"],
                audience=app.client_id,
                lookup_kid=jwtkit.lookup_kid_jwk,
                verify_signature=True,
            )
        except OAuth2Error as error:
            cause = error.__cause__
            reason = type(cause).__name__ if cause is not None else "InvalidToken"
            raise TokenRejected(f"The ID token was rejected ({reason}).") from error
        if "exp" not in claims or "sub" not in claims:
            raise TokenRejected("The ID token has no expiry or no subject.")
        # allauth reads these as strings (and email_verified as a boolean): a claim of
        # another type is dropped rather than let through to break it.
        for name in STRING_CLAIMS:
            if name in claims and not isinstance(claims[name], str):
                del claims[name]
        if not isinstance(claims.get("email_verified", False), bool):
            del claims["email_verified"]
        nonce = claims.get("nonce")
        expected = self.expected_nonce
        if not expected or not isinstance(nonce, str) or not hmac.compare_digest(nonce, expected):
            raise TokenRejected("The ID token's nonce is not the one this log-in sent.")
        return claims


class OpenIDConnectProvider(oidc_provider.OpenIDConnectProvider):  # type: ignore[misc]
    """allauth's provider with `OIDCAdapter`, sending a nonce (kept in the log-in's state)."""

    oauth2_adapter_class = OIDCAdapter

    def redirect(
        self, request: HttpRequest, process: Any, next_url: Any = None, data: Any = None, **kw: Any
    ) -> HttpResponse:
        nonce = secrets.token_urlsafe(32)
        auth_params = kw.pop("auth_params", None) or self.get_auth_params()
        auth_params["nonce"] = nonce
        return super().redirect(  # type: ignore[no-any-return]
            request, process, next_url, data, auth_params=auth_params, nonce=nonce, **kw
        )


def _provider(request: HttpRequest, provider_id: str) -> OpenIDConnectProvider:
    try:
        provider = get_social_adapter(request).get_provider(request, provider_id)
    except SocialApp.DoesNotExist:
        raise Http404("No such single sign-on provider.") from None
    if not isinstance(provider, OpenIDConnectProvider):
        raise Http404("No such single sign-on provider.")
    return provider


@login_not_required
def login(request: HttpRequest, provider_id: str) -> HttpResponse:
    """Off to the provider (a POST; a GET asks to confirm first)."""
    provider = _provider(request, provider_id)
    try:
        response: HttpResponse = OAuth2LoginView.adapter_view(provider.get_oauth2_adapter(request))(
            request
        )
    except requests.RequestException as error:  # discovery: the provider is unreachable
        failure: HttpResponse = render_authentication_error(request, provider, exception=error)
        return failure
    return response


@login_not_required
def callback(request: HttpRequest, provider_id: str) -> HttpResponse:
    """Back from the provider: allauth checks the state and fetches the tokens, and
    `OIDCAdapter` checks the ID token against the nonce this log-in's state kept."""
    provider = _provider(request, provider_id)
    adapter = provider.get_oauth2_adapter(request)
    stashed = statekit.get_states(request).get(request.GET.get("state", ""))
    if stashed and isinstance(stashed[0], dict):
        adapter.expected_nonce = stashed[0].get("nonce")
    response: HttpResponse = OAuth2CallbackView.adapter_view(adapter)(request)
    return response


def claims_of(sociallogin: SocialLogin) -> dict[str, Any]:
    """The checked ID token's claims of a log-in."""
    claims = sociallogin.account.extra_data.get("id_token")
    return claims if isinstance(claims, dict) else {}


def login_facts(sociallogin: SocialLogin) -> sso_services.SSOLogin:
    provider = sociallogin.account.get_provider()
    return sso_services.SSOLogin.from_claims(
        provider_id=provider.app.provider_id,
        provider_name=provider.name,
        claims=claims_of(sociallogin),
    )


class SocialAccountAdapter(DefaultSocialAccountAdapter):  # type: ignore[misc]
    """Provisioning and the domain rule (see the module's docstring)."""

    def list_apps(
        self, request: HttpRequest | None, provider: Any = None, client_id: Any = None
    ) -> list[SocialApp]:
        """The providers of OIDC_PROVIDERS only: a SocialApp row (the admin no longer offers
        them) would skip its checks. Built from the settings alone, so the log-in page asks
        the database nothing (allauth's own list reads the SocialApp table first)."""
        from allauth.socialaccount.adapter import _build_apps_from_settings

        by_provider = _build_apps_from_settings(provider=provider, client_id=client_id)
        return [app for apps in by_provider.values() for app in apps]

    def pre_social_login(self, request: HttpRequest, sociallogin: SocialLogin) -> None:
        facts = login_facts(sociallogin)
        origin = Origin.from_request(request)
        existing = sociallogin.user if sociallogin.is_existing else None
        try:
            user = sso_services.check_sso_login(facts, user=existing, origin=origin)
            if existing is not None:
                return
            if user is not None:  # an account of the provider's own domain: linked (and told)
                sociallogin.connect(request, user)
                sso_services.record_linked(facts, user=user, origin=origin)
                return
            # A first log-in: the account is made here, not by allauth's sign-up (which would
            # ask for an email the provider may not give).
            sociallogin.user = sso_services.provision_account(facts, origin=origin)
            sociallogin.save(request, connect=True)
        except sso_services.Refused as refusal:
            raise ImmediateHttpResponse(
                render(
                    request,
                    "socialaccount/authentication_error.html",
                    {"provider_name": facts.provider_name, "refusal": refusal.message},
                    status=403,
                )
            ) from None

    def on_authentication_error(
        self,
        request: HttpRequest,
        provider: Any,
        error: Any = None,
        exception: Exception | None = None,
        extra_context: Any = None,
    ) -> None:
        if isinstance(exception, TokenRejected):
            reason = str(exception)
        elif isinstance(exception, requests.RequestException):
            reason = "The provider could not be reached."
        elif exception is not None:
            reason = f"The log-in did not complete ({type(exception).__name__})."
        elif error == "cancelled":
            reason = "The log-in was cancelled at the provider."
        else:
            reason = "The log-in's state is unknown or was used already."
        if extra_context is not None:
            extra_context["reason"] = reason
            extra_context["provider_name"] = getattr(provider, "name", "")
        sso_services.record_failure(
            provider_id=provider.app.provider_id if provider.app else "",
            provider_name=getattr(provider, "name", ""),
            reason=reason,
            origin=Origin.from_request(request),
        )


# The session's record that its single sign-on log-in used more than one factor.
MULTI_FACTOR_SESSION_KEY = "sso_multi_factor"


def logged_in(request: HttpRequest, user: User, sociallogin: SocialLogin) -> None:
    """A log-in through a provider completed: audit it, apply the team mapping, and note
    whether the provider vouched for a second factor (`session_has_multi_factor`)."""
    facts = login_facts(sociallogin)
    origin = Origin.from_request(request)
    sso_services.record_sso_login(facts, user=user, origin=origin)
    sso_services.apply_team_mapping(facts, user=user, origin=origin)
    request.session[MULTI_FACTOR_SESSION_KEY] = facts.multi_factor


def session_has_multi_factor(request: HttpRequest) -> bool:
    """Whether this session's log-in was through a provider that vouched for more than one
    factor (`amr` has "mfa", or `acr` is in SSO_MFA_ACR_VALUES): as good as the console's
    own two-factor for REQUIRE_2FA and the owners' rule."""
    return request.session.get(MULTI_FACTOR_SESSION_KEY) is True


class TwoFactorStage(AuthenticateStage):  # type: ignore[misc]
    """allauth's two-factor step of a log-in, skipped when the log-in is through a provider
    that vouched for more than one factor (the person used theirs there)."""

    def _should_handle(self, request: HttpRequest) -> bool:
        sociallogin = (self.login.signal_kwargs or {}).get("sociallogin")
        if sociallogin is not None and login_facts(sociallogin).multi_factor:
            return False
        return bool(super()._should_handle(request))
