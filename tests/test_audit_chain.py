"""The audit chain: append-only in code and in the database, tamper evidence, `verify_audit`,
and concurrent appends making one chain."""

import copy
import importlib
import io
import threading
from datetime import UTC, datetime

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, transaction
from django.test import RequestFactory

from threads_app import audit
from threads_app.audit import Origin
from threads_app.models import AppendOnlyError, AuditChainHead, AuditEvent

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
TABLE = AuditEvent._meta.db_table
HEAD_TABLE = AuditChainHead._meta.db_table
triggers = importlib.import_module("threads_app.migrations.0002_audit_append_only_triggers")
head_triggers = importlib.import_module(
    "threads_app.migrations.0004_audit_head_forward_only_triggers"
)


def append(count, **extra):
    return [
        audit.record(
            action=Action.THREAD_DELETED,
            outcome=Outcome.SUCCESS,
            thread_id=f"thread_{number}",
            **extra,
        )
        for number in range(1, count + 1)
    ]


def raw(sql, *params):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)


def run_verify_audit(*args):
    """(exit status, stdout, stderr) of `manage.py verify_audit *args`."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("verify_audit", *args, stdout=out, stderr=err)
    except SystemExit as exit_:
        return exit_.code, out.getvalue(), err.getvalue()
    return 0, out.getvalue(), err.getvalue()


@pytest.fixture
def attacker_with_db_access():
    """Drop the audit triggers (the events' and the head's), as someone with direct database
    access could.

    The test's transaction rolls the DROP back (SQLite and PostgreSQL DDL is transactional).
    """
    triggers.remove_triggers(connection)
    head_triggers.remove_triggers(connection)


@pytest.mark.django_db
class TestAppend:
    def test_events_form_one_chain(self):
        events = append(3)
        assert [e.sequence for e in events] == [1, 2, 3]
        assert events[0].prev_hash == audit.GENESIS_HASH
        assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
        head = AuditChainHead.objects.get()
        assert (head.sequence, head.hash) == (3, events[-1].hash)
        assert audit.verify_chain() == audit.Verification(ok=True, count=3)

    def test_event_names_the_actor_key_team_and_client(self, user, api_key, make_key, make_team):
        request = RequestFactory().get("/", REMOTE_ADDR="10.1.2.3", HTTP_USER_AGENT="pytest-ua")
        personal = audit.record(
            action=Action.KEY_ADDED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=api_key,
            origin=Origin.from_request(request),
            details={"label": api_key.label},
        )
        team = make_team("Ops", {user: "owner"})
        shared = audit.record(
            action=Action.KEY_ADDED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=make_key(team=team),
        )
        personal.refresh_from_db()
        assert (personal.actor_id, personal.actor_username) == (user.pk, "alice")
        assert (personal.owner_id, personal.team_id, personal.team_name) == (user.pk, None, "")
        assert (personal.api_key_id, personal.key_hint) == (api_key.pk, api_key.hint)
        assert (personal.client_ip, personal.user_agent) == ("10.1.2.3", "pytest-ua")
        assert (shared.team_id, shared.team_name, shared.owner_id) == (team.pk, "Ops", None)

    def test_values_the_database_normalises_still_verify(self):
        """The hash is computed before the INSERT; it must match what is read back."""
        request = RequestFactory().get("/", REMOTE_ADDR="::ffff:192.0.2.7")
        event = audit.record(
            action=Action.THREAD_UPDATED,
            outcome=Outcome.SUCCESS,
            origin=Origin.from_request(request),
            details={"ids": ("a", "b"), 7: "int key"},
        )
        event.refresh_from_db()
        assert event.client_ip == "::ffff:192.0.2.7"
        assert event.details == {"ids": ["a", "b"], "7": "int key"}
        assert audit.verify_chain().ok

    def test_invalid_client_address_is_stored_as_none(self):
        request = RequestFactory().get("/", REMOTE_ADDR="not-an-ip")
        event = audit.record(
            action=Action.THREAD_UPDATED,
            outcome=Outcome.FAILED,
            origin=Origin.from_request(request),
        )
        assert event.client_ip is None
        assert audit.verify_chain().ok

    def test_durable_append_refuses_to_run_inside_a_transaction(self):
        """A deletion's intent must be committed before the DELETE goes out."""
        with pytest.raises(RuntimeError), transaction.atomic():
            audit.record(action=Action.THREAD_DELETE_INTENT, outcome=Outcome.PENDING, durable=True)

    def test_many_events_are_appended_as_consecutive_links(self):
        first = append(1)[0]
        events = [
            audit.event(action=Action.THREAD_DELETE_INTENT, outcome=Outcome.PENDING, thread_id=t)
            for t in ("thread_a", "thread_b", "thread_c")
        ]

        appended = audit.record_many(events)
        last = append(1)[0]

        assert appended is events
        assert [e.sequence for e in events] == [2, 3, 4]
        chain = [first, *events, last]
        assert [e.prev_hash for e in chain[1:]] == [e.hash for e in chain[:-1]]
        assert [e.thread_id for e in AuditEvent.objects.order_by("sequence")] == [
            "thread_1",
            "thread_a",
            "thread_b",
            "thread_c",
            "thread_1",
        ]
        assert len({e.created_at for e in events}) == 1  # stamped once, under the lock
        assert first.created_at <= events[0].created_at <= last.created_at
        head = AuditChainHead.objects.get()
        assert (head.sequence, head.hash) == (5, last.hash)
        assert audit.verify_chain() == audit.Verification(ok=True, count=5)

    def test_appending_no_events_changes_nothing(self):
        assert audit.record_many([]) == []
        assert not AuditEvent.objects.exists() and not AuditChainHead.objects.exists()

    def test_durable_batch_refuses_to_run_inside_a_transaction(self):
        event = audit.event(action=Action.THREAD_DELETE_INTENT, outcome=Outcome.PENDING)
        with pytest.raises(RuntimeError), transaction.atomic():
            audit.record_many([event], durable=True)
        assert not AuditEvent.objects.exists()


