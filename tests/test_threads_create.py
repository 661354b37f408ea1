"""Creating a thread: the form, its validation before anything is sent, and upstream faults."""

import re

import pytest
from django.utils.html import escape

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from tests.threads_helpers import HX, UPSTREAM_FAULTS, body, is_partial, posts_sent, url
from threads_app.models import ApiKey, AuditEvent, Membership, TrackedThread
from threads_app.upstream import ThreadsClient

pytestmark = pytest.mark.django_db


def form_data(api_key, metadata=(), messages=(), **fields):
    """A create-form POST: `metadata` (key, value) pairs, `messages` dicts of row fields."""
    data = {
        "label": "Support case",
        "api_key": api_key.pk,
        "code_interpreter_file_ids": "",
        "vector_store_id": "",
        "meta-TOTAL_FORMS": len(metadata),
        "meta-INITIAL_FORMS": 0,
        "msg-TOTAL_FORMS": len(messages),
        "msg-INITIAL_FORMS": 0,
    }
    for index, (key, value) in enumerate(metadata):
        data[f"meta-{index}-key"], data[f"meta-{index}-value"] = key, value
    for index, message in enumerate(messages):
        row = {"role": "user", "text": "", "file_ids": "", "tool": "code_interpreter", **message}
        data.update({f"msg-{index}-{name}": value for name, value in row.items()})
    data.update(fields)
    return data


def live_thread(thread_id):
    return ThreadsClient(TEST_KEY).retrieve_thread(thread_id)


def test_create_page_full_and_partial(user_client, api_key):
    full = body(user_client.get(url("thread_create")))
    partial = body(user_client.get(url("thread_create"), **HX))

    assert "<h1>New thread</h1>" in full
    assert 'data-add-row="meta-template"' in full and 'data-formset="meta"' in full
    assert f'<option value="{api_key.pk}" selected>' in full  # the only key, preselected
    assert "---------" not in full  # and nothing else to pick
    assert is_partial(partial) and partial.lstrip().startswith('<form id="thread-form"')


def test_create_without_a_usable_key_says_to_add_one(user_client, emulator):
    for response in (
        user_client.get(url("thread_create")),
        user_client.post(url("thread_create"), {"label": "x"}),
        user_client.get(url("thread_import")),
        user_client.post(url("thread_import"), {"thread_ids": "thread_abc"}),
    ):
        text = body(response)
        assert response.status_code == 200
        assert "You have no API key you can" in text and url("key_create") in text
        assert 'name="api_key"' not in text  # no form that could only be refused
    assert not emulator.request_log


def test_two_keys_are_offered_with_none_preselected(user_client, api_key, make_key, user):
    make_key(owner=user, label="Second", secret=OTHER_TEST_KEY)

    text = body(user_client.get(url("thread_create")))

    assert '<option value="" selected>---------</option>' in text


def test_create_tracks_the_thread_and_opens_it(user_client, user, api_key, emulator):
    data = form_data(
        api_key,
        metadata=[("customer", "ACME"), ("priority", "high")],
        messages=[
            {"text": "Hello there", "file_ids": "file-abc, file-def", "tool": "file_search"},
            {"role": "assistant", "text": "Hi!"},
        ],
        code_interpreter_file_ids="file-1\nfile-2, file-3",
        vector_store_id="vs_1",
    )

    response = user_client.post(url("thread_create"), data)

    thread = TrackedThread.objects.get()
    assert response.status_code == 302
    assert response["Location"] == url("thread_detail", thread.pk)
    assert thread.label == "Support case"
    assert thread.tracked_by == user and thread.api_key == api_key
    assert thread.metadata == {"customer": "ACME", "priority": "high"}
    assert thread.tool_resources == {
        "code_interpreter": {"file_ids": ["file-1", "file-2", "file-3"]},
        "file_search": {"vector_store_ids": ["vs_1"]},
    }
    assert thread.upstream_created_at is not None and thread.last_checked_at is not None
    live = live_thread(thread.thread_id)
    assert live.metadata == thread.metadata
    page = ThreadsClient(TEST_KEY).list_messages(thread.thread_id, order="asc")
    assert [(m.role, m.text) for m in page.messages] == [
        ("user", "Hello there"),
        ("assistant", "Hi!"),
    ]
    assert page.messages[0].attachments == [
        {"file_id": "file-abc", "tools": [{"type": "file_search"}]},
        {"file_id": "file-def", "tools": [{"type": "file_search"}]},
    ]
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome) == (AuditEvent.Action.THREAD_CREATED, "success")
    assert event.thread_id == thread.thread_id and event.actor_id == user.pk
    assert event.request_id.startswith("req_")
    api_key.refresh_from_db()
    assert api_key.last_used_at is not None
    # The detail page it opens shows the success message.
    text = body(user_client.get(response["Location"]))
    assert f"Created thread {thread.thread_id}" in text


