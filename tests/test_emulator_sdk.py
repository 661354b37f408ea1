"""Fidelity: the official `openai` SDK talks to the emulator as it would to the real API.

The SDK adds `OpenAI-Beta: assistants=v2` to every `beta.threads` call by itself; the
emulator rejects calls without it, so every passing call here also proves that.
"""

import openai
import pytest

from tests.conftest import OTHER_TEST_KEY, TEST_KEY

# The SDK marks the Assistants API deprecated (OpenAI retired it; compatible providers keep it).
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def sdk_client(emulator, key=TEST_KEY) -> openai.OpenAI:
    return openai.OpenAI(api_key=key, base_url=emulator.base_url, max_retries=0, timeout=5)


@pytest.fixture
def client(emulator):
    with sdk_client(emulator) as client:
        yield client


def test_thread_lifecycle(client):
    thread = client.beta.threads.create(
        metadata={"team": "blue"},
        tool_resources={"code_interpreter": {"file_ids": ["file_a"]}},
        messages=[{"role": "user", "content": "Hello"}],
    )
    assert thread.id.startswith("thread_")
    assert thread.object == "thread"
    assert thread.metadata == {"team": "blue"}
    assert thread.tool_resources.code_interpreter.file_ids == ["file_a"]

    assert client.beta.threads.retrieve(thread.id) == thread

    updated = client.beta.threads.update(thread.id, metadata={"team": "red"})
    assert updated.metadata == {"team": "red"}
    assert client.beta.threads.retrieve(thread.id).metadata == {"team": "red"}

    deleted = client.beta.threads.delete(thread.id)
    assert (deleted.id, deleted.object, deleted.deleted) == (thread.id, "thread.deleted", True)
    with pytest.raises(openai.NotFoundError):
        client.beta.threads.retrieve(thread.id)


def test_empty_thread(client):
    thread = client.beta.threads.create()
    assert thread.metadata == {}
    assert client.beta.threads.messages.list(thread.id).data == []


def test_messages(client):
    thread = client.beta.threads.create()
    message = client.beta.threads.messages.create(
        thread.id,
        role="user",
        content=[
            {"type": "text", "text": "Look at this"},
            {"type": "image_url", "image_url": {"url": "https://example.test/cat.png"}},
        ],
        attachments=[{"file_id": "file_x", "tools": [{"type": "code_interpreter"}]}],
    )
    assert message.thread_id == thread.id
    assert message.role == "user"
    assert message.content[0].text.value == "Look at this"
    assert message.content[1].image_url.url == "https://example.test/cat.png"
    assert message.attachments[0].file_id == "file_x"

    retrieved = client.beta.threads.messages.retrieve(message.id, thread_id=thread.id)
    assert retrieved == message
    updated = client.beta.threads.messages.update(
        message.id, thread_id=thread.id, metadata={"seen": "yes"}
    )
    assert updated.metadata == {"seen": "yes"}
    deleted = client.beta.threads.messages.delete(message.id, thread_id=thread.id)
    assert (deleted.deleted, deleted.object) == (True, "thread.message.deleted")


def test_message_list_pagination(client):
    thread = client.beta.threads.create()
    ids = [
        client.beta.threads.messages.create(thread.id, role="user", content=str(i)).id
        for i in range(5)
    ]
    first_page = client.beta.threads.messages.list(thread.id, limit=2, order="asc")
    assert [m.id for m in first_page.data] == ids[:2]
    assert first_page.has_next_page()
    # Auto-pagination follows `after=<last id>` until `has_more` is false.
    assert [m.id for m in first_page] == ids
    newest_first = client.beta.threads.messages.list(thread.id, limit=3)
    assert [m.id for m in newest_first] == ids[::-1]


def test_wrong_key_raises_authentication_error(emulator):
    with (
        sdk_client(emulator, key="sk-test-unknown-0000000000000000") as client,
        pytest.raises(openai.AuthenticationError) as caught,
    ):
        client.beta.threads.create()
    assert caught.value.code == "invalid_api_key"
    assert caught.value.request_id.startswith("req_")


def test_foreign_thread_raises_not_found(client, emulator):
    thread = client.beta.threads.create()
    with sdk_client(emulator, key=OTHER_TEST_KEY) as other:
        with pytest.raises(openai.NotFoundError) as caught:
            other.beta.threads.retrieve(thread.id)
        assert caught.value.message.endswith(f"No thread found with id '{thread.id}'.")
        with pytest.raises(openai.NotFoundError):
            other.beta.threads.delete(thread.id)
    assert client.beta.threads.retrieve(thread.id).id == thread.id


def test_invalid_request_raises_bad_request(client):
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.create(metadata={f"k{i}": "v" for i in range(17)})
    assert (caught.value.param, caught.value.code) == ("metadata", "object_above_max_properties")
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.messages.list("thread_x", limit=101)
    assert caught.value.param == "limit"


def test_rate_limit_raises_rate_limit_error(client, emulator):
    emulator.add_fault(method="POST", path="/v1/threads", status=429, retry_after=1)
    with pytest.raises(openai.RateLimitError) as caught:
        client.beta.threads.create()
    assert caught.value.response.headers["Retry-After"] == "1"
    assert client.beta.threads.create().id.startswith("thread_")


def test_sdk_paths_match_the_emulator(client, emulator):
    thread = client.beta.threads.create()
    client.beta.threads.messages.list(thread.id, limit=1, order="asc")
    client.beta.threads.delete(thread.id)
    assert emulator.request_log == [
        ("POST", "/v1/threads"),
        ("GET", f"/v1/threads/{thread.id}/messages?limit=1&order=asc"),
        ("DELETE", f"/v1/threads/{thread.id}"),
    ]
