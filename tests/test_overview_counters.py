"""The overview's counters, which database triggers keep: `ThreadCount` always equals a count
of the tracked threads, whatever wrote them (the ORM, bulk inserts, queryset updates, raw SQL);
`DailyThreadActivity` counts the audit log's creations and deletions on their UTC day; the
migration starts both from the rows already there."""

import random
from datetime import UTC, datetime
from unittest import mock

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.db.models import Count, Sum

from threads_app import audit, selectors
from threads_app.models import AuditEvent, DailyThreadActivity, ThreadCount, TrackedThread
from threads_app.services.counts import fold_thread_counts

pytestmark = pytest.mark.django_db

State = TrackedThread.State
Action, Outcome = AuditEvent.Action, AuditEvent.Outcome


def record_at(when, api_key, action, outcome=Outcome.SUCCESS):
    """An audit event appended as at `when` (the chain stamps its events with `now`)."""
    with mock.patch("threads_app.audit.timezone.now", return_value=when):
        audit.record(action=action, outcome=outcome, api_key=api_key, thread_id="thread_at")


def activity():
    return {
        (row.day.isoformat(), row.team_id, row.owner_id): (row.created, row.deleted)
        for row in DailyThreadActivity.objects.all()
    }


def counted():
    """{(key pk, state): threads} as the counters say (zeros left out)."""
    rows = ThreadCount.objects.values_list("api_key_id", "state").annotate(n=Sum("threads"))
    return {(key, state): n for key, state, n in rows if n}


def actual():
    rows = (
        TrackedThread.objects.order_by().values_list("api_key_id", "state").annotate(n=Count("pk"))
    )
    return {(key, state): n for key, state, n in rows}


def new(api_key, n, state=State.ACTIVE):
    return TrackedThread(thread_id=f"thread_count{n:05d}", api_key=api_key, state=state)


def test_every_way_of_writing_rows_is_counted(make_key, user):
    first = make_key(owner=user, label="first", secret="sk-count-first-0000000000")
    second = make_key(owner=user, label="second", secret="sk-count-second-000000000")

    one = TrackedThread.objects.create(thread_id="thread_one", api_key=first)
    TrackedThread.objects.bulk_create([new(first, n) for n in range(5)])
    assert counted() == actual() == {(first.pk, State.ACTIVE): 6}

    one.state = State.GONE
    one.save()  # every column saved, the state changed
    one.label = "renamed"
    one.save(update_fields=["label"])  # the state not among them: not counted again
    TrackedThread.objects.filter(thread_id__startswith="thread_count000").update(
        state=State.DELETING
    )
    assert counted() == actual() == {(first.pk, State.GONE): 1, (first.pk, State.DELETING): 5}

    TrackedThread.objects.filter(pk=one.pk).update(api_key=second, state=State.DELETED)
    TrackedThread.objects.filter(state=State.DELETING)[:1].get().delete()
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE threads_app_trackedthread SET state = %s WHERE state = %s",
            [State.ACTIVE, State.DELETING],
        )
    assert counted() == actual() == {(first.pk, State.ACTIVE): 4, (second.pk, State.DELETED): 1}

    TrackedThread.objects.all().delete()
    assert counted() == actual() == {}


def test_counters_follow_a_random_sequence_of_writes(make_key, user):
    keys = [make_key(owner=user, secret=f"sk-count-random-{n:09d}") for n in range(3)]
    rng = random.Random(10)
    made = 0
    for step in range(200):
        rows = list(TrackedThread.objects.values_list("pk", flat=True))
        action = rng.choice(["create", "bulk", "state", "key", "delete", "update_many"])
        if action == "create" or not rows:
            TrackedThread.objects.create(
                thread_id=f"thread_r{made}",
                api_key=rng.choice(keys),
                state=rng.choice(State.values),
            )
            made += 1
        elif action == "bulk":
            batch = [new(rng.choice(keys), made + n, rng.choice(State.values)) for n in range(3)]
            TrackedThread.objects.bulk_create(batch)
            made += 3
        elif action == "state":
            thread = TrackedThread.objects.get(pk=rng.choice(rows))
            thread.state = rng.choice(State.values)
            thread.save(update_fields=["state"])
        elif action == "key":
            TrackedThread.objects.filter(pk=rng.choice(rows)).update(api_key=rng.choice(keys))
        elif action == "delete":
            TrackedThread.objects.filter(pk=rng.choice(rows)).delete()
        else:
            TrackedThread.objects.filter(api_key=rng.choice(keys)).update(
                state=rng.choice(State.values)
            )
        assert counted() == actual(), (step, action)


def test_a_fold_changes_no_count(make_key, user):
    api_key = make_key(owner=user)
    TrackedThread.objects.bulk_create([new(api_key, n) for n in range(7)])
    before = counted()

    folded = fold_thread_counts()

    assert counted() == before == actual()
    if connection.vendor == "sqlite":  # one writer at a time: everything is in shard 0
        assert folded == 0
    assert set(ThreadCount.objects.values_list("shard", flat=True)) == {0}


