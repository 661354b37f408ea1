"""Deleting threads upstream, audited: the pipeline a single delete and a bulk job share.

A deletion's intent is recorded and committed *before* its DELETE is sent, and its outcome
(success, already gone, refused or failed) after, so every attempt leaves a pair of events.
A single delete takes the three steps one after another (`delete_thread`); a bulk job takes
them for many threads at once (`deletion_intent`, `send_deletion`, `record_deletions`).
"""

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction

from threads_app import audit
from threads_app.audit import Origin
from threads_app.models import AuditEvent, TrackedThread
from threads_app.services.keys import client_for, note_key_result
from threads_app.services.threads import require_writable
from threads_app.services.transcripts import deletion_snapshot
from threads_app.upstream import ThreadsClient, UpstreamError

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome
State = TrackedThread.State


@dataclass(frozen=True)
class Deletion:
    """What became of a deletion: the outcome recorded in the audit log, and why."""

    thread: TrackedThread
    outcome: str  # an AuditEvent.Outcome
    message: str
    error: UpstreamError | None = None
    request_id: str = ""  # the DELETE answer's x-request-id ("" when there was none)
    http_status: int | None = None
    details: dict[str, Any] = field(default_factory=dict)  # for the outcome's audit event

    @property
    def removed(self) -> bool:
        return self.outcome in (Outcome.SUCCESS, Outcome.ALREADY_GONE)

    @classmethod
    def not_sent(cls, thread: TrackedThread, message: str) -> "Deletion":
        """A deletion whose intent was recorded but whose DELETE was never sent."""
        return cls(thread, Outcome.FAILED, message, details={"sent": False, "reason": message})


def delete_thread(
    thread: TrackedThread, *, actor: User, origin: Origin | None = None, snapshot: bool = False
) -> Deletion:
    """Delete a thread upstream with an intent/outcome pair of audit events.

    (a) the intent is committed first (`durable=True`: never call this inside a
    transaction), (b) the DELETE is sent, (c) the outcome is recorded: success, already
    gone (404), refused (`deleted: false`) or failed (any other error). Only success and
    already gone mark the thread deleted. Safe to run for many threads at once: it touches
    only this thread's row and the serialized audit chain. A bulk job takes the same three
    steps (`deletion_intent`, `send_deletion`, `record_deletions`) for many threads at once.

    With `snapshot`, the thread's transcript is fetched first and stored with the intent; if
    it cannot be, `SnapshotFailed` (a `Refused`) is raised and nothing is recorded or deleted.
    """
    require_writable(thread, actor=actor)
    client = client_for(thread.api_key)
    transcript = deletion_snapshot(thread) if snapshot else ""
    intent = deletion_intent(thread, actor=actor, origin=origin, snapshot=transcript)
    [committed] = audit.record_many([intent], durable=True)
    deletion = send_deletion(thread, client=client)
    record_deletions([(committed, deletion)], actor=actor, origin=origin)
    return deletion


def deletion_intent(
    thread: TrackedThread, *, actor: User, origin: Origin | None = None, snapshot: str = ""
) -> AuditEvent:
    """The intent event of a deletion, to append (committed) before its DELETE is sent."""
    return audit.event(
        action=Action.THREAD_DELETE_INTENT,
        outcome=Outcome.PENDING,
        actor=actor,
        api_key=thread.api_key,
        thread_id=thread.thread_id,
        origin=origin,
        details={"label": thread.label},
        snapshot=snapshot,
    )


def send_deletion(thread: TrackedThread, *, client: ThreadsClient) -> Deletion:
    """Send the DELETE and say what became of it; an `UpstreamError` is a failed deletion.

    Touches no database, so a bulk job's workers can call it (`record_deletions` notes the
    key's result).
    """
    name = thread.label or thread.thread_id
    try:
        result = client.delete_thread(thread.thread_id)
    except UpstreamError as exc:
        return Deletion(
            thread,
            Outcome.FAILED,
            f"Could not delete “{name}”: {exc}",
            error=exc,
            request_id=exc.request_id or "",
            http_status=exc.status,
            details={"status": exc.status, "message": exc.message, "request_id": exc.request_id},
        )
    if result.already_gone:
        outcome = Outcome.ALREADY_GONE
        message = f"“{name}” was already gone upstream; it is marked deleted."
    elif result.deleted:
        outcome, message = Outcome.SUCCESS, f"Deleted “{name}”."
    else:
        outcome = Outcome.REFUSED
        message = f"The Threads API refused to delete “{name}” (deleted: false)"
        message += f" (request {result.request_id})." if result.request_id else "."
    return Deletion(
        thread, outcome, message, request_id=result.request_id or "", http_status=result.status
    )


def record_deletions(
    pairs: Sequence[tuple[AuditEvent, Deletion]], *, actor: User, origin: Origin | None = None
) -> None:
    """Record the outcomes of `(committed intent, Deletion)` pairs, in one transaction.

    Each outcome event names its intent's sequence; the threads removed upstream are marked
    deleted with it. The key's result is noted first for each DELETE that was sent (an
    answer or an `UpstreamError`); one that was not sent says nothing about its key.
    """
    for _, deletion in pairs:
        if deletion.error is not None or deletion.http_status is not None:
            note_key_result(deletion.thread.api_key, deletion.error)
    outcomes = [
        audit.event(
            action=Action.THREAD_DELETED,
            outcome=deletion.outcome,
            actor=actor,
            api_key=deletion.thread.api_key,
            thread_id=deletion.thread.thread_id,
            http_status=deletion.http_status,
            request_id=deletion.request_id,
            origin=origin,
            details={"intent": intent.sequence, **deletion.details},
        )
        for intent, deletion in pairs
    ]
    removed = [deletion.thread for _, deletion in pairs if deletion.removed]
    with transaction.atomic():
        audit.record_many(outcomes)
        if removed:
            TrackedThread.objects.filter(pk__in=[thread.pk for thread in removed]).update(
                state=State.DELETED
            )
    for thread in removed:
        thread.state = State.DELETED
