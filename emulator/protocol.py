"""Wire-level pieces shared by the emulator: responses and OpenAI-shaped errors."""

import json
import secrets
import string
from dataclasses import dataclass
from http import HTTPStatus

_ALNUM = string.ascii_letters + string.digits


def new_id(prefix: str) -> str:
    """An OpenAI-style identifier: a prefix such as `thread_` and 24 random alphanumerics."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(24))


@dataclass(frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


def json_response(status: int, payload, headers=()) -> Response:
    return Response(status, json.dumps(payload).encode(), headers=tuple(headers))


def error_payload(message: str, *, type: str, param: str | None = None, code: str | None = None):
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


class ApiError(Exception):
    """An error answered as `{"error": {message, type, param, code}}` with the given status."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        type: str = "invalid_request_error",
        headers: tuple[tuple[str, str], ...] = (),
    ):
        super().__init__(message)
        self.status = status
        self.message = message
        self.param = param
        self.code = code
        self.type = type
        self.headers = headers

    def payload(self) -> dict:
        return error_payload(self.message, type=self.type, param=self.param, code=self.code)

    def response(self) -> Response:
        return json_response(self.status, self.payload(), self.headers)


def invalid(message: str, param: str | None = None, code: str | None = None) -> ApiError:
    return ApiError(400, message, param=param, code=code)


_STATUS_MESSAGES = {
    429: ("Rate limit reached for requests. Please try again later.", "rate_limit_exceeded"),
    500: ("The server had an error while processing your request. Sorry about that!", None),
    503: ("The engine is currently overloaded, please try again later.", None),
}


def status_phrase(status: int) -> str:
    """The reason phrase, also for codes outside the standard (a proxy's 520, say)."""
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


def status_error(status: int) -> ApiError:
    """The error the real API would plausibly send for an injected status."""
    message, code = _STATUS_MESSAGES.get(status, (f"{status_phrase(status)}.", None))
    if status == 429:
        kind = "requests"
    elif status >= 500:
        kind = "server_error"
    else:
        kind = "invalid_request_error"
    return ApiError(status, message, code=code, type=kind)
