"""threads_app.upstream against the emulator, over real HTTP."""

import contextlib
import functools
import logging
import socket
import time
import traceback
import types
from concurrent.futures import ThreadPoolExecutor

import pytest
import urllib3.util.retry
from hypothesis import given
from hypothesis import strategies as st

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from threads_app import upstream
from threads_app.upstream import (
    AuthenticationError,
    DeletionResult,
    InvalidRequestError,
    Message,
    MessagePage,
    MisconfiguredUpstreamError,
    NotFoundError,
    RateLimitedError,
    Thread,
    ThreadsClient,
    UnreadableAnswerError,
    UpstreamError,
    UpstreamUnavailableError,
)

THREAD_PATH = "/v1/threads/*"


@pytest.fixture
def client(emulator):
    return ThreadsClient(TEST_KEY, base_url=emulator.base_url, connect_timeout=2, read_timeout=5)


@pytest.fixture
def retry_sleeps(monkeypatch):
    """The sleeps urllib3's Retry asks for, recorded instead of slept."""
    sleeps = []
    fake_time = types.SimpleNamespace(sleep=sleeps.append, time=time.time)
    monkeypatch.setattr(urllib3.util.retry, "time", fake_time)
    return sleeps


def requests_for(emulator, method):
    return [path for logged_method, path in emulator.request_log if logged_method == method]


def closed_port_url():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def chain_text(exc):
    """Everything an error reporter could print about ``exc`` and the exceptions behind it."""
    parts = ["".join(traceback.format_exception(exc))]
    while exc is not None:
        parts += [str(exc), repr(exc), repr(exc.args)]
        exc = exc.__cause__ or exc.__context__
    return "\n".join(parts)


# --- Successful calls -------------------------------------------------------------------------


def test_thread_lifecycle(client):
    created = client.create_thread(
        messages=[{"role": "user", "content": "Hello"}], metadata={"project": "apollo"}
    )
    assert isinstance(created, Thread)
    assert created.id.startswith("thread_")
    assert created.metadata == {"project": "apollo"}
    assert created.tool_resources == {}
    assert created.request_id

    assert client.retrieve_thread(created.id).metadata == {"project": "apollo"}
    modified = client.modify_thread(created.id, metadata={"project": "gemini"})
    assert (modified.id, modified.metadata) == (created.id, {"project": "gemini"})

    result = client.delete_thread(created.id)
    assert result == DeletionResult(created.id, True, False, result.request_id, 200)
    assert result.request_id
    with pytest.raises(NotFoundError):
        client.retrieve_thread(created.id)


def test_create_thread_with_no_arguments(client):
    thread = client.create_thread()
    assert thread.metadata == {}
    assert isinstance(thread.created_at, int)


def test_tool_resources_round_trip(client):
    resources = {"code_interpreter": {"file_ids": ["file_1", "file_2"]}}
    thread = client.create_thread(tool_resources=resources)
    assert client.retrieve_thread(thread.id).tool_resources["code_interpreter"] == {
        "file_ids": ["file_1", "file_2"]
    }


def test_messages(client):
    thread = client.create_thread(messages=[{"role": "user", "content": "first"}])
    message = client.create_message(
        thread.id,
        "assistant",
        [{"type": "text", "text": "second"}, {"type": "text", "text": "line"}],
        metadata={"n": "2"},
    )
    assert isinstance(message, Message)
    assert (message.role, message.text, message.metadata) == (
        "assistant",
        "second\nline",
        {"n": "2"},
    )

    page = client.list_messages(thread.id, limit=1, order="asc")
    assert isinstance(page, MessagePage)
    assert [m.text for m in page.messages] == ["first"]
    assert page.has_more and page.first_id == page.last_id == page.messages[0].id
    assert page.request_id

    rest = client.list_messages(thread.id, order="asc", after=page.last_id)
    assert [m.id for m in rest.messages] == [message.id]
    assert not rest.has_more

    newest_first = client.list_messages(thread.id)
    assert [m.text for m in newest_first.messages] == ["second\nline", "first"]


def test_empty_message_list(client):
    page = client.list_messages(client.create_thread().id)
    assert page == MessagePage([], None, None, False, page.request_id)


def test_seeded_thread_is_visible(client, emulator):
    seeded = emulator.seed_thread(TEST_KEY, metadata={"source": "seed"})
    assert client.retrieve_thread(seeded["id"]).metadata == {"source": "seed"}