@pytest.mark.django_db
class TestAppendOnlyInCode:
    @pytest.mark.parametrize(
        "change",
        [
            pytest.param(lambda e: (setattr(e, "outcome", "failed"), e.save()), id="save"),
            pytest.param(lambda e: e.delete(), id="delete"),
            pytest.param(
                lambda e: AuditEvent.objects.filter(pk=e.pk).update(outcome="failed"),
                id="queryset-update",
            ),
            pytest.param(lambda e: AuditEvent.objects.update(outcome="failed"), id="update-all"),
            pytest.param(lambda e: AuditEvent.objects.filter(pk=e.pk).delete(), id="qs-delete"),
            pytest.param(lambda e: AuditEvent.objects.all().delete(), id="delete-all"),
            pytest.param(
                lambda e: AuditEvent.objects.bulk_update([e], ["outcome"]), id="bulk_update"
            ),
            pytest.param(
                lambda e: AuditEvent.objects.update_or_create(
                    pk=e.pk, defaults={"outcome": "failed"}
                ),
                id="update_or_create",
            ),
        ],
    )
    def test_change_is_refused(self, change):
        (event,) = append(1)
        with pytest.raises(AppendOnlyError):
            change(event)
        stored = AuditEvent.objects.get()
        assert (stored.outcome, stored.hash) == (Outcome.SUCCESS, event.hash)
        assert audit.verify_chain().ok


