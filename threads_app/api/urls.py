"""The automation API under /api/v1/: django-ninja's routers per area, the problem documents
of every error, the OpenAPI 3.1 document and its docs page (Swagger UI from django-ninja's
own static files: nothing from a CDN, no inline script)."""

import functools
import re
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.urls import URLPattern, URLResolver, re_path
from ninja import NinjaAPI
from ninja.errors import HttpError, ValidationError
from ninja.openapi.schema import OpenAPISchema

from threads_app.api import audit, job_routes, keys, overview, selections, threads
from threads_app.api.base import (
    PROBLEM_CONTENT_TYPE,
    ApiProblem,
    api_view,
    not_found,
    problem_for,
)
from threads_app.services.refusals import Refused
from threads_app.upstream import UpstreamError

JSON = "application/json"


class Api(NinjaAPI):
    def get_openapi_schema(self, **kwargs: Any) -> OpenAPISchema:
        """The document, with each error answer's media type the problem documents' own, and
        a streamed answer's (`openapi_extra`) its own alone."""
        schema = super().get_openapi_schema(**kwargs)
        for path in schema["paths"].values():
            for operation in path.values():
                for status, answer in operation.get("responses", {}).items():
                    content = answer.get("content", {})
                    if int(status) >= 400 and JSON in content:
                        answer["content"] = {PROBLEM_CONTENT_TYPE: content[JSON]}
                    elif len(content) > 1:
                        del content[JSON]
        return schema


api = Api(
    title="Threads Console API",
    version="1",
    description=(
        "Everything the pages do, for scripts. Authenticate with an access token (made on "
        "your account's Access tokens page) in the `Authorization: Bearer` header; each "
        "operation needs one scope. Errors are RFC 9457 problem documents."
    ),
    urls_namespace="api",
    docs_decorator=lambda view: api_view(view),
)
AREAS = (threads, selections, keys, job_routes, audit, overview)
for area in AREAS:
    api.add_router("/", area.router)


def _problem(request: HttpRequest, exc: Exception | type[Exception]) -> HttpResponse:
    assert isinstance(exc, Exception)
    return problem_for(request, exc)


for handled in (
    Exception,
    ApiProblem,
    Refused,
    UpstreamError,
    HttpError,
    ValidationError,
    Http404,
    PermissionDenied,
):
    api.add_exception_handler(handled, _problem)


@functools.cache
def query_parameters() -> dict[tuple[str, str], set[str]]:
    """{(method, path as the document writes it): the names of its query parameters}, from
    the operations themselves (building the whole document takes a second or more)."""
    known: dict[tuple[str, str], set[str]] = {}
    for area in AREAS:
        for route, path_view in area.router.path_operations.items():
            path = "/api/v1" + re.sub(r"{\w+:(\w+)}", r"{\1}", route)
            for operation in path_view.operations:
                names = {
                    name
                    for model in operation.models
                    if model.__ninja_param_source__ == "query"
                    for name in model.__ninja_flatten_map__
                }
                for method in operation.methods:
                    known[method, path] = names
    return known


def _known_parameters(request: HttpRequest) -> set[str] | None:
    """The query parameters the requested operation takes (None: no such operation)."""
    match = request.resolver_match
    if match is None:
        return None
    path = "/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", match.route)
    return query_parameters().get((request.method or "", path))


def _urls() -> list[URLPattern | URLResolver]:
    patterns, _app, _namespace = api.urls
    wrapped: list[URLPattern | URLResolver] = []
    for pattern in patterns:
        assert isinstance(pattern, URLPattern)
        view = api_view(pattern.callback, _known_parameters)
        wrapped.append(URLPattern(pattern.pattern, view, pattern.default_args, pattern.name))
    return [*wrapped, re_path(r"^.*$", api_view(not_found), name="not_found")]


urlpatterns = _urls()
app_name = "api"
