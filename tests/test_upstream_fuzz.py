"""The upstream client's parsers against generated answers (issue 11, item 10).

Whatever a misbehaving upstream sends (wrong types, huge numbers, missing or extra fields,
bytes that are not UTF-8 or not JSON), the client either returns a value every page can use
or raises an `UpstreamError`: nothing else escapes to become a 500.

The parsers are driven directly (fast); a few answers also go over real HTTP through the
emulator's fault injection. `FUZZ_EXAMPLES=2000 pytest tests/test_upstream_fuzz.py` runs
deeper than the default.
"""

import json
import math
import os
from datetime import UTC, datetime

import pytest
import requests
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.conftest import TEST_KEY
from threads_app import upstream
from threads_app.upstream import (
    DeletionResult,
    Message,
    MessagePage,
    Thread,
    ThreadsClient,
    UnreadableAnswerError,
    UpstreamError,
)

FUZZ = settings(
    max_examples=int(os.environ.get("FUZZ_EXAMPLES", "150")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
REQUEST_ID = "req_fuzz"

# --- What an upstream might send ------------------------------------------------------------

# Text as JSON can carry it: any code point, lone surrogates included ("\ud800"), in about
# half the strings (st.text drops surrogates whatever its alphabet: those are joined by hand).
any_text = st.text(max_size=12) | st.lists(
    st.characters() | st.characters(categories=["Cs"]), min_size=1, max_size=12
).map("".join)
huge_numbers = st.sampled_from(
    [10**18, -(10**18), 2**63, 2**64 + 1, 10**300, -1, upstream.MAX_TIMESTAMP + 1, 1e18, 1e308]
)
numbers = (
    st.integers()
    | huge_numbers
    | st.floats()  # NaN and the infinities too: json.loads reads NaN and Infinity
)
non_finite = st.sampled_from([math.nan, math.inf, -math.inf])
scalars = st.none() | st.booleans() | numbers | non_finite | any_text
json_values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4)
    ),
    max_leaves=12,
)
deep_values = st.integers(20, 200).map(
    lambda depth: json.loads("[" * depth + "]" * depth)  # deeper than any real answer
)
wild = json_values | deep_values

THREAD = {
    "id": "thread_abc",
    "object": "thread",
    "created_at": 1699012949,
    "metadata": {"project": "apollo"},
    "tool_resources": {"code_interpreter": {"file_ids": ["file_1"]}},
}
MESSAGE = {
    "id": "msg_1",
    "object": "thread.message",
    "created_at": 1699012950,
    "thread_id": "thread_abc",
    "role": "assistant",
    "content": [{"type": "text", "text": {"value": "hello", "annotations": []}}],
    "attachments": [],
    "metadata": {},
}


# A replacement is a wrong scalar, a huge number, or any JSON tree...
replacements = st.one_of(huge_numbers, scalars, wild)


def near(valid):
    """...or, as often, a value of the valid one's JSON type holding anything."""
    if isinstance(valid, bool):
        return st.booleans()
    if isinstance(valid, int):
        return numbers | non_finite
    if isinstance(valid, str):
        return any_text
    if isinstance(valid, dict):
        values = any_text | non_finite | json_values
        return st.dictionaries(any_text, values, min_size=1, max_size=3)
    items = non_finite | json_values | st.dictionaries(any_text, json_values)
    return st.lists(items, min_size=1, max_size=3)


@st.composite
def mutated(draw, valid):
    """A valid answer with a few fields removed or replaced, and extra ones."""
    body = dict(valid)
    changed = draw(st.sets(st.sampled_from(sorted(body)), max_size=2))
    for name in changed:
        how = draw(st.sampled_from(["drop", "near", "near", "any"]))
        if how == "drop":
            del body[name]
        else:
            body[name] = draw(near(valid[name]) if how == "near" else replacements)
    body.update(draw(st.dictionaries(any_text, json_values, max_size=3)))
    return body


@st.composite
def message_pages(draw):
    page = {
        "object": "list",
        "data": draw(st.lists(mostly(mutated(MESSAGE)), max_size=3)),
        "first_id": "msg_1",
        "last_id": "msg_1",
        "has_more": False,
    }
    return draw(mutated(page))