@pytest.mark.django_db
class TestAppendOnlyInDatabase:
    @pytest.mark.parametrize(
        "sql",
        [
            f"UPDATE {TABLE} SET outcome = 'failed' WHERE sequence = 1",  # noqa: S608
            f"UPDATE {TABLE} SET sequence = sequence + 100",  # noqa: S608
            f"DELETE FROM {TABLE} WHERE sequence = 1",  # noqa: S608
            f"DELETE FROM {TABLE}",  # noqa: S608
        ],
    )
    def test_raw_sql_is_rejected_by_the_trigger(self, sql):
        events = append(2)
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            raw(sql)
        assert list(AuditEvent.objects.order_by("sequence").values_list("hash", flat=True)) == [
            e.hash for e in events
        ]

    @pytest.mark.parametrize(
        ("sql", "refusal"),
        [
            (f"UPDATE {HEAD_TABLE} SET sequence = 1", "only moves forward"),  # noqa: S608
            (f"UPDATE {HEAD_TABLE} SET sequence = 0, hash = ''", "only moves forward"),  # noqa: S608
            (f"UPDATE {HEAD_TABLE} SET hash = 'forged'", "only moves forward"),  # noqa: S608
            (f"UPDATE {HEAD_TABLE} SET id = 2, sequence = 3", "only moves forward"),  # noqa: S608
            (f"DELETE FROM {HEAD_TABLE}", "cannot be deleted"),  # noqa: S608
        ],
        ids=["back", "reset", "same-sequence", "other-id", "delete"],
    )
    def test_chain_head_only_moves_forward(self, sql, refusal):
        events = append(2)
        with pytest.raises(DatabaseError, match=refusal), transaction.atomic():
            raw(sql)
        head = AuditChainHead.objects.get()
        assert (head.pk, head.sequence, head.hash) == (1, 2, events[-1].hash)

    def test_chain_head_moves_forward(self):
        append(2)
        raw(f"UPDATE {HEAD_TABLE} SET sequence = 3, hash = 'next'")  # noqa: S608
        assert AuditChainHead.objects.get().sequence == 3

    @pytest.mark.parametrize(
        ("table", "refusal"), [(TABLE, "append-only"), (HEAD_TABLE, "cannot be deleted")]
    )
    def test_emptying_the_table_at_once_is_rejected(self, table, refusal):
        """PostgreSQL's TRUNCATE skips row triggers (a statement trigger refuses it); SQLite has
        no TRUNCATE, and its DELETE without WHERE still fires the row trigger."""
        append(2)
        empty = "TRUNCATE" if connection.vendor == "postgresql" else "DELETE FROM"
        with pytest.raises(DatabaseError, match=refusal), transaction.atomic():
            raw(f"{empty} {table}")
        assert (AuditEvent.objects.count(), AuditChainHead.objects.get().sequence) == (2, 2)


# A different value for each column of the event `append` writes (an attacker's raw UPDATE).
# `sequence` and `prev_hash` are named by other checks (gap, previous-hash) before the hash.
CHANGED_VALUES = {
    "actor_id": 999,
    "actor_username": "mallory",
    "action": "thread.created",
    "outcome": "failed",
    "team_id": 77,
    "team_name": "Other team",
    "owner_id": 88,
    "api_key_id": 99,
    "key_hint": "...zzzz",
    "thread_id": "thread_someone_else",
    "http_status": 500,
    "request_id": "req_forged",
    "client_ip": "203.0.113.9",
    "user_agent": "forged-agent",
    "created_at": "2020-01-01 00:00:00",
    "details": '{"reason": "rewritten"}',
    "snapshot": "a different transcript",
}
# The same changes as Python values, where the database's text form is not one.
OTHER_VALUES = {
    "sequence": 30,
    "prev_hash": "f" * 64,
    "created_at": datetime(2020, 1, 1, tzinfo=UTC),
    "details": {"reason": "rewritten"},
}
PYTHON_VALUES = {**CHANGED_VALUES, **OTHER_VALUES}


