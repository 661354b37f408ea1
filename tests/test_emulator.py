"""The Threads API emulator over plain HTTP: endpoints, validation, auth, faults and controls."""

import re
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from emulator import Emulator
from emulator.limits import RateLimit, RateLimiter
from tests.conftest import OTHER_TEST_KEY, TEST_KEY

REQUEST_ID = re.compile(r"req_[0-9a-f]{32}")


class Api:
    """A minimal client: the base URL plus the headers a well-behaved caller sends."""

    def __init__(
        self, base_url: str, key: str | None = TEST_KEY, beta: str | None = "assistants=v2"
    ):
        self.base_url = base_url
        self.session = requests.Session()
        if key is not None:
            self.session.headers["Authorization"] = f"Bearer {key}"
        if beta is not None:
            self.session.headers["OpenAI-Beta"] = beta

    def __call__(self, method: str, path: str, **kwargs) -> requests.Response:
        kwargs.setdefault("timeout", 5)
        return self.session.request(method, self.base_url + path, **kwargs)

    def ok(self, method: str, path: str, **kwargs) -> dict:
        response = self(method, path, **kwargs)
        assert response.status_code == 200, response.text
        return response.json()

    def new_thread(self, **body) -> dict:
        return self.ok("POST", "/threads", json=body)

    def add_messages(self, thread_id: str, count: int) -> list[str]:
        return [
            self.ok(
                "POST", f"/threads/{thread_id}/messages", json={"role": "user", "content": str(i)}
            )["id"]
            for i in range(count)
        ]


@pytest.fixture
def api(emulator):
    return Api(emulator.base_url)


@pytest.fixture
def other_api(emulator):
    return Api(emulator.base_url, key=OTHER_TEST_KEY)


def error_of(response: requests.Response, status: int) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


# --- Threads ------------------------------------------------------------------------------------


def test_create_empty_thread(api):
    before = int(time.time())
    response = api("POST", "/threads")
    thread = response.json()
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/json"
    assert re.fullmatch(r"thread_[A-Za-z0-9]{24}", thread["id"])
    assert thread == {
        "id": thread["id"],
        "object": "thread",
        "created_at": thread["created_at"],
        "metadata": {},
        "tool_resources": {},
    }
    assert before <= thread["created_at"] <= time.time()


def test_create_thread_with_everything(api):
    thread = api.new_thread(
        metadata={"team": "blue"},
        tool_resources={
            "code_interpreter": {"file_ids": ["file_a", "file_b"]},
            "file_search": {"vector_store_ids": ["vs_1"]},
        },
        messages=[
            {"role": "user", "content": "Hello", "metadata": {"n": "1"}},
            {
                "role": "assistant",
                "content": [
                    {"type": "text", "text": "Look"},
                    {"type": "image_file", "image_file": {"file_id": "file_img"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://x.test/a.png", "detail": "low"},
                    },
                ],
                "attachments": [{"file_id": "file_c", "tools": [{"type": "file_search"}]}],
            },
        ],
    )
    assert thread["metadata"] == {"team": "blue"}
    assert thread["tool_resources"] == {
        "code_interpreter": {"file_ids": ["file_a", "file_b"]},
        "file_search": {"vector_store_ids": ["vs_1"]},
    }
    listed = api.ok("GET", f"/threads/{thread['id']}/messages", params={"order": "asc"})["data"]
    assert [m["role"] for m in listed] == ["user", "assistant"]
    first, second = listed
    assert first["content"] == [{"type": "text", "text": {"value": "Hello", "annotations": []}}]
    assert first["metadata"] == {"n": "1"}
    assert first["attachments"] == []
    assert second["content"] == [
        {"type": "text", "text": {"value": "Look", "annotations": []}},
        {"type": "image_file", "image_file": {"file_id": "file_img", "detail": "auto"}},
        {"type": "image_url", "image_url": {"url": "https://x.test/a.png", "detail": "low"}},
    ]
    assert second["attachments"] == [{"file_id": "file_c", "tools": [{"type": "file_search"}]}]
    for message in listed:
        assert message["thread_id"] == thread["id"]
        assert (message["assistant_id"], message["run_id"], message["status"]) == (
            None,
            None,
            "completed",
        )


def test_vector_store_helper_mints_a_vector_store(api):
    thread = api.new_thread(
        tool_resources={
            "file_search": {
                "vector_stores": [
                    {"file_ids": ["file_a"], "chunking_strategy": {"type": "auto"}, "metadata": {}}
                ]
            }
        }
    )
    (store_id,) = thread["tool_resources"]["file_search"]["vector_store_ids"]
    assert re.fullmatch(r"vs_[A-Za-z0-9]{24}", store_id)


def test_retrieve_thread(api):
    created = api.new_thread(metadata={"a": "1"})
    assert api.ok("GET", f"/threads/{created['id']}") == created


def test_modify_replaces_metadata_and_keeps_what_is_not_sent(api):
    thread = api.new_thread(
        metadata={"a": "1", "b": "2"}, tool_resources={"code_interpreter": {"file_ids": ["f1"]}}
    )
    path = f"/threads/{thread['id']}"
    modified = api.ok("POST", path, json={"metadata": {"c": "3"}})
    assert modified["metadata"] == {"c": "3"}
    assert modified["tool_resources"] == {"code_interpreter": {"file_ids": ["f1"]}}
    assert api.ok("POST", path, json={}) == modified
    assert api.ok("GET", path) == modified
    changed = api.ok(
        "POST", path, json={"tool_resources": {"file_search": {"vector_store_ids": []}}}
    )
    assert changed["tool_resources"] == {"file_search": {"vector_store_ids": []}}
    assert changed["metadata"] == {"c": "3"}


def test_modify_with_null_clears(api):
    thread = api.new_thread(metadata={"a": "1"}, tool_resources={"code_interpreter": {}})
    cleared = api.ok(
        "POST", f"/threads/{thread['id']}", json={"metadata": None, "tool_resources": None}
    )
    assert (cleared["metadata"], cleared["tool_resources"]) == ({}, {})


def test_delete_thread(api):
    thread_id = api.new_thread(messages=[{"role": "user", "content": "x"}])["id"]
    assert api.ok("DELETE", f"/threads/{thread_id}") == {
        "id": thread_id,
        "object": "thread.deleted",
        "deleted": True,
    }
    for method, path in [
        ("GET", f"/threads/{thread_id}"),
        ("DELETE", f"/threads/{thread_id}"),
        ("GET", f"/threads/{thread_id}/messages"),
    ]:
        error = error_of(api(method, path), 404)
        assert error["message"] == f"No thread found with id '{thread_id}'."
        assert error["type"] == "invalid_request_error"


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/threads/thread_missing", None),
        ("POST", "/threads/thread_missing", {"metadata": {}}),
        ("DELETE", "/threads/thread_missing", None),
        ("GET", "/threads/thread_missing/messages", None),
        ("POST", "/threads/thread_missing/messages", {"role": "user", "content": "x"}),
        ("GET", "/threads/thread_missing/messages/msg_x", None),
    ],
)
def test_unknown_thread_is_404(api, method, path, body):
    error = error_of(api(method, path, json=body), 404)
    assert error["message"] == "No thread found with id 'thread_missing'."