def mostly(answers):
    """Four times in five a mutated answer, else any JSON at all (a list, a string...)."""
    return st.integers(0, 4).flatmap(lambda n: wild if n == 0 else answers)


thread_answers = mostly(mutated(THREAD))
message_answers = mostly(mutated(MESSAGE))
page_answers = mostly(message_pages())
deletion_answers = mostly(
    mutated({"id": "thread_abc", "object": "thread.deleted", "deleted": True})
)


# --- What every page may then do with the result --------------------------------------------


def assert_usable_text(value):
    assert isinstance(value, str)
    value.encode()  # a template renders it, a database stores it


def assert_usable_id(value):
    assert_usable_text(value)
    assert 0 < len(value) <= upstream.MAX_ID_LENGTH and value.isprintable()


def assert_storable(value):
    """Fits a JSON column: finite numbers, text that is UTF-8, not absurdly deep."""
    json.dumps(value, allow_nan=False, ensure_ascii=False).encode()


def assert_usable_time(created_at):
    assert isinstance(created_at, int) and not isinstance(created_at, bool)
    datetime.fromtimestamp(created_at, tz=UTC)


def assert_usable_metadata(metadata):
    assert isinstance(metadata, dict)
    for key, value in metadata.items():
        assert_usable_text(key)
        assert_usable_text(value)


def assert_usable_thread(thread):
    assert isinstance(thread, Thread)
    assert_usable_id(thread.id)
    assert_usable_time(thread.created_at)
    assert_usable_metadata(thread.metadata)
    assert isinstance(thread.tool_resources, dict)
    assert_storable(thread.tool_resources)


def assert_usable_message(message):
    assert isinstance(message, Message)
    assert_usable_id(message.id)
    assert_usable_id(message.role)
    assert_usable_time(message.created_at)
    assert_usable_text(message.text)
    assert_usable_metadata(message.metadata)
    assert isinstance(message.content, list) and isinstance(message.attachments, list)
    assert_storable(message.content)
    assert_storable(message.attachments)


def assert_usable_page(page):
    assert isinstance(page, MessagePage)
    for message in page.messages:
        assert_usable_message(message)
    for cursor in (page.first_id, page.last_id):
        assert cursor is None or assert_usable_id(cursor) is None
    assert isinstance(page.has_more, bool)


def read(parse, body):
    """What the client does with a decoded 2xx body: the result, or the error it raises."""
    try:
        return upstream._read(lambda: parse(body), status=200, request_id=REQUEST_ID)
    except UpstreamError as exc:
        assert isinstance(exc, UnreadableAnswerError)
        assert (exc.status, exc.request_id) == (200, REQUEST_ID)
        return exc


# --- The parsers, directly ------------------------------------------------------------------


def assert_usable_flag(deleted):
    assert isinstance(deleted, bool)


PARSERS = [
    pytest.param(thread_answers, upstream._parse_thread, assert_usable_thread, id="thread"),
    pytest.param(message_answers, upstream._parse_message, assert_usable_message, id="message"),
    pytest.param(page_answers, upstream._parse_message_page, assert_usable_page, id="page"),
    pytest.param(deletion_answers, upstream._parse_deletion, assert_usable_flag, id="deletion"),
]


@pytest.mark.parametrize(("answers", "parse", "assert_usable"), PARSERS)
@FUZZ
@given(data=st.data())
def test_parser(answers, parse, assert_usable, data):
    result = read(parse, data.draw(answers, label="answer"))
    if not isinstance(result, UpstreamError):
        assert_usable(result)


def fake_response(status, content, headers=None):
    response = requests.Response()
    response.status_code = status
    response._content = content
    response.headers.update(headers or {})
    response.reason = "Whatever"
    return response


raw_bodies = (
    st.binary(max_size=64)
    | json_values.map(lambda value: json.dumps(value).encode("utf-8", "surrogatepass"))
    | st.tuples(mutated(THREAD), st.binary(min_size=1, max_size=4)).map(
        # A thread answer with bytes that are not UTF-8 spliced into it.
        lambda pair: json.dumps(pair[0]).encode()[:-1] + pair[1] + b"}"
    )
    | st.integers(1, 100_000).map(lambda depth: b"[" * depth)
)


