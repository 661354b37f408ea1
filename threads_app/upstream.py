"""Client for the umamiai Threads API (OpenAI Assistants v2 compatible).

This is the only module that speaks HTTP to the upstream API. It turns every
answer into a frozen dataclass and every failure into an ``UpstreamError``
subclass whose text never carries the API key.
"""

import dataclasses
import email.utils
import functools
import logging
import math
import threading
import time
from collections.abc import Callable, Mapping
from http.cookiejar import DefaultCookiePolicy
from types import TracebackType
from typing import Any, Final, Self, TypeVar, overload
from urllib.parse import quote

import requests
from django.conf import settings
from prometheus_client import Counter, Histogram
from requests.adapters import HTTPAdapter
from urllib3.connectionpool import ConnectionPool
from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.response import BaseHTTPResponse
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.umamiai.xyz/v1"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0

# Connections kept per host: bulk deletes adapt their calls in flight up to 64
# (services/concurrency.py); a connection over this number is closed after its call.
POOL_MAXSIZE = 64
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_METHODS = frozenset({"GET", "DELETE"})
MAX_RETRIES = 3
# Each Retry-After wait is capped, so a call sleeps at most 3 * 3 = 9 s in all
# (without Retry-After, the backoff sleeps 0, 0.5 and 1 s).
MAX_RETRY_AFTER = 3
BACKOFF_FACTOR = 0.25

# What an answer's fields must fit before anything downstream uses them.
# Ids (and request ids) are stored in 100-character columns.
MAX_ID_LENGTH = 100
# `created_at` is seconds since the epoch; datetime.fromtimestamp must be able to take it
# (253402300799 is 9999-12-31T23:59:59Z, the last second a datetime can hold).
MAX_TIMESTAMP = 253402300799
# tool_resources, message content and attachments are a few levels deep in the real API;
# a deeper tree is refused before it reaches a template, a JSON column or json.dumps.
MAX_NESTING = 32


# Metrics (served by the app's metrics view when METRICS_ENABLED): one count per call with its
# final status (an HTTP status, or the failure's name when no answer came: "ConnectTimeout"),
# and every retry urllib3 made on the way (a 429 retried into a 200 shows up only here).
UPSTREAM_CALLS = Counter(
    "threads_upstream_requests",
    "Calls to the Threads API, by method and final status.",
    ["method", "status"],
)
UPSTREAM_SECONDS = Histogram(
    "threads_upstream_request_duration_seconds",
    "Time a call to the Threads API took, retries included, by method.",
    ["method"],
)
UPSTREAM_RETRIES = Counter(
    "threads_upstream_retries",
    "Retries of calls to the Threads API, by method and the status that caused them.",
    ["method", "status"],
)


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, api_key: str) -> None:
        self._api_key = api_key

    def __call__(self, request: requests.PreparedRequest) -> requests.PreparedRequest:
        if not self._api_key.isprintable() or any(c.isspace() for c in self._api_key):
            raise requests.exceptions.InvalidHeader("The API key cannot be sent in a header.")
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request


# --- Errors -----------------------------------------------------------------


class UpstreamError(Exception):
    """A call to the Threads API failed.

    ``status`` is the HTTP status, or None when no HTTP answer arrived.
    ``message`` is the upstream's own message or a description of the failure.
    ``retries``: how many times the call was sent again before giving up.
    """

    what = "Threads API error"  # the headline's words for this kind of failure

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        request_id: str | None = None,
        code: str | None = None,
        param: str | None = None,
        retries: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.code = code
        self.param = param
        self.retries = retries

    def __str__(self) -> str:
        text = f"Threads API {self.status}: {self.message}" if self.status else self.message
        return f"{text} (request {self.request_id})" if self.request_id else text

    @property
    def headline(self) -> str:
        """The failure in one short sentence, as every page leads with it (the details,
        `str(error)`, follow it): "Threads API unavailable (503), retried 3 times."."""
        status = f" ({self.status})" if self.status else ""
        times = "once" if self.retries == 1 else f"{self.retries} times"
        retried = f", retried {times}" if self.retries else ""
        return f"{self.what}{status}{retried}."


