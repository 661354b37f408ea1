"""Editing, deleting and untracking a thread: permissions, audit events, upstream faults."""

import pytest
from django.core.exceptions import PermissionDenied
from django.test import Client
from django.utils.html import escape

from tests.conftest import TEST_KEY
from tests.threads_helpers import (
    FAILURES,
    HX,
    UPSTREAM_FAULTS,
    body,
    is_partial,
    posts_sent,
    toasts,
    triggers,
    url,
)
from threads_app.models import ApiKey, AuditEvent, Membership, TrackedThread
from threads_app.services import deletions
from threads_app.upstream import ThreadsClient

pytestmark = pytest.mark.django_db

State = TrackedThread.State
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome


@pytest.fixture
def thread(api_key, make_thread):
    return make_thread(api_key, label="Case 7", metadata={"customer": "ACME", "stage": "open"})


def edit_data(metadata=(), code_interpreter_file_ids="", vector_store_id="", initial=0):
    data = {
        "meta-TOTAL_FORMS": len(metadata),
        "meta-INITIAL_FORMS": initial,
        "code_interpreter_file_ids": code_interpreter_file_ids,
        "vector_store_id": vector_store_id,
    }
    for index, (key, value) in enumerate(metadata):
        data[f"meta-{index}-key"], data[f"meta-{index}-value"] = key, value
    return data


def live(thread):
    return ThreadsClient(TEST_KEY).retrieve_thread(thread.thread_id)


def events():
    return list(AuditEvent.objects.order_by("sequence").values_list("action", "outcome"))


# --- Edit ---------------------------------------------------------------------------------


def test_edit_form_is_prefilled_from_the_live_thread(user_client, thread):
    TrackedThread.objects.filter(pk=thread.pk).update(metadata={"stale": "cache"})

    full = body(user_client.get(url("thread_edit", thread.pk)))
    partial = body(user_client.get(url("thread_edit", thread.pk), **HX))

    assert 'value="customer"' in full and 'value="ACME"' in full and 'value="stage"' in full
    assert "stale" not in full
    assert 'name="meta-INITIAL_FORMS" value="2"' in full
    assert is_partial(partial) and partial.lstrip().startswith('<div id="edit">')


def test_edit_replaces_metadata_and_tool_resources(user_client, user, thread, emulator):
    data = edit_data(
        [("customer", "ACME Ltd"), ("owner", "alice")],
        code_interpreter_file_ids="file-1, file-2",
        vector_store_id="vs_9",
        initial=2,
    )

    response = user_client.post(url("thread_edit", thread.pk), data)

    assert response.status_code == 302
    assert response["Location"] == url("thread_detail", thread.pk)
    upstream = live(thread)
    assert upstream.metadata == {"customer": "ACME Ltd", "owner": "alice"}  # "stage" removed
    assert upstream.tool_resources == {
        "code_interpreter": {"file_ids": ["file-1", "file-2"]},
        "file_search": {"vector_store_ids": ["vs_9"]},
    }
    thread.refresh_from_db()
    assert thread.metadata == upstream.metadata
    assert "acme ltd" in thread.search_text
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.actor_id) == (
        Action.THREAD_UPDATED,
        "success",
        user.pk,
    )
    assert event.details == {
        "metadata_before": {"customer": "ACME", "stage": "open"},
        "metadata_after": {"customer": "ACME Ltd", "owner": "alice"},
    }
    assert event.request_id.startswith("req_")


def test_edit_renames_the_label_here_only_and_audits_it(user_client, thread):
    form = body(user_client.get(url("thread_edit", thread.pk)))
    assert 'name="label" value="Case 7"' in form

    data = {**edit_data([("customer", "ACME")], initial=1), "label": "Case 7: refund"}
    assert user_client.post(url("thread_edit", thread.pk), data).status_code == 302

    thread.refresh_from_db()
    assert thread.label == "Case 7: refund" and "case 7: refund" in thread.search_text
    assert live(thread).metadata == {"customer": "ACME"}  # the label never goes upstream
    details = AuditEvent.objects.get().details
    assert (details["label_before"], details["label_after"]) == ("Case 7", "Case 7: refund")
    # A post without the field keeps the label; one over the limit is refused, naming it.
    user_client.post(url("thread_edit", thread.pk), edit_data([("customer", "ACME")]))
    thread.refresh_from_db()
    assert thread.label == "Case 7: refund"
    too_long = body(user_client.post(url("thread_edit", thread.pk), {**data, "label": "x" * 201}))
    assert "Ensure this value has at most 200 characters" in too_long