# --- Messages -----------------------------------------------------------------------------------


def test_message_lifecycle(api):
    thread_id = api.new_thread()["id"]
    message = api.ok(
        "POST",
        f"/threads/{thread_id}/messages",
        json={"role": "user", "content": "Hi", "metadata": {"k": "v"}},
    )
    assert re.fullmatch(r"msg_[A-Za-z0-9]{24}", message["id"])
    assert message["object"] == "thread.message"
    assert message["thread_id"] == thread_id
    assert message["content"] == [{"type": "text", "text": {"value": "Hi", "annotations": []}}]
    path = f"/threads/{thread_id}/messages/{message['id']}"
    assert api.ok("GET", path) == message
    modified = api.ok("POST", path, json={"metadata": {"k2": "v2"}})
    assert modified["metadata"] == {"k2": "v2"}
    assert api.ok("GET", path) == modified
    assert api.ok("DELETE", path) == {
        "id": message["id"],
        "object": "thread.message.deleted",
        "deleted": True,
    }
    error = error_of(api("GET", path), 404)
    assert error["message"] == f"No message found with id '{message['id']}'."
    assert api.ok("GET", f"/threads/{thread_id}/messages")["data"] == []


def test_message_of_another_thread_is_404(api):
    (message_id,) = api.add_messages(api.new_thread()["id"], 1)
    other_thread = api.new_thread()["id"]
    error = error_of(api("GET", f"/threads/{other_thread}/messages/{message_id}"), 404)
    assert error["message"] == f"No message found with id '{message_id}'."


# --- Listing and pagination ---------------------------------------------------------------------


def test_list_defaults_to_20_newest_first(api):
    thread_id = api.new_thread()["id"]
    ids = api.add_messages(thread_id, 25)
    page = api.ok("GET", f"/threads/{thread_id}/messages")
    assert page["object"] == "list"
    assert [m["id"] for m in page["data"]] == ids[::-1][:20]
    assert (page["first_id"], page["last_id"], page["has_more"]) == (ids[-1], ids[5], True)


@pytest.mark.parametrize("order", ["asc", "desc"])
def test_after_cursor_walks_every_message_once(api, order):
    thread_id = api.new_thread()["id"]
    ids = api.add_messages(thread_id, 5)
    seen, params = [], {"limit": 2, "order": order}
    while True:
        page = api.ok("GET", f"/threads/{thread_id}/messages", params=params)
        seen += [m["id"] for m in page["data"]]
        if not page["has_more"]:
            break
        params["after"] = page["last_id"]
    assert seen == (ids if order == "asc" else ids[::-1])


def test_before_cursor_gives_the_messages_just_before(api):
    thread_id = api.new_thread()["id"]
    ids = api.add_messages(thread_id, 5)
    page = api.ok(
        "GET",
        f"/threads/{thread_id}/messages",
        params={"order": "asc", "limit": 2, "before": ids[3]},
    )
    assert [m["id"] for m in page["data"]] == ids[1:3]
    assert page["has_more"] is True
    page = api.ok(
        "GET",
        f"/threads/{thread_id}/messages",
        params={"order": "asc", "limit": 2, "before": ids[2]},
    )
    assert [m["id"] for m in page["data"]] == ids[0:2]
    assert page["has_more"] is False


def test_after_and_before_together(api):
    thread_id = api.new_thread()["id"]
    ids = api.add_messages(thread_id, 5)
    params = {"order": "asc", "after": ids[0], "before": ids[4]}
    page = api.ok("GET", f"/threads/{thread_id}/messages", params=params)
    assert [m["id"] for m in page["data"]] == ids[1:4]


def test_empty_list_has_null_ids(api):
    page = api.ok("GET", f"/threads/{api.new_thread()['id']}/messages")
    assert page == {
        "object": "list",
        "data": [],
        "first_id": None,
        "last_id": None,
        "has_more": False,
    }


def test_unknown_cursor_gives_an_empty_page(api):
    thread_id = api.new_thread()["id"]
    api.add_messages(thread_id, 2)
    page = api.ok("GET", f"/threads/{thread_id}/messages", params={"after": "msg_gone"})
    assert (page["data"], page["has_more"]) == ([], False)


def test_run_id_filter(api):
    thread_id = api.new_thread()["id"]
    api.add_messages(thread_id, 2)
    page = api.ok("GET", f"/threads/{thread_id}/messages", params={"run_id": "run_abc"})
    assert page["data"] == []


@pytest.mark.parametrize(
    ("params", "param", "code"),
    [
        ({"limit": 0}, "limit", "integer_below_min_value"),
        ({"limit": 101}, "limit", "integer_above_max_value"),
        ({"limit": "ten"}, "limit", "invalid_type"),
        ({"limit": "9" * 5000}, "limit", "invalid_type"),
        ({"order": "sideways"}, "order", "invalid_value"),
    ],
)
def test_list_parameters_are_validated(api, params, param, code):
    thread_id = api.new_thread()["id"]
    error = error_of(api("GET", f"/threads/{thread_id}/messages", params=params), 400)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")


