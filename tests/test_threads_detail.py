"""A thread's page: local record, live thread, messages with "load more", upstream faults."""

import re

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils.html import escape

from tests.conftest import TEST_KEY
from tests.threads_helpers import FAILURES, HX, UPSTREAM_FAULTS, body, is_partial, url
from threads_app.models import ApiKey, Membership, TrackedThread
from threads_app.services.keys import client_for

pytestmark = pytest.mark.django_db

State = TrackedThread.State


def message_ids(text):
    return re.findall(r'<li id="(msg_\w+)"', text)


def load_more(text):
    """The "Load more" link's URL, or None."""
    match = re.search(r'<a class="button" href="([^"]+)"[^>]*>Load more</a>', text)
    return match and match.group(1).replace("&amp;", "&")


@pytest.fixture
def conversation(api_key, make_thread):
    """A thread with 45 messages, "message 0" (oldest) to "message 44" (newest)."""
    return make_thread(
        api_key,
        label="Conversation",
        metadata={"customer": "ACME"},
        messages=[{"role": "user", "content": f"message {n}"} for n in range(45)],
    )


def test_detail_shows_record_live_thread_and_the_conversation_from_its_start(
    user_client, api_key, conversation
):
    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "<h1>Conversation</h1>" in text
    assert f'data-copy="{conversation.thread_id}"' in text
    assert escape(api_key.label) in text and api_key.hint in text
    assert "<code>customer</code></dt><dd>ACME</dd>" in text
    assert "message 0<" in text and "message 19<" in text and "message 20<" not in text
    assert len(message_ids(text)) == 20
    assert text.index("message 0<") < text.index("message 1<")  # oldest first, read downwards
    assert '<nav class="breadcrumb" aria-label="Breadcrumb">' in text
    assert f'<a href="{url("thread_list")}">Threads</a>' in text
    assert load_more(text).startswith(url("thread_messages", conversation.pk) + "?after=msg_")
    assert 'hx-target="closest li" hx-swap="outerHTML"' in text
    for action in ("thread_edit", "thread_delete", "thread_untrack"):
        assert url(action, conversation.pk) in text


def test_detail_htmx_partial_is_the_live_region(user_client, conversation):
    text = body(user_client.get(url("thread_detail", conversation.pk), **HX))

    assert is_partial(text) and text.lstrip().startswith('<div id="live"')
    assert 'hx-trigger="threadsChanged from:body"' in text
    assert len(message_ids(text)) == 20


def test_detail_refreshes_the_cached_copy(user_client, conversation):
    TrackedThread.objects.filter(pk=conversation.pk).update(
        metadata={"stale": "yes"}, tool_resources={}, last_checked_at=None, state=State.GONE
    )

    user_client.get(url("thread_detail", conversation.pk))

    conversation.refresh_from_db()
    assert conversation.metadata == {"customer": "ACME"}
    assert conversation.search_text.endswith("acme")
    assert conversation.last_checked_at is not None
    assert conversation.state == State.ACTIVE  # it answered again


def test_load_more_pages_through_all_messages(user_client, conversation):
    first = body(user_client.get(url("thread_detail", conversation.pk)))
    seen = message_ids(first)
    next_url = load_more(first)
    pages = 0
    while next_url:
        text = body(user_client.get(next_url, **HX))
        assert is_partial(text) and text.lstrip().startswith("<li")
        seen += message_ids(text)
        next_url = load_more(text)
        pages += 1

    assert pages == 2
    assert len(seen) == 45 == len(set(seen))


def test_messages_page_works_without_javascript(user_client, conversation):
    first = body(user_client.get(url("thread_detail", conversation.pk)))

    text = body(user_client.get(load_more(first)))

    assert "<h1>Messages of Conversation</h1>" in text
    assert "message 20<" in text and "message 39<" in text and "message 40<" not in text
    assert load_more(text)


def test_a_thread_without_messages_says_so(user_client, api_key, make_thread):
    thread = make_thread(api_key)

    text = body(user_client.get(url("thread_detail", thread.pk)))

    assert "No messages yet." in text and not load_more(text)


