"""Transcripts: a thread and all its messages as JSON, downloaded or kept with its deletion."""

import json
import re

import pytest
from django.contrib.messages import get_messages
from django.test import Client

from tests.conftest import TEST_KEY
from tests.threads_helpers import HX, UPSTREAM_FAULTS, body, toasts, url
from threads_app.audit import verify_chain
from threads_app.models import AuditEvent, Membership, TrackedThread
from threads_app.services import deletions
from threads_app.services.transcripts import SnapshotFailed, thread_transcript

pytestmark = pytest.mark.django_db

State = TrackedThread.State
Action = AuditEvent.Action


def texts(transcript):
    return [message["content"][0]["text"]["value"] for message in transcript["messages"]]


@pytest.fixture
def thread(api_key, make_thread):
    return make_thread(
        api_key,
        label="Case 5",
        metadata={"customer": "ACME"},
        messages=[
            {"role": "user", "content": "Where is my order?"},
            {"role": "assistant", "content": "It ships today."},
        ],
    )


def flash(response):
    return [str(message) for message in get_messages(response.wsgi_request)]


def sent(emulator, method):
    return [path for verb, path in emulator.request_log if verb == method]


# --- The transcript ---------------------------------------------------------------------------


def test_transcript_pages_through_all_messages_in_order(api_key, make_thread, emulator):
    thread = make_thread(
        api_key, messages=[{"role": "user", "content": f"message {n}"} for n in range(230)]
    )

    transcript = thread_transcript(thread)

    assert texts(transcript) == [f"message {n}" for n in range(230)]
    assert len({message["id"] for message in transcript["messages"]}) == 230
    pages = sent(emulator, "GET")[1:]
    assert len(pages) == 3
    assert all("limit=100" in page and "order=asc" in page for page in pages)
    assert "after=" not in pages[0]
    assert f"after={transcript['messages'][99]['id']}" in pages[1]
    assert f"after={transcript['messages'][199]['id']}" in pages[2]


def test_transcript_holds_the_thread_and_what_the_dashboard_knows(user, api_key, thread):
    transcript = thread_transcript(thread)

    assert transcript["thread"] == {
        "id": thread.thread_id,
        "object": "thread",
        "created_at": int(thread.upstream_created_at.timestamp()),
        "metadata": {"customer": "ACME"},
        "tool_resources": {},
    }
    first = transcript["messages"][0]
    assert (first["role"], first["thread_id"]) == ("user", thread.thread_id)
    assert texts(transcript) == ["Where is my order?", "It ships today."]
    assert transcript["tracked"] == {
        "label": "Case 5",
        "state": "active",
        "key_label": api_key.label,
        "key_hint": api_key.hint,
        "team": None,
        "tracked_by": user.username,
        "tracked_at": thread.tracked_at.isoformat(),
    }
    assert transcript["exported_at"].endswith("+00:00")


# --- Download ---------------------------------------------------------------------------------


def test_export_downloads_the_transcript(user_client, api_key, thread):
    response = user_client.get(url("thread_export", thread.pk))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == f'attachment; filename="{thread.thread_id}.json"'
    text = body(response)  # holds no API key
    assert api_key.secret_encrypted not in text
    document = json.loads(text)
    assert document["thread"]["id"] == thread.thread_id
    assert texts(document) == ["Where is my order?", "It ships today."]


def test_detail_page_links_the_download(user_client, thread):
    text = body(user_client.get(url("thread_detail", thread.pk)))

    assert f'href="{url("thread_export", thread.pk)}"' in text


@pytest.mark.parametrize(("fault", "expected"), UPSTREAM_FAULTS)
def test_export_failure_goes_back_to_the_thread(user_client, thread, emulator, fault, expected):
    emulator.add_fault(method="GET", path=f"/v1/threads/{thread.thread_id}", **fault)

    response = user_client.get(url("thread_export", thread.pk))

    assert response.status_code == 302
    assert response["Location"] == url("thread_detail", thread.pk)
    [message] = flash(response)
    assert message.startswith("The transcript could not be downloaded:") and expected in message
    assert TEST_KEY not in message
    if fault["kind"] == "status":
        assert "(request req_" in message


def test_export_failure_while_paging_messages(user_client, thread, emulator):
    emulator.add_fault(method="GET", path=f"/v1/threads/{thread.thread_id}/messages", status=500)

    response = user_client.get(url("thread_export", thread.pk))

    assert response["Location"] == url("thread_detail", thread.pk)
    assert "Threads API 500" in flash(response)[0]


def test_export_of_a_deleted_thread_does_not_call_the_upstream(user_client, thread, emulator):
    TrackedThread.objects.filter(pk=thread.pk).update(state=State.DELETED)

    response = user_client.get(url("thread_export", thread.pk))

    assert response["Location"] == url("thread_detail", thread.pk)
    assert flash(response) == ["This thread was deleted; the Threads API no longer has it."]
    assert emulator.request_log == []


def test_export_of_someone_elses_thread_is_404(client, other_user, thread, emulator):
    client.force_login(other_user)

    assert client.get(url("thread_export", thread.pk)).status_code == 404
    assert emulator.request_log == []