def test_settings_provide_the_defaults(emulator, settings):
    settings.UMAMIAI_BASE_URL = emulator.base_url + "/"
    settings.UMAMIAI_CONNECT_TIMEOUT = 1.5
    settings.UMAMIAI_READ_TIMEOUT = 7
    client = ThreadsClient(TEST_KEY)
    assert (client.base_url, client.connect_timeout, client.read_timeout) == (
        emulator.base_url,
        1.5,
        7.0,
    )
    assert client.create_thread().id


def test_clients_share_one_pooled_session(emulator, caplog):
    assert upstream._get_session() is upstream._get_session()
    emulator.set_latency(0.05)
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    client = ThreadsClient(TEST_KEY, base_url=emulator.base_url)
    with caplog.at_level(logging.WARNING, logger="urllib3"), ThreadPoolExecutor(16) as pool:
        threads = list(pool.map(lambda _: client.retrieve_thread(thread_id), range(32)))
    assert {thread.id for thread in threads} == {thread_id}
    assert not [r for r in caplog.records if "pool is full" in r.getMessage()]


def test_one_log_line_per_call(client, caplog):
    with caplog.at_level(logging.INFO, logger="threads_app.upstream"):
        thread = client.create_thread()
        with pytest.raises(NotFoundError) as not_found:
            client.retrieve_thread("thread_missing")
    first, second = (r.getMessage() for r in caplog.records if r.name == "threads_app.upstream")
    assert first.startswith("POST /threads -> 200 (request ") and thread.request_id in first
    assert second.startswith("GET /threads/thread_missing -> 404 (request ")
    assert not_found.value.request_id in second
    assert second.endswith(" ms")


# --- Errors -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_class"),
    [
        (401, AuthenticationError),
        (403, AuthenticationError),
        (404, NotFoundError),
        (400, InvalidRequestError),
        (409, InvalidRequestError),
        (422, InvalidRequestError),
        (500, UpstreamUnavailableError),
    ],
)
def test_status_maps_to_error_class(client, emulator, status, error_class):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="POST", path=THREAD_PATH, kind="status", status=status)
    with pytest.raises(error_class) as caught:
        client.modify_thread(thread_id, metadata={"a": "b"})
    error = caught.value
    assert (error.status, type(error)) == (status, error_class)
    assert error.message and error.request_id
    assert str(error) == f"Threads API {status}: {error.message} (request {error.request_id})"


def test_not_found_message_comes_from_upstream(client):
    with pytest.raises(NotFoundError) as caught:
        client.retrieve_thread("thread_nope")
    assert str(caught.value).startswith("Threads API 404: No thread found with id 'thread_nope'.")
    assert str(caught.value).endswith(f"(request {caught.value.request_id})")


def test_unknown_key_is_an_authentication_error(emulator):
    client = ThreadsClient("sk-test-unknown-0000", base_url=emulator.base_url)
    with pytest.raises(AuthenticationError) as caught:
        client.create_thread()
    assert caught.value.status == 401
    assert "sk-test-unknown-0000" not in chain_text(caught.value)


def test_another_keys_thread_is_not_found(client, emulator):
    other = emulator.seed_thread(OTHER_TEST_KEY)
    with pytest.raises(NotFoundError):
        client.retrieve_thread(other["id"])
    assert client.delete_thread(other["id"]).already_gone
    other_client = ThreadsClient(OTHER_TEST_KEY, base_url=emulator.base_url)
    assert other_client.retrieve_thread(other["id"]).id == other["id"]


def test_invalid_request_names_the_param(client):
    too_many = {f"key{i}": "value" for i in range(17)}
    with pytest.raises(InvalidRequestError) as caught:
        client.create_thread(metadata=too_many)
    assert (caught.value.status, caught.value.param) == (400, "metadata")


def test_rate_limited_after_retries_carries_retry_after(client, emulator, retry_sleeps):
    emulator.add_fault(method="GET", path=THREAD_PATH, status=429, retry_after=120, times=None)
    started = time.monotonic()
    with pytest.raises(RateLimitedError) as caught:
        client.retrieve_thread("thread_abc")
    assert time.monotonic() - started < 12
    assert (caught.value.status, caught.value.retry_after) == (429, 120.0)
    assert caught.value.code == "rate_limit_exceeded"
    # Three retries, each Retry-After sleep capped at 3 s: at most 9 s in all.
    assert retry_sleeps == [3, 3, 3]
    assert len(requests_for(emulator, "GET")) == 4


