"""The API's test helpers: a token for a user (or a team), and a client that sends it."""

import json

from django.test import Client

from threads_app.models import ApiToken
from threads_app.services import tokens

ALL_SCOPES = list(ApiToken.Scope.values)


def make_token(user, scopes=None, team=None, label="test token"):
    """A live token of `user` (a team token with `team`): the token itself."""
    _row, token = tokens.create_token(
        actor=user, label=label, scopes=ALL_SCOPES if scopes is None else scopes, team=team
    )
    return token


class ApiClient:
    """Requests to /api/v1/ with `Authorization: Bearer <token>` (or none)."""

    def __init__(self, token=None, **defaults):
        headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
        self.client = Client(**headers, **defaults)

    def _url(self, path):
        return "/api/v1/" + path.lstrip("/")

    def get(self, path, params=None, **extra):
        return self.client.get(self._url(path), params or {}, **extra)

    def post(self, path, body=None, **extra):
        data = json.dumps(body if body is not None else {})
        return self.client.post(self._url(path), data, content_type="application/json", **extra)

    def patch(self, path, body=None):
        data = json.dumps(body if body is not None else {})
        return self.client.patch(self._url(path), data, content_type="application/json")

    def delete(self, path, params=""):
        return self.client.delete(self._url(path) + (f"?{params}" if params else ""))

    def send(self, method, path, query, data=""):
        """Any method, the query as given (not checked), `data` the raw body of a non-GET."""
        url = self._url(path.removeprefix("/api/v1/"))
        if method == "get":
            return self.client.get(url, query)
        url += "?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else ""
        return getattr(self.client, method)(url, data, content_type="application/json")


def problem_type(response):
    assert response["Content-Type"] == "application/problem+json", response.content
    body = response.json()
    assert body["status"] == response.status_code
    assert body["instance"] == response.wsgi_request.path
    return body["type"].rsplit("/", 1)[-1]
