"""A thread is DELETEd upstream at most once (issue 9 item 6).

A deletion claims its thread (active or gone -> deleting) in the transaction that appends its
intent: a second click, a retried POST or a concurrent request on another connection is
refused with nothing sent or recorded. A failed or refused outcome puts the thread back in
the state it had. A deletion interrupted between intent and outcome is resolved by asking
the upstream first (`resolve_interrupted_deletion`).

The concurrent tests commit their data (`transaction=True`): each request runs in its own
Python thread with its own database connection, as on separate processes or instances.
"""

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client

from tests.threads_helpers import HX, body, toasts, triggers, url
from threads_app import audit
from threads_app.models import ApiKey, AuditEvent, TrackedThread
from threads_app.services import deletions
from threads_app.services.deletions import (
    AlreadyDeleted,
    BeingDeleted,
    NothingToResolve,
    resolve_interrupted_deletion,
)
from threads_app.services.refusals import Refused
from threads_app.services.threads import refresh_thread

State = TrackedThread.State
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
committed = pytest.mark.django_db(transaction=True)
CONCURRENT = 8


@pytest.fixture
def thread(api_key: ApiKey, make_thread: Callable[..., TrackedThread]) -> TrackedThread:
    return make_thread(api_key, label="Case 7")


def deletes_sent(emulator: Any) -> list[tuple[str, str]]:
    return [entry for entry in emulator.request_log if entry[0] == "DELETE"]


def events() -> list[tuple[str, str]]:
    return list(AuditEvent.objects.order_by("sequence").values_list("action", "outcome"))


def state_of(thread: TrackedThread) -> str:
    return TrackedThread.objects.values_list("state", flat=True).get(pk=thread.pk)


def interrupt(thread: TrackedThread, user: User) -> AuditEvent:
    """A deletion whose process stopped after its intent was committed: no DELETE, no outcome."""
    [intent] = deletions.begin_deletions([(thread, "")], actor=user)
    assert isinstance(intent, AuditEvent)
    return intent


PAIR = [(Action.THREAD_DELETE_INTENT, "pending"), (Action.THREAD_DELETED, "success")]


# --- A second click or a retried POST -------------------------------------------------------


@pytest.mark.django_db
def test_a_repeated_post_is_refused_with_nothing_sent_or_recorded(user_client, thread, emulator):
    user_client.post(url("thread_delete", thread.pk))

    response = user_client.post(url("thread_delete", thread.pk))

    assert response.status_code == 302 and response["Location"] == url("thread_detail", thread.pk)
    assert "“Case 7” is already deleted; nothing was sent." in body(
        user_client.get(response["Location"])
    )
    assert deletes_sent(emulator) == [("DELETE", f"/v1/threads/{thread.thread_id}")]
    assert events() == PAIR
    assert state_of(thread) == State.DELETED


@pytest.mark.django_db
def test_a_repeated_htmx_post_answers_with_a_toast(user_client, thread, emulator):
    user_client.post(url("thread_delete", thread.pk), **HX)

    response = user_client.post(url("thread_delete", thread.pk), **HX)

    assert response.status_code == 204
    assert toasts(response) == ["“Case 7” is already deleted; nothing was sent."]
    assert "threadsChanged" in triggers(response)  # the list shows what became of it
    assert len(deletes_sent(emulator)) == 1 and events() == PAIR


@pytest.mark.django_db
def test_a_thread_being_deleted_is_not_sent_again(user_client, user, thread, emulator):
    interrupt(thread, user)

    response = user_client.post(url("thread_delete", thread.pk), {"snapshot": "1"}, **HX)

    assert response.status_code == 204
    assert toasts(response) == ["“Case 7” is being deleted already; nothing was sent."]
    assert emulator.request_log == []  # not even the snapshot's GETs
    assert events() == [(Action.THREAD_DELETE_INTENT, "pending")]
    assert state_of(thread) == State.DELETING