@pytest.mark.django_db
@pytest.mark.usefixtures("attacker_with_db_access")
class TestTamperEvidence:
    @pytest.mark.parametrize(("column", "value"), CHANGED_VALUES.items(), ids=CHANGED_VALUES)
    def test_changed_row_is_named(self, column, value):
        append(5)
        raw(f"UPDATE {TABLE} SET {column} = %s WHERE sequence = 3", value)  # noqa: S608
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence, result.count) == (False, 3, 2)
        assert "changed" in result.reason

    def test_rewritten_link_is_named(self):
        events = append(4)
        raw(f"UPDATE {TABLE} SET prev_hash = %s WHERE sequence = 3", events[0].hash)  # noqa: S608
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence) == (False, 3)
        assert "previous-hash" in result.reason

    def test_forged_hash_without_the_key_is_named(self, settings):
        append(3)
        settings.AUDIT_HMAC_KEY = "a key the attacker guessed"
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence) == (False, 1)

    @pytest.mark.parametrize(
        "sql",
        [
            f"DELETE FROM {TABLE} WHERE sequence = 2",  # noqa: S608
            # `sequence` is hashed too, but a renumbered row shows first as a gap.
            f"UPDATE {TABLE} SET sequence = 30 WHERE sequence = 2",  # noqa: S608
        ],
        ids=["removed", "renumbered"],
    )
    def test_removed_row_is_a_gap(self, sql):
        append(4)
        raw(sql)
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence, result.count) == (False, 2, 1)
        assert "missing (gap)" in result.reason

    def test_removed_first_row_is_a_gap(self):
        append(2)
        raw(f"DELETE FROM {TABLE} WHERE sequence = 1")  # noqa: S608
        assert audit.verify_chain().bad_sequence == 1

    def test_truncated_tail_is_found_through_the_chain_head(self):
        append(5)
        raw(f"DELETE FROM {TABLE} WHERE sequence >= 4")  # noqa: S608
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence, result.count) == (False, 4, 3)
        assert "truncated" in result.reason

    def test_whole_log_removed_is_found_through_the_chain_head(self):
        append(2)
        raw(f"DELETE FROM {TABLE}")  # noqa: S608
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence) == (False, 1)

    def test_altered_chain_head_is_found(self):
        append(3)
        AuditChainHead.objects.update(sequence=2)
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence) == (False, 3)
        assert "chain head" in result.reason

    def test_missing_chain_head_is_found(self):
        append(3)
        AuditChainHead.objects.all().delete()
        assert audit.verify_chain().ok is False

    def test_chain_head_with_another_hash_is_found(self):
        """The head's sequence is right but its hash is not the last event's."""
        events = append(3)
        AuditChainHead.objects.update(hash=events[1].hash)
        result = audit.verify_chain()
        assert (result.ok, result.bad_sequence, result.count) == (False, 3, 3)
        assert "chain head" in result.reason
        assert run_verify_audit()[0] == 1


class TestWhatIsHashed:
    """Every column of the audit table is hashed, or excluded on purpose with a reason."""

    def test_every_column_is_hashed_or_excluded_with_a_reason(self):
        columns = {field.attname for field in AuditEvent._meta.concrete_fields}
        hashed, excluded = set(audit._HASHED_FIELDS), audit._NOT_IN_HASHED_FIELDS
        assert hashed | set(excluded) == columns
        assert not hashed & set(excluded)
        assert all(reason.strip() for reason in excluded.values())

    @pytest.mark.parametrize("column", PYTHON_VALUES)
    def test_every_column_but_the_excluded_changes_the_hash(self, column):
        """Held to this file's own list: dropping a column from `_HASHED_FIELDS` fails here."""
        event = audit.event(action=Action.THREAD_DELETED, outcome=Outcome.SUCCESS)
        event.sequence, event.prev_hash = 1, audit.GENESIS_HASH
        event.created_at = datetime(2026, 1, 1, tzinfo=UTC)
        changed = copy.copy(event)
        setattr(changed, column, PYTHON_VALUES[column])
        assert audit.compute_hash(changed) != audit.compute_hash(event)

    def test_the_tests_cover_every_hashed_column(self):
        assert set(PYTHON_VALUES) == set(audit._HASHED_FIELDS) | {"created_at", "snapshot"}


