"""The provider's admin API, for tests and the demo: JSON in, JSON out, behind a bearer token
(`OIDC_PROVIDER_ADMIN_TOKEN`). Nothing here is part of OpenID Connect."""

import hmac
import json
import os
from collections.abc import Callable
from typing import Any

from django.contrib.auth.models import User
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from oauth2_provider.models import Application

from tests.oidc_provider.validator import CLAIMS, MISBEHAVIOUR, MODES

CLAIM_NAMES = {"groups", "amr", "acr", "preferred_username", "email", "email_verified", "name"}


def admin_api(view: Callable[[dict[str, Any]], dict[str, Any]]) -> Callable[..., HttpResponse]:
    @csrf_exempt
    @require_POST
    def wrapper(request: HttpRequest) -> HttpResponse:
        token = os.environ.get("OIDC_PROVIDER_ADMIN_TOKEN", "")
        sent = request.headers.get("Authorization", "").removeprefix("Bearer ")
        if not token or not hmac.compare_digest(sent, token):
            return JsonResponse({"error": "unauthorized"}, status=401)
        try:
            return JsonResponse(view(json.loads(request.body)))
        except (ValueError, KeyError, TypeError) as error:
            return JsonResponse({"error": str(error)}, status=400)

    return wrapper


@admin_api
def user(data: dict[str, Any]) -> dict[str, Any]:
    """Create or update a user: username, password, and any of the claims (replaced whole)."""
    account, _ = User.objects.get_or_create(username=data["username"])
    if "password" in data:
        account.set_password(data["password"])
    account.is_active = data.get("active", True)
    account.save()
    unknown = set(data) - CLAIM_NAMES - {"username", "password", "active"}
    if unknown:
        raise ValueError(f"unknown fields: {sorted(unknown)}")
    CLAIMS[account.username] = {k: v for k, v in data.items() if k in CLAIM_NAMES}
    return {"sub": str(account.pk)}


@admin_api
def client(data: dict[str, Any]) -> dict[str, Any]:
    """Register (or update) a confidential authorization-code client signing with RS256."""
    app = Application.objects.filter(client_id=data["client_id"]).first() or Application(
        client_id=data["client_id"]
    )
    app.name = data.get("name", data["client_id"])
    app.client_secret = data["client_secret"]
    app.redirect_uris = " ".join(data["redirect_uris"])
    app.client_type = Application.CLIENT_CONFIDENTIAL
    app.authorization_grant_type = Application.GRANT_AUTHORIZATION_CODE
    app.algorithm = Application.RS256_ALGORITHM
    app.skip_authorization = True
    app.save()
    return {"client_id": app.client_id}


@admin_api
def misbehave(data: dict[str, Any]) -> dict[str, Any]:
    """The fault the next ID tokens carry ("" for none)."""
    if data["mode"] not in MODES:
        raise ValueError(f"mode must be one of {sorted(MODES)}")
    MISBEHAVIOUR["mode"] = data["mode"]
    return {"mode": data["mode"]}
