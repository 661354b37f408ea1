"""The HTTP server and the `Emulator` that controls it (keys, latency, faults, request log)."""

import json
import secrets
import sys
import threading
from collections import namedtuple
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, unquote

from emulator import validation
from emulator.faults import Fault
from emulator.limits import RateLimit, RateLimiter
from emulator.protocol import ApiError, Response, error_payload, invalid, json_response
from emulator.store import Store

API_PREFIX = "/v1/"
CONTROL_PREFIX = "/__emulator__/"
BETA = "assistants=v2"

_Call = namedtuple("_Call", "owner ids body query")

# (route, method) -> what it does; a route's allowed methods also come from here.
_ENDPOINTS = {
    ("threads", "POST"): lambda s, c: s.create_thread(c.owner, validation.thread_create(c.body)),
    ("thread", "GET"): lambda s, c: s.get_thread(c.owner, *c.ids),
    ("thread", "POST"): lambda s, c: s.modify_thread(
        c.owner, *c.ids, validation.thread_modify(c.body)
    ),
    ("thread", "DELETE"): lambda s, c: s.delete_thread(c.owner, *c.ids),
    ("messages", "GET"): lambda s, c: s.list_messages(
        c.owner, *c.ids, **validation.list_query(c.query)
    ),
    ("messages", "POST"): lambda s, c: s.create_message(
        c.owner, *c.ids, validation.message(c.body)
    ),
    ("message", "GET"): lambda s, c: s.get_message(c.owner, *c.ids),
    ("message", "POST"): lambda s, c: s.modify_message(
        c.owner, *c.ids, validation.message_modify(c.body)
    ),
    ("message", "DELETE"): lambda s, c: s.delete_message(c.owner, *c.ids),
}


def _route(path: str) -> tuple[str | None, tuple[str, ...]]:
    """The route name and its path ids for a `/v1/...` path; (None, ()) when unknown."""
    segments = [unquote(segment) for segment in path[len(API_PREFIX) :].split("/")]
    match segments:
        case ["threads"]:
            return "threads", ()
        case ["threads", thread_id] if thread_id:
            return "thread", (thread_id,)
        case ["threads", thread_id, "messages"] if thread_id:
            return "messages", (thread_id,)
        case ["threads", thread_id, "messages", message_id] if thread_id and message_id:
            return "message", (thread_id, message_id)
    return None, ()


def _endpoint(method: str, path: str, route: str | None):
    if route is None:
        raise ApiError(404, f"Invalid URL ({method} {path})", code="unknown_url")
    endpoint = _ENDPOINTS.get((route, method))
    if endpoint is None:
        allowed = ", ".join(m for r, m in _ENDPOINTS if r == route)
        raise ApiError(
            405, f"Invalid method for URL ({method} {path})", headers=(("Allow", allowed),)
        )
    return endpoint


def _require_beta(headers) -> None:
    if BETA not in [part.strip() for part in headers.get("OpenAI-Beta", "").split(",")]:
        raise invalid(
            "You must provide the 'OpenAI-Beta' header to access the Assistants API. "
            "Please try again by setting the header 'OpenAI-Beta: assistants=v2'.",
            code="invalid_beta",
        )


def _bearer_token(headers: Message) -> str:
    """The key of `Authorization: Bearer <key>`; "" when there is none."""
    scheme, _, key = headers.get("Authorization", "").partition(" ")
    return key.strip() if scheme.lower() == "bearer" else ""


def _masked(key: str) -> str:
    """How OpenAI echoes a wrong key: never the whole of it."""
    return f"{key[:3]}{'*' * (len(key) - 7)}{key[-4:]}" if len(key) > 10 else "*" * len(key)


def _json_body(body: bytes, *, optional: bool):
    """The parsed body; an empty one counts as `{}` only where the body is optional."""
    if optional and not body.strip():
        return {}
    try:
        return json.loads(body)
    except ValueError:
        raise invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you "
            "aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, "
            "but what was sent was not valid JSON.)"
        ) from None


