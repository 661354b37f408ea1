"""Signed checkpoints of the audit chain's end, kept outside the database, and the attacks
they expose: the tail removed with the chain head set back, and the whole log emptied."""

import dataclasses
import hashlib
import hmac
import importlib
import io
import json
import logging

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction

from tests.test_audit_chain import HEAD_TABLE, TABLE, append, raw, run_verify_audit
from threads_app import audit
from threads_app.audit import Checkpoint
from threads_app.models import AuditEvent

Action, Outcome = AuditEvent.Action, AuditEvent.Outcome
LOGGER = "threads_app.audit.checkpoints"
event_triggers = importlib.import_module("threads_app.migrations.0002_audit_append_only_triggers")
head_triggers = importlib.import_module(
    "threads_app.migrations.0004_audit_head_forward_only_triggers"
)
A_HASH = "ab" * 32


@pytest.fixture
def checkpoint_file(settings, tmp_path):
    path = tmp_path / "audit-checkpoints.jsonl"
    settings.AUDIT_CHECKPOINT_FILE = str(path)
    return path


@pytest.fixture
def every_five(settings, checkpoint_file):
    settings.AUDIT_CHECKPOINT_EVERY = 5
    return checkpoint_file


@pytest.fixture
def committed(django_capture_on_commit_callbacks):
    """Run what a commit runs (the automatic checkpoints) at the end of the block, as if the
    block were a transaction of its own: the test's transaction never commits."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


def written(path):
    """The checkpoints in the file, as (sequence, hash), checking each signature."""
    checkpoints = [Checkpoint.from_json(line) for line in path.read_text().splitlines()]
    assert all(checkpoint.signed for checkpoint in checkpoints)
    return [(checkpoint.sequence, checkpoint.hash) for checkpoint in checkpoints]


def removed(sequence, held):
    """What `verify_audit --checkpoints` says when the first checkpoint is past the log's end."""
    return (
        1,
        "",
        f"BROKEN at event #{sequence}: the log holds {held} events, fewer than the checkpoint "
        "on line 1 vouches for (events were removed)\n",
    )


def rewritten(sequence):
    """... and when the log's event at the first checkpoint has another hash."""
    return (
        1,
        "",
        f"BROKEN at event #{sequence}: its hash differs from the checkpoint on line 1 "
        "(the log was rewritten)\n",
    )


def run_audit_checkpoint():
    out = io.StringIO()
    call_command("audit_checkpoint", stdout=out)
    return out.getvalue()


class TestCheckpoint:
    def test_a_signed_checkpoint_reads_back_from_its_line(self):
        checkpoint = Checkpoint.sign(5, A_HASH)
        line = checkpoint.to_json()
        assert json.loads(line).keys() == {"sequence", "hash", "at", "mac"}
        assert checkpoint.at.endswith("+00:00")
        assert Checkpoint.from_json(line) == checkpoint
        assert checkpoint.signed

    @pytest.mark.parametrize(
        "change", [{"sequence": 6}, {"hash": "cd" * 32}, {"at": "2020-01-01T00:00:00+00:00"}]
    )
    def test_a_changed_field_breaks_the_signature(self, change):
        checkpoint = dataclasses.replace(Checkpoint.sign(5, A_HASH), **change)
        assert not checkpoint.signed

    def test_another_audit_key_breaks_the_signature(self, settings):
        checkpoint = Checkpoint.sign(5, A_HASH)
        settings.AUDIT_HMAC_KEY = "another key"
        assert not checkpoint.signed

    def test_signed_under_a_key_of_its_own(self, settings):
        """Not the events' key: a checkpoint MAC cannot pass for an event hash, or back."""
        checkpoint = Checkpoint.sign(5, A_HASH)
        message = json.dumps(
            {"sequence": 5, "hash": A_HASH, "at": checkpoint.at},
            sort_keys=True,
            separators=(",", ":"),
        ).encode()
        under_event_key = hmac.new(settings.AUDIT_HMAC_KEY.encode(), message, hashlib.sha256)
        assert checkpoint.mac != under_event_key.hexdigest()
        assert not dataclasses.replace(checkpoint, mac=under_event_key.hexdigest()).signed

    @pytest.mark.parametrize(
        "line",
        [
            "not json",
            "[1, 2]",
            '{"sequence": 5, "hash": "ab"}',
            '{"sequence": "5", "hash": "ab", "at": "x", "mac": "y"}',
            '{"sequence": true, "hash": "ab", "at": "x", "mac": "y"}',
            '{"sequence": 5, "hash": 1, "at": "x", "mac": "y"}',
            '{"sequence": 5, "hash": "ab", "at": "x", "mac": "y", "more": 1}',
        ],
    )
    def test_a_line_without_a_checkpoint_is_refused(self, line):
        with pytest.raises(ValueError):
            Checkpoint.from_json(line)


