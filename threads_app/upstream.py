"""Client for the umamiai Threads API (OpenAI Assistants v2 compatible).

This is the only module that speaks HTTP to the upstream API. It turns every
answer into a frozen dataclass and every failure into an ``UpstreamError``
subclass whose text never carries the API key.
"""

import contextlib
import dataclasses
import email.utils
import functools
import logging
import threading
import time
from http.cookiejar import DefaultCookiePolicy
from urllib.parse import quote

import requests
from django.conf import settings
from requests.adapters import HTTPAdapter
from urllib3.exceptions import InvalidHeader, ReadTimeoutError
from urllib3.util.retry import Retry

logger = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.umamiai.xyz/v1"
DEFAULT_CONNECT_TIMEOUT = 5.0
DEFAULT_READ_TIMEOUT = 30.0

# Bulk deletes run about 8 threads at once; leave headroom over that.
POOL_MAXSIZE = 16
RETRY_STATUSES = frozenset({429, 502, 503, 504})
RETRY_METHODS = frozenset({"GET", "DELETE"})
MAX_RETRIES = 3
# Each Retry-After wait is capped, so a call sleeps at most 3 * 3 = 9 s in all
# (without Retry-After, the backoff sleeps 0, 0.5 and 1 s).
MAX_RETRY_AFTER = 3
BACKOFF_FACTOR = 0.25


class _BearerAuth(requests.auth.AuthBase):
    def __init__(self, api_key):
        self._api_key = api_key

    def __call__(self, request):
        if not self._api_key.isprintable() or any(c.isspace() for c in self._api_key):
            raise requests.exceptions.InvalidHeader("The API key cannot be sent in a header.")
        request.headers["Authorization"] = f"Bearer {self._api_key}"
        return request


# --- Errors -----------------------------------------------------------------


class UpstreamError(Exception):
    """A call to the Threads API failed.

    ``status`` is the HTTP status, or None when no HTTP answer arrived.
    ``message`` is the upstream's own message or a description of the failure.
    """

    def __init__(self, message, *, status=None, request_id=None, code=None, param=None):
        super().__init__(message)
        self.message = message
        self.status = status
        self.request_id = request_id
        self.code = code
        self.param = param

    def __str__(self):
        text = f"Threads API {self.status}: {self.message}" if self.status else self.message
        return f"{text} (request {self.request_id})" if self.request_id else text


class AuthenticationError(UpstreamError):
    """401 or 403: the key is invalid, revoked or not allowed to do this."""


class NotFoundError(UpstreamError):
    """404: no such thread for this key (never existed, expired, or another project's)."""


class RateLimitedError(UpstreamError):
    """429, after the retries GET and DELETE are allowed."""

    def __init__(self, message, *, retry_after=None, **kwargs):
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InvalidRequestError(UpstreamError):
    """400, 422 or another 4xx: the upstream rejected what we sent (see ``param``)."""


class UpstreamUnavailableError(UpstreamError):
    """5xx, timeout, refused connection, redirect, or an answer we cannot read."""


def _error_class(status):
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
    metadata: dict
    tool_resources: dict
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
    content: list
    attachments: list
    metadata: dict


@dataclasses.dataclass(frozen=True)
class MessagePage:
    messages: list
    first_id: str | None
    last_id: str | None
    has_more: bool
    request_id: str | None


class _Malformed(ValueError):
    """A 2xx body lacks a required field or has one of the wrong type."""


def _field(body, name, kind, default=dataclasses.MISSING):
    """``body[name]`` checked against ``kind``; a missing or null value gives ``default``."""
    value = body.get(name)
    if value is None and default is not dataclasses.MISSING:
        return default
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise _Malformed(name)
    return value


def _object(body):
    if not isinstance(body, dict):
        raise _Malformed("body")
    return body


def _parse_thread(body, request_id=None):
    """A Thread from a thread object; unknown fields are ignored, null dicts become {}."""
    body = _object(body)
    return Thread(
        id=_field(body, "id", str),
        created_at=_field(body, "created_at", int),
        metadata=_field(body, "metadata", dict, {}),
        tool_resources=_field(body, "tool_resources", dict, {}),
        request_id=request_id,
    )


def _text_of(part):
    """The text of a content part: ``{"type": "text", "text": {"value": ...}}``, else None."""
    if not isinstance(part, dict) or part.get("type") != "text":
        return None
    text = part.get("text")
    if isinstance(text, dict):
        text = text.get("value")
    return text if isinstance(text, str) else None


