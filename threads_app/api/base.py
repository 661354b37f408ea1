"""The automation API's frame: token authentication with scopes, the per-token rate limit,
and RFC 9457 problem documents for every error.

Each operation names the one scope it needs (`auth=scoped(...)`); a request is authenticated
by `services.tokens.authenticate` (which counts it against the token's rate limit), refused
with 429 past the limit, then with 403 without the scope. The request then runs as the
token's maker, with that user's rights at this moment: the same selectors and services as
the pages, so roles are checked on every request. A team token is further narrowed to its
team (`Principal.team_id`). There is no session and no CSRF: a token, in the Authorization
header only.
"""

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django import forms
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.http.response import HttpResponseBase
from ninja import Schema
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.renderers import JSONRenderer
from ninja.security.http import HttpAuthBase

from threads_app.audit import Origin
from threads_app.models import ApiToken
from threads_app.services import tokens
from threads_app.services.refusals import NotAllowed, Refused
from threads_app.upstream import UpstreamError

PROBLEM_TYPE = "/api/v1/problems/"
PROBLEM_CONTENT_TYPE = "application/problem+json"
# A refusal answers 400, unless its code says otherwise: the thing is in a state that does not
# allow it (409), or the Threads API could not be asked (502).
STATUS_OF_CODE = {
    "deletion_underway": 409,
    "already_revoked": 409,
    "job_ended": 409,
    "job_stopping": 409,
    "job_not_running": 409,
    "job_not_paused": 409,
    "key_unverified": 502,
    "receipt_not_ready": 409,
    "checkpoint_unwritable": 503,
    "approval_expired": 409,
    "job_not_awaiting_approval": 409,
    # Export by selection (issue 18)
    "export_not_ready": 409,
    "export_expired": 410,
}
# Query parameters that look like a credential: a token in a URL lands in logs and histories.
TOKEN_PARAMETERS = {"token", "access_token", "api_key", "apikey", "key_secret", "bearer"}


@dataclass(frozen=True)
class Principal:
    """Who a request acts as: the token's maker (`user`), narrowed to `team_id` for a team
    token."""

    user: User
    token: ApiToken

    @property
    def team_id(self) -> int | None:
        return self.token.team_id


class ApiRequest(HttpRequest):
    auth: Principal


class Problem(Schema):
    """An RFC 9457 problem document."""

    type: str
    title: str
    status: int
    detail: str
    instance: str
    request_id: str | None = None  # the upstream's x-request-id, when it answered
    upstream_status: int | None = None
    errors: list[dict[str, Any]] | None = None  # validation errors: where and what