@pytest.mark.django_db
class TestAutomaticCheckpoints:
    def test_every_n_events_a_checkpoint_is_logged_and_appended(
        self, every_five, committed, caplog
    ):
        with caplog.at_level(logging.INFO, logger=LOGGER), committed():
            events = append(12)
        assert written(every_five) == [(5, events[4].hash), (10, events[9].hash)]
        logged = [r.getMessage() for r in caplog.records if r.name == LOGGER]
        assert logged == every_five.read_text().splitlines()

    def test_a_batch_passing_several_multiples_writes_one_at_its_end(self, every_five, committed):
        batch = [
            audit.event(action=Action.THREAD_DELETED, outcome=Outcome.SUCCESS) for _ in range(9)
        ]
        with committed():
            append(2)
            events = audit.record_many(batch)
        assert written(every_five) == [(11, events[-1].hash)]

    def test_a_rolled_back_append_writes_none(self, every_five, committed):
        with committed():
            append(4)
            with pytest.raises(ZeroDivisionError), transaction.atomic():
                append(1)
                1 / 0  # noqa: B018
        assert not every_five.exists()
        with committed():
            [fifth] = append(1)
        assert written(every_five) == [(5, fifth.hash)]

    def test_zero_turns_them_off(self, every_five, committed, settings):
        settings.AUDIT_CHECKPOINT_EVERY = 0
        with committed():
            append(6)
        assert not every_five.exists()

    def test_without_a_file_they_are_only_logged(self, every_five, committed, settings, caplog):
        settings.AUDIT_CHECKPOINT_FILE = ""
        with caplog.at_level(logging.INFO, logger=LOGGER), committed():
            events = append(5)
        [record] = [r for r in caplog.records if r.name == LOGGER]
        checkpoint = Checkpoint.from_json(record.getMessage())
        assert (checkpoint.sequence, checkpoint.hash, checkpoint.signed) == (
            5,
            events[4].hash,
            True,
        )
        assert not every_five.exists()

    def test_a_file_that_cannot_be_written_is_logged_and_the_append_stands(
        self, every_five, committed, settings, tmp_path, caplog
    ):
        settings.AUDIT_CHECKPOINT_FILE = str(tmp_path)  # a directory
        with caplog.at_level(logging.INFO, logger=LOGGER), committed():
            append(5)
        assert AuditEvent.objects.count() == 5
        [error] = [r for r in caplog.records if r.levelno == logging.ERROR]
        assert "event #5" in error.getMessage()


@pytest.mark.django_db
class TestAuditCheckpointCommand:
    def test_writes_the_chain_heads_checkpoint(self, checkpoint_file, caplog):
        events = append(3)
        with caplog.at_level(logging.INFO, logger=LOGGER):
            out = run_audit_checkpoint()
        assert written(checkpoint_file) == [(3, events[-1].hash)]
        assert [r.getMessage() for r in caplog.records if r.name == LOGGER] == [
            checkpoint_file.read_text().strip()
        ]
        assert (
            out
            == f'Checkpoint at event #3 written to the "{LOGGER}" logger and {checkpoint_file}\n'
        )

    def test_without_a_file_says_so(self, settings):
        settings.AUDIT_CHECKPOINT_FILE = ""
        append(1)
        assert "AUDIT_CHECKPOINT_FILE is not set" in run_audit_checkpoint()

    def test_an_empty_log_has_nothing_to_sign(self, checkpoint_file):
        assert run_audit_checkpoint() == "The audit log is empty: no checkpoint written.\n"
        assert not checkpoint_file.exists()

    def test_a_file_that_cannot_be_written_fails(self, settings, tmp_path):
        settings.AUDIT_CHECKPOINT_FILE = str(tmp_path)
        append(1)
        with pytest.raises(CommandError, match="Could not append the checkpoint"):
            run_audit_checkpoint()