class AuthenticationError(UpstreamError):
    """401 or 403: the key is invalid, revoked or not allowed to do this."""

    what = "Threads API refused the key"


class NotFoundError(UpstreamError):
    """404 with the API's error body: no such thread for this key (never existed, expired,
    or another project's). A 404 without it is a ``MisconfiguredUpstreamError``."""

    what = "Threads API has no such thread"


class RateLimitedError(UpstreamError):
    """429, after the retries GET and DELETE are allowed (none for a client made with
    ``retry_rate_limited=False``). ``retry_after`` is the answer's Retry-After in seconds."""

    what = "Threads API rate limit reached"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs: Any) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InvalidRequestError(UpstreamError):
    """400, 422 or another 4xx: the upstream rejected what we sent (see ``param``)."""

    what = "Threads API refused the request"


class UpstreamUnavailableError(UpstreamError):
    """5xx, timeout, refused connection, redirect, or an answer we cannot read."""

    what = "Threads API unavailable"


class UnreadableAnswerError(UpstreamUnavailableError):
    """A 2xx answer that is not JSON, or lacks a field the dashboard reads, or has one of the
    wrong type or out of range (a ``created_at`` no date can hold, an id that is not text)."""


class MisconfiguredUpstreamError(UpstreamUnavailableError):
    """A 404 without the API's error body (a web server's page, say): the base URL points
    somewhere that is not the Threads API. Deliberately not a ``NotFoundError``: it says
    nothing about the thread (a DELETE is not "already gone", a key is not "accepted")."""


def _error_class(status: int) -> type[UpstreamError]:
    if status in (401, 403):
        return AuthenticationError
    if status == 404:
        return NotFoundError
    if status == 429:
        return RateLimitedError
    if 400 <= status < 500:
        return InvalidRequestError
    return UpstreamUnavailableError


# --- Results ----------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Thread:
    id: str
    created_at: int
    metadata: dict[str, str]
    tool_resources: dict[str, Any]
    request_id: str | None


@dataclasses.dataclass(frozen=True)
class DeletionResult:
    """The upstream's answer to a DELETE.

    ``deleted`` False is a well-formed answer in which the upstream refused:
    the caller must not treat it as a success.
    """

    id: str
    deleted: bool
    already_gone: bool
    request_id: str | None
    status: int


@dataclasses.dataclass(frozen=True)
class Message:
    id: str
    role: str
    created_at: int
    text: str
    content: list[Any]
    attachments: list[Any]
    metadata: dict[str, str]


@dataclasses.dataclass(frozen=True)
class MessagePage:
    messages: list[Message]
    first_id: str | None
    last_id: str | None
    has_more: bool
    request_id: str | None


class _Malformed(ValueError):
    """A 2xx body lacks a required field or has one of the wrong type or out of range."""


_T = TypeVar("_T")
_D = TypeVar("_D")
_REQUIRED: Final = object()


@overload
def _field(body: Mapping[str, object], name: str, kind: type[_T]) -> _T: ...


@overload
def _field(body: Mapping[str, object], name: str, kind: type[_T], default: _D) -> _T | _D: ...


def _field(body: Mapping[str, object], name: str, kind: type[Any], default: Any = _REQUIRED) -> Any:
    """``body[name]`` checked against ``kind``; a missing or null value gives ``default``."""
    value = body.get(name)
    if value is None and default is not _REQUIRED:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Malformed(name)
    return value


def _object(body: object) -> dict[str, object]:
    if not isinstance(body, dict):
        raise _Malformed("body")
    return body


def _is_text(value: str) -> bool:
    """Whether the string can be shown and stored: a lone surrogate cannot be UTF-8."""
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


def _id(body: Mapping[str, object], name: str) -> str:
    """An id (or a role): printable text of 1 to MAX_ID_LENGTH characters."""
    value = _field(body, name, str)
    if not 0 < len(value) <= MAX_ID_LENGTH or not value.isprintable():
        raise _Malformed(name)
    return value


def _optional_id(body: Mapping[str, object], name: str) -> str | None:
    if body.get(name) is None:
        return None
    return _id(body, name)