@FUZZ
@given(raw_bodies)
def test_raw_2xx_bodies(content):
    """Decoding, then parsing: the body is unreadable or gives a usable thread."""
    data = upstream._json_of(fake_response(200, content))
    if data is None:
        return  # `_request` answers UnreadableAnswerError ("not JSON")
    result = read(upstream._parse_thread, data)
    if not isinstance(result, UpstreamError):
        assert_usable_thread(result)


# Retry-After as a number: digits of any script (str.isdigit takes "²"), and very many.
delays = st.text("0123456789\u00b2\u00b9\u0663 ", max_size=8) | st.integers(300, 400).map(
    lambda length: "9" * length
)


@FUZZ
@given(
    status=st.sampled_from([401, 404, 429, 500, 503]) | st.integers(300, 599),
    content=raw_bodies | json_values.map(lambda error: json.dumps({"error": error}).encode()),
    request_id=st.none() | any_text,
    retry_after=st.none() | any_text | delays,
)
def test_error_answers(status, content, request_id, retry_after):
    """Any non-2xx answer becomes an UpstreamError; only the API's own 404 is NotFoundError."""
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    response = fake_response(status, content, headers)
    client = ThreadsClient(TEST_KEY, base_url="http://127.0.0.1:9/v1")
    data = upstream._json_of(response)
    error = client._error(response, data, upstream._request_id(request_id))
    assert isinstance(error, UpstreamError)
    assert_usable_text(str(error))
    error_shaped = isinstance(data, dict) and isinstance(data.get("error"), dict)
    if status == 404:
        assert isinstance(error, upstream.NotFoundError) == error_shaped
    retry = getattr(error, "retry_after", None)
    assert retry is None or math.isfinite(retry)


# --- A few answers over real HTTP -----------------------------------------------------------

HTTP_CASES = [
    pytest.param(b'{"id": "thread_\xff\xfe", "created_at": "\xc3"}', id="not-utf-8"),
    pytest.param(b"[" * 50_000, id="too-deep-to-decode"),
    pytest.param(b"1" + b"0" * 5000, id="too-many-digits"),
    pytest.param(b'{"id": "thread_abc", "created_at": NaN}', id="nan"),
    pytest.param(b'{"id": "thread_abc", "created_at": 1000000000000000000}', id="1e18-int"),
    pytest.param(b'{"id": "thread_abc", "created_at": 1e18}', id="1e18-float"),
    pytest.param(b'{"id": "thread_abc", "created_at": -86400}', id="negative"),
    pytest.param(b'{"id": "thread_abc", "created_at": "1699012949"}', id="string-time"),
    pytest.param(b'{"id": "\\u0000", "created_at": 1}', id="nul-id"),
    pytest.param(b'{"id": "t", "created_at": 1, "metadata": {"a": "\\ud800"}}', id="surrogate"),
    pytest.param(b'["thread_abc"]', id="a-list"),
    pytest.param(b"", id="empty"),
]


@pytest.mark.parametrize("content", HTTP_CASES)
def test_misbehaving_upstream_over_http(emulator, content):
    client = ThreadsClient(TEST_KEY, base_url=emulator.base_url, read_timeout=5)
    emulator.add_fault(method="*", path="/v1/threads*", status=200, body=content, times=None)
    for call in (
        lambda: client.retrieve_thread("thread_abc"),
        lambda: client.create_thread(),
        lambda: client.list_messages("thread_abc"),
        lambda: client.create_message("thread_abc", "user", "hi"),
        lambda: client.delete_thread("thread_abc"),
    ):
        with pytest.raises(UnreadableAnswerError) as caught:
            call()
        assert caught.value.status == 200 and caught.value.request_id


def test_a_thread_answer_is_still_read_over_http(emulator):
    """The cases above fail for what they hold, not because a fault's bytes are never read."""
    body = json.dumps({**THREAD, "unknown": [1, {"x": None}]}).encode()
    emulator.add_fault(method="GET", path="/v1/threads/*", status=200, body=body)
    thread = ThreadsClient(TEST_KEY, base_url=emulator.base_url).retrieve_thread("thread_abc")
    assert_usable_thread(thread)
    assert (thread.id, thread.created_at) == (THREAD["id"], THREAD["created_at"])
    assert isinstance(
        ThreadsClient(TEST_KEY, base_url=emulator.base_url).delete_thread("thread_never_was"),
        DeletionResult,
    )