@pytest.mark.django_db
class TestVerifyAuditCommand:
    def test_empty_log_is_intact(self):
        assert run_verify_audit() == (0, "OK: 0 events, chain intact\n", "")

    def test_intact_chain(self):
        append(3)
        assert run_verify_audit() == (0, "OK: 3 events, chain intact\n", "")

    @pytest.mark.usefixtures("attacker_with_db_access")
    def test_changed_row(self):
        append(3)
        raw(f"UPDATE {TABLE} SET thread_id = 'thread_x' WHERE sequence = 2")  # noqa: S608
        status, out, err = run_verify_audit()
        assert (status, out) == (1, "")
        assert err == "BROKEN at event #2: its content was changed\n"

    @pytest.mark.usefixtures("attacker_with_db_access")
    def test_gap(self):
        append(3)
        raw(f"DELETE FROM {TABLE} WHERE sequence = 2")  # noqa: S608
        status, _out, err = run_verify_audit()
        assert (status, err) == (1, "BROKEN at event #2: event 2 is missing (gap)\n")


# Transactional tests (committed data, real threads) run after the tests above: pytest-django
# orders them last. The flush after each one needs the conftest's trigger lifting.


def _append_in_own_connection(number, barrier, errors):
    try:
        barrier.wait()
        audit.record(
            action=Action.THREAD_DELETED, outcome=Outcome.SUCCESS, thread_id=f"thread_{number}"
        )
    except Exception as error:  # collected, asserted empty by the test
        errors.append(error)
    finally:
        connection.close()  # this thread's own connection


@pytest.mark.django_db(transaction=True)
def test_twenty_concurrent_appends_make_one_chain():
    barrier, errors = threading.Barrier(20), []
    workers = [
        threading.Thread(target=_append_in_own_connection, args=(n, barrier, errors))
        for n in range(20)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, 21))
    assert {e.thread_id for e in events} == {f"thread_{n}" for n in range(20)}
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    assert audit.verify_chain() == audit.Verification(ok=True, count=20)


def _append_batch_in_own_connection(number, barrier, errors):
    try:
        barrier.wait()
        audit.record_many(
            [
                audit.event(
                    action=Action.THREAD_DELETE_INTENT,
                    outcome=Outcome.PENDING,
                    thread_id=f"batch_{number}_{n}",
                )
                for n in range(5)
            ],
            durable=True,
        )
    except Exception as error:  # collected, asserted empty by the test
        errors.append(error)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_concurrent_batches_and_single_appends_make_one_chain():
    barrier, errors = threading.Barrier(12), []
    workers = [
        threading.Thread(target=target, args=(n, barrier, errors))
        for n in range(6)
        for target in (_append_in_own_connection, _append_batch_in_own_connection)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    events = list(AuditEvent.objects.order_by("sequence"))
    assert [e.sequence for e in events] == list(range(1, 6 * 6 + 1))
    for number in range(6):  # each batch is one unbroken run of the chain
        batch = [e.sequence for e in events if e.thread_id.startswith(f"batch_{number}_")]
        assert batch == list(range(batch[0], batch[0] + 5))
    assert {e.thread_id for e in events if e.thread_id.startswith("thread_")} == {
        f"thread_{n}" for n in range(6)
    }
    assert [e.created_at for e in events] == sorted(e.created_at for e in events)
    assert audit.verify_chain() == audit.Verification(ok=True, count=36)


@pytest.mark.django_db(transaction=True)
def test_transactional_test_commits_events():
    append(2)
    assert run_verify_audit() == (0, "OK: 2 events, chain intact\n", "")
    with pytest.raises(DatabaseError):
        raw(f"DELETE FROM {TABLE}")  # noqa: S608


@pytest.mark.django_db(transaction=True)
def test_triggers_are_back_after_the_flush_of_a_transactional_test():
    """Runs after the tests above: their data was flushed, and the triggers still guard."""
    assert not AuditEvent.objects.exists()
    assert not AuditChainHead.objects.exists()
    append(1)
    with pytest.raises(DatabaseError, match="append-only"):
        raw(f"UPDATE {TABLE} SET outcome = 'failed'")  # noqa: S608
    with pytest.raises(DatabaseError, match="append-only"):
        raw(f"DELETE FROM {TABLE}")  # noqa: S608
    with pytest.raises(DatabaseError, match="cannot be deleted"):
        raw(f"DELETE FROM {HEAD_TABLE}")  # noqa: S608