class ApiProblem(Exception):
    """An error the API answers as a problem document of `code`."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.extra = status, code, detail, extra


TITLES = {
    400: "Bad request",
    401: "Not authenticated",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    422: "Invalid request",
    429: "Too many requests",
    502: "The Threads API failed",
}


# What any operation may answer: a query parameter it does not take or a token in the URL
# (400), no token or a bad one (401), a scope the token lacks (403), too many requests (429).
ALWAYS = (400, 401, 403, 429)


def errors(*statuses: int) -> dict[int, Any]:
    """An operation's documented problem answers: ALWAYS, and the `statuses` it can give
    besides (tests/test_api_statuses.py makes each one happen)."""
    return {status: Problem for status in sorted({*ALWAYS, *statuses})}


def problem(
    request: HttpRequest, status: int, code: str, detail: str, **extra: Any
) -> HttpResponse:
    body = {
        "type": PROBLEM_TYPE + code,
        "title": TITLES.get(status, "Error"),
        "status": status,
        "detail": detail,
        "instance": request.path,
        **{name: value for name, value in extra.items() if value is not None},
    }
    return JsonResponse(body, status=status, content_type=PROBLEM_CONTENT_TYPE)


def problem_for(request: HttpRequest, exc: Exception) -> HttpResponse:
    """The problem document of an exception an operation (or its authentication) raised."""
    if isinstance(exc, ApiProblem):
        response = problem(request, exc.status, exc.code, exc.detail, **exc.extra)
        if exc.status == 401:
            response["WWW-Authenticate"] = 'Bearer realm="api"'
        return response
    if isinstance(exc, NotAllowed):
        return problem(request, 403, exc.code, exc.message)
    if isinstance(exc, tokens.TokenRefused):
        return problem_for(request, ApiProblem(401, exc.code, exc.message))
    if isinstance(exc, Refused):
        return problem(request, STATUS_OF_CODE.get(exc.code, 400), exc.code, exc.message)
    if isinstance(exc, PermissionDenied):
        return problem(request, 403, "not_allowed", str(exc) or "You may not do this.")
    if isinstance(exc, Http404):
        return problem(request, 404, "not_found", "There is nothing here that you may see.")
    if isinstance(exc, ValidationError):
        errors = [{"loc": list(e.get("loc", ())), "msg": e.get("msg", "")} for e in exc.errors]
        return problem(request, 422, "validation_error", "The request is not valid.", errors=errors)
    if isinstance(exc, AuthenticationError):
        detail = "Send an access token in the header: Authorization: Bearer <token>."
        return problem_for(request, ApiProblem(401, "unauthenticated", detail))
    if isinstance(exc, UpstreamError):
        return upstream_problem(request, exc)
    if isinstance(exc, HttpError):
        return problem(request, exc.status_code, "http_error", str(exc))
    raise exc


def upstream_problem(request: HttpRequest, exc: UpstreamError) -> HttpResponse:
    """The Threads API's refusal of what was sent (400, 404: 400 here), or its failure (502)."""
    status = 400 if exc.status in (400, 404, 409, 422) else 502
    return problem(
        request,
        status,
        "upstream_error",
        str(exc),
        request_id=exc.request_id,
        upstream_status=exc.status,
    )


RENDERER = JSONRenderer()  # django-ninja's own (NinjaAPI's default): the same JSON and type


def unvalidated(request: HttpRequest, data: dict[str, Any]) -> HttpResponse:
    """A 200 answer already in its schema's shape, rendered as django-ninja renders any
    answer but not validated again field by field, which is most of a long list's cost.
    For data built in one place for that schema (`schemas.thread_out`); tests/test_api.py
    checks the list against its schema, and schemathesis checks every answer."""
    content = RENDERER.render(request, data, response_status=200)
    return HttpResponse(content, content_type=f"{RENDERER.media_type}; charset={RENDERER.charset}")


def require_in_team(principal: Principal, team_id: int | None) -> None:
    """A team token sees its team's things only: anything else is out of sight (404)."""
    if principal.team_id is not None and team_id != principal.team_id:
        raise Http404


def field_errors(form: forms.Form, source: str = "query") -> ApiProblem:
    """A form's errors (the pages' parser said no): a key or team out of sight is a 404, as
    everywhere; anything else a 422 naming the fields."""
    if {"key", "team"} & set(form.errors):
        return ApiProblem(404, "not_found", "There is no such key or team that you may see.")
    errors = [
        {"loc": [source, name], "msg": str(message)}
        for name, messages in form.errors.items()
        for message in messages
    ]
    return ApiProblem(422, "validation_error", "The request is not valid.", errors=errors)


def insufficient_scope(*scopes: str) -> ApiProblem:
    names = " or ".join(scopes)
    return ApiProblem(403, "insufficient_scope", f"This token does not have the scope {names}.")


def require_scope(principal: Principal, scope: str) -> None:
    """For an operation whose scope depends on what it is asked (a selection's job: its
    action): 403 unless the token has `scope`."""
    if scope not in principal.token.scopes:
        raise insufficient_scope(scope)