def test_edit_can_clear_everything(user_client, thread):
    user_client.post(url("thread_edit", thread.pk), edit_data([("x", "1")], "file-1", "vs_1"))

    user_client.post(url("thread_edit", thread.pk), edit_data())

    upstream = live(thread)
    assert upstream.metadata == {}
    assert upstream.tool_resources == {
        "code_interpreter": {"file_ids": []},
        "file_search": {"vector_store_ids": []},
    }


def test_htmx_edit_redirects_the_client(user_client, thread):
    response = user_client.post(url("thread_edit", thread.pk), edit_data([("a", "b")]), **HX)

    assert response["HX-Redirect"] == url("thread_detail", thread.pk)


@pytest.mark.parametrize(
    ("metadata", "error"),
    [
        ([(f"k{i}", "v") for i in range(17)], "At most 16 metadata pairs are allowed"),
        ([("k" * 65, "v")], "Pair 1, key: Keys are at most 64 characters (this one has 65)."),
        (
            [("k", "v" * 513)],
            "Pair 1, value: Values are at most 512 characters (this one has 513).",
        ),
    ],
    ids=["17-pairs", "65-char-key", "513-char-value"],
)
def test_edit_validation_sends_nothing(user_client, thread, emulator, metadata, error):
    text = body(user_client.post(url("thread_edit", thread.pk), edit_data(metadata), **HX))

    assert escape(error) in text and is_partial(text)
    assert posts_sent(emulator) == []
    assert live(thread).metadata == {"customer": "ACME", "stage": "open"}
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize(("fault", "expected"), UPSTREAM_FAULTS)
def test_edit_form_is_not_offered_when_the_live_thread_cannot_be_read(
    user_client, thread, emulator, fault, expected
):
    emulator.add_fault(method="GET", path=f"/v1/threads/{thread.thread_id}", **fault)

    response = user_client.get(url("thread_edit", thread.pk))

    text = body(response)
    assert response.status_code == 200
    assert "cannot be edited now" in text and expected in text
    assert 'name="meta-TOTAL_FORMS"' not in text


@pytest.mark.parametrize(("fault", "expected"), UPSTREAM_FAULTS)
def test_edit_upstream_failure_keeps_input_and_changes_nothing(
    user_client, thread, emulator, fault, expected
):
    emulator.add_fault(method="POST", path=f"/v1/threads/{thread.thread_id}", **fault)
    before = TrackedThread.objects.values().get(pk=thread.pk)

    response = user_client.post(url("thread_edit", thread.pk), edit_data([("kept", "typed")]))

    text = body(response)
    assert response.status_code == 200
    assert "Nothing was saved:" in text and expected in text
    if fault["kind"] == "status":
        assert "(request req_" in text
    assert 'value="kept"' in text and 'value="typed"' in text
    assert TrackedThread.objects.values().get(pk=thread.pk) == before
    assert not AuditEvent.objects.exists()


def test_add_a_pair_without_javascript_shows_one_more_row_and_sends_nothing(
    user_client, thread, emulator
):
    data = edit_data([("customer", "ACME"), ("stage", "won")], vector_store_id="vs_1", initial=2)
    data["add_row"] = "meta"

    response = user_client.post(url("thread_edit", thread.pk), data)

    text = body(response)
    assert response.status_code == 200 and "<h1>Edit Case 7</h1>" in text
    assert 'name="meta-TOTAL_FORMS" value="3"' in text
    assert 'name="meta-0-key" value="customer"' in text and 'value="won"' in text
    assert 'name="meta-2-key" maxlength' in text  # the new, empty row
    assert 'value="vs_1"' in text
    assert emulator.request_log == []  # not even a GET: the form is shown as it was typed
    assert TrackedThread.objects.get().metadata == {"customer": "ACME", "stage": "open"}


def test_htmx_edit_answers_vary_on_hx_request(user_client, thread):
    for response in (
        user_client.get(url("thread_edit", thread.pk)),
        user_client.post(url("thread_edit", thread.pk), edit_data([("a", "1" * 600)]), **HX),
    ):
        assert "HX-Request" in response["Vary"]


# --- Delete -------------------------------------------------------------------------------


def test_delete_confirmation_page_and_partial(user_client, thread):
    full = body(user_client.get(url("thread_delete", thread.pk)))
    partial = body(user_client.get(url("thread_delete", thread.pk), **HX))

    assert "Delete this thread?" in full and thread.thread_id in full and "Case 7" in full
    assert f'action="{url("thread_delete", thread.pk)}"' in full
    assert is_partial(partial) and 'id="confirm"' in partial
    assert TrackedThread.objects.get().state == State.ACTIVE  # a GET changes nothing