@pytest.mark.parametrize("limit", [1, 100])
def test_list_limit_bounds_are_accepted(api, limit):
    thread_id = api.new_thread()["id"]
    api.add_messages(thread_id, 2)
    page = api.ok("GET", f"/threads/{thread_id}/messages", params={"limit": limit})
    assert len(page["data"]) == min(limit, 2)


# --- Validation ---------------------------------------------------------------------------------


def _message(**fields):
    return {"messages": [{"role": "user", "content": "x", **fields}]}


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"metadata": {str(i): "v" for i in range(17)}}, "metadata", "object_above_max_properties"),
        ({"metadata": {"k" * 65: "v"}}, "metadata", "string_above_max_length"),
        ({"metadata": {"k": "v" * 513}}, "metadata.k", "string_above_max_length"),
        ({"metadata": {"k": 1}}, "metadata.k", "invalid_type"),
        ({"metadata": "k=v"}, "metadata", "invalid_type"),
        ({"title": "x"}, "title", "unknown_parameter"),
        ({"messages": "hi"}, "messages", "invalid_type"),
        ({"messages": [{"content": "x"}]}, "messages[0].role", "missing_required_parameter"),
        ({"messages": [{"role": "user"}]}, "messages[0].content", "missing_required_parameter"),
        (_message(role="system"), "messages[0].role", "invalid_value"),
        (_message(content=5), "messages[0].content", "invalid_type"),
        (_message(content=[]), "messages[0].content", "empty_array"),
        (_message(content=[{"type": "video"}]), "messages[0].content[0].type", "invalid_value"),
        (
            _message(content=[{"type": "text"}]),
            "messages[0].content[0].text",
            "missing_required_parameter",
        ),
        (
            _message(content=[{"type": "image_url", "image_url": {"url": "not a url"}}]),
            "messages[0].content[0].image_url.url",
            "invalid_url",
        ),
        (
            _message(
                content=[{"type": "image_file", "image_file": {"file_id": "f", "detail": "max"}}]
            ),
            "messages[0].content[0].image_file.detail",
            "invalid_value",
        ),
        (
            _message(attachments=[{"file_id": "f", "tools": [{"type": "browser"}]}]),
            "messages[0].attachments[0].tools[0].type",
            "invalid_value",
        ),
        (
            _message(attachments=[{"file_id": 7}]),
            "messages[0].attachments[0].file_id",
            "invalid_type",
        ),
        (_message(extra=True), "messages[0].extra", "unknown_parameter"),
        (_message(metadata={"k": ["v"]}), "messages[0].metadata.k", "invalid_type"),
        ({"tool_resources": "all"}, "tool_resources", "invalid_type"),
        (
            {"tool_resources": {"code_interpreter": {"file_ids": [f"f{i}" for i in range(21)]}}},
            "tool_resources.code_interpreter.file_ids",
            "array_above_max_length",
        ),
        (
            {"tool_resources": {"code_interpreter": {"file_ids": [1]}}},
            "tool_resources.code_interpreter.file_ids[0]",
            "invalid_type",
        ),
        (
            {"tool_resources": {"file_search": {"vector_store_ids": ["vs_1", "vs_2"]}}},
            "tool_resources.file_search.vector_store_ids",
            "array_above_max_length",
        ),
        (
            {"tool_resources": {"file_search": {"vector_store_ids": [], "vector_stores": []}}},
            "tool_resources.file_search",
            "invalid_value",
        ),
        (
            {"tool_resources": {"file_search": {}}},
            "tool_resources.file_search.vector_store_ids",
            "missing_required_parameter",
        ),
        (
            {
                "tool_resources": {
                    "file_search": {
                        "vector_stores": [
                            {
                                "chunking_strategy": {
                                    "type": "static",
                                    "static": {
                                        "max_chunk_size_tokens": 99,
                                        "chunk_overlap_tokens": 0,
                                    },
                                }
                            }
                        ]
                    }
                }
            },
            "tool_resources.file_search.vector_stores[0].chunking_strategy.static.max_chunk_size_tokens",
            "integer_below_min_value",
        ),
    ],
)
def test_create_thread_validation(api, body, param, code):
    error = error_of(api("POST", "/threads", json=body), 400)
    assert (error["param"], error["code"], error["type"]) == (param, code, "invalid_request_error")
    assert error["message"]


def test_limits_at_the_boundary_are_accepted(api):
    metadata = {f"{i:0>64}": "v" * 512 for i in range(16)}
    thread = api.new_thread(
        metadata=metadata,
        tool_resources={
            "code_interpreter": {"file_ids": [f"f{i}" for i in range(20)]},
            "file_search": {"vector_store_ids": ["vs_1"]},
        },
    )
    assert thread["metadata"] == metadata


@pytest.mark.parametrize(
    ("method", "path", "body", "param", "code"),
    [
        ("POST", "/threads/{thread}", {"messages": []}, "messages", "unknown_parameter"),
        ("POST", "/threads/{thread}", {"metadata": []}, "metadata", "invalid_type"),
        (
            "POST",
            "/threads/{thread}/messages",
            {"role": "user"},
            "content",
            "missing_required_parameter",
        ),
        (
            "POST",
            "/threads/{thread}/messages",
            {"content": "x"},
            "role",
            "missing_required_parameter",
        ),
        (
            "POST",
            "/threads/{thread}/messages/{message}",
            {"role": "user"},
            "role",
            "unknown_parameter",
        ),
        (
            "POST",
            "/threads/{thread}/messages/{message}",
            {"metadata": 1},
            "metadata",
            "invalid_type",
        ),
    ],
)
def test_modify_and_message_validation(api, method, path, body, param, code):
    thread_id = api.new_thread()["id"]
    (message_id,) = api.add_messages(thread_id, 1)
    response = api(method, path.format(thread=thread_id, message=message_id), json=body)
    error = error_of(response, 400)
    assert (error["param"], error["code"]) == (param, code)