def _timestamp(body: Mapping[str, object], name: str) -> int:
    """Seconds since the epoch that a datetime can hold."""
    value = _field(body, name, int)
    if not 0 <= value <= MAX_TIMESTAMP:
        raise _Malformed(name)
    return value


def _metadata(body: Mapping[str, object]) -> dict[str, str]:
    """The metadata object: text keys to text values; null or missing is empty."""
    metadata = _field(body, "metadata", dict, {})
    for key, value in metadata.items():
        texts = isinstance(key, str) and isinstance(value, str)
        if not (texts and _is_text(key) and _is_text(value)):
            raise _Malformed("metadata")
    return metadata


def _check_tree(value: object, name: str) -> None:
    """Refuse a JSON tree the dashboard could not show or store.

    Too deep, a string that is not UTF-8 text, or a number that is not finite (JSON's NaN
    and Infinity, which no JSON column takes). Walked with a stack, not recursion.
    """
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_NESTING:
            raise _Malformed(name)
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or not _is_text(key):
                    raise _Malformed(name)
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
        elif isinstance(item, str):
            if not _is_text(item):
                raise _Malformed(name)
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise _Malformed(name)
        elif item is not None and not isinstance(item, (bool, int)):
            raise _Malformed(name)


def _tree(body: Mapping[str, object], name: str, kind: type[_T], default: _T) -> _T:
    """A dict or list field checked with `_check_tree`; null or missing gives ``default``."""
    value = _field(body, name, kind, default)
    _check_tree(value, name)
    return value


def _parse_thread(body: object, request_id: str | None = None) -> Thread:
    """A Thread from a thread object; unknown fields are ignored, null dicts become {}."""
    body = _object(body)
    tool_resources: dict[str, Any] = _tree(body, "tool_resources", dict, {})
    return Thread(
        id=_id(body, "id"),
        created_at=_timestamp(body, "created_at"),
        metadata=_metadata(body),
        tool_resources=tool_resources,
        request_id=request_id,
    )


def _text_of(part: object) -> str | None:
    """The text of a content part: ``{"type": "text", "text": {"value": ...}}``, else None."""
    if not isinstance(part, dict) or part.get("type") != "text":
        return None
    text = part.get("text")
    if isinstance(text, dict):
        text = text.get("value")
    return text if isinstance(text, str) else None


def _parse_message(body: object) -> Message:
    body = _object(body)
    content: list[Any] = _tree(body, "content", list, [])
    attachments: list[Any] = _tree(body, "attachments", list, [])
    texts = (_text_of(part) for part in content)
    return Message(
        id=_id(body, "id"),
        role=_id(body, "role"),
        created_at=_timestamp(body, "created_at"),
        text="\n".join(text for text in texts if text is not None),
        content=content,
        attachments=attachments,
        metadata=_metadata(body),
    )


def _parse_message_page(body: object, request_id: str | None = None) -> MessagePage:
    body = _object(body)
    return MessagePage(
        messages=[_parse_message(item) for item in _field(body, "data", list)],
        first_id=_optional_id(body, "first_id"),
        last_id=_optional_id(body, "last_id"),
        has_more=_field(body, "has_more", bool, False),
        request_id=request_id,
    )


def _parse_deletion(body: object) -> bool:
    """The ``deleted`` flag of a DELETE's answer."""
    return _field(_object(body), "deleted", bool)


# --- Transport --------------------------------------------------------------


class _Retry(Retry):
    """urllib3's Retry with two changes.

    urllib3 retries a failed connection whatever ``allowed_methods`` says, and
    a read timeout like a dropped connection: here a POST is never retried,
    and a read timeout is reported at once (the upstream has the request and
    is slow; asking again would only multiply the wait). An unreadable
    Retry-After falls back to the backoff instead of failing the call.
    """

    def increment(
        self,
        method: str | None = None,
        url: str | None = None,
        response: BaseHTTPResponse | None = None,
        error: Exception | None = None,
        _pool: ConnectionPool | None = None,
        _stacktrace: TracebackType | None = None,
    ) -> Self:
        if isinstance(error, ReadTimeoutError):
            raise error
        allowed = self.allowed_methods
        if method is not None and allowed is not None and method.upper() not in allowed:
            return Retry.increment(
                self.new(total=0), method, url, response, error, _pool, _stacktrace
            )
        retry = super().increment(method, url, response, error, _pool, _stacktrace)
        cause = str(response.status) if response is not None else type(error).__name__
        UPSTREAM_RETRIES.labels(method=(method or "").upper(), status=cause).inc()
        return retry

    def parse_retry_after(self, retry_after: str) -> float:
        try:
            return super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0