def test_get_honours_retry_after_then_succeeds(client, emulator):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="GET", path=THREAD_PATH, status=429, retry_after=1, times=1)
    started = time.monotonic()
    assert client.retrieve_thread(thread_id).id == thread_id
    assert 1 <= time.monotonic() - started < 3
    assert len(requests_for(emulator, "GET")) == 2


def test_get_retried_on_503_then_succeeds(client, emulator, retry_sleeps):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="GET", path=THREAD_PATH, status=503, times=2)
    assert client.retrieve_thread(thread_id).id == thread_id
    assert len(requests_for(emulator, "GET")) == 3
    assert retry_sleeps == [0.5]  # exponential backoff: 0 s, then 0.5 s


def test_a_persistent_503_says_how_often_it_was_tried(client, emulator, retry_sleeps):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="GET", path=THREAD_PATH, status=503, times=None)

    with pytest.raises(upstream.UpstreamUnavailableError) as caught:
        client.retrieve_thread(thread_id)

    assert len(requests_for(emulator, "GET")) == 4
    assert caught.value.retries == 3
    assert caught.value.headline == "Threads API unavailable (503), retried 3 times."


def test_a_post_is_never_retried_and_its_headline_says_no_retry(client, emulator):
    emulator.add_fault(method="POST", path="/v1/threads", status=503, times=None)

    with pytest.raises(upstream.UpstreamUnavailableError) as caught:
        client.create_thread()

    assert caught.value.retries == 0
    assert caught.value.headline == "Threads API unavailable (503)."


def test_unreadable_retry_after_falls_back_to_backoff(client, emulator, retry_sleeps):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="GET", path=THREAD_PATH, status=503, retry_after="soon", times=1)
    assert client.retrieve_thread(thread_id).id == thread_id
    assert len(requests_for(emulator, "GET")) == 2


def test_retry_after_is_capped_by_the_retry_policy():
    retry = upstream._get_session().get_adapter("https://example.test/").max_retries
    answer = urllib3.HTTPResponse(status=429, headers={"Retry-After": "120"})
    assert retry.get_retry_after(answer) == upstream.MAX_RETRY_AFTER == 3
    assert retry.total == upstream.MAX_RETRIES == 3


# --- A caller with its own limiter: retry_rate_limited=False ---------------------------------


@pytest.fixture
def own_limiter_client(emulator):
    return ThreadsClient(
        TEST_KEY,
        base_url=emulator.base_url,
        connect_timeout=2,
        read_timeout=5,
        retry_rate_limited=False,
    )


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_without_retries_of_429_each_one_surfaces(
    own_limiter_client, emulator, retry_sleeps, method
):
    thread_ids = [emulator.seed_thread(TEST_KEY)["id"] for _ in range(2)]
    call = {"GET": own_limiter_client.retrieve_thread, "DELETE": own_limiter_client.delete_thread}
    emulator.set_rate_limit(rate=1)
    call[method](thread_ids[0])
    with pytest.raises(RateLimitedError) as caught:
        call[method](thread_ids[1])
    error = caught.value
    assert (error.status, error.retry_after, error.code) == (429, 1.0, "rate_limit_exceeded")
    assert error.request_id
    assert retry_sleeps == []
    assert len(requests_for(emulator, method)) == 2  # one call each, no retry here
    assert emulator.rate_limited_count == 1


def test_the_default_client_still_retries_429(client, emulator, retry_sleeps):
    thread_ids = [emulator.seed_thread(TEST_KEY)["id"] for _ in range(2)]
    emulator.set_rate_limit(rate=1)
    client.delete_thread(thread_ids[0])
    # The sleeps are recorded, not slept, so the bucket stays empty through the retries.
    with pytest.raises(RateLimitedError) as caught:
        client.delete_thread(thread_ids[1])
    assert caught.value.retry_after == 1.0
    assert retry_sleeps == [1, 1, 1]
    assert len(requests_for(emulator, "DELETE")) == 5


def test_a_surfaced_429_can_be_sent_again_after_its_retry_after(own_limiter_client, emulator):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.set_rate_limit(rate=1)
    own_limiter_client.retrieve_thread(thread_id)
    with pytest.raises(RateLimitedError) as caught:
        own_limiter_client.delete_thread(thread_id)
    time.sleep(caught.value.retry_after)
    assert own_limiter_client.delete_thread(thread_id).deleted