def test_bad_json_body(api):
    error = error_of(api("POST", "/threads", data=b"{not json"), 400)
    assert error["message"].startswith("We could not parse the JSON body of your request.")
    assert (error["param"], error["code"]) == (None, None)


def test_body_must_be_an_object(api):
    error = error_of(api("POST", "/threads", json=["messages"]), 400)
    assert (error["param"], error["code"]) == (None, "invalid_type")


# --- Auth, beta header, routing -----------------------------------------------------------------


@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer sk-test-not-a-key-1234567890abcdef", "Basic " + TEST_KEY, "Bearer "],
)
def test_bad_credentials_are_401(emulator, authorization):
    headers = {"OpenAI-Beta": "assistants=v2"}
    if authorization is not None:
        headers["Authorization"] = authorization
    response = requests.get(f"{emulator.base_url}/threads/thread_x", headers=headers, timeout=5)
    error = error_of(response, 401)
    assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")


def test_wrong_key_is_masked_in_the_error(emulator):
    wrong = "sk-test-not-a-key-1234567890abcdef"
    error = error_of(Api(emulator.base_url, key=wrong)("GET", "/threads/thread_x"), 401)
    assert wrong not in error["message"]
    assert error["message"].endswith("cdef.")


def test_threads_belong_to_the_key_that_made_them(api, other_api):
    thread_id = api.new_thread(messages=[{"role": "user", "content": "x"}])["id"]
    for method, path in [
        ("GET", f"/threads/{thread_id}"),
        ("POST", f"/threads/{thread_id}"),
        ("DELETE", f"/threads/{thread_id}"),
        ("GET", f"/threads/{thread_id}/messages"),
        ("POST", f"/threads/{thread_id}/messages"),
    ]:
        body = {"role": "user", "content": "x"} if path.endswith("messages") else {}
        error = error_of(other_api(method, path, json=body), 404)
        assert error["message"] == f"No thread found with id '{thread_id}'."
    assert len(api.ok("GET", f"/threads/{thread_id}/messages")["data"]) == 1


def test_added_key_is_accepted_until_reset(emulator):
    extra = Api(emulator.base_url, key="sk-test-extra-key-000000000000000000")
    assert extra("POST", "/threads").status_code == 401
    emulator.add_key("sk-test-extra-key-000000000000000000")
    assert extra("POST", "/threads").status_code == 200
    emulator.reset()
    assert extra("POST", "/threads").status_code == 401


@pytest.mark.parametrize("beta", [None, "assistants=v1", "assistants"])
def test_beta_header_is_required(emulator, beta):
    error = error_of(Api(emulator.base_url, beta=beta)("POST", "/threads"), 400)
    assert (error["code"], error["type"]) == ("invalid_beta", "invalid_request_error")


def test_beta_header_may_list_several_betas(emulator):
    api = Api(emulator.base_url, beta="other=v1, assistants=v2")
    assert api("POST", "/threads").status_code == 200


def test_auth_is_checked_before_the_beta_header(emulator):
    assert Api(emulator.base_url, key=None, beta=None)("POST", "/threads").status_code == 401


def test_unknown_url_is_404(api):
    error = error_of(api("GET", "/assistants"), 404)
    assert error["message"] == "Invalid URL (GET /v1/assistants)"


@pytest.mark.parametrize(
    ("method", "path", "allow"),
    [
        ("PUT", "/threads", "POST"),
        ("GET", "/threads", "POST"),
        ("PATCH", "/threads/thread_x", "GET, POST, DELETE"),
        ("DELETE", "/threads/thread_x/messages", "GET, POST"),
        ("QUERY", "/threads/thread_x/messages/msg_x", "GET, POST, DELETE"),
    ],
)
def test_undeclared_method_is_405(api, method, path, allow):
    response = api(method, path)
    error_of(response, 405)
    assert response.headers["Allow"] == allow


def test_controls_are_not_reachable_under_v1(api, emulator):
    thread_id = api.new_thread()["id"]
    assert api("POST", "/__emulator__/reset").status_code == 404
    assert requests.post(f"{emulator.base_url}/__emulator__/reset", timeout=5).status_code == 401
    assert api("GET", f"/threads/{thread_id}").status_code == 200


# --- Headers on every response ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "content_type"),
    [
        (None, 200, "application/json"),
        ({"kind": "status", "status": 429, "retry_after": 1}, 429, "application/json"),
        ({"kind": "malformed"}, 200, "application/json"),
        ({"kind": "html"}, 502, "text/html; charset=utf-8"),
        ({"kind": "hang", "seconds": 0.01}, 200, "application/json"),
    ],
)
def test_request_id_and_content_type_with_faults(api, emulator, fault, status, content_type):
    if fault:
        emulator.add_fault(**fault)
    response = api("POST", "/threads")
    assert response.status_code == status
    assert response.headers["Content-Type"] == content_type
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])


@pytest.mark.parametrize(
    ("api_kwargs", "method", "path", "status"),
    [
        ({}, "POST", "/threads", 200),
        ({}, "GET", "/threads/thread_missing", 404),
        ({}, "PUT", "/threads", 405),
        ({}, "GET", "/nowhere", 404),
        ({"key": "sk-wrong"}, "GET", "/threads/thread_missing", 401),
        ({"beta": None}, "POST", "/threads", 400),
    ],
)
def test_request_id_on_every_answer(emulator, api_kwargs, method, path, status):
    api = Api(emulator.base_url, **api_kwargs)
    first, second = api(method, path), api(method, path)
    assert first.status_code == second.status_code == status
    assert first.headers["Content-Type"] == "application/json"
    assert REQUEST_ID.fullmatch(first.headers["x-request-id"])
    assert first.headers["x-request-id"] != second.headers["x-request-id"]


# --- Faults -------------------------------------------------------------------------------------