class _RetryButNot429(_Retry):
    """``_Retry`` that leaves every 429 to the caller (urllib3 retries a 429 that carries a
    Retry-After whatever ``status_forcelist`` says, hence the narrower class attribute)."""

    RETRY_AFTER_STATUS_CODES = Retry.RETRY_AFTER_STATUS_CODES - {429}


# One process-wide session per retry policy: key True retries 429s, False does not.
_sessions: dict[bool, requests.Session] = {}
_session_lock = threading.Lock()


def _get_session(retry_rate_limited: bool = True) -> requests.Session:
    """The process-wide pooled session, shared by every key (so it keeps no cookies)."""
    session = _sessions.get(retry_rate_limited)
    if session is None:
        with _session_lock:
            session = _sessions.get(retry_rate_limited)
            if session is None:
                session = requests.Session()
                session.trust_env = False  # read once per host instead: see _environment_settings
                session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                retry_class = _Retry if retry_rate_limited else _RetryButNot429
                statuses = RETRY_STATUSES if retry_rate_limited else RETRY_STATUSES - {429}
                retry = retry_class(
                    total=MAX_RETRIES,
                    status_forcelist=statuses,
                    allowed_methods=RETRY_METHODS,
                    backoff_factor=BACKOFF_FACTOR,
                    retry_after_max=MAX_RETRY_AFTER,
                    raise_on_status=False,  # the last 429/5xx answer becomes our error
                )
                adapter = HTTPAdapter(pool_maxsize=POOL_MAXSIZE, max_retries=retry)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                _sessions[retry_rate_limited] = session
    return session


@functools.lru_cache(maxsize=16)
def _environment_settings(base_url: str) -> dict[str, Any]:
    """Proxies and CA bundle from the environment for this API, as requests reads them.

    Read once per base URL: with `trust_env` on, requests re-reads the whole environment on
    every call, a cost that shows when a bulk delete runs hundreds of them.
    """
    with requests.Session() as probe:
        found = probe.merge_environment_settings(base_url, {}, None, None, None)
    return {"proxies": found["proxies"], "verify": found["verify"]}


def _retry_after_seconds(value: str | None) -> float | None:
    """Retry-After (seconds or an HTTP date) as seconds, or None if absent or unreadable."""
    if not value:
        return None
    if value.strip().isascii() and value.strip().isdigit():  # not "²", which isdigit() too
        seconds = float(value)
        return seconds if math.isfinite(seconds) else None
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _failure_message(
    exc: requests.RequestException, connect_timeout: float, read_timeout: float
) -> str:
    """A description of a request that got no HTTP answer; never the exception's own text."""
    if isinstance(exc, requests.ConnectTimeout):
        return f"The Threads API did not accept a connection within {connect_timeout:g} s."
    if isinstance(exc, requests.ReadTimeout):
        return f"The Threads API did not answer within {read_timeout:g} s."
    if isinstance(exc, requests.ConnectionError):
        return "Could not reach the Threads API (the connection failed or was closed)."
    return f"The request to the Threads API could not be sent ({type(exc).__name__})."