def test_without_retries_of_429_an_injected_retry_after_is_not_waited_for(
    own_limiter_client, emulator, retry_sleeps
):
    # urllib3 retries a 429 that carries Retry-After whatever its status list says.
    emulator.add_fault(method="GET", path=THREAD_PATH, status=429, retry_after=120, times=None)
    with pytest.raises(RateLimitedError) as caught:
        own_limiter_client.retrieve_thread("thread_abc")
    assert caught.value.retry_after == 120.0
    assert retry_sleeps == []
    assert len(requests_for(emulator, "GET")) == 1


def test_without_retries_of_429_other_retries_are_unchanged(
    own_limiter_client, emulator, retry_sleeps
):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="GET", path=THREAD_PATH, status=503, retry_after=1, times=2)
    assert own_limiter_client.retrieve_thread(thread_id).id == thread_id
    assert retry_sleeps == [1, 1]
    emulator.add_fault(method="DELETE", path=THREAD_PATH, kind="html", times=None)
    with pytest.raises(UpstreamUnavailableError):
        own_limiter_client.delete_thread(thread_id)
    assert len(requests_for(emulator, "DELETE")) == 4


def test_each_retry_policy_has_its_own_shared_session():
    retrying, not_429 = upstream._get_session(True), upstream._get_session(False)
    assert retrying is upstream._get_session() and not_429 is upstream._get_session(False)
    assert retrying is not not_429
    policy = not_429.get_adapter("https://example.test/").max_retries
    assert not policy.is_retry("GET", 429, has_retry_after=True)
    assert policy.is_retry("GET", 503, has_retry_after=True)
    assert policy.is_retry("DELETE", 502)
    assert not policy.is_retry("POST", 503)
    assert (policy.total, policy.backoff_factor) == (upstream.MAX_RETRIES, upstream.BACKOFF_FACTOR)


def test_delete_retried_on_503_then_404_is_already_gone(client, emulator, retry_sleeps):
    emulator.add_fault(method="DELETE", path=THREAD_PATH, status=503, times=1)
    result = client.delete_thread("thread_vanished")
    assert result == DeletionResult("thread_vanished", True, True, result.request_id, 404)
    assert result.request_id
    assert len(requests_for(emulator, "DELETE")) == 2


def test_delete_of_a_missing_thread_is_already_gone(client):
    result = client.delete_thread("thread_never_was")
    assert (result.deleted, result.already_gone, result.status) == (True, True, 404)


def test_delete_answered_deleted_false(client, emulator):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="DELETE", path=THREAD_PATH, kind="not_deleted")
    result = client.delete_thread(thread_id)
    assert (result.id, result.deleted, result.already_gone, result.status) == (
        thread_id,
        False,
        False,
        200,
    )
    assert client.retrieve_thread(thread_id).id == thread_id


@pytest.mark.parametrize("status", [503, 429])
def test_post_is_never_retried(client, emulator, status):
    emulator.add_fault(method="POST", path="/v1/threads", status=status, retry_after=1, times=None)
    with pytest.raises(UpstreamError) as caught:
        client.create_thread()
    assert caught.value.status == status
    assert len(requests_for(emulator, "POST")) == 1


def test_exhausted_retries_on_html_502(client, emulator, retry_sleeps):
    emulator.add_fault(method="GET", path=THREAD_PATH, kind="html", times=None)
    with pytest.raises(UpstreamUnavailableError) as caught:
        client.retrieve_thread("thread_abc")
    error = caught.value
    assert (error.status, error.code) == (502, None)
    assert error.message == "The Threads API answered HTTP 502 Bad Gateway."
    assert len(requests_for(emulator, "GET")) == 4
    assert retry_sleeps == [0.5, 1.0]


def test_read_timeout_is_not_retried(emulator):
    client = ThreadsClient(TEST_KEY, base_url=emulator.base_url, read_timeout=0.3)
    emulator.add_fault(method="GET", path=THREAD_PATH, kind="hang", seconds=2, times=None)
    started = time.monotonic()
    with pytest.raises(UpstreamUnavailableError) as caught:
        client.retrieve_thread("thread_abc")
    assert time.monotonic() - started < 1.5
    assert caught.value.status is None
    assert str(caught.value) == "The Threads API did not answer within 0.3 s."
    assert len(requests_for(emulator, "GET")) == 1