def test_status_fault_counts_down_and_carries_retry_after(api, emulator):
    thread_id = api.new_thread()["id"]
    emulator.add_fault(method="GET", path="/v1/threads/*", status=429, times=2, retry_after=3)
    for _ in range(2):
        response = api("GET", f"/threads/{thread_id}")
        error = error_of(response, 429)
        assert response.headers["Retry-After"] == "3"
        assert error["code"] == "rate_limit_exceeded"
    assert api("POST", f"/threads/{thread_id}", json={}).status_code == 200  # other method
    response = api("GET", f"/threads/{thread_id}")
    assert response.status_code == 200
    assert "Retry-After" not in response.headers


def test_status_fault_defaults(api, emulator):
    emulator.add_fault()
    response = api("POST", "/threads")
    error = error_of(response, 503)
    assert error["type"] == "server_error"
    assert "Retry-After" not in response.headers
    assert api("POST", "/threads").status_code == 200


def test_status_fault_with_a_custom_body(api, emulator):
    emulator.add_fault(path="/v1/threads", status=200, body={"object": "thread"})
    response = api("POST", "/threads")
    assert (response.status_code, response.json()) == (200, {"object": "thread"})


def test_redirect_fault_points_elsewhere(api, emulator):
    emulator.add_fault(status=302)
    response = api("GET", "/threads/thread_x", allow_redirects=False)
    assert (response.status_code, response.headers["Location"]) == (302, "/v1/redirected")


def test_fault_path_is_an_fnmatch_pattern_without_query(api, emulator):
    thread_id = api.new_thread()["id"]
    emulator.add_fault(path="/v1/threads/*/messages", status=500, times=None)
    assert api("GET", f"/threads/{thread_id}").status_code == 200
    for _ in range(3):
        assert api("GET", f"/threads/{thread_id}/messages", params={"limit": 1}).status_code == 500
    emulator.clear_faults()
    assert api("GET", f"/threads/{thread_id}/messages").status_code == 200


def test_first_added_fault_applies_first(api, emulator):
    emulator.add_fault(status=500)
    emulator.add_fault(status=502)
    assert [api("POST", "/threads").status_code for _ in range(3)] == [500, 502, 200]


def test_faults_apply_before_auth(emulator):
    emulator.add_fault(status=503)
    assert Api(emulator.base_url, key=None)("POST", "/threads").status_code == 503


def test_hang_fault_makes_the_client_time_out(api, emulator):
    emulator.add_fault(kind="hang", seconds=1)
    with pytest.raises(requests.Timeout):
        api("POST", "/threads", timeout=0.2)
    assert api("POST", "/threads").status_code == 200


def test_hang_fault_then_answers_normally(api, emulator):
    emulator.add_fault(kind="hang", seconds=0.2)
    started = time.monotonic()
    assert api("POST", "/threads").status_code == 200
    assert time.monotonic() - started >= 0.2


def test_reset_cuts_a_hanging_request_short(api, emulator):
    emulator.add_fault(method="POST", kind="hang", seconds=30)
    outcome = {}

    def create():
        try:
            outcome["status"] = api("POST", "/threads", timeout=10).status_code
        except requests.ConnectionError:
            outcome["status"] = "dropped"

    started = time.monotonic()
    worker = threading.Thread(target=create)
    worker.start()
    time.sleep(0.2)
    emulator.reset()
    worker.join(5)
    assert outcome == {"status": "dropped"}
    assert time.monotonic() - started < 5


def test_drop_fault_closes_without_answer(api, emulator):
    emulator.add_fault(kind="drop")
    with pytest.raises(requests.ConnectionError):
        api("POST", "/threads")
    assert api("POST", "/threads").status_code == 200


def test_malformed_fault(api, emulator):
    emulator.add_fault(kind="malformed")
    response = api("POST", "/threads")
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


@pytest.mark.parametrize(("status", "expected"), [(None, 502), (504, 504), (520, 520)])
def test_html_fault(api, emulator, status, expected):
    emulator.add_fault(kind="html", status=status)
    response = api("POST", "/threads")
    assert response.status_code == expected
    assert response.headers["Content-Type"].startswith("text/html")
    assert response.text.startswith("<html>")
    assert str(expected) in response.text


def test_not_deleted_fault_keeps_the_thread(api, emulator):
    thread_id = api.new_thread()["id"]
    (message_id,) = api.add_messages(thread_id, 1)
    emulator.add_fault(method="DELETE", path="/v1/threads/*", kind="not_deleted")
    # A message delete matches the pattern but does not use the fault up.
    api.ok("DELETE", f"/threads/{thread_id}/messages/{message_id}")
    assert api.ok("DELETE", f"/threads/{thread_id}") == {
        "id": thread_id,
        "object": "thread.deleted",
        "deleted": False,
    }
    assert api("GET", f"/threads/{thread_id}").status_code == 200
    assert api.ok("DELETE", f"/threads/{thread_id}")["deleted"] is True


def test_not_deleted_fault_on_a_missing_thread_is_still_404(api, emulator):
    emulator.add_fault(kind="not_deleted")
    assert api("DELETE", "/threads/thread_missing").status_code == 404


@pytest.mark.parametrize(
    "arguments",
    [{"kind": "explode"}, {"method": "PATCH"}, {"times": 0}, {"status": 42}],
)
def test_bad_fault_is_refused(emulator, arguments):
    with pytest.raises(ValueError):
        emulator.add_fault(**arguments)


# --- Latency, controls over HTTP, reset, log ----------------------------------------------------


def test_latency_delays_every_request_until_reset(api, emulator):
    emulator.set_latency(0.2)
    started = time.monotonic()
    api("POST", "/threads")
    assert time.monotonic() - started >= 0.2
    emulator.reset()
    started = time.monotonic()
    api("POST", "/threads")
    assert time.monotonic() - started < 0.2