# --- Snapshot before delete -------------------------------------------------------------------


def test_confirmation_offers_the_snapshot_unchecked(user_client, thread):
    text = body(user_client.get(url("thread_delete", thread.pk)))

    checkbox = re.search(r'<input type="checkbox" name="snapshot"[^>]*>', text).group(0)
    assert 'form="delete-form"' in checkbox and "checked" not in checkbox
    assert '<form id="delete-form"' in text
    assert 'for="snapshot">Save a transcript with the audit record</label>' in text


def test_delete_with_snapshot_keeps_the_transcript_with_the_intent(user_client, thread, emulator):
    response = user_client.post(url("thread_delete", thread.pk), {"snapshot": "1"})

    assert response["Location"] == url("thread_list")
    thread.refresh_from_db()
    assert thread.state == State.DELETED
    intent, outcome = AuditEvent.objects.order_by("sequence")
    assert intent.action == Action.THREAD_DELETE_INTENT and outcome.snapshot == ""
    snapshot = json.loads(intent.snapshot)
    assert snapshot["thread"]["id"] == thread.thread_id
    assert texts(snapshot) == ["Where is my order?", "It ships today."]
    assert TEST_KEY not in intent.snapshot
    # The transcript was read before the DELETE was sent.
    methods = [method for method, _path in emulator.request_log]
    assert methods == ["GET", "GET", "DELETE"]
    assert verify_chain().ok


def test_audit_page_links_the_snapshot_for_download(user_client, thread):
    user_client.post(url("thread_delete", thread.pk), {"snapshot": "1"})
    intent = AuditEvent.objects.get(action=Action.THREAD_DELETE_INTENT)

    page = body(user_client.get(url("audit_list")))
    download = user_client.get(url("audit_snapshot", intent.pk))

    assert page.count(url("audit_snapshot", intent.pk)) == 1
    assert download.status_code == 200
    assert download["Content-Type"] == "application/json; charset=utf-8"
    filename = f"{thread.thread_id}-audit-{intent.sequence}.json"
    assert download["Content-Disposition"] == f'attachment; filename="{filename}"'
    assert body(download) == intent.snapshot


def test_delete_without_snapshot_stores_none(user_client, thread, emulator):
    user_client.post(url("thread_delete", thread.pk))

    intent = AuditEvent.objects.get(action=Action.THREAD_DELETE_INTENT)
    assert intent.snapshot == ""
    assert sent(emulator, "GET") == []
    assert user_client.get(url("audit_snapshot", intent.pk)).status_code == 404
    assert url("audit_snapshot", intent.pk) not in body(user_client.get(url("audit_list")))


@pytest.mark.parametrize(("fault", "expected"), UPSTREAM_FAULTS)
def test_snapshot_failure_aborts_the_delete(user_client, thread, emulator, fault, expected):
    emulator.add_fault(method="GET", path=f"/v1/threads/{thread.thread_id}*", **fault)

    response = user_client.post(url("thread_delete", thread.pk), {"snapshot": "1"})

    assert response["Location"] == url("thread_delete", thread.pk)  # back to the confirmation
    [message] = flash(response)
    assert message.startswith("“Case 5” was not deleted: its transcript could not be saved first")
    assert expected in message and "delete it without saving a transcript" in message
    assert sent(emulator, "DELETE") == []
    assert not AuditEvent.objects.exists()
    thread.refresh_from_db()
    assert thread.state == State.ACTIVE


def test_htmx_snapshot_failure_keeps_the_row_with_a_toast(user_client, thread, emulator):
    emulator.add_fault(method="GET", path="*", status=500)

    response = user_client.post(url("thread_delete", thread.pk), {"snapshot": "1"}, **HX)

    assert response.status_code == 204
    assert toasts(response)[0].startswith("“Case 5” was not deleted")
    assert sent(emulator, "DELETE") == [] and not AuditEvent.objects.exists()


def test_delete_service_raises_when_the_snapshot_fails(user, thread, emulator):
    emulator.remove_thread(thread.thread_id)

    with pytest.raises(SnapshotFailed, match="404"):
        deletions.delete_thread(thread, actor=user, snapshot=True)

    assert not AuditEvent.objects.exists()
    assert sent(emulator, "DELETE") == []


def test_snapshot_download_follows_audit_visibility(
    client, user, other_user, make_user, make_team, make_key, make_thread
):
    viewer = make_user()
    team = make_team(members={user: Membership.Role.MEMBER, viewer: Membership.Role.VIEWER})
    thread = make_thread(make_key(team=team), label="Team case")
    deletions.delete_thread(thread, actor=user, snapshot=True)
    intent = AuditEvent.objects.get(action=Action.THREAD_DELETE_INTENT)
    snapshot_url = url("audit_snapshot", intent.pk)

    client.force_login(other_user)
    assert client.get(snapshot_url).status_code == 404
    viewer_client = Client()
    viewer_client.force_login(viewer)
    assert viewer_client.get(snapshot_url).status_code == 200
    assert snapshot_url in body(viewer_client.get(url("audit_list")))