def test_refused_connection(retry_sleeps):
    client = ThreadsClient(TEST_KEY, base_url=closed_port_url(), connect_timeout=1)
    with pytest.raises(UpstreamUnavailableError) as caught:
        client.retrieve_thread("thread_abc")
    assert caught.value.status is None and caught.value.request_id is None
    assert "Could not reach the Threads API" in str(caught.value)
    assert retry_sleeps == [0.5, 1.0]  # GET retried three times

    retry_sleeps.clear()
    with pytest.raises(UpstreamUnavailableError):
        client.create_thread()
    assert retry_sleeps == []  # POST not retried


def test_dropped_connection_is_retried_for_get(client, emulator):
    thread_id = emulator.seed_thread(TEST_KEY)["id"]
    emulator.add_fault(method="GET", path=THREAD_PATH, kind="drop", times=1)
    assert client.retrieve_thread(thread_id).id == thread_id
    assert len(requests_for(emulator, "GET")) == 2


def test_dropped_connection_on_post(client, emulator):
    emulator.add_fault(method="POST", path="/v1/threads", kind="drop", times=None)
    with pytest.raises(UpstreamUnavailableError) as caught:
        client.create_thread()
    assert caught.value.status is None
    assert len(requests_for(emulator, "POST")) == 1


def test_malformed_json(client, emulator):
    emulator.add_fault(method="POST", path="/v1/threads", kind="malformed")
    with pytest.raises(UpstreamUnavailableError) as caught:
        client.create_thread()
    assert caught.value.status == 200
    assert "not JSON" in caught.value.message


def test_answer_without_id(client, emulator):
    emulator.add_fault(
        method="POST", path="/v1/threads", status=200, body={"object": "thread", "created_at": 1}
    )
    with pytest.raises(UpstreamUnavailableError) as caught:
        client.create_thread()
    assert caught.value.status == 200
    assert caught.value.message == "The Threads API answered without a valid 'id' field."


def test_delete_answer_without_deleted_flag(client, emulator):
    emulator.add_fault(method="DELETE", path=THREAD_PATH, status=200, body={"id": "thread_abc"})
    with pytest.raises(UpstreamUnavailableError):
        client.delete_thread("thread_abc")


def test_answer_with_a_created_at_no_date_can_hold(client, emulator):
    body = {"id": "thread_abc", "object": "thread", "created_at": 10**18}
    emulator.add_fault(method="GET", path=THREAD_PATH, status=200, body=body)
    with pytest.raises(UnreadableAnswerError) as caught:
        client.retrieve_thread("thread_abc")
    assert (caught.value.status, caught.value.request_id) == (200, caught.value.request_id)
    assert caught.value.request_id
    assert caught.value.message == "The Threads API answered without a valid 'created_at' field."


def test_message_with_a_created_at_no_date_can_hold(client, emulator):
    message = {"id": "msg_1", "role": "user", "created_at": 10**18, "content": []}
    body = {"object": "list", "data": [message], "has_more": False}
    emulator.add_fault(method="GET", path="/v1/threads/*/messages", status=200, body=body)
    with pytest.raises(UnreadableAnswerError) as caught:
        client.list_messages("thread_abc")
    assert caught.value.request_id
    assert "'created_at'" in caught.value.message


# --- A 404 is "no such thread" only in the API's own words ------------------------------------

NOT_THE_API = [
    pytest.param({"kind": "html", "status": 404}, id="html-page"),
    pytest.param({"status": 404, "body": {"detail": "Not Found"}}, id="json-without-error"),
    pytest.param({"status": 404, "body": {"error": "Not Found"}}, id="error-not-an-object"),
    pytest.param({"status": 404, "body": b"Not Found"}, id="plain-text"),
]


@pytest.mark.parametrize("fault", NOT_THE_API)
def test_404_that_is_not_the_apis_is_a_misconfigured_upstream(client, emulator, fault):
    emulator.add_fault(method="GET", path=THREAD_PATH, **fault)
    with pytest.raises(MisconfiguredUpstreamError) as caught:
        client.retrieve_thread("thread_abc")
    assert not isinstance(caught.value, NotFoundError)
    assert (caught.value.status, bool(caught.value.request_id)) == (404, True)
    assert "base URL looks wrong" in str(caught.value)