def test_http_controls(api, emulator):
    control = emulator.base_url.removesuffix("/v1") + "/__emulator__"
    thread_id = api.new_thread()["id"]

    response = requests.post(
        f"{control}/faults", json={"method": "GET", "status": 429, "retry_after": 1}, timeout=5
    )
    assert response.json() == {"ok": True}
    assert api("GET", f"/threads/{thread_id}").headers["Retry-After"] == "1"

    requests.post(f"{control}/faults", json={"status": 500, "times": None}, timeout=5)
    requests.delete(f"{control}/faults", timeout=5)
    assert api("GET", f"/threads/{thread_id}").status_code == 200

    requests.post(f"{control}/latency", json={"seconds": 0.2}, timeout=5)
    started = time.monotonic()
    api("GET", f"/threads/{thread_id}")
    assert time.monotonic() - started >= 0.2

    assert requests.post(f"{control}/reset", timeout=5).json() == {"ok": True}
    assert api("GET", f"/threads/{thread_id}").status_code == 404
    # Control requests are not API traffic.
    assert emulator.request_log == [("GET", f"/v1/threads/{thread_id}")]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("POST", "faults", {"kind": "explode"}, 400),
        ("POST", "faults", {"colour": "red"}, 400),
        ("POST", "latency", {}, 400),
        ("POST", "latency", {"seconds": -1}, 400),
        ("POST", "faults", [], 400),
        ("GET", "faults", None, 404),
        ("POST", "keys", {}, 404),
        ("POST", "rate_limit", {"rate": 0}, 400),
        ("POST", "rate_limit", {"rate": "fast"}, 400),
        ("POST", "rate_limit", {"max_in_flight": 0}, 400),
        ("POST", "rate_limit", {"max_in_flight": 1.5}, 400),
        ("POST", "rate_limit", {"max_in_flight": True}, 400),
        ("POST", "rate_limit", {"burst": 3}, 400),
        ("GET", "rate_limit", None, 404),
        ("POST", "stats", {}, 404),
    ],
)
def test_bad_http_control_requests(emulator, method, path, body, status):
    control = emulator.base_url.removesuffix("/v1") + "/__emulator__/"
    response = requests.request(method, control + path, json=body, timeout=5)
    assert response.status_code == status
    assert response.json()["error"]["message"]


def test_reset_forgets_threads_faults_and_log(api, emulator):
    thread_id = api.new_thread()["id"]
    emulator.add_fault(path="/v1/threads/x", times=None)
    emulator.reset()
    assert emulator.request_log == []
    assert api("GET", f"/threads/{thread_id}").status_code == 404
    assert api("GET", "/threads/x").status_code == 404  # the fault is gone too


def test_request_log(api, emulator):
    thread_id = api.new_thread()["id"]
    api("GET", f"/threads/{thread_id}/messages", params={"limit": 5, "order": "asc"})
    Api(emulator.base_url, key="sk-nope")("DELETE", f"/threads/{thread_id}")
    emulator.add_fault(kind="drop")
    with pytest.raises(requests.ConnectionError):
        api("GET", "/threads/thread_x")
    log = emulator.request_log
    assert log == [
        ("POST", "/v1/threads"),
        ("GET", f"/v1/threads/{thread_id}/messages?limit=5&order=asc"),
        ("DELETE", f"/v1/threads/{thread_id}"),
        ("GET", "/v1/threads/thread_x"),
    ]
    log.clear()
    assert len(emulator.request_log) == 4


# --- Test-setup helpers -------------------------------------------------------------------------


def test_seed_thread(api, other_api, emulator):
    thread = emulator.seed_thread(
        TEST_KEY,
        metadata={"source": "seed"},
        messages=[{"role": "user", "content": "seeded"}],
        tool_resources={"code_interpreter": {"file_ids": ["f"]}},
    )
    assert api.ok("GET", f"/threads/{thread['id']}") == thread
    assert thread["metadata"] == {"source": "seed"}
    (message,) = api.ok("GET", f"/threads/{thread['id']}/messages")["data"]
    assert message["content"][0]["text"]["value"] == "seeded"
    assert other_api("GET", f"/threads/{thread['id']}").status_code == 404
    assert emulator.request_log == [
        ("GET", f"/v1/threads/{thread['id']}"),
        ("GET", f"/v1/threads/{thread['id']}/messages"),
        ("GET", f"/v1/threads/{thread['id']}"),
    ]


def test_seed_thread_validates(emulator):
    with pytest.raises(ValueError, match="metadata"):
        emulator.seed_thread(TEST_KEY, metadata={"k": 1})


def test_remove_thread(api, emulator):
    thread_id = api.new_thread()["id"]
    assert emulator.remove_thread(thread_id) is True
    assert api("GET", f"/threads/{thread_id}").status_code == 404
    assert emulator.remove_thread(thread_id) is False


def test_concurrent_creates_are_all_kept(api):
    with ThreadPoolExecutor(max_workers=8) as pool:
        ids = list(pool.map(lambda _: api.new_thread()["id"], range(40)))
    assert len(set(ids)) == 40
    assert all(api("GET", f"/threads/{thread_id}").status_code == 200 for thread_id in ids)


# --- Rate-limit mode ----------------------------------------------------------------------------


def rate_limited(response: requests.Response, retry_after: str = "1") -> dict:
    """The mode's 429: OpenAI's error shape, a whole-second Retry-After of at least 1."""
    error = error_of(response, 429)
    assert (error["type"], error["code"], error["param"]) == (
        "requests",
        "rate_limit_exceeded",
        None,
    )
    assert error["message"].endswith(f"Please try again in {retry_after}s.")
    assert response.headers["Retry-After"] == retry_after
    assert REQUEST_ID.fullmatch(response.headers["x-request-id"])
    return error


def in_background(call, count: int) -> ThreadPoolExecutor:
    """`count` calls of `call()` started in a pool (shut it down to wait for them)."""
    pool = ThreadPoolExecutor(count)
    for _ in range(count):
        pool.submit(call)
    return pool


def wait_for_requests(emulator, count: int) -> None:
    """Until `count` API requests have arrived (and a moment more, to be admitted)."""
    deadline = time.monotonic() + 5
    while len(emulator.request_log) < count:
        assert time.monotonic() < deadline, emulator.request_log
        time.sleep(0.01)
    time.sleep(0.05)