def test_thread_gone_upstream_is_marked_and_offers_untrack(user_client, conversation, emulator):
    emulator.remove_thread(conversation.thread_id)

    response = user_client.get(url("thread_detail", conversation.pk))

    text = body(response)
    assert response.status_code == 200
    assert "The Threads API no longer has this thread for this key:" in text
    assert "(request req_" in text and "((" not in text  # the API's answer, not in brackets
    assert url("thread_untrack", conversation.pk) in text
    # Nothing left to edit, delete or download: offered disabled, with the reason.
    for action in ("thread_edit", "thread_delete", "thread_export"):
        assert url(action, conversation.pk) not in text
    assert text.count('disabled aria-describedby="blocked-reason"') == 3
    assert '<p id="blocked-reason" class="help">The Threads API no longer has this thread' in text
    conversation.refresh_from_db()
    assert conversation.state == State.GONE
    assert conversation.metadata == {"customer": "ACME"}  # the cache is kept
    listed = body(user_client.get(url("thread_list")))
    assert '<span class="badge gone">gone upstream</span>' in listed


@pytest.mark.parametrize(("fault", "expected"), FAILURES)
def test_upstream_failure_still_shows_the_local_record(
    user_client, conversation, emulator, fault, expected
):
    emulator.add_fault(method="GET", path=f"/v1/threads/{conversation.thread_id}", **fault)
    before = TrackedThread.objects.values().get(pk=conversation.pk)

    response = user_client.get(url("thread_detail", conversation.pk))

    text = body(response)
    assert response.status_code == 200
    assert expected in text and "((" not in text
    headline = re.search(
        r"<strong>(Threads API [^<]*\.)</strong> "
        r"<a class=\"button\" href=\"([^\"]+)\">Try again</a>",
        text,
    )
    assert headline and headline.group(2) == url("thread_detail", conversation.pk)
    if fault["kind"] == "status":
        assert "(request req_" in text
        assert f"({fault['status']})" in headline.group(1)
    assert conversation.thread_id in text and "<h1>Conversation</h1>" in text
    # The last-known record, marked as such; the messages say why they are missing.
    assert '<h2 id="live-title">Last known thread</h2>' in text and "ACME" in text
    assert '<span class="badge unknown">unknown</span>' in text
    assert "Not shown. Threads API" in text
    assert url("thread_edit", conversation.pk) not in text and 'id="blocked-reason"' in text
    assert TrackedThread.objects.values().get(pk=conversation.pk) == before


@pytest.mark.parametrize(("fault", "expected"), FAILURES)
def test_messages_failure_shows_a_retry(user_client, conversation, emulator, fault, expected):
    emulator.add_fault(method="GET", path="/v1/threads/*/messages", **fault)

    response = user_client.get(url("thread_messages", conversation.pk, query="after=msg_x"), **HX)

    text = body(response)
    assert response.status_code == 200 and is_partial(text)
    assert "The messages could not be loaded:" in text and expected in text
    assert "Try again</a>" in text and "after=msg_x" in text


def test_a_cursor_past_the_end_is_not_an_error(user_client, conversation):
    response = user_client.get(url("thread_messages", conversation.pk, query="after=msg_nope"))

    text = body(response)
    assert response.status_code == 200
    assert "No more messages." in text or "The messages could not be loaded:" in text
    assert not load_more(text)


def test_revoked_key_is_not_used(user_client, api_key, conversation, emulator):
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at="2026-01-01T00:00:00Z")

    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "is revoked, so the dashboard no longer calls" in text
    assert emulator.request_log == []
    assert url("thread_delete", conversation.pk) not in text  # revoked: read-only


def test_deleted_thread_is_not_looked_up(user_client, conversation, emulator):
    TrackedThread.objects.filter(pk=conversation.pk).update(state=State.DELETED)

    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "This thread was deleted" in text
    assert emulator.request_log == []
    assert url("thread_delete", conversation.pk) not in text
    assert url("thread_untrack", conversation.pk) in text


def test_team_viewer_sees_the_thread_without_change_buttons(
    client, user, other_user, make_key, make_team, make_thread
):
    team = make_team("Blue", {user: Membership.Role.OWNER, other_user: Membership.Role.VIEWER})
    thread = make_thread(make_key(team=team, created_by=user), label="team thread", tracked_by=user)
    client.force_login(other_user)

    text = body(client.get(url("thread_detail", thread.pk)))

    assert "team thread" in text and "team Blue" in text
    for action in ("thread_edit", "thread_delete", "thread_untrack"):
        assert url(action, thread.pk) not in text