class ThreadsClient:
    """The Threads API as seen with one API key.

    Cheap to create: all clients share one pooled session; the key travels in
    each request's headers, never on the session.

    ``retry_rate_limited=False`` is for a caller with its own limiter (a bulk job, see
    services/concurrency.py): every 429 raises ``RateLimitedError`` at once, with its
    ``retry_after``, instead of being retried here. Other retries are unchanged.
    """

    def __init__(
        self,
        api_key: str,
        base_url: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        *,
        retry_rate_limited: bool = True,
    ) -> None:
        self._api_key = api_key
        self.retry_rate_limited = retry_rate_limited
        if base_url is None:
            base_url = getattr(settings, "UMAMIAI_BASE_URL", DEFAULT_BASE_URL)
        if connect_timeout is None:
            connect_timeout = getattr(settings, "UMAMIAI_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
        if read_timeout is None:
            read_timeout = getattr(settings, "UMAMIAI_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)

    def __repr__(self) -> str:
        return f"<ThreadsClient {self.base_url}>"

    # -- threads

    def create_thread(
        self,
        messages: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
        tool_resources: dict[str, Any] | None = None,
    ) -> Thread:
        body = _without_none(messages=messages, metadata=metadata, tool_resources=tool_resources)
        data, request_id, status = self._request("POST", "/threads", json=body)
        return _read(lambda: _parse_thread(data, request_id), status=status, request_id=request_id)

    def retrieve_thread(self, thread_id: str) -> Thread:
        data, request_id, status = self._request("GET", _thread_path(thread_id))
        return _read(lambda: _parse_thread(data, request_id), status=status, request_id=request_id)

    def modify_thread(
        self,
        thread_id: str,
        metadata: dict[str, str] | None = None,
        tool_resources: dict[str, Any] | None = None,
    ) -> Thread:
        body = _without_none(metadata=metadata, tool_resources=tool_resources)
        data, request_id, status = self._request("POST", _thread_path(thread_id), json=body)
        return _read(lambda: _parse_thread(data, request_id), status=status, request_id=request_id)

    def delete_thread(self, thread_id: str) -> DeletionResult:
        """Delete a thread.

        A 404 in the API's error shape gives ``deleted=True, already_gone=True``:
        the thread no longer exists for this key, whether it expired, was deleted
        earlier, or was deleted by a first attempt whose answer was lost before a
        retry. Any other 404 is a ``MisconfiguredUpstreamError``, a failed deletion.
        """
        try:
            data, request_id, status = self._request("DELETE", _thread_path(thread_id))
        except NotFoundError as exc:
            return DeletionResult(thread_id, True, True, exc.request_id, exc.status or 404)
        deleted = _read(lambda: _parse_deletion(data), status=status, request_id=request_id)
        return DeletionResult(thread_id, deleted, False, request_id, status)

    # -- messages

    def list_messages(
        self,
        thread_id: str,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
    ) -> MessagePage:
        params = _without_none(limit=limit, order=order, after=after, before=before)
        path = _thread_path(thread_id, "/messages")
        data, request_id, status = self._request("GET", path, params=params)
        return _read(
            lambda: _parse_message_page(data, request_id), status=status, request_id=request_id
        )

    def create_message(
        self,
        thread_id: str,
        role: str,
        content: str | list[dict[str, Any]],
        attachments: list[dict[str, Any]] | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Message:
        body: dict[str, Any] = {"role": role, "content": content}
        body.update(_without_none(attachments=attachments, metadata=metadata))
        path = _thread_path(thread_id, "/messages")
        data, request_id, status = self._request("POST", path, json=body)
        return _read(lambda: _parse_message(data), status=status, request_id=request_id)

    # -- plumbing

    def _request(
        self,
        method: str,
        path: str,
        params: dict[str, Any] | None = None,
        json: dict[str, Any] | None = None,
    ) -> tuple[object, str | None, int]:
        """Send one call; return (decoded JSON, request id, status) of a 2xx answer.

        Failures are raised outside the ``except`` blocks so that no requests
        exception (which holds the prepared request and its headers) is chained.
        """
        started = time.monotonic()
        response = None
        try:
            response = _get_session(self.retry_rate_limited).request(
                method,
                self.base_url + path,
                params=params,
                json=json,
                headers={"Content-Type": "application/json", "OpenAI-Beta": "assistants=v2"},
                # An explicit auth object: requests then never swaps in ~/.netrc credentials.
                auth=_BearerAuth(self._api_key),
                timeout=(self.connect_timeout, self.read_timeout),
                allow_redirects=False,
                **_environment_settings(self.base_url),
            )
        except requests.RequestException as exc:
            failure = type(exc).__name__
            message = _failure_message(exc, self.connect_timeout, self.read_timeout)
        elapsed = time.monotonic() - started
        elapsed_ms = elapsed * 1000
        UPSTREAM_SECONDS.labels(method=method).observe(elapsed)
        if response is None:
            UPSTREAM_CALLS.labels(method=method, status=failure).inc()
            logger.info("%s %s -> %s in %.0f ms", method, path, failure, elapsed_ms)
            # Only GET and DELETE are sent again (a failed connection included), each time.
            retries = MAX_RETRIES if method in RETRY_METHODS else 0
            raise UpstreamUnavailableError(message, retries=retries)

        status = response.status_code
        UPSTREAM_CALLS.labels(method=method, status=str(status)).inc()
        request_id = _request_id(response.headers.get("x-request-id"))
        logger.info(
            "%s %s -> %s (request %s) in %.0f ms", method, path, status, request_id, elapsed_ms
        )
        data = _json_of(response)
        if 200 <= status < 300:
            if data is None:
                raise UnreadableAnswerError(
                    "The Threads API answered with a body that is not JSON.",
                    status=status,
                    request_id=request_id,
                )
            return data, request_id, status
        raise self._error(response, data, request_id)

    def _error(
        self, response: requests.Response, data: object, request_id: str | None
    ) -> UpstreamError:
        status = response.status_code
        if 300 <= status < 400:
            return UpstreamUnavailableError(
                "The Threads API answered with a redirect, which is not followed.",
                status=status,
                request_id=request_id,
            )
        error = data.get("error") if isinstance(data, dict) else None
        if status == 404 and not isinstance(error, dict):
            return MisconfiguredUpstreamError(
                "The Threads API base URL looks wrong: it answered 404 with a page that is "
                "not the API's (check UMAMIAI_BASE_URL).",
                status=status,
                request_id=request_id,
            )
        if not isinstance(error, dict):
            error = {}
        message, code, param = (
            self._scrub(error.get(name)) for name in ("message", "code", "param")
        )
        history = getattr(getattr(response.raw, "retries", None), "history", None) or ()
        kwargs: dict[str, Any] = {
            "status": status,
            "request_id": request_id,
            "code": code,
            "param": param,
            "retries": len(history),
        }
        if status == 429:
            kwargs["retry_after"] = _retry_after_seconds(response.headers.get("Retry-After"))
        if not message:
            reason = f" {response.reason}" if response.reason else ""
            message = f"The Threads API answered HTTP {status}{reason}."
        return _error_class(status)(message, **kwargs)

    def _scrub(self, value: object) -> str | None:
        """An upstream error field as text, with the key cut out should the upstream echo it."""
        if value is None:
            return None
        return str(value).replace(self._api_key, "[redacted]") if self._api_key else str(value)


def _json_of(response: requests.Response) -> object:
    """The decoded JSON body, or None when there is none to read.

    Too deep a nesting makes the decoder give up with a RecursionError rather than a
    ValueError; either way the body is unreadable.
    """
    try:
        return response.json()
    except (ValueError, RecursionError):
        return None


def _request_id(value: str | None) -> str | None:
    """The upstream's request id as it can be shown and stored (printable, at most 100)."""
    if value is None:
        return None
    return "".join(char for char in value if char.isprintable())[:MAX_ID_LENGTH] or None


def _read(parse: Callable[[], _T], *, status: int, request_id: str | None) -> _T:
    """``parse()`` of a 2xx body; a body it cannot use is an ``UnreadableAnswerError``."""
    try:
        return parse()
    except _Malformed as exc:
        raise UnreadableAnswerError(
            f"The Threads API answered without a valid '{exc}' field.",
            status=status,
            request_id=request_id,
        ) from None


def _without_none(**fields: Any) -> dict[str, Any]:
    return {name: value for name, value in fields.items() if value is not None}


def _thread_path(thread_id: str, suffix: str = "") -> str:
    """``/threads/<id><suffix>`` with the id as one opaque path segment."""
    if thread_id in ("", ".", ".."):
        raise InvalidRequestError(f"{thread_id!r} is not a thread id.", param="thread_id")
    return f"/threads/{quote(thread_id, safe='')}{suffix}"