@pytest.mark.parametrize("fault", NOT_THE_API)
def test_delete_answered_by_a_404_not_the_apis_is_not_already_gone(client, emulator, fault):
    emulator.add_fault(method="DELETE", path=THREAD_PATH, **fault)
    with pytest.raises(MisconfiguredUpstreamError):
        client.delete_thread("thread_abc")


def test_404_in_the_apis_shape_is_not_found(client, emulator):
    body = {"error": {"message": "No thread found.", "type": "invalid_request_error"}}
    emulator.add_fault(method="GET", path=THREAD_PATH, status=404, body=body)
    with pytest.raises(NotFoundError) as caught:
        client.retrieve_thread("thread_abc")
    assert caught.value.message == "No thread found."


def test_key_check_against_a_wrong_base_url_accepts_no_key(emulator, settings):
    from threads_app.services.keys import KeyUnverified, verify_secret

    settings.UMAMIAI_BASE_URL = emulator.base_url
    emulator.add_fault(method="GET", path=THREAD_PATH, kind="html", status=404)
    with pytest.raises(KeyUnverified) as caught:
        verify_secret("sk-test-anything-at-all-0000")
    assert "base URL looks wrong" in str(caught.value)
    verify_secret(TEST_KEY)  # the real API's 404 still means the key works


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_redirect_is_not_followed(client, emulator, method):
    emulator.add_fault(method=method, path=THREAD_PATH, status=302, times=None)
    call = client.retrieve_thread if method == "GET" else client.delete_thread
    with pytest.raises(UpstreamUnavailableError) as caught:
        call("thread_abc")
    assert caught.value.status == 302
    assert "redirect" in caught.value.message
    assert len(emulator.request_log) == 1


def test_thread_id_stays_one_path_segment(client, emulator):
    with pytest.raises(NotFoundError):
        client.retrieve_thread("../x?y=1")
    assert emulator.request_log == [("GET", "/v1/threads/..%2Fx%3Fy%3D1")]


@pytest.mark.parametrize("thread_id", ["", ".", ".."])
def test_dot_segments_are_refused_before_sending(client, emulator, thread_id):
    with pytest.raises(InvalidRequestError) as caught:
        client.delete_thread(thread_id)
    assert (caught.value.status, caught.value.param) == (None, "thread_id")
    assert emulator.request_log == []


# --- The key never leaks ------------------------------------------------------------------------

LEAKY_KEY = "sk-test-leakcheck-9f8e7d6c5b4a"


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param({"kind": "status", "status": 401}, id="401"),
        pytest.param({"kind": "status", "status": 429, "retry_after": 1}, id="429"),
        pytest.param({"kind": "html"}, id="html-502"),
        pytest.param({"kind": "malformed"}, id="malformed"),
        pytest.param({"kind": "drop"}, id="drop"),
        pytest.param({"kind": "hang", "seconds": 1}, id="hang"),
        pytest.param({"kind": "status", "status": 302}, id="redirect"),
        pytest.param(
            {
                "kind": "status",
                "status": 401,
                "body": {"error": {"message": f"Incorrect API key provided: {LEAKY_KEY}."}},
            },
            id="401-echoing-the-key",
        ),
    ],
)
def test_key_never_in_errors_or_logs(emulator, caplog, retry_sleeps, fault):
    emulator.add_key(LEAKY_KEY)
    client = ThreadsClient(LEAKY_KEY, base_url=emulator.base_url, read_timeout=0.3)
    emulator.add_fault(method="*", path="*", times=None, **fault)
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError) as caught:
        client.retrieve_thread("thread_abc")
    assert LEAKY_KEY not in chain_text(caught.value)
    assert LEAKY_KEY not in caplog.text
    assert any(r.name.startswith("urllib3") for r in caplog.records)  # urllib3 did log


def test_upstream_echo_of_the_key_is_redacted(emulator):
    emulator.add_key(LEAKY_KEY)
    body = {"error": {"message": f"Bad key {LEAKY_KEY}.", "code": "invalid_api_key"}}
    emulator.add_fault(method="GET", path=THREAD_PATH, status=401, body=body)
    with pytest.raises(AuthenticationError) as caught:
        ThreadsClient(LEAKY_KEY, base_url=emulator.base_url).retrieve_thread("thread_abc")
    assert caught.value.message == "Bad key [redacted]."


def test_key_never_in_network_errors(caplog, retry_sleeps):
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamUnavailableError) as caught:
        ThreadsClient(LEAKY_KEY, base_url=closed_port_url()).delete_thread("thread_abc")
    assert LEAKY_KEY not in chain_text(caught.value) + caplog.text