@pytest.mark.django_db
class TestVerifyAuditWithCheckpoints:
    def test_matching_checkpoints_are_counted(self, every_five, committed):
        with committed():
            append(11)
        run_audit_checkpoint()
        every_five.write_text(every_five.read_text() + "\n")  # blank lines are skipped
        assert run_verify_audit("--checkpoints", str(every_five)) == (
            0,
            "OK: 11 events, chain intact\nOK: 3 checkpoints match the log\n",
            "",
        )

    def test_an_unreadable_file_is_an_error(self, tmp_path):
        with pytest.raises(CommandError, match="Cannot read the checkpoints"):
            run_verify_audit("--checkpoints", str(tmp_path / "missing.jsonl"))

    def test_a_line_that_is_not_a_checkpoint(self, checkpoint_file):
        append(1)
        run_audit_checkpoint()
        checkpoint_file.write_text(checkpoint_file.read_text() + "garbage\n")
        assert run_verify_audit("--checkpoints", str(checkpoint_file)) == (
            1,
            "",
            "BROKEN: line 2 is not a checkpoint\n",
        )

    def test_a_forged_checkpoint(self, checkpoint_file):
        [event] = append(1)
        forged = Checkpoint(1, event.hash, "2026-01-01T00:00:00+00:00", event.hash)
        checkpoint_file.write_text(forged.to_json() + "\n")
        status, out, err = run_verify_audit("--checkpoints", str(checkpoint_file))
        assert (status, out) == (1, "")
        assert err == (
            "BROKEN: the checkpoint on line 1 has a wrong signature "
            "(forged, or signed under another AUDIT_HMAC_KEY)\n"
        )

    def test_a_checkpoint_of_another_hash(self, checkpoint_file):
        append(3)
        checkpoint_file.write_text(Checkpoint.sign(2, A_HASH).to_json() + "\n")
        assert run_verify_audit("--checkpoints", str(checkpoint_file)) == rewritten(2)

    def test_a_broken_chain_is_reported_first(self, checkpoint_file):
        append(3)
        run_audit_checkpoint()
        event_triggers.remove_triggers(connection)
        raw(f"UPDATE {TABLE} SET thread_id = 'thread_x' WHERE sequence = 2")  # noqa: S608
        assert run_verify_audit("--checkpoints", str(checkpoint_file)) == (
            1,
            "",
            "BROKEN at event #2: its content was changed\n",
        )


def _set_head(sequence, hash_):
    raw(f"UPDATE {HEAD_TABLE} SET sequence = %s, hash = %s", sequence, hash_)  # noqa: S608


def _remove_tail_and_set_head_back(events, first_removed):
    """The attack with both sets of triggers dropped: nothing in the database stops it."""
    event_triggers.remove_triggers(connection)
    head_triggers.remove_triggers(connection)
    raw(f"DELETE FROM {TABLE} WHERE sequence >= %s", first_removed)  # noqa: S608
    _set_head(first_removed - 1, events[first_removed - 2].hash)


@pytest.mark.django_db
class TestAttacks:
    """Exactly the attacks of issue 11, by someone with direct access to the database. The
    DROP TRIGGERs are rolled back with the test's transaction."""

    def test_tail_removed_and_head_set_back(self, every_five, committed):
        with committed():
            events = append(7)  # a checkpoint at #5
        event_triggers.remove_triggers(connection)  # as tests/conftest.py lifts them
        raw(f"DELETE FROM {TABLE} WHERE sequence >= 5")  # noqa: S608

        with pytest.raises(DatabaseError, match="only moves forward"), transaction.atomic():
            _set_head(4, events[3].hash)
        assert "truncated tail" in audit.verify_chain().reason

        head_triggers.remove_triggers(connection)
        _set_head(4, events[3].hash)
        assert audit.verify_chain() == audit.Verification(ok=True, count=4)  # the head is fooled
        assert run_verify_audit("--checkpoints", str(every_five)) == removed(5, held=4)

    def test_tail_removed_then_written_again(self, every_five, committed):
        """New events in place of the removed ones: the app checkpoints them too, but the
        checkpoint of the original #5 is still in the file."""
        with committed():
            events = append(7)
        _remove_tail_and_set_head_back(events, 5)
        with committed():
            append(3)
        assert audit.verify_chain() == audit.Verification(ok=True, count=7)
        assert [sequence for sequence, _ in written(every_five)] == [5, 5]
        assert run_verify_audit("--checkpoints", str(every_five)) == rewritten(5)

    def test_both_tables_emptied(self, checkpoint_file):
        append(3)
        run_audit_checkpoint()
        event_triggers.remove_triggers(connection)
        raw(f"DELETE FROM {TABLE}")  # noqa: S608

        with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic():
            raw(f"DELETE FROM {HEAD_TABLE}")  # noqa: S608
        if connection.vendor == "postgresql":
            with pytest.raises(DatabaseError, match="cannot be deleted"), transaction.atomic():
                raw(f"TRUNCATE {HEAD_TABLE}")
        assert "truncated tail" in audit.verify_chain().reason

        head_triggers.remove_triggers(connection)
        raw(f"DELETE FROM {HEAD_TABLE}")  # noqa: S608
        assert run_verify_audit() == (0, "OK: 0 events, chain intact\n", "")  # fooled
        assert run_verify_audit("--checkpoints", str(checkpoint_file)) == removed(3, held=0)