def test_events_count_on_their_utc_day_in_their_scope(make_key, make_team, user):
    team = make_team("Blue", {user: "owner"})
    team_key, own_key = make_key(team=team, created_by=user), make_key(owner=user)
    late = datetime(2026, 11, 30, 23, 59, 59, 999999, tzinfo=UTC)
    midnight = datetime(2026, 12, 1, tzinfo=UTC)

    record_at(late, team_key, Action.THREAD_CREATED)
    record_at(midnight, team_key, Action.THREAD_CREATED)
    record_at(midnight, team_key, Action.THREAD_DELETED, Outcome.ALREADY_GONE)
    record_at(midnight, own_key, Action.THREAD_DELETED)
    for action, outcome in [
        (Action.THREAD_DELETED, Outcome.FAILED),
        (Action.THREAD_DELETED, Outcome.REFUSED),
        (Action.THREAD_DELETE_INTENT, Outcome.PENDING),
        (Action.THREAD_IMPORTED, Outcome.SUCCESS),
        (Action.KEY_ADDED, Outcome.SUCCESS),
    ]:
        record_at(midnight, own_key, action, outcome)

    assert activity() == {
        ("2026-11-30", team.pk, 0): (1, 0),
        ("2026-12-01", team.pk, 0): (1, 1),
        ("2026-12-01", DailyThreadActivity.NO_TEAM, user.pk): (0, 1),
    }
    days = selectors.overview(user, now=midnight).days
    assert [(d.day.isoformat(), d.created, d.deleted) for d in days[-2:]] == [
        ("2026-11-30", 1, 0),
        ("2026-12-01", 1, 2),
    ]


@pytest.mark.django_db(transaction=True)
def test_the_migration_counts_the_rows_already_there(make_key, user):
    api_key = make_key(owner=user)
    executor = MigrationExecutor(connection)
    executor.migrate([("threads_app", "0009_list_search_filters")])
    try:
        # Rows written while there are no triggers (as before the upgrade).
        with connection.cursor() as cursor:
            for n, state in enumerate([State.ACTIVE, State.ACTIVE, State.GONE]):
                cursor.execute(
                    "INSERT INTO threads_app_trackedthread (thread_id, api_key_id, label, "
                    "tracked_at, metadata, tool_resources, state, state_before_deletion, "
                    "search_text) VALUES (%s, %s, '', CURRENT_TIMESTAMP, '{}', '{}', %s, '', '')",
                    [f"thread_old{n}", api_key.pk, state],
                )
        record_at(datetime(2026, 11, 2, 8, tzinfo=UTC), api_key, Action.THREAD_CREATED)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    assert counted() == actual() == {(api_key.pk, State.ACTIVE): 2, (api_key.pk, State.GONE): 1}
    assert activity() == {("2026-11-02", DailyThreadActivity.NO_TEAM, user.pk): (1, 0)}
    TrackedThread.objects.create(thread_id="thread_new", api_key=api_key)  # triggers are back
    assert counted()[api_key.pk, State.ACTIVE] == 3
    record_at(datetime(2026, 11, 2, 9, tzinfo=UTC), api_key, Action.THREAD_CREATED)
    assert activity() == {("2026-11-02", DailyThreadActivity.NO_TEAM, user.pk): (2, 0)}


@pytest.mark.django_db(transaction=True)
def test_migration_0015_counts_the_imports_already_logged_then_new_ones(make_key, user):
    api_key = make_key(owner=user)
    executor = MigrationExecutor(connection)
    executor.migrate([("threads_app", "0014_sso")])
    try:
        # Logged under 0010's trigger, which counts creations and deletions, not imports.
        record_at(datetime(2026, 11, 2, 8, tzinfo=UTC), api_key, Action.THREAD_IMPORTED)
        record_at(datetime(2026, 11, 2, 9, tzinfo=UTC), api_key, Action.THREAD_IMPORTED)
        record_at(datetime(2026, 11, 2, 10, tzinfo=UTC), api_key, Action.THREAD_CREATED)
        record_at(datetime(2026, 11, 3, 8, tzinfo=UTC), api_key, Action.THREAD_IMPORTED)
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())

    def series():
        rows = DailyThreadActivity.objects.order_by("day")
        return [(str(r.day), r.created, r.imported, r.deleted) for r in rows]

    assert series() == [("2026-11-02", 1, 2, 0), ("2026-11-03", 0, 1, 0)]
    record_at(datetime(2026, 11, 3, 9, tzinfo=UTC), api_key, Action.THREAD_IMPORTED)  # trigger
    record_at(datetime(2026, 11, 3, 10, tzinfo=UTC), api_key, Action.THREAD_DELETED)
    assert series() == [("2026-11-02", 1, 2, 0), ("2026-11-03", 0, 2, 1)]

    # And back: 0010's trigger again, which leaves imports out.
    executor = MigrationExecutor(connection)
    executor.migrate([("threads_app", "0014_sso")])
    try:
        record_at(datetime(2026, 11, 4, 8, tzinfo=UTC), api_key, Action.THREAD_IMPORTED)
        record_at(datetime(2026, 11, 4, 9, tzinfo=UTC), api_key, Action.THREAD_CREATED)
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT created, deleted FROM threads_app_dailythreadactivity WHERE day = %s",
                ["2026-11-04"],
            )
            assert cursor.fetchall() == [(1, 0)]
    finally:
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(executor.loader.graph.leaf_nodes())