def test_rate_limit_mode_is_off_by_default(api, emulator):
    assert emulator.rate_limit == RateLimit(None, None)
    assert all(api("POST", "/threads").status_code == 200 for _ in range(30))
    assert emulator.rate_limited_count == 0


def test_burst_over_the_rate_gets_429_with_retry_after(api, emulator):
    emulator.set_rate_limit(rate=3)
    assert [api("POST", "/threads").status_code for _ in range(3)] == [200, 200, 200]
    error = rate_limited(api("POST", "/threads"))
    assert "limit 3" in error["message"]
    rate_limited(api("GET", "/threads/thread_x"))  # every endpoint, before it is looked up
    assert emulator.rate_limited_count == 2
    # Refused requests are API traffic all the same: the log keeps them.
    assert [method for method, _ in emulator.request_log] == ["POST"] * 4 + ["GET"]
    time.sleep(0.4)  # a token comes back every 1/3 s
    assert api("POST", "/threads").status_code == 200
    rate_limited(api("POST", "/threads"))


def test_retry_after_is_the_wait_for_the_next_token_in_whole_seconds():
    now = [100.0]
    limiter = RateLimiter(RateLimit(rate=0.4), clock=lambda: now[0])
    assert limiter.admit("sk-a") is None  # the bucket holds max(1, rate) = 1 token
    refusal = limiter.admit("sk-a")
    assert (refusal.status, refusal.headers) == (429, (("Retry-After", "3"),))  # 2.5 s, up
    now[0] += 2.4
    assert limiter.admit("sk-a").headers == (("Retry-After", "1"),)  # never below 1
    now[0] += 0.1
    assert limiter.admit("sk-a") is None


def test_bucket_holds_one_second_of_rate_and_refills_to_no_more():
    now = [0.0]
    limiter = RateLimiter(RateLimit(rate=20), clock=lambda: now[0])
    assert [limiter.admit("sk-a") for _ in range(20)] == [None] * 20
    assert limiter.admit("sk-a").status == 429
    now[0] += 60  # idle for a minute: still one second's worth, not 1,200
    assert [limiter.admit("sk-a") for _ in range(20)] == [None] * 20
    assert limiter.admit("sk-a").status == 429
    now[0] += 0.0625  # 1.25 tokens, exactly (0.05 s would be 0.999... in floating point)
    assert limiter.admit("sk-a") is None


def test_in_flight_cap_with_slow_requests(api, emulator):
    emulator.set_rate_limit(max_in_flight=2)
    emulator.set_latency(0.5)
    pool = in_background(lambda: api("POST", "/threads"), 2)
    wait_for_requests(emulator, 2)
    started = time.monotonic()
    error = rate_limited(api("POST", "/threads"))
    assert time.monotonic() - started < 0.4  # answered at once, not after the latency
    assert "in flight" in error["message"]
    pool.shutdown()
    assert api("POST", "/threads").status_code == 200  # the slots are free again
    assert emulator.rate_limited_count == 1


def test_a_hanging_request_holds_its_slot_until_it_answers(api, emulator):
    emulator.set_rate_limit(max_in_flight=1)
    emulator.add_fault(method="POST", kind="hang", seconds=0.5)
    pool = in_background(lambda: api("POST", "/threads"), 1)
    wait_for_requests(emulator, 1)
    rate_limited(api("GET", "/threads/thread_x"))
    pool.shutdown()
    assert api("GET", "/threads/thread_x").status_code == 404


def test_a_dropped_request_frees_its_slot(api, emulator):
    emulator.set_rate_limit(max_in_flight=1)
    emulator.add_fault(kind="drop")
    with pytest.raises(requests.ConnectionError):
        api("POST", "/threads")
    assert api("POST", "/threads").status_code == 200


def test_rate_limits_are_per_key(api, other_api, emulator):
    emulator.set_rate_limit(rate=2)
    assert [api("POST", "/threads").status_code for _ in range(3)] == [200, 200, 429]
    assert [other_api("POST", "/threads").status_code for _ in range(3)] == [200, 200, 429]
    # The key as sent counts, known or not: an unknown key is limited (then refused) apart.
    stranger = Api(emulator.base_url, key="sk-unknown")
    assert [stranger("POST", "/threads").status_code for _ in range(3)] == [401, 401, 429]


def test_in_flight_caps_are_per_key(api, other_api, emulator):
    emulator.set_rate_limit(max_in_flight=1)
    emulator.set_latency(0.3)
    pool = in_background(lambda: api("POST", "/threads"), 1)
    wait_for_requests(emulator, 1)
    assert other_api("POST", "/threads").status_code == 200
    pool.shutdown()


def test_both_limits_at_once(api, emulator):
    emulator.set_rate_limit(max_in_flight=5, rate=2)
    assert emulator.rate_limit == RateLimit(max_in_flight=5, rate=2)
    assert [api("POST", "/threads").status_code for _ in range(3)] == [200, 200, 429]


def test_rate_limit_through_the_python_api(api, emulator):
    emulator.set_rate_limit(rate=1)
    assert [api("POST", "/threads").status_code for _ in range(2)] == [200, 429]
    emulator.set_rate_limit(rate=1)  # set again: the buckets start full
    assert api("POST", "/threads").status_code == 200
    emulator.clear_rate_limit()
    assert all(api("POST", "/threads").status_code == 200 for _ in range(5))
    emulator.set_rate_limit(max_in_flight=1)
    emulator.reset()  # back to the constructor's setting: off, and the count starts over
    assert emulator.rate_limit == RateLimit()
    assert emulator.rate_limited_count == 0
    assert all(api("POST", "/threads").status_code == 200 for _ in range(5))


@pytest.mark.parametrize(
    "arguments",
    [{"rate": 0}, {"rate": -1}, {"rate": float("nan")}, {"max_in_flight": 0}],
)
def test_bad_rate_limit_is_refused(emulator, arguments):
    with pytest.raises(ValueError):
        emulator.set_rate_limit(**arguments)


