"""PostgreSQL: the thread counters add no lock that concurrent writers share (each connection
counts into a shard of its own), and a fold skips the shards in use instead of waiting.

PostgreSQL only: on SQLite one writer at a time is the rule, and every count is in shard 0
(tests/conftest.py leaves this module out there).
"""

import threading

import pytest
from django.db import connection, transaction

from tests.test_overview_counters import actual, counted, new
from threads_app.models import ThreadCount, TrackedThread
from threads_app.services.counts import fold_thread_counts

pytestmark = pytest.mark.django_db(transaction=True)

State = TrackedThread.State
WAIT = 10  # seconds for the other connection to get where it is told


class OtherConnection(threading.Thread):
    """A second connection that updates a thread and keeps its transaction open until told."""

    def __init__(self, thread_pk: int) -> None:
        super().__init__(daemon=True)
        self.thread_pk = thread_pk
        self.holding, self.release = threading.Event(), threading.Event()
        self.pid = 0

    def run(self) -> None:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT pg_backend_pid()")
                self.pid = cursor.fetchone()[0]
            # A committed change first: its shard exists before the transaction below.
            TrackedThread.objects.filter(pk=self.thread_pk).update(state=State.GONE)
            with transaction.atomic():
                TrackedThread.objects.filter(pk=self.thread_pk).update(state=State.DELETING)
                self.holding.set()
                self.release.wait(WAIT)
        finally:
            connection.close()


def _lock_timeout() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL lock_timeout = '2s'")  # waiting would fail, not hang


def test_writers_of_one_key_do_not_wait_for_each_other_nor_for_a_fold(make_key, user):
    api_key = make_key(owner=user)
    first, second = TrackedThread.objects.bulk_create([new(api_key, 0), new(api_key, 1)])
    other = OtherConnection(first.pk)
    other.start()
    assert other.holding.wait(WAIT)
    try:
        # The same key's counters, from another transaction, while that one is open.
        with transaction.atomic():
            _lock_timeout()
            TrackedThread.objects.filter(pk=second.pk).update(state=State.DELETING)
            TrackedThread.objects.create(thread_id="thread_third", api_key=api_key)
        with transaction.atomic():
            _lock_timeout()
            fold_thread_counts()
        # The other connection's shard is in use: left as it is.
        assert ThreadCount.objects.filter(shard=other.pid).exists()
        assert counted() == actual()  # what is committed, either way
    finally:
        other.release.set()
        other.join(WAIT)

    fold_thread_counts()

    assert set(ThreadCount.objects.values_list("shard", flat=True)) == {0}
    assert counted() == actual() == {(api_key.pk, State.ACTIVE): 1, (api_key.pk, State.DELETING): 2}


def test_the_sweep_folds_the_shards(make_key, user):
    from threads_app.tasks import sweep

    api_key = make_key(owner=user)
    TrackedThread.objects.bulk_create([new(api_key, n) for n in range(3)])
    assert set(ThreadCount.objects.values_list("shard", flat=True)) - {0}  # this connection's

    sweep()

    assert set(ThreadCount.objects.values_list("shard", flat=True)) == {0}
    assert counted() == actual() == {(api_key.pk, State.ACTIVE): 3}