def test_key_never_in_errors_about_an_unsendable_key(emulator, caplog):
    """requests puts the header value in its own message; ours must not."""
    bad_key = LEAKY_KEY + "\n"
    with caplog.at_level(logging.DEBUG), pytest.raises(UpstreamError) as caught:
        ThreadsClient(bad_key, base_url=emulator.base_url).retrieve_thread("thread_abc")
    assert LEAKY_KEY not in chain_text(caught.value) + caplog.text
    assert LEAKY_KEY not in repr(ThreadsClient(LEAKY_KEY))


# --- Tolerant parsing ---------------------------------------------------------------------------

THREAD = {"id": "thread_abc", "object": "thread", "created_at": 1699012949}


@pytest.mark.parametrize(
    "extra",
    [
        {},
        {"tool_resources": None, "metadata": None},
        {"tool_resources": {}, "metadata": {}},
        {"future_field": [1, 2], "object": "thread.v3"},
    ],
)
def test_thread_parsing_is_tolerant(extra):
    thread = upstream._parse_thread({**THREAD, **extra}, "req_1")
    assert thread == Thread("thread_abc", 1699012949, {}, {}, "req_1")


@pytest.mark.parametrize(
    "broken",
    [
        [],
        {"created_at": 1},
        {"id": 7, "created_at": 1},
        {"id": "thread_abc"},
        {"id": "thread_abc", "created_at": True},
        {**THREAD, "metadata": ["a"]},
    ],
)
def test_thread_parsing_rejects_what_it_cannot_use(broken):
    with pytest.raises(upstream._Malformed):
        upstream._parse_thread(broken)


MESSAGE = {"id": "msg_1", "role": "user", "created_at": 5, "content": []}


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ({**THREAD, "created_at": 10**18}, "created_at"),
        ({**THREAD, "created_at": 1e18}, "created_at"),
        ({**THREAD, "created_at": -1}, "created_at"),
        ({**THREAD, "created_at": "1699012949"}, "created_at"),
        ({**THREAD, "created_at": 1699012949.5}, "created_at"),
        ({**THREAD, "id": ""}, "id"),
        ({**THREAD, "id": "x" * 101}, "id"),
        ({**THREAD, "id": "thread\x00abc"}, "id"),
        ({**THREAD, "id": ["thread_abc"]}, "id"),
        ({**THREAD, "metadata": {"a": 1}}, "metadata"),
        ({**THREAD, "metadata": {"a": {"b": "c"}}}, "metadata"),
        ({**THREAD, "metadata": {"a": "\ud800"}}, "metadata"),
        ({**THREAD, "metadata": "a=b"}, "metadata"),
        ({**THREAD, "tool_resources": ["file_1"]}, "tool_resources"),
        ({**THREAD, "tool_resources": {"x": float("nan")}}, "tool_resources"),
        ({**THREAD, "tool_resources": {"x": "\udc80"}}, "tool_resources"),
        (
            {
                **THREAD,
                "tool_resources": {"x": functools.reduce(lambda inner, _: [inner], range(40), [])},
            },
            "tool_resources",
        ),
    ],
)
def test_thread_fields_are_checked(broken, field):
    with pytest.raises(upstream._Malformed) as caught:
        upstream._parse_thread(broken)
    assert str(caught.value) == field


def test_thread_created_at_bounds_are_those_of_a_datetime():
    for created_at in (0, upstream.MAX_TIMESTAMP):
        assert upstream._parse_thread({**THREAD, "created_at": created_at}).created_at == created_at


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ({**MESSAGE, "created_at": 10**18}, "created_at"),
        ({**MESSAGE, "created_at": -5}, "created_at"),
        ({**MESSAGE, "role": 3}, "role"),
        ({**MESSAGE, "role": None}, "role"),
        ({**MESSAGE, "id": None}, "id"),
        ({**MESSAGE, "content": "hello"}, "content"),
        ({**MESSAGE, "content": [{"type": "text", "text": {"value": "\ud83d"}}]}, "content"),
        ({**MESSAGE, "attachments": {"file_id": "f"}}, "attachments"),
        ({**MESSAGE, "metadata": {"n": 2}}, "metadata"),
    ],
)
def test_message_fields_are_checked(broken, field):
    with pytest.raises(upstream._Malformed) as caught:
        upstream._parse_message(broken)
    assert str(caught.value) == field


