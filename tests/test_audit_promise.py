"""The audit promise of a single delete: its intent is committed before the DELETE is sent.

The bulk path checks this order in tests/test_bulk_delete.py; this is the same guard for the
one-thread path (services.deletions.delete_thread, as the delete page calls it). The spy
looks for the intent from another database connection, so it only sees a committed row.
"""

import threading

import pytest
from django.db import connections

from threads_app.models import AuditEvent
from threads_app.services import deletions
from threads_app.upstream import ThreadsClient

Action = AuditEvent.Action


def _committed_intents(thread_id: str) -> int:
    """Intents for the thread as another connection sees them (committed rows only)."""
    found: list[int] = []

    def count() -> None:
        try:
            intents = AuditEvent.objects.filter(
                action=Action.THREAD_DELETE_INTENT, thread_id=thread_id
            )
            found.append(intents.count())
        finally:
            connections.close_all()

    reader = threading.Thread(target=count)
    reader.start()
    reader.join()
    return found[0]


@pytest.mark.django_db(transaction=True)
def test_the_intent_is_committed_before_the_delete_is_sent(monkeypatch, user, api_key, make_thread):
    thread = make_thread(api_key, label="Spied on")
    seen_at_send: list[int] = []
    send = ThreadsClient.delete_thread

    def spy(self, thread_id, *args, **kwargs):
        seen_at_send.append(_committed_intents(thread_id))
        return send(self, thread_id, *args, **kwargs)

    monkeypatch.setattr(ThreadsClient, "delete_thread", spy)

    deletions.delete_thread(thread, actor=user)

    assert seen_at_send == [1]
    outcome = AuditEvent.objects.get(action=Action.THREAD_DELETED, thread_id=thread.thread_id)
    assert outcome.outcome == AuditEvent.Outcome.SUCCESS


@pytest.mark.django_db(transaction=True)
def test_the_delete_page_sends_after_the_intent_too(monkeypatch, user_client, api_key, make_thread):
    thread = make_thread(api_key, label="Spied on from the page")
    seen_at_send: list[int] = []
    send = ThreadsClient.delete_thread

    def spy(self, thread_id, *args, **kwargs):
        seen_at_send.append(_committed_intents(thread_id))
        return send(self, thread_id, *args, **kwargs)

    monkeypatch.setattr(ThreadsClient, "delete_thread", spy)

    response = user_client.post(f"/threads/{thread.pk}/delete/")

    assert response.status_code == 302
    assert seen_at_send == [1]