def test_create_with_nothing_but_a_key(user_client, api_key):
    response = user_client.post(url("thread_create"), form_data(api_key, label=""))

    thread = TrackedThread.objects.get()
    assert response.status_code == 302
    assert thread.metadata == {} and thread.tool_resources == {}


def test_htmx_create_redirects_the_client(user_client, api_key):
    response = user_client.post(url("thread_create"), form_data(api_key), **HX)

    thread = TrackedThread.objects.get()
    assert response.status_code == 200
    assert response["HX-Redirect"] == url("thread_detail", thread.pk)


def test_blank_and_removed_rows_are_ignored(user_client, api_key):
    data = form_data(api_key, metadata=[("a", "1"), ("", ""), ("b", "2")], messages=[{}])
    data["meta-TOTAL_FORMS"] = 5  # rows 3 and 4 were removed in the browser

    user_client.post(url("thread_create"), data)

    assert TrackedThread.objects.get().metadata == {"a": "1", "b": "2"}


@pytest.mark.parametrize(
    ("fields", "error"),
    [
        (
            {"metadata": [(f"k{i}", "v") for i in range(17)]},
            "At most 16 metadata pairs are allowed; there are 17. Remove 1.",
        ),
        (
            {"metadata": [("ok", "v"), ("k" * 65, "v")]},
            "Pair 2, key: Keys are at most 64 characters (this one has 65).",
        ),
        (
            {"metadata": [("long", "v" * 513)]},
            "Pair 1, value: Values are at most 512 characters (this one has 513).",
        ),
        (
            {"metadata": [("same", "1"), ("other", "2"), ("same", "3")]},
            "Pair 3, key: The key “same” is already used in pair 1.",
        ),
        ({"metadata": [("", "lonely value")]}, "Pair 1, key: A value needs a key."),
        (
            {"messages": [{"file_ids": "file-1"}]},
            "Message 1, text: A message needs text (or remove the row).",
        ),
        (
            {"messages": [{"text": "hi", "file_ids": "file 1"}]},
            "“file 1” is not a file id: it contains spaces.",
        ),
        (
            {"code_interpreter_file_ids": "\n".join(f"file-{i}" for i in range(21))},
            "At most 20 file ids are allowed; there are 21.",
        ),
        ({"vector_store_id": "vs 1"}, "“vs 1” is not a vector store id: it contains spaces."),
        ({"label": "x" * 201}, "Ensure this value has at most 200 characters"),
    ],
    ids=[
        "17-pairs",
        "65-char-key",
        "513-char-value",
        "duplicate-key",
        "value-without-key",
        "attachment-without-text",
        "file-id-with-space",
        "21-files",
        "vector-store-with-space",
        "long-label",
    ],
)
def test_invalid_input_is_refused_before_anything_is_sent(
    user_client, api_key, emulator, fields, error
):
    data = form_data(api_key, **fields)

    response = user_client.post(url("thread_create"), data)

    text = body(response)
    assert response.status_code == 200
    assert escape(error) in text
    assert "Nothing was sent to the Threads API" in text
    assert posts_sent(emulator) == []
    assert not TrackedThread.objects.exists()
    assert not AuditEvent.objects.exists()
    assert 'value="Support case"' in text or "label" in fields  # input kept


def test_htmx_validation_error_returns_the_form_partial(user_client, api_key, emulator):
    data = form_data(api_key, metadata=[("k" * 65, "kept value")])

    text = body(user_client.post(url("thread_create"), data, **HX))

    assert is_partial(text) and text.lstrip().startswith('<form id="thread-form"')
    assert 'value="kept value"' in text and 'aria-invalid="true"' in text
    assert posts_sent(emulator) == []


def test_another_users_key_cannot_be_used(user_client, user, other_user, make_key, emulator):
    foreign_key = make_key(owner=other_user, label="bob's key")
    make_key(owner=user, label="Own", secret=OTHER_TEST_KEY)  # so the form is offered

    text = body(user_client.post(url("thread_create"), form_data(foreign_key)))

    assert "Select a valid choice" in text
    assert posts_sent(emulator) == []
    assert not TrackedThread.objects.exists()


@pytest.mark.parametrize("role", [Membership.Role.VIEWER, None], ids=["viewer", "revoked"])
def test_team_viewers_and_revoked_keys_cannot_create(
    user_client, user, other_user, make_key, make_team, emulator, role
):
    if role:
        key = make_key(team=make_team("Blue", {user: role, other_user: "owner"}))
    else:
        key = make_key(owner=user)
        ApiKey.objects.filter(pk=key.pk).update(revoked_at="2026-01-01T00:00:00Z")
    make_key(owner=user, label="Own", secret=OTHER_TEST_KEY)  # so the form is offered

    text = body(user_client.post(url("thread_create"), form_data(key)))

    assert "Select a valid choice" in text
    assert posts_sent(emulator) == []