@pytest.mark.parametrize("name", ["thread_detail", "thread_messages"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "partial"])
def test_other_users_get_404(other_user, conversation, emulator, name, htmx):
    client = Client()
    client.force_login(other_user)

    response = client.get(url(name, conversation.pk), **(HX if htmx else {}))

    assert response.status_code == 404
    body(response)
    assert emulator.request_log == []


def test_secret_never_reaches_the_page(user_client, conversation):
    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert TEST_KEY not in text and TEST_KEY[-12:] not in text


def test_thread_and_messages_are_asked_for_at_once(user_client, conversation, emulator):
    """With one request in flight allowed per key, the second of two sent together is
    answered 429 (and retried after its Retry-After): one sent after the other never is."""
    emulator.set_latency(0.3)
    emulator.set_rate_limit(max_in_flight=1)

    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "<code>customer</code></dt><dd>ACME</dd>" in text
    assert len(message_ids(text)) == 20
    assert emulator.rate_limited_count == 1
    paths = [path.split("?")[0] for method, path in emulator.request_log if method == "GET"]
    assert sorted(set(paths)) == [
        f"/v1/threads/{conversation.thread_id}",
        f"/v1/threads/{conversation.thread_id}/messages",
    ]


@pytest.mark.parametrize(("fault", "expected"), UPSTREAM_FAULTS)
def test_messages_failure_on_the_page_keeps_the_live_thread(
    user_client, conversation, emulator, fault, expected
):
    """The thread answered, its messages did not (a 404 too): the live thread is shown, the
    messages' error with a retry, and the thread is not marked gone."""
    emulator.add_fault(method="GET", path="/v1/threads/*/messages", **fault)

    response = user_client.get(url("thread_detail", conversation.pk))

    text = body(response)
    assert response.status_code == 200
    assert "<code>customer</code></dt><dd>ACME</dd>" in text  # the live thread
    assert "The messages could not be loaded:" in text and expected in text
    assert "The live thread could not be loaded" not in text
    assert f'href="{url("thread_messages", conversation.pk)}"' in text  # try again
    assert message_ids(text) == []
    conversation.refresh_from_db()
    assert conversation.state == State.ACTIVE
    assert conversation.api_key.failing == (fault.get("status") == 401)


def test_thread_404_hides_messages_that_answered(user_client, conversation, emulator):
    emulator.add_fault(method="GET", path=f"/v1/threads/{conversation.thread_id}", status=404)

    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "The Threads API no longer has this thread for this key:" in text
    assert message_ids(text) == [] and "Messages" not in text
    conversation.refresh_from_db()
    assert conversation.state == State.GONE


def test_looking_again_at_an_unchanged_thread_writes_nothing(user_client, conversation):
    user_client.get(url("thread_detail", conversation.pk))  # the first look saves the check
    conversation.refresh_from_db()
    checked = conversation.last_checked_at

    with CaptureQueriesContext(connection) as queries:
        text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "message 19" in text
    writes = [
        q["sql"]
        for q in queries
        if q["sql"].lstrip().upper().startswith(("UPDATE", "INSERT", "DELETE"))
        or "FOR UPDATE" in q["sql"].upper()
    ]
    # The session's own row is the login's, not the thread's cache.
    assert [sql for sql in writes if "django_session" not in sql] == []
    conversation.refresh_from_db()
    assert conversation.last_checked_at == checked


def test_a_changed_thread_is_saved_on_the_next_look(user_client, conversation, emulator):
    user_client.get(url("thread_detail", conversation.pk))
    client_for(conversation.api_key).modify_thread(
        conversation.thread_id, metadata={"customer": "Globex"}
    )

    text = body(user_client.get(url("thread_detail", conversation.pk)))

    assert "<dd>Globex</dd>" in text
    conversation.refresh_from_db()
    assert conversation.metadata == {"customer": "Globex"}
    assert conversation.search_text.endswith("globex")