def _parse_message(body):
    body = _object(body)
    content = _field(body, "content", list, [])
    texts = (_text_of(part) for part in content)
    return Message(
        id=_field(body, "id", str),
        role=_field(body, "role", str),
        created_at=_field(body, "created_at", int),
        text="\n".join(text for text in texts if text is not None),
        content=content,
        attachments=_field(body, "attachments", list, []),
        metadata=_field(body, "metadata", dict, {}),
    )


def _parse_message_page(body, request_id=None):
    body = _object(body)
    return MessagePage(
        messages=[_parse_message(item) for item in _field(body, "data", list)],
        first_id=_field(body, "first_id", str, None),
        last_id=_field(body, "last_id", str, None),
        has_more=_field(body, "has_more", bool, False),
        request_id=request_id,
    )


# --- Transport --------------------------------------------------------------


class _Retry(Retry):
    """urllib3's Retry with two changes.

    urllib3 retries a failed connection whatever ``allowed_methods`` says, and
    a read timeout like a dropped connection: here a POST is never retried,
    and a read timeout is reported at once (the upstream has the request and
    is slow; asking again would only multiply the wait). An unreadable
    Retry-After falls back to the backoff instead of failing the call.
    """

    def increment(self, method=None, url=None, *args, error=None, **kwargs):
        if isinstance(error, ReadTimeoutError):
            raise error
        if method is not None and method.upper() not in self.allowed_methods:
            return Retry.increment(self.new(total=0), method, url, *args, error=error, **kwargs)
        return super().increment(method, url, *args, error=error, **kwargs)

    def parse_retry_after(self, retry_after):
        try:
            return super().parse_retry_after(retry_after)
        except InvalidHeader:
            return 0


_session = None
_session_lock = threading.Lock()


def _get_session():
    """The process-wide pooled session, shared by every key (so it keeps no cookies)."""
    global _session
    if _session is None:
        with _session_lock:
            if _session is None:
                session = requests.Session()
                session.trust_env = False  # read once per host instead: see _environment_settings
                session.cookies.set_policy(DefaultCookiePolicy(allowed_domains=[]))
                retry = _Retry(
                    total=MAX_RETRIES,
                    status_forcelist=RETRY_STATUSES,
                    allowed_methods=RETRY_METHODS,
                    backoff_factor=BACKOFF_FACTOR,
                    retry_after_max=MAX_RETRY_AFTER,
                    raise_on_status=False,  # the last 429/5xx answer becomes our error
                )
                adapter = HTTPAdapter(pool_maxsize=POOL_MAXSIZE, max_retries=retry)
                session.mount("https://", adapter)
                session.mount("http://", adapter)
                _session = session
    return _session


@functools.lru_cache(maxsize=16)
def _environment_settings(base_url):
    """Proxies and CA bundle from the environment for this API, as requests reads them.

    Read once per base URL: with `trust_env` on, requests re-reads the whole environment on
    every call, a cost that shows when a bulk delete runs hundreds of them.
    """
    with requests.Session() as probe:
        found = probe.merge_environment_settings(base_url, {}, None, None, None)
    return {"proxies": found["proxies"], "verify": found["verify"]}