def test_team_members_create_with_the_team_key(user_client, user, make_key, make_team):
    key = make_key(team=make_team("Blue", {user: Membership.Role.MEMBER}))

    response = user_client.post(url("thread_create"), form_data(key))

    assert response.status_code == 302
    event = AuditEvent.objects.get()
    assert event.team_name == "Blue"


@pytest.mark.parametrize(("fault", "expected"), UPSTREAM_FAULTS)
def test_upstream_failure_shows_on_the_form_and_tracks_nothing(
    user_client, api_key, emulator, fault, expected
):
    emulator.add_fault(method="POST", path="/v1/threads", **fault)
    data = form_data(api_key, metadata=[("customer", "kept value")])

    response = user_client.post(url("thread_create"), data)

    text = body(response)
    assert response.status_code == 200
    assert "The thread was not created:" in text
    assert expected in text
    if fault["kind"] == "status":
        assert "(request req_" in text  # the upstream's request id
    assert 'value="kept value"' in text and 'value="Support case"' in text
    assert not TrackedThread.objects.exists()
    assert not AuditEvent.objects.exists()  # a failed create records nothing (see the service)


def test_rejected_key_is_marked_failing(user_client, api_key, emulator):
    emulator.add_fault(method="POST", path="/v1/threads", kind="status", status=401)

    user_client.post(url("thread_create"), form_data(api_key))

    api_key.refresh_from_db()
    assert api_key.failing and "401" in api_key.last_error


def test_unknown_attachment_tool_is_refused_locally(user_client, api_key, emulator):
    data = form_data(api_key, messages=[{"text": "hi", "file_ids": "f1", "tool": "retrieval"}])

    text = body(user_client.post(url("thread_create"), data))

    assert "Select a valid choice" in text
    assert posts_sent(emulator) == []


# --- Adding rows without JavaScript (the "Add a …" buttons submit `add_row`) ------------------


def row_values(text, prefix, field):
    """The values of the rows shown, in order, of `name="meta-N-key"` inputs or textareas."""
    inputs = re.findall(rf'<input [^>]*name="{prefix}-\d+-{field}"[^>]*>', text)
    areas = re.findall(rf'<textarea name="{prefix}-\d+-{field}"[^>]*>\n?([^<]*)</textarea>', text)
    if areas:
        return areas
    return [next(iter(re.findall(r'value="([^"]*)"', tag)), "") for tag in inputs]


def test_add_a_pair_without_javascript_shows_one_more_row_and_keeps_what_was_typed(
    user_client, api_key, emulator
):
    data = form_data(
        api_key,
        metadata=[("customer", "ACME")],
        messages=[{"text": "Hello there"}],
        code_interpreter_file_ids="file-1",
        add_row="meta",
    )

    response = user_client.post(url("thread_create"), data)

    text = body(response)
    assert response.status_code == 200 and "<h1>New thread</h1>" in text
    assert row_values(text, "meta", "key") == ["customer", ""]
    assert row_values(text, "meta", "value") == ["ACME", ""]
    assert row_values(text, "msg", "text") == ["Hello there"]
    assert 'value="Support case"' in text and "file-1" in text
    assert f'<option value="{api_key.pk}" selected>' in text
    assert "Please correct the errors" not in text  # nothing was validated
    assert emulator.request_log == [] and not TrackedThread.objects.exists()


def test_add_a_message_without_javascript_shows_one_more_message_row(
    user_client, api_key, emulator
):
    data = form_data(api_key, messages=[{"text": "First"}], add_row="msg")

    text = body(user_client.post(url("thread_create"), data))

    assert row_values(text, "msg", "text") == ["First", ""]
    assert row_values(text, "meta", "key") == [""]  # the blank row to start with
    assert 'name="msg-TOTAL_FORMS" value="2"' in text
    assert emulator.request_log == []


def test_rows_added_without_javascript_are_then_created(user_client, api_key, emulator):
    first = form_data(api_key, metadata=[("a", "1")], add_row="meta")
    text = body(user_client.post(url("thread_create"), first))
    assert (
        'name="meta-TOTAL_FORMS" value="2"' in text
        and 'name="meta-INITIAL_FORMS" value="1"' in text
    )

    second = form_data(api_key, metadata=[("a", "1"), ("b", "2")])
    second["meta-INITIAL_FORMS"] = 1
    response = user_client.post(url("thread_create"), second)

    assert response.status_code == 302
    assert TrackedThread.objects.get().metadata == {"a": "1", "b": "2"}


def test_the_add_buttons_submit_and_enter_still_creates(user_client, api_key):
    text = body(user_client.get(url("thread_create")))

    assert '<button type="submit" name="add_row" value="meta" formnovalidate' in text
    assert '<button type="submit" name="add_row" value="msg" formnovalidate' in text
    # The form's first submit button is the default one (Enter in a field): it creates.
    form = text[text.index('<form id="thread-form"') :]
    first = re.search(r'<(?:button|input) [^>]*type="submit"[^>]*>', form).group(0)
    assert first == '<input type="submit" value="Create thread" hidden>'