@pytest.mark.django_db
def test_a_stale_copy_is_refused_by_the_claim(user, thread, emulator):
    """The row says deleted though the object in hand says active: the claim decides."""
    stale = TrackedThread.objects.get(pk=thread.pk)
    deletions.delete_thread(thread, actor=user)

    with pytest.raises(AlreadyDeleted):
        deletions.delete_thread(stale, actor=user)

    assert stale.state == State.DELETED
    assert issubclass(AlreadyDeleted, Refused) and issubclass(BeingDeleted, Refused)
    assert len(deletes_sent(emulator)) == 1 and events() == PAIR


# --- A deletion that does not happen can be tried again -------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize("before", [State.ACTIVE, State.GONE])
def test_a_failed_deletion_returns_the_thread_to_its_state(user, thread, emulator, before):
    TrackedThread.objects.filter(pk=thread.pk).update(state=before)
    thread.refresh_from_db()
    emulator.add_fault(method="DELETE", path="*", kind="status", status=500)

    failed = deletions.delete_thread(thread, actor=user)

    assert failed.outcome == Outcome.FAILED
    assert state_of(thread) == thread.state == before
    row = TrackedThread.objects.get(pk=thread.pk)
    assert (row.state_before_deletion, row.deletion_started_at) == ("", None)

    again = deletions.delete_thread(thread, actor=user)

    assert again.outcome == Outcome.SUCCESS and state_of(thread) == State.DELETED
    assert len(deletes_sent(emulator)) == 2
    assert events() == [
        (Action.THREAD_DELETE_INTENT, "pending"),
        (Action.THREAD_DELETED, "failed"),
        *PAIR,
    ]


@pytest.mark.django_db
def test_a_refused_deletion_returns_the_thread_to_its_state(user_client, thread, emulator):
    emulator.add_fault(method="DELETE", path="*", kind="not_deleted")

    user_client.post(url("thread_delete", thread.pk), **HX)

    assert state_of(thread) == State.ACTIVE
    response = user_client.post(url("thread_delete", thread.pk), **HX)
    assert response.content == b"" and state_of(thread) == State.DELETED


# --- What the pages and the reads do with a thread being deleted ----------------------------


@pytest.mark.django_db
def test_the_list_and_the_detail_say_being_deleted(user_client, user, thread, emulator):
    interrupt(thread, user)

    listed = body(user_client.get(url("thread_list")))
    detail = body(user_client.get(url("thread_detail", thread.pk)))

    assert '<span class="badge deleting">being deleted</span>' in listed
    assert f'id="select-{thread.pk}"' not in listed  # not deletable again, in bulk either
    assert f'hx-post="{url("thread_delete", thread.pk)}"' not in listed
    assert '<span class="badge deleting">being deleted</span>' in detail
    assert "This thread is being deleted" in detail
    assert url("thread_edit", thread.pk) not in detail
    assert url("thread_delete", thread.pk) not in detail
    assert emulator.request_log == []  # the detail page does not ask the upstream
    only = body(user_client.get(url("thread_list", query="state=deleting")))
    assert f'id="thread-{thread.pk}"' in only


@pytest.mark.django_db
def test_a_refresh_that_raced_a_deletion_does_not_undo_its_claim(user, thread, emulator):
    stale = TrackedThread.objects.get(pk=thread.pk)  # read as active, before the claim
    interrupt(thread, user)
    emulator.remove_thread(thread.thread_id)

    with pytest.raises(Exception, match="404"):
        refresh_thread(stale)  # would mark the active thread gone

    assert state_of(thread) == State.DELETING


@pytest.mark.django_db
def test_begin_deletions_answers_for_each_thread(user, api_key, make_thread, emulator):
    deleted, deleting, fresh = (make_thread(api_key, label=f"T{n}") for n in range(3))
    deletions.delete_thread(deleted, actor=user)
    interrupt(deleting, user)
    untracked = make_thread(api_key, label="T3")
    TrackedThread.objects.filter(pk=untracked.pk).delete()
    before = AuditEvent.objects.count()

    answers = deletions.begin_deletions(
        [(deleted, ""), (fresh, "{}"), (deleting, ""), (untracked, "")], actor=user
    )

    assert isinstance(answers[0], AlreadyDeleted)
    assert isinstance(answers[1], AuditEvent) and answers[1].snapshot == "{}"
    assert isinstance(answers[2], BeingDeleted)
    assert type(answers[3]) is Refused and "no longer tracked" in str(answers[3])
    assert AuditEvent.objects.count() == before + 1  # the one intent
    assert fresh.state == State.DELETING and fresh.state_before_deletion == State.ACTIVE