class Scoped(HttpAuthBase):
    """Bearer token authentication for one operation, which needs one of `scopes` (one,
    unless the operation checks which with `require_scope`)."""

    openapi_scheme = "bearer"

    def __init__(self, *scopes: str) -> None:
        super().__init__()
        if not scopes or set(scopes) - set(tokens.SCOPES):
            raise ValueError(scopes)
        self.scopes = scopes

    def __call__(self, request: HttpRequest) -> Principal:
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthenticationError()
        use = tokens.authenticate(
            token.strip(),
            origin=Origin.from_request(request),
            window_seconds=settings.API_RATE_WINDOW_SECONDS,
        )
        request.token_use = use  # type: ignore[attr-defined]
        if use.count > settings.API_RATE_LIMIT:
            raise ApiProblem(
                429,
                "rate_limited",
                f"At most {settings.API_RATE_LIMIT} requests per "
                f"{settings.API_RATE_WINDOW_SECONDS} s with one token.",
            )
        if not set(self.scopes) & set(use.token.scopes):
            raise insufficient_scope(*self.scopes)
        return Principal(use.token.created_by, use.token)


_scopes: dict[tuple[str, ...], Scoped] = {}


def scoped(*scopes: str) -> Scoped:
    """The authentication of an operation that needs one of `scopes` (one object each)."""
    if scopes not in _scopes:
        _scopes[scopes] = Scoped(*scopes)
    return _scopes[scopes]


def with_rate_limit_headers(request: HttpRequest, response: HttpResponseBase) -> None:
    """`RateLimit-*` on every answer to a known token, and `Retry-After` on a 429; and never
    stored by a cache (the API answers one token's owner)."""
    use: tokens.TokenUse | None = getattr(request, "token_use", None)
    response["Cache-Control"] = "no-store"
    if use is None:
        return
    limit = settings.API_RATE_LIMIT
    reset = max(1, math.ceil(use.resets_at - time.time()))
    response["RateLimit-Limit"] = str(limit)
    response["RateLimit-Remaining"] = str(max(0, limit - use.count))
    response["RateLimit-Reset"] = str(reset)
    response["RateLimit-Policy"] = f"{limit};w={settings.API_RATE_WINDOW_SECONDS}"
    if response.status_code == 429:
        response["Retry-After"] = str(reset)


def unknown_parameters(
    request: HttpRequest, known: Callable[[HttpRequest], set[str] | None]
) -> HttpResponse | None:
    """A token in the URL (never accepted: URLs land in logs and histories), or a query
    parameter the operation does not take (a typo would otherwise widen what a script lists or
    deletes): a 400. `known` gives the operation's parameters (None: no such operation)."""
    names = set(request.GET)
    if TOKEN_PARAMETERS & {name.lower() for name in names}:
        detail = "Tokens are never accepted in a URL: send it in the Authorization header."
        return problem(request, 400, "token_in_url", detail)
    allowed = known(request)
    if allowed is not None and names - allowed:
        unknown, takes = ", ".join(sorted(names - allowed)), ", ".join(sorted(allowed))
        detail = f"Unknown query parameters: {unknown}. This endpoint takes: {takes or 'none'}."
        return problem(request, 400, "unknown_parameter", detail)
    return None


def api_view(
    view: Callable[..., HttpResponseBase],
    known: Callable[[HttpRequest], set[str] | None] = lambda request: None,
) -> Callable[..., HttpResponseBase]:
    """An API URL's view: no log-in page, no CSRF (tokens only), no unknown query parameters,
    the rate-limit headers."""

    def answer(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
        response = unknown_parameters(request, known) or view(request, *args, **kwargs)
        if response.status_code == 405 and "Allow" in response:  # Django's, in HTML
            allow = response["Allow"]
            detail = f"This endpoint takes {allow}."
            response = problem(request, 405, "method_not_allowed", detail)
            response["Allow"] = allow
        with_rate_limit_headers(request, response)
        return response

    answer.login_required = False  # type: ignore[attr-defined]
    answer.csrf_exempt = True  # type: ignore[attr-defined]
    return answer


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any other path under /api/v1/: a problem document, not the pages' 404."""
    return problem(request, 404, "not_found", "There is no such endpoint.")