def _retry_after_seconds(value):
    """Retry-After (seconds or an HTTP date) as seconds, or None if absent or unreadable."""
    if not value:
        return None
    if value.strip().isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _failure_message(exc, connect_timeout, read_timeout):
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
    """

    def __init__(self, api_key, base_url=None, connect_timeout=None, read_timeout=None):
        self._api_key = api_key
        if base_url is None:
            base_url = getattr(settings, "UMAMIAI_BASE_URL", DEFAULT_BASE_URL)
        if connect_timeout is None:
            connect_timeout = getattr(settings, "UMAMIAI_CONNECT_TIMEOUT", DEFAULT_CONNECT_TIMEOUT)
        if read_timeout is None:
            read_timeout = getattr(settings, "UMAMIAI_READ_TIMEOUT", DEFAULT_READ_TIMEOUT)
        self.base_url = base_url.rstrip("/")
        self.connect_timeout = float(connect_timeout)
        self.read_timeout = float(read_timeout)

    def __repr__(self):
        return f"<ThreadsClient {self.base_url}>"

    # -- threads

    def create_thread(self, messages=None, metadata=None, tool_resources=None):
        body = _without_none(messages=messages, metadata=metadata, tool_resources=tool_resources)
        data, request_id, status = self._request("POST", "/threads", json=body)
        with _reading(status, request_id):
            return _parse_thread(data, request_id)

    def retrieve_thread(self, thread_id):
        data, request_id, status = self._request("GET", _thread_path(thread_id))
        with _reading(status, request_id):
            return _parse_thread(data, request_id)

    def modify_thread(self, thread_id, metadata=None, tool_resources=None):
        body = _without_none(metadata=metadata, tool_resources=tool_resources)
        data, request_id, status = self._request("POST", _thread_path(thread_id), json=body)
        with _reading(status, request_id):
            return _parse_thread(data, request_id)

    def delete_thread(self, thread_id):
        """Delete a thread.

        Any 404 gives ``deleted=True, already_gone=True``: the thread no longer
        exists for this key, whether it expired, was deleted earlier, or was
        deleted by a first attempt whose answer was lost before a retry.
        """
        try:
            data, request_id, status = self._request("DELETE", _thread_path(thread_id))
        except NotFoundError as exc:
            return DeletionResult(thread_id, True, True, exc.request_id, exc.status)
        with _reading(status, request_id):
            deleted = _field(_object(data), "deleted", bool)
        return DeletionResult(thread_id, deleted, False, request_id, status)

    # -- messages

    def list_messages(self, thread_id, limit=20, order="desc", after=None, before=None):
        params = _without_none(limit=limit, order=order, after=after, before=before)
        path = _thread_path(thread_id, "/messages")
        data, request_id, status = self._request("GET", path, params=params)
        with _reading(status, request_id):
            return _parse_message_page(data, request_id)

    def create_message(self, thread_id, role, content, attachments=None, metadata=None):
        body = {"role": role, "content": content}
        body.update(_without_none(attachments=attachments, metadata=metadata))
        path = _thread_path(thread_id, "/messages")
        data, request_id, status = self._request("POST", path, json=body)
        with _reading(status, request_id):
            return _parse_message(data)

    # -- plumbing

    def _request(self, method, path, params=None, json=None):
        """Send one call; return (decoded JSON, request id, status) of a 2xx answer.

        Failures are raised outside the ``except`` blocks so that no requests
        exception (which holds the prepared request and its headers) is chained.
        """
        started = time.monotonic()
        response = None
        try:
            response = _get_session().request(
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
        elapsed_ms = (time.monotonic() - started) * 1000
        if response is None:
            logger.info("%s %s -> %s in %.0f ms", method, path, failure, elapsed_ms)
            raise UpstreamUnavailableError(message)

        status = response.status_code
        request_id = response.headers.get("x-request-id")
        logger.info(
            "%s %s -> %s (request %s) in %.0f ms", method, path, status, request_id, elapsed_ms
        )
        try:
            data = response.json()
        except ValueError:
            data = None
        if 200 <= status < 300:
            if data is None:
                raise UpstreamUnavailableError(
                    "The Threads API answered with a body that is not JSON.",
                    status=status,
                    request_id=request_id,
                )
            return data, request_id, status
        raise self._error(response, data, request_id)

    def _error(self, response, data, request_id):
        status = response.status_code
        if 300 <= status < 400:
            return UpstreamUnavailableError(
                "The Threads API answered with a redirect, which is not followed.",
                status=status,
                request_id=request_id,
            )
        error = data.get("error") if isinstance(data, dict) else None
        if not isinstance(error, dict):
            error = {}
        message, code, param = (
            self._scrub(error.get(name)) for name in ("message", "code", "param")
        )
        kwargs = {"status": status, "request_id": request_id, "code": code, "param": param}
        if status == 429:
            kwargs["retry_after"] = _retry_after_seconds(response.headers.get("Retry-After"))
        if not message:
            reason = f" {response.reason}" if response.reason else ""
            message = f"The Threads API answered HTTP {status}{reason}."
        return _error_class(status)(message, **kwargs)

    def _scrub(self, value):
        """An upstream error field as text, with the key cut out should the upstream echo it."""
        if value is None:
            return None
        return str(value).replace(self._api_key, "[redacted]") if self._api_key else str(value)


@contextlib.contextmanager
def _reading(status, request_id):
    """Report a 2xx body that lacks a required field as the upstream being unusable."""
    try:
        yield
    except _Malformed as exc:
        raise UpstreamUnavailableError(
            f"The Threads API answered without a valid '{exc}' field.",
            status=status,
            request_id=request_id,
        ) from None


def _without_none(**fields):
    return {name: value for name, value in fields.items() if value is not None}


def _thread_path(thread_id, suffix=""):
    """``/threads/<id><suffix>`` with the id as one opaque path segment."""
    if thread_id in ("", ".", ".."):
        raise InvalidRequestError(f"{thread_id!r} is not a thread id.", param="thread_id")
    return f"/threads/{quote(thread_id, safe='')}{suffix}"
