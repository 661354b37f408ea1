"""Injected faults: what a matching request gets instead of (or on top of) the normal answer."""

import fnmatch
from dataclasses import dataclass

from emulator.protocol import Response, json_response, status_error, status_phrase

KINDS = ("status", "hang", "drop", "malformed", "html", "not_deleted")
METHODS = ("*", "GET", "POST", "DELETE")

_DEFAULT_STATUS = {"status": 503, "html": 502}
_HTML_PAGE = (
    "<html><head><title>{status} {phrase}</title></head><body>"
    "<center><h1>{status} {phrase}</h1></center><hr><center>nginx</center></body></html>"
)
_MALFORMED_BODY = b'{"id": "thread_abc123", "object": "thread", "created_at": 16990'


@dataclass
class Fault:
    """`times` is how many matching requests it applies to (None: until cleared).

    `body` replaces a `status` fault's JSON: any JSON value, or bytes sent as they are (to
    play an upstream that answers with what is not JSON, or not even UTF-8).
    """

    method: str = "*"
    path: str = "*"
    kind: str = "status"
    status: int | None = None
    times: int | None = 1
    retry_after: int | float | str | None = None
    body: dict | list | bytes | None = None
    seconds: float = 30.0

    def __post_init__(self):
        self.method = self.method.upper()
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}, not {self.method!r}")
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {self.kind!r}")
        if self.times is not None and self.times < 1:
            raise ValueError("times must be at least 1 (or None for no limit)")
        if self.status is None:
            self.status = _DEFAULT_STATUS.get(self.kind)
        elif not 100 <= self.status <= 599:
            raise ValueError(f"status must be an HTTP status code, not {self.status!r}")

    def matches(self, method: str, path: str, *, thread_delete: bool) -> bool:
        # A `not_deleted` fault only makes sense for (and is only used up by) a thread DELETE.
        if self.kind == "not_deleted" and not thread_delete:
            return False
        return self.method in ("*", method) and fnmatch.fnmatchcase(path, self.path)

    def use(self) -> bool:
        """Count one application; True once the fault is used up."""
        if self.times is None:
            return False
        self.times -= 1
        return self.times == 0

    def response(self) -> Response:
        """The canned answer of the `status`, `malformed` and `html` kinds."""
        if self.kind == "malformed":
            return Response(200, _MALFORMED_BODY)
        if self.kind == "html":
            page = _HTML_PAGE.format(status=self.status, phrase=status_phrase(self.status))
            return Response(self.status, page.encode(), "text/html; charset=utf-8")
        headers = []
        if self.retry_after is not None:
            headers.append(("Retry-After", str(self.retry_after)))
        if 300 <= self.status < 400:  # a redirect a careful client must not follow
            headers.append(("Location", "/v1/redirected"))
        if isinstance(self.body, bytes):
            return Response(self.status, self.body, headers=tuple(headers))
        payload = self.body if self.body is not None else status_error(self.status).payload()
        return json_response(self.status, payload, headers)