# --- Resolving a deletion whose process stopped ---------------------------------------------


@pytest.mark.django_db
def test_an_interrupted_deletion_that_reached_the_upstream_is_gone_after_interrupt(
    user, thread, emulator
):
    """Neither "deleted" (no answer said so) nor "already gone" (its own DELETE was probably
    sent): gone, confirmed after an interrupted deletion."""
    intent = interrupt(thread, user)
    emulator.remove_thread(thread.thread_id)  # its DELETE was sent before the process died

    deletion = resolve_interrupted_deletion(thread, intent=intent, actor=user)

    assert deletion.outcome == Outcome.GONE_AFTER_INTERRUPT and deletion.removed
    assert "when checked after the interrupted deletion" in deletion.message
    assert emulator.request_log == [("GET", f"/v1/threads/{thread.thread_id}")]
    assert state_of(thread) == thread.state == State.DELETED
    outcome = AuditEvent.objects.get(action=Action.THREAD_DELETED)
    assert outcome.details == {"intent": intent.sequence, "resolved": "checked"}
    assert outcome.http_status == 404
    assert (outcome.outcome, deletion.event_sequence) == ("gone_interrupted", outcome.sequence)
    assert audit.verify_chain().ok


@pytest.mark.django_db
def test_an_interrupted_deletion_the_upstream_never_saw_is_sent_again(user, thread, emulator):
    intent = interrupt(thread, user)

    deletion = resolve_interrupted_deletion(thread, intent=intent, actor=user)

    assert deletion.outcome == Outcome.SUCCESS
    path = f"/v1/threads/{thread.thread_id}"
    assert emulator.request_log == [("GET", path), ("DELETE", path)]
    assert state_of(thread) == State.DELETED
    assert events() == PAIR
    outcome = AuditEvent.objects.get(action=Action.THREAD_DELETED)
    assert outcome.details == {"intent": intent.sequence, "resolved": "sent again"}


@pytest.mark.django_db
def test_an_interrupted_deletion_that_cannot_be_checked_fails_and_can_be_tried_again(
    user, thread, emulator
):
    intent = interrupt(thread, user)
    emulator.add_fault(method="GET", path="*", kind="status", status=500)

    deletion = resolve_interrupted_deletion(thread, intent=intent, actor=user)

    assert deletion.outcome == Outcome.FAILED and "Could not check" in deletion.message
    assert deletes_sent(emulator) == []
    assert state_of(thread) == State.ACTIVE
    assert deletions.delete_thread(thread, actor=user).removed


@pytest.mark.django_db
def test_a_resolved_deletion_is_not_resolved_twice(user, thread, emulator):
    intent = interrupt(thread, user)
    stale = TrackedThread.objects.get(pk=thread.pk)
    resolve_interrupted_deletion(thread, intent=intent, actor=user)

    with pytest.raises(AlreadyDeleted):
        resolve_interrupted_deletion(stale, intent=intent, actor=user)

    assert len(deletes_sent(emulator)) == 1 and events() == PAIR


@pytest.mark.django_db
def test_a_deletion_taken_over_by_another_resolution_is_left_to_it(user, thread, emulator):
    intent = interrupt(thread, user)
    stale = TrackedThread.objects.get(pk=thread.pk)
    TrackedThread.objects.filter(pk=thread.pk).update(deletion_started_at="2030-01-01T00:00Z")

    with pytest.raises(BeingDeleted):
        resolve_interrupted_deletion(stale, intent=intent, actor=user)

    assert emulator.request_log == [] and len(events()) == 1