def test_list_row_delete_opens_the_confirmation_in_a_dialog(user_client, thread):
    text = body(user_client.get(url("thread_list")))

    delete = url("thread_delete", thread.pk)
    assert f'hx-get="{delete}?row" hx-target="#dialog"' in text and "hx-confirm" not in text
    assert f'<form method="get" action="{delete}">' in text  # the page, without JavaScript
    # The dialog gets the page's confirmation, whose form removes that row in place.
    dialog = body(user_client.get(delete + "?row", **HX))
    assert is_partial(dialog) and "Save a transcript with the audit record" in dialog
    assert f'hx-post="{delete}" hx-target="#thread-{thread.pk}" hx-swap="outerHTML"' in dialog
    assert '<button type="button" data-close-dialog>Cancel</button>' in dialog
    # Opened from the thread's page: a plain form, back to the list once done.
    assert "hx-post" not in body(user_client.get(delete, **HX))
    page = body(user_client.get(delete + "?row"))
    assert "hx-post" not in page
    assert f'<a href="{url("thread_detail", thread.pk)}">Cancel</a>' in page


def test_delete_records_intent_and_outcome_and_marks_the_thread(
    user_client, user, thread, emulator
):
    response = user_client.post(url("thread_delete", thread.pk))

    assert response.status_code == 302 and response["Location"] == url("thread_list")
    assert ("DELETE", f"/v1/threads/{thread.thread_id}") in emulator.request_log
    thread.refresh_from_db()
    assert thread.state == State.DELETED
    intent, outcome = AuditEvent.objects.order_by("sequence")
    assert (intent.action, intent.outcome) == (Action.THREAD_DELETE_INTENT, "pending")
    assert (outcome.action, outcome.outcome) == (Action.THREAD_DELETED, "success")
    assert outcome.details == {"intent": intent.sequence}
    assert outcome.http_status == 200 and outcome.request_id.startswith("req_")
    assert intent.thread_id == outcome.thread_id == thread.thread_id
    assert intent.actor_id == outcome.actor_id == user.pk
    assert outcome.owner_id == user.pk and outcome.key_hint == thread.api_key.hint
    listed = body(user_client.get(url("thread_list")))
    assert "Deleted “Case 7”." in listed
    assert f'id="thread-{thread.pk}"' not in listed


def test_htmx_delete_removes_the_row_with_a_toast(user_client, thread):
    response = user_client.post(url("thread_delete", thread.pk), **HX)

    assert response.status_code == 200 and response.content == b""
    assert "threadsChanged" in triggers(response)
    assert toasts(response) == ["Deleted “Case 7”."]
    assert TrackedThread.objects.get().state == State.DELETED


def test_already_gone_counts_as_deleted(user_client, thread, emulator):
    emulator.remove_thread(thread.thread_id)

    response = user_client.post(url("thread_delete", thread.pk), **HX)

    assert response.content == b"" and "already gone upstream" in toasts(response)[0]
    assert TrackedThread.objects.get().state == State.DELETED
    assert events() == [
        (Action.THREAD_DELETE_INTENT, "pending"),
        (Action.THREAD_DELETED, "already_gone"),
    ]
    assert AuditEvent.objects.get(action=Action.THREAD_DELETED).http_status == 404


def test_refused_deletion_changes_nothing(user_client, thread, emulator):
    emulator.add_fault(method="DELETE", path="*", kind="not_deleted")

    response = user_client.post(url("thread_delete", thread.pk), **HX)

    assert response.status_code == 204
    assert "refused to delete “Case 7” (deleted: false)" in toasts(response)[0]
    assert "threadsChanged" not in triggers(response)
    assert TrackedThread.objects.get().state == State.ACTIVE
    assert live(thread).id == thread.thread_id  # still there upstream
    assert events() == [
        (Action.THREAD_DELETE_INTENT, "pending"),
        (Action.THREAD_DELETED, "refused"),
    ]


@pytest.mark.parametrize(("fault", "expected"), FAILURES)
def test_failed_deletion_is_audited_and_explained(user_client, thread, emulator, fault, expected):
    emulator.add_fault(method="DELETE", path=f"/v1/threads/{thread.thread_id}", **fault)

    response = user_client.post(url("thread_delete", thread.pk), **HX)

    assert response.status_code == 204
    [toast] = toasts(response)
    assert toast.startswith("Could not delete “Case 7”:") and expected in toast
    assert TrackedThread.objects.get().state == State.ACTIVE
    intent, outcome = AuditEvent.objects.order_by("sequence")
    assert (outcome.action, outcome.outcome) == (Action.THREAD_DELETED, "failed")
    assert outcome.details["intent"] == intent.sequence
    assert expected in outcome.details["message"] or expected in str(outcome.details["status"])
    if fault["kind"] == "status":
        assert outcome.http_status == fault["status"] == outcome.details["status"]
        assert outcome.request_id.startswith("req_")
        assert outcome.details["request_id"] == outcome.request_id
        assert f"(request {outcome.request_id})" in toast