class Emulator:
    """An in-process Threads API, on 127.0.0.1 unless `host` says otherwise, served by a
    daemon thread.

    Use as a context manager, or call `start()` and `close()`. `max_in_flight` and `rate` turn
    on the rate-limit mode (per key; see emulator/limits.py); off by default.
    """

    def __init__(
        self,
        keys,
        latency: float = 0.0,
        port: int = 0,
        *,
        host: str = "127.0.0.1",
        max_in_flight: int | None = None,
        rate: float | None = None,
    ):
        if isinstance(keys, str):
            raise TypeError("keys is a list of API keys, not one string")
        self._initial_keys = frozenset(keys)
        if not self._initial_keys:
            raise ValueError("at least one API key is needed")
        self._initial_latency = latency
        self._initial_rate_limit = RateLimit(max_in_flight, rate)
        self._host = host
        self._requested_port = port
        self._store = Store()
        self._lock = threading.Lock()
        self._keys = set(self._initial_keys)
        self._latency = latency
        self._faults: list[Fault] = []
        self._log: list[tuple[str, str]] = []
        self._answers: list[tuple[str, str, int | None]] = []
        self._limiter = RateLimiter(self._initial_rate_limit)
        self._rate_limited = 0  # 429 answers sent (by the rate-limit mode or a fault)
        # What latency and hang faults wait on; see _wake_sleepers().
        self._wake = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._serving: threading.Thread | None = None

    # lifecycle

    def start(self) -> "Emulator":
        if self._server is None:
            self._server = _Server((self._host, self._requested_port), _Handler)
            self._server.emulator = self
            self._serving = threading.Thread(
                target=self._server.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"threads-emulator:{self.port}",
                daemon=True,
            )
            self._serving.start()
        return self

    def close(self) -> None:
        if self._server is None:
            return
        self._wake_sleepers()
        self._server.shutdown()
        self._server.server_close()
        self._serving.join()
        self._server = self._serving = None

    def __enter__(self) -> "Emulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.close()

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the emulator is not started")
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        return f"http://{self._host}:{self.port}/v1"

    # controls

    def add_key(self, key: str) -> None:
        with self._lock:
            self._keys.add(key)

    def set_latency(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError("latency cannot be negative")
        with self._lock:
            self._latency = seconds

    def add_fault(
        self,
        method="*",
        path="*",
        kind="status",
        status=None,
        times=1,
        retry_after=None,
        body=None,
        seconds=30.0,
    ) -> None:
        """Make the next `times` requests matching `method` and `path` (fnmatch) misbehave.

        Faults are tried in the order they were added; the first match applies.
        """
        fault = Fault(method, path, kind, status, times, retry_after, body, seconds)
        with self._lock:
            self._faults.append(fault)

    def clear_faults(self) -> None:
        with self._lock:
            self._faults.clear()

    def set_rate_limit(
        self, *, max_in_flight: int | None = None, rate: float | None = None
    ) -> None:
        """Rate-limit mode: per key, at most `max_in_flight` requests at once and `rate` a
        second (a token bucket of max(1, rate)), else 429 with Retry-After. None: no such limit.

        Replaces the previous setting; every key's bucket starts full.
        """
        self._limiter.configure(RateLimit(max_in_flight, rate))

    def clear_rate_limit(self) -> None:
        """Rate-limit mode off."""
        self._limiter.configure(RateLimit())

    @property
    def rate_limit(self) -> RateLimit:
        return self._limiter.limit

    def reset(self) -> None:
        """Back to the constructor's state: no threads, faults, log or 429 count; its keys,
        latency and rate limit (with full buckets)."""
        self._store.clear()
        with self._lock:
            self._faults.clear()
            self._log.clear()
            self._answers.clear()
            self._rate_limited = 0
            self._keys = set(self._initial_keys)
            self._latency = self._initial_latency
        self._limiter.configure(self._initial_rate_limit)
        self._wake_sleepers()

    def _wake_sleepers(self) -> None:
        """End every latency or hang wait now; those requests are dropped unanswered."""
        with self._lock:
            self._wake.set()
            self._wake = threading.Event()

    @property
    def request_log(self) -> list[tuple[str, str]]:
        """(method, path with query) of every API request so far, in arrival order (those
        answered 429 or hit by a fault included)."""
        with self._lock:
            return list(self._log)

    @property
    def answer_log(self) -> list[tuple[str, str, int | None]]:
        """(method, path with query, status) of every API request answered so far, in the
        order of the answers (None: dropped without an answer)."""
        with self._lock:
            return list(self._answers)

    @property
    def rate_limited_count(self) -> int:
        """How many 429 answers were sent since the start or the last reset: by the
        rate-limit mode, and by status faults."""
        with self._lock:
            return self._rate_limited

    def stats(self) -> dict[str, int]:
        """What `GET /__emulator__/stats` answers: API requests and 429s so far."""
        with self._lock:
            return {"requests": len(self._log), "rate_limited": self._rate_limited}

    def seed_thread(self, key, metadata=None, messages=None, tool_resources=None) -> dict:
        """Create a thread owned by `key` straight in the store; ValueError on invalid input."""
        request = {
            "metadata": metadata,
            "messages": messages or [],
            "tool_resources": tool_resources,
        }
        try:
            spec = validation.thread_create(request)
        except ApiError as error:
            raise ValueError(error.message) from None
        return self._store.create_thread(key, spec)

    def remove_thread(self, thread_id: str) -> bool:
        """Make a thread vanish upstream (as on expiry); False if there was none."""
        return self._store.remove_thread(thread_id)

    # request handling (called by _Handler threads)

    def _take_fault(self, method: str, path: str, *, thread_delete: bool) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path, thread_delete=thread_delete):
                    if fault.use():
                        self._faults.remove(fault)
                    return fault
        return None

    def _handle(self, method: str, target: str, headers: Message, body: bytes) -> Response | None:
        """Answer one request; None means: close the connection without answering."""
        path = target.partition("?")[0]
        if path.startswith(CONTROL_PREFIX):
            return self._control(method, path, body)
        with self._lock:
            self._log.append((method, target))
        key = _bearer_token(headers)
        refusal = self._limiter.admit(key)
        if refusal is None:
            try:
                response = self._answer(method, target, headers, body)
            finally:
                self._limiter.release(key)
        else:
            response = refusal.response()
        with self._lock:
            self._answers.append((method, target, None if response is None else response.status))
            if response is not None and response.status == 429:
                self._rate_limited += 1
        return response

    def _answer(self, method: str, target: str, headers: Message, body: bytes) -> Response | None:
        """`_handle` past the rate-limit mode: latency, faults, then the API itself."""
        path, _, query = target.partition("?")
        with self._lock:
            latency, wake = self._latency, self._wake
        if latency and wake.wait(latency):
            return None
        route, ids = _route(path) if path.startswith(API_PREFIX) else (None, ())
        fault = self._take_fault(
            method, path, thread_delete=(route, method) == ("thread", "DELETE")
        )
        kind = fault.kind if fault else None
        if kind == "drop" or (kind == "hang" and wake.wait(fault.seconds)):
            return None
        if kind in ("status", "malformed", "html"):
            return fault.response()
        try:
            owner = self._authenticate(headers)
            endpoint = _endpoint(method, path, route)
            _require_beta(headers)
            if kind == "not_deleted":
                self._store.get_thread(owner, *ids)
                return json_response(
                    200, {"id": ids[0], "object": "thread.deleted", "deleted": False}
                )
            # Only thread creation may come without a body (OpenAPI `requestBody.required`).
            payload = _json_body(body, optional=route == "threads") if method == "POST" else {}
            call = _Call(owner, ids, payload, parse_qs(query, keep_blank_values=True))
            return json_response(200, endpoint(self._store, call))
        except ApiError as error:
            return error.response()

    def _authenticate(self, headers) -> str:
        key = _bearer_token(headers)
        if not key:
            message = (
                "You didn't provide an API key. You need to provide your API key in an "
                "Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
        else:
            with self._lock:
                if key in self._keys:
                    return key
            message = f"Incorrect API key provided: {_masked(key)}."
        raise ApiError(401, message, code="invalid_api_key")

    def _control(self, method: str, path: str, body: bytes) -> Response:
        """The loopback-only controls: same operations as the Python API, no auth."""
        try:
            arguments = _json_body(body, optional=True)
            if not isinstance(arguments, dict):
                raise ValueError("the body must be a JSON object")
            match method, path.removeprefix(CONTROL_PREFIX):
                case "POST", "faults":
                    self.add_fault(**arguments)
                case "DELETE", "faults":
                    self.clear_faults()
                case "POST", "latency":
                    self.set_latency(float(arguments["seconds"]))
                case "POST", "reset":
                    self.reset()
                case "POST", "rate_limit":
                    self.set_rate_limit(**arguments)
                case "DELETE", "rate_limit":
                    self.clear_rate_limit()
                case "GET", "stats":
                    return json_response(200, self.stats())
                case _:
                    return json_response(
                        404, error_payload(f"No control {method} {path}.", type="not_found")
                    )
        except (ApiError, TypeError, ValueError, KeyError) as error:
            return json_response(400, error_payload(str(error), type="invalid_request_error"))
        return json_response(200, {"ok": True})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 128  # bursts of concurrent clients (benchmarks) are not refused

    def handle_error(self, request, client_address):
        # A client that hung up (its timeout during a hang fault, say) is expected: stay quiet.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, as pooled clients expect
    # Headers and body go out in two writes: without this, Nagle's algorithm and delayed ACKs
    # add ~40 ms to every answer on a kept-alive connection.
    disable_nagle_algorithm = True

    def version_string(self):
        return "threads-emulator"

    def log_message(self, format, *args):
        """Quiet: no line per request on stderr."""

    def _dispatch(self):
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length > 0 else b""
        response = self.server.emulator._handle(self.command, self.path, self.headers, body)
        if response is None:
            self.close_connection = True
            return
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(response.body)))
        self.send_header("x-request-id", f"req_{secrets.token_hex(16)}")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def __getattr__(self, name):
        # Every HTTP method reaches the router, which answers 405 where a path does not take it.
        if name.startswith("do_"):
            return self._dispatch
        raise AttributeError(name)