@pytest.mark.parametrize(
    ("broken", "field"),
    [
        ({"data": {}}, "data"),
        ({"data": [], "first_id": 1}, "first_id"),
        ({"data": [], "last_id": ""}, "last_id"),
        ({"data": [], "has_more": "yes"}, "has_more"),
        ({"data": ["msg_1"]}, "body"),
    ],
)
def test_message_page_fields_are_checked(broken, field):
    with pytest.raises(upstream._Malformed) as caught:
        upstream._parse_message_page(broken)
    assert str(caught.value) == field


def test_a_bad_field_becomes_an_unreadable_answer_with_the_request_id():
    with pytest.raises(UnreadableAnswerError) as caught:
        upstream._read(lambda: upstream._parse_thread([]), status=201, request_id="req_9")
    assert isinstance(caught.value, UpstreamUnavailableError)
    assert (caught.value.status, caught.value.request_id) == (201, "req_9")


@pytest.mark.parametrize(
    ("header", "kept"),
    [(None, None), ("req_1", "req_1"), ("req\x00\x01_2", "req_2"), ("r" * 300, "r" * 100)],
)
def test_request_id_is_printable_and_fits_its_column(header, kept):
    assert upstream._request_id(header) == kept


def test_message_text_joins_text_parts():
    message = upstream._parse_message(
        {
            "id": "msg_1",
            "role": "assistant",
            "created_at": 5,
            "content": [
                {"type": "text", "text": {"value": "one", "annotations": []}},
                {"type": "image_file", "image_file": {"file_id": "file_1"}},
                {"type": "text", "text": {"value": "two"}},
                "junk",
            ],
            "attachments": None,
            "metadata": None,
        }
    )
    assert (message.text, message.attachments, message.metadata) == ("one\ntwo", [], {})
    assert len(message.content) == 4


@pytest.mark.parametrize(
    ("header", "seconds"),
    [(None, None), ("7", 7.0), ("soon", None), ("Wed, 21 Oct 2015 07:28:00 GMT", 0.0)],
)
def test_retry_after_seconds(header, seconds):
    assert upstream._retry_after_seconds(header) == seconds


@pytest.mark.parametrize("header", ["\u00b2", "9" * 400, "Wed, 21 Oct 99999 07:28:00 GMT"])
def test_retry_after_that_is_not_a_delay_is_ignored(header):
    """A superscript digit passes str.isdigit(); 400 nines make an infinite float."""
    assert upstream._retry_after_seconds(header) is None


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3)
    ),
    max_leaves=10,
)
string_dicts = st.dictionaries(st.text(max_size=64), st.text(max_size=64), max_size=16)


@given(
    metadata=st.none() | string_dicts,
    tool_resources=st.sampled_from(["missing", None, {}, {"file_search": {}}]),
    unknown=st.dictionaries(st.text(min_size=1).map(lambda s: "x_" + s), json_values, max_size=4),
)
def test_parse_thread_property(metadata, tool_resources, unknown):
    body = {**unknown, **THREAD, "metadata": metadata}
    if tool_resources != "missing":
        body["tool_resources"] = tool_resources
    thread = upstream._parse_thread(body, "req")
    assert thread.id == THREAD["id"] and thread.created_at == THREAD["created_at"]
    assert thread.metadata == (metadata or {})
    assert thread.tool_resources == ({} if tool_resources in ("missing", None) else tool_resources)


@given(json_values)
def test_parsers_accept_or_reject_any_json_cleanly(body):
    for parse in (upstream._parse_thread, upstream._parse_message, upstream._parse_message_page):
        with contextlib.suppress(upstream._Malformed):
            parse(body)


@pytest.fixture
def fresh_environment_settings():
    upstream._environment_settings.cache_clear()
    yield
    upstream._environment_settings.cache_clear()


def test_proxies_from_the_environment_are_honoured(
    emulator, monkeypatch, fresh_environment_settings
):
    thread = ThreadsClient(TEST_KEY, base_url=emulator.base_url).create_thread()
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens on the discard port
    upstream._environment_settings.cache_clear()
    client = ThreadsClient(TEST_KEY, base_url=emulator.base_url)
    with pytest.raises(UpstreamUnavailableError):
        client.retrieve_thread(thread.id)

    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    upstream._environment_settings.cache_clear()
    assert client.retrieve_thread(thread.id).id == thread.id