def test_failed_plain_delete_goes_back_to_the_thread_with_the_reason(user_client, thread, emulator):
    emulator.add_fault(method="DELETE", path="*", kind="status", status=500)

    response = user_client.post(url("thread_delete", thread.pk))

    assert response["Location"] == url("thread_detail", thread.pk)
    text = body(user_client.get(response["Location"]))
    assert "Could not delete “Case 7”: Threads API 500" in text


def test_delete_service_runs_without_a_request(user, thread):
    deletion = deletions.delete_thread(thread, actor=user)

    assert deletion.removed and deletion.outcome == Outcome.SUCCESS
    intent = AuditEvent.objects.get(action=Action.THREAD_DELETE_INTENT)
    assert intent.client_ip is None and intent.user_agent == ""


def test_delete_records_the_client(user_client, thread):
    user_client.post(url("thread_delete", thread.pk), HTTP_USER_AGENT="pytest-browser")

    intent, outcome = AuditEvent.objects.order_by("sequence")
    assert intent.user_agent == outcome.user_agent == "pytest-browser"
    assert intent.client_ip == "127.0.0.1"


# --- Untrack ------------------------------------------------------------------------------


def test_untrack_confirmation_page_and_partial(user_client, thread):
    full = body(user_client.get(url("thread_untrack", thread.pk)))
    partial = body(user_client.get(url("thread_untrack", thread.pk), **HX))

    assert "Stop tracking this thread?" in full and "stays in the Threads API" in full
    assert is_partial(partial) and 'id="confirm"' in partial


def test_untrack_forgets_the_thread_without_calling_the_upstream(
    user_client, user, thread, emulator
):
    response = user_client.post(url("thread_untrack", thread.pk))

    assert response["Location"] == url("thread_list")
    assert not TrackedThread.objects.exists()
    assert emulator.request_log == []
    event = AuditEvent.objects.get()
    assert (event.action, event.outcome, event.thread_id) == (
        Action.THREAD_UNTRACKED,
        "success",
        thread.thread_id,
    )
    assert live(thread).id == thread.thread_id


def test_htmx_untrack_announces_the_change(user_client, thread):
    response = user_client.post(url("thread_untrack", thread.pk), **HX)

    assert response.content == b"" and "threadsChanged" in triggers(response)
    assert toasts(response) == ["Stopped tracking Case 7. It still exists upstream."]


# --- Who may change what ------------------------------------------------------------------

CHANGES = ["thread_edit", "thread_delete", "thread_untrack"]


@pytest.mark.parametrize("name", CHANGES)
@pytest.mark.parametrize("method", ["get", "post"])
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "partial"])
def test_other_users_get_404(other_user, thread, emulator, name, method, htmx):
    client = Client()
    client.force_login(other_user)

    response = getattr(client, method)(url(name, thread.pk), **(HX if htmx else {}))

    assert response.status_code == 404
    body(response)
    assert emulator.request_log == []
    assert TrackedThread.objects.get().state == State.ACTIVE
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("name", CHANGES)
@pytest.mark.parametrize("method", ["get", "post"])
def test_team_viewers_get_403(
    client, user, other_user, make_key, make_team, make_thread, emulator, name, method
):
    team = make_team("Blue", {user: Membership.Role.OWNER, other_user: Membership.Role.VIEWER})
    thread = make_thread(make_key(team=team, created_by=user), tracked_by=user)
    client.force_login(other_user)

    response = getattr(client, method)(url(name, thread.pk), **HX)

    assert response.status_code == 403
    assert emulator.request_log == []
    assert TrackedThread.objects.filter(state=State.ACTIVE).count() == 1
    assert not AuditEvent.objects.exists()


@pytest.mark.parametrize("name", CHANGES)
def test_threads_of_revoked_keys_are_read_only(user_client, api_key, thread, emulator, name):
    ApiKey.objects.filter(pk=api_key.pk).update(revoked_at="2026-01-01T00:00:00Z")

    response = user_client.post(url(name, thread.pk))

    assert response.status_code == 403
    assert emulator.request_log == []


def test_team_members_may_delete_team_threads(
    client, user, other_user, make_key, make_team, make_thread
):
    team = make_team("Blue", {user: Membership.Role.OWNER, other_user: Membership.Role.MEMBER})
    thread = make_thread(make_key(team=team, created_by=user), tracked_by=user)
    client.force_login(other_user)

    client.post(url("thread_delete", thread.pk))

    assert TrackedThread.objects.get().state == State.DELETED
    assert {event.team_name for event in AuditEvent.objects.all()} == {"Blue"}


def test_the_service_checks_permissions_too(other_user, thread, emulator):
    with pytest.raises(PermissionDenied):
        deletions.delete_thread(thread, actor=other_user)

    assert emulator.request_log == []
    assert not AuditEvent.objects.exists()