def test_rate_limit_through_the_http_controls(api, emulator):
    control = emulator.base_url.removesuffix("/v1") + "/__emulator__"
    response = requests.post(f"{control}/rate_limit", json={"rate": 1}, timeout=5)
    assert response.json() == {"ok": True}
    assert [api("POST", "/threads").status_code for _ in range(2)] == [200, 429]
    assert requests.get(f"{control}/stats", timeout=5).json() == {"requests": 2, "rate_limited": 1}
    assert requests.delete(f"{control}/rate_limit", timeout=5).json() == {"ok": True}
    assert api("POST", "/threads").status_code == 200
    requests.post(f"{control}/rate_limit", json={"max_in_flight": 3, "rate": None}, timeout=5)
    assert emulator.rate_limit == RateLimit(max_in_flight=3)


def test_injected_429s_are_counted_too(api, emulator):
    emulator.add_fault(status=429, retry_after=2, times=2)
    assert [api("POST", "/threads").status_code for _ in range(3)] == [429, 429, 200]
    assert emulator.rate_limited_count == 2
    assert emulator.stats() == {"requests": 3, "rate_limited": 2}


def test_constructor_rate_limit_survives_reset():
    with Emulator(keys=[TEST_KEY], rate=1, max_in_flight=4) as emulator:
        api = Api(emulator.base_url)
        assert [api("POST", "/threads").status_code for _ in range(2)] == [200, 429]
        emulator.clear_rate_limit()
        emulator.reset()
        assert emulator.rate_limit == RateLimit(max_in_flight=4, rate=1)
        assert [api("POST", "/threads").status_code for _ in range(2)] == [200, 429]


# --- Lifecycle and command line -----------------------------------------------------------------


def test_start_and_close_without_with():
    emulator = Emulator(keys=[TEST_KEY], latency=0.15)
    with pytest.raises(RuntimeError):
        emulator.base_url  # noqa: B018 - not started yet
    emulator.start()
    api = Api(emulator.base_url)
    try:
        emulator.set_latency(0)
        emulator.reset()  # back to the constructor's latency
        started = time.monotonic()
        assert api("POST", "/threads").status_code == 200
        assert time.monotonic() - started >= 0.15
    finally:
        emulator.close()
    with pytest.raises(requests.ConnectionError):
        requests.post(api.base_url + "/threads", timeout=2)
    emulator.close()  # closing twice is harmless
    with emulator:  # and it can serve again
        assert Api(emulator.base_url)("POST", "/threads").status_code == 200


@pytest.mark.parametrize(("keys", "error"), [([], ValueError), (TEST_KEY, TypeError)])
def test_keys_are_a_non_empty_list(keys, error):
    with pytest.raises(error):
        Emulator(keys=keys)


def test_command_line():
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--port", "0", "--key", TEST_KEY, "--latency", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", base_url)
        api = Api(base_url)
        assert api("POST", "/threads").status_code == 200
        # A client that gives up on a hanging request is no error worth printing.
        fault = {"kind": "hang", "seconds": 0.3, "times": 3}
        requests.post(base_url.removesuffix("/v1") + "/__emulator__/faults", json=fault, timeout=5)
        for _ in range(3):
            with pytest.raises(requests.Timeout):
                api("POST", "/threads", timeout=0.05)
        time.sleep(0.5)
    finally:
        process.terminate()
        _, stderr = process.communicate(timeout=5)
    assert process.returncode == 0
    assert stderr == ""  # quiet: no line per request


def run_command_line(flags: list[str]) -> subprocess.CompletedProcess[str]:
    """`python -m emulator --key K FLAGS…` run to its end (a refusal: it never serves)."""
    return subprocess.run(
        [sys.executable, "-m", "emulator", "--key", TEST_KEY, *flags],
        capture_output=True,
        text=True,
        timeout=10,
    )


def test_command_line_host_is_the_address_it_listens_on():
    """--host 127.0.0.2 (still loopback): answers there, and not on 127.0.0.1."""
    process = subprocess.Popen(
        [sys.executable, "-m", "emulator", "--host", "127.0.0.2", "--key", TEST_KEY],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.2:\d+/v1", base_url)
        assert Api(base_url)("POST", "/threads").status_code == 200
        with pytest.raises(requests.ConnectionError):
            Api(base_url.replace("127.0.0.2", "127.0.0.1"))("POST", "/threads", timeout=2)
    finally:
        process.terminate()
        process.communicate(timeout=5)
    assert process.returncode == 0


@pytest.mark.parametrize("where", ["unknown host", "port in use"])
def test_command_line_says_why_it_cannot_listen(where):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        flags = (
            ["--host", "no-such-host.invalid"]
            if where == "unknown host"
            else ["--port", str(taken.getsockname()[1])]
        )
        finished = run_command_line(flags)
    assert finished.returncode == 2
    assert "cannot listen on" in finished.stderr
    assert "Traceback" not in finished.stderr


def test_command_line_rate_limit_flags():
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "emulator",
            "--key",
            TEST_KEY,
            "--rate",
            "2",
            "--max-in-flight",
            "3",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        base_url = process.stdout.readline().strip()
        api = Api(base_url)
        assert [api("POST", "/threads").status_code for _ in range(3)] == [200, 200, 429]
        stats = requests.get(base_url.removesuffix("/v1") + "/__emulator__/stats", timeout=5)
        assert stats.json() == {"requests": 3, "rate_limited": 1}
    finally:
        process.terminate()
        process.communicate(timeout=5)


@pytest.mark.parametrize(
    ("flags", "complaint"),
    [
        (["--rate", "0"], "rate must be"),
        (["--rate", "often"], "invalid float value"),
        (["--max-in-flight", "0"], "max_in_flight must be"),
        (["--max-in-flight", "2.5"], "invalid int value"),
    ],
)
def test_command_line_refuses_bad_rate_limit_flags(flags, complaint):
    finished = run_command_line(flags)
    assert finished.returncode == 2
    assert complaint in finished.stderr