@pytest.mark.django_db
def test_an_intent_with_an_outcome_is_nothing_to_resolve(user, thread, emulator):
    emulator.add_fault(method="DELETE", path="*", kind="status", status=500)
    deletions.delete_thread(thread, actor=user)  # failed: an outcome, the thread active again
    intent = AuditEvent.objects.get(action=Action.THREAD_DELETE_INTENT)

    with pytest.raises(NothingToResolve):
        resolve_interrupted_deletion(thread, intent=intent, actor=user)

    other = interrupt(thread, user)  # a new deletion under a new intent
    with pytest.raises(NothingToResolve):
        resolve_interrupted_deletion(thread, intent=intent, actor=user)
    assert resolve_interrupted_deletion(thread, intent=other, actor=user).removed


@pytest.mark.django_db
def test_only_the_thread_s_own_intent_resolves_it(user, api_key, make_thread, emulator):
    thread, other = make_thread(api_key), make_thread(api_key)
    interrupt(thread, user)

    with pytest.raises(ValueError, match="not an intent"):
        resolve_interrupted_deletion(thread, intent=interrupt(other, user), actor=user)


# --- Concurrent requests, each on its own connection ----------------------------------------


def run_at_once(count: int, work: Callable[[int], Any]) -> list[Any]:
    """Run `work(n)` for n in range(count) in threads released together; their results (or
    what they raised), in order. Each thread closes its own database connection."""
    barrier, results = threading.Barrier(count), [None] * count

    def run(number: int) -> None:
        try:
            barrier.wait()
            results[number] = work(number)
        except Exception as exc:  # the refusals are what the test looks at
            results[number] = exc
        finally:
            connection.close()

    workers = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=60)
    return results


def assert_deleted_once(thread: TrackedThread, emulator: Any) -> None:
    assert deletes_sent(emulator) == [("DELETE", f"/v1/threads/{thread.thread_id}")]
    assert events() == PAIR
    assert state_of(thread) == State.DELETED
    assert audit.verify_chain().ok


@committed
@pytest.mark.parametrize("latency", [0, 0.2], ids=["fast", "slow"])
def test_concurrent_service_calls_delete_once(user, thread, emulator, latency):
    emulator.set_latency(latency)
    copies = [
        TrackedThread.objects.select_related("api_key__team").get(pk=thread.pk)
        for _ in range(CONCURRENT)
    ]

    results = run_at_once(
        CONCURRENT, lambda n: deletions.delete_thread(copies[n], actor=user).outcome
    )

    assert results.count(Outcome.SUCCESS) == 1
    refused = [result for result in results if result != Outcome.SUCCESS]
    assert all(isinstance(result, AlreadyDeleted | BeingDeleted) for result in refused), refused
    assert_deleted_once(thread, emulator)


@committed
@pytest.mark.parametrize("htmx", [False, True], ids=["page", "htmx"])
def test_concurrent_posts_delete_once(user, thread, emulator, htmx):
    emulator.set_latency(0.1)
    clients = [Client() for _ in range(CONCURRENT)]
    for client in clients:
        client.force_login(user)
    headers = HX if htmx else {}

    responses = run_at_once(
        CONCURRENT, lambda n: clients[n].post(url("thread_delete", thread.pk), **headers)
    )

    assert not [r for r in responses if isinstance(r, Exception)], responses
    if htmx:
        assert sorted(r.status_code for r in responses) == [200] + [204] * (CONCURRENT - 1)
        refusals = [toasts(r) for r in responses if r.status_code == 204]
        assert all(" nothing was sent." in toast for [toast] in refusals), refusals
    else:
        locations = sorted(r["Location"] for r in responses)
        assert locations.count(url("thread_list")) == 1
        assert locations.count(url("thread_detail", thread.pk)) == CONCURRENT - 1
    assert_deleted_once(thread, emulator)


@committed
def test_concurrent_resolutions_send_once(user, thread, emulator):
    intent = interrupt(thread, user)
    copies = [TrackedThread.objects.get(pk=thread.pk) for _ in range(CONCURRENT)]

    results = run_at_once(
        CONCURRENT,
        lambda n: resolve_interrupted_deletion(copies[n], intent=intent, actor=user).outcome,
    )

    assert results.count(Outcome.SUCCESS) == 1
    refused = [result for result in results if result != Outcome.SUCCESS]
    assert all(isinstance(result, AlreadyDeleted | BeingDeleted) for result in refused), refused
    assert_deleted_once(thread, emulator)
