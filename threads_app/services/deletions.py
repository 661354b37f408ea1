"""Deleting threads upstream, audited: the pipeline a single delete and a bulk job share.

A deletion's intent is recorded and committed *before* its DELETE is sent, and its outcome
(success, already gone, refused or failed; or gone, confirmed after an interrupted deletion)
after, so every attempt leaves a pair of events.
A single delete takes the three steps one after another (`delete_thread`); a bulk job takes
them for many threads at once (`begin_deletions`, `send_deletion`, `record_deletions`).

A thread is DELETEd at most once. Beginning a deletion claims the thread: a conditional
UPDATE moves it from active or gone to `deleting`, in the transaction that appends the
intent, so of concurrent attempts (on any process or instance) exactly one wins; the others
are refused (`AlreadyDeleted`, `BeingDeleted`) and record nothing. The outcome moves the
thread on: deleted (success, already gone), or back to the state it had (refused, failed),
to be tried again. A thread left `deleting` by a process that died between its intent and
its outcome is resolved by `resolve_interrupted_deletion`.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from threads_app import audit
from threads_app.audit import Origin
from threads_app.models import AuditEvent, TrackedThread, WebhookEndpoint
from threads_app.services import webhooks
from threads_app.services.keys import client_for, note_key_result
from threads_app.services.refusals import Refused
from threads_app.services.threads import require_writable
from threads_app.services.transcripts import deletion_snapshot
from threads_app.upstream import NotFoundError, ThreadsClient, UpstreamError

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome
State = TrackedThread.State
DELETABLE = (State.ACTIVE, State.GONE)  # the states a deletion may claim a thread from


class DeletionUnderway(Refused):
    """The thread's deletion was begun already, so nothing was sent or recorded."""

    default_code = "deletion_underway"


class AlreadyDeleted(DeletionUnderway):
    """The thread is deleted."""


class BeingDeleted(DeletionUnderway):
    """Another request (on any instance) is deleting the thread; its outcome is not known yet."""


class NothingToResolve(Refused):
    """No deletion of the thread is in flight under that intent, so nothing was sent."""


def refusal_for(thread: TrackedThread) -> DeletionUnderway:
    """Why a deletion of the thread cannot begin: it is deleted, or being deleted (a thread
    that a claim found `deleting` may be back in its state by now: it was being deleted)."""
    name = thread.label or thread.thread_id
    if thread.state == State.DELETED:
        return AlreadyDeleted(f"“{name}” is already deleted; nothing was sent.")
    return BeingDeleted(f"“{name}” is being deleted already; nothing was sent.")


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
    # Its outcome event's sequence, once recorded by the function that returned it (else None).
    event_sequence: int | None = None

    @property
    def removed(self) -> bool:
        return self.outcome in AuditEvent.REMOVED_OUTCOMES

    @classmethod
    def failed(
        cls, thread: TrackedThread, message: str, error: UpstreamError, **details: Any
    ) -> "Deletion":
        """A deletion failed by `error` (on its DELETE, or on the check of an interrupted one)."""
        return cls(
            thread,
            Outcome.FAILED,
            f"{message}: {error}",
            error=error,
            request_id=error.request_id or "",
            http_status=error.status,
            details={
                **details,
                "status": error.status,
                "message": error.message,
                "request_id": error.request_id,
            },
        )

    @classmethod
    def not_sent(cls, thread: TrackedThread, message: str) -> "Deletion":
        """A deletion whose intent was recorded but whose DELETE was never sent."""
        return cls(thread, Outcome.FAILED, message, details={"sent": False, "reason": message})


def delete_thread(
    thread: TrackedThread, *, actor: User, origin: Origin | None = None, snapshot: bool = False
) -> Deletion:
    """Delete a thread upstream with an intent/outcome pair of audit events.

    (a) the thread is claimed and the intent committed first (`durable=True`: never call
    this inside a transaction), (b) the DELETE is sent, (c) the outcome is recorded:
    success, already gone (404), refused (`deleted: false`) or failed (any other error).
    Only success and already gone mark the thread deleted; the others put it back in the
    state it had. Safe to run for many threads at once: it touches only this thread's row
    and the serialized audit chain. A bulk job takes the same three steps
    (`begin_deletions`, `send_deletion`, `record_deletions`) for many threads at once.

    With `snapshot`, the thread's transcript is fetched first and stored with the intent; if
    it cannot be, `SnapshotFailed` (a `Refused`) is raised and nothing is recorded or deleted.
    A thread deleted already, or being deleted, is refused (`AlreadyDeleted`, `BeingDeleted`)
    with nothing sent or recorded.
    """
    require_writable(thread, actor=actor)
    if thread.deletion_begun:  # known before any request: not even the snapshot is fetched
        raise refusal_for(thread)
    client = client_for(thread.api_key)
    transcript = deletion_snapshot(thread) if snapshot else ""
    [claim] = begin_deletions([(thread, transcript)], actor=actor, origin=origin)
    if isinstance(claim, Refused):
        raise claim
    deletion = send_deletion(thread, client=client)
    record_deletions([(claim, deletion)], actor=actor, origin=origin)
    return deletion


def begin_deletions(
    threads: Sequence[tuple[TrackedThread, str]],
    *,
    actor: User,
    origin: Origin | None = None,
    details: Mapping[str, Any] | None = None,
) -> list[AuditEvent | Refused]:
    """Claim each `(thread, transcript or "")` for deletion and append its intent: committed
    together (`durable=True`: never call this inside a transaction) before any DELETE is sent.
    `details` go into every intent's details (a retention policy's job names the policy).

    One answer per thread, in order: its committed intent, or the `Refused` that says why it
    was not claimed (`AlreadyDeleted`, `BeingDeleted`), with nothing recorded for it. The
    claim is a conditional UPDATE per thread (active or gone to `deleting`), in pk order, so
    concurrent claims of the same threads neither both win nor deadlock.
    """
    with transaction.atomic(durable=True):
        return claim_deletions(threads, actor=actor, origin=origin, details=details)


def claim_deletions(
    threads: Sequence[tuple[TrackedThread, str]],
    *,
    actor: User,
    origin: Origin | None = None,
    details: Mapping[str, Any] | None = None,
) -> list[AuditEvent | Refused]:
    """`begin_deletions` inside the caller's transaction, which must be committed before any
    of the DELETEs is sent: for a caller that saves where it keeps the intents (a bulk job's
    items) in the same transaction as the claims."""
    now = timezone.now()
    by_pk = {thread.pk: thread for thread, _ in threads}
    claimed = {
        pk
        for pk in sorted(by_pk)
        if TrackedThread.objects.filter(pk=pk, state__in=DELETABLE).update(
            state=State.DELETING, state_before_deletion=F("state"), deletion_started_at=now
        )
    }
    rows = list(
        TrackedThread.objects.filter(pk__in=by_pk).values_list(
            "pk", "state", "state_before_deletion", "deletion_started_at"
        )
    )
    for pk, state, before, started_at in rows:
        thread = by_pk[pk]
        thread.state, thread.state_before_deletion = state, before
        thread.deletion_started_at = started_at
    tracked = {pk for pk, *_ in rows}
    intents = audit.record_many(
        [
            deletion_intent(
                thread, actor=actor, origin=origin, snapshot=transcript, details=details
            )
            for thread, transcript in threads
            if thread.pk in claimed
        ]
    )
    committed = iter(intents)
    return [
        next(committed)
        if thread.pk in claimed
        else refusal_for(thread)
        if thread.pk in tracked
        else Refused(f"“{thread}” is no longer tracked here, so nothing was sent.")
        for thread, _ in threads
    ]


def deletion_intent(
    thread: TrackedThread,
    *,
    actor: User,
    origin: Origin | None = None,
    snapshot: str = "",
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """The intent event of a deletion, to append (committed) before its DELETE is sent."""
    return audit.event(
        action=Action.THREAD_DELETE_INTENT,
        outcome=Outcome.PENDING,
        actor=actor,
        api_key=thread.api_key,
        thread_id=thread.thread_id,
        origin=origin,
        details={"label": thread.label, **(details or {})},
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
        return Deletion.failed(thread, f"Could not delete “{name}”", exc)
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
    pairs: Sequence[tuple[AuditEvent, Deletion]],
    *,
    actor: User,
    origin: Origin | None = None,
    details: Mapping[str, Any] | None = None,
) -> list[AuditEvent]:
    """Record the outcomes of `(committed intent, Deletion)` pairs, in one transaction
    (`details` go into every outcome's details, as `begin_deletions` puts them in intents);
    return their outcome events, in the pairs' order.

    Each outcome event names its intent's sequence; the threads removed upstream are marked
    deleted with it, and those that were not go back from `deleting` to the state they had,
    so they can be tried again. The key's result is noted first for each DELETE that was sent
    (an answer or an `UpstreamError`); one that was not sent says nothing about its key.
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
            details={"intent": intent.sequence, **deletion.details, **(details or {})},
        )
        for intent, deletion in pairs
    ]
    removed = [deletion.thread for _, deletion in pairs if deletion.removed]
    kept = [deletion.thread for _, deletion in pairs if not deletion.removed]
    # The rows first, then the audit chain's head: the order `begin_deletions` locks them in.
    with transaction.atomic():
        if removed:
            TrackedThread.objects.filter(pk__in=[thread.pk for thread in removed]).update(
                state=State.DELETED, state_before_deletion=""
            )
        if kept:
            TrackedThread.objects.filter(
                pk__in=[thread.pk for thread in kept], state=State.DELETING
            ).update(
                state=F("state_before_deletion"), state_before_deletion="", deletion_started_at=None
            )
        audit.record_many(outcomes)
        webhooks.notify_each(
            event=WebhookEndpoint.Event.THREAD_DELETED,
            notices=[
                _deleted_notice(deletion, event, job=(details or {}).get("job"))
                for (_, deletion), event in zip(pairs, outcomes, strict=True)
                if deletion.removed
            ],
        )
    for thread in removed:
        thread.state, thread.state_before_deletion = State.DELETED, ""
    for thread in kept:
        if thread.state == State.DELETING:
            thread.state, thread.state_before_deletion = State(thread.state_before_deletion), ""
            thread.deletion_started_at = None
    return outcomes


def _deleted_notice(deletion: Deletion, event: AuditEvent, *, job: Any) -> webhooks.Notice:
    """The `thread.deleted` webhook of a deletion that removed its thread: ids and labels."""
    thread, key = deletion.thread, deletion.thread.api_key
    return webhooks.Notice(
        key.team_id,
        key.owner_id,
        {
            "thread_id": thread.thread_id,
            "label": thread.label,
            "key_id": key.pk,
            "key_label": key.label,
            "team_id": key.team_id,
            "outcome": deletion.outcome,
            "audit_sequence": event.sequence,
            "job_id": job if isinstance(job, int) else None,
        },
    )


def resolve_interrupted_deletion(
    thread: TrackedThread,
    *,
    intent: AuditEvent,
    actor: User,
    origin: Origin | None = None,
    details: Mapping[str, Any] | None = None,
) -> Deletion:
    """Finish a deletion whose process stopped between its intent and its outcome (`details`
    go into the outcome's details, as its intent had them: a job's id).

    The thread is `deleting` under `intent`, which has no outcome: the DELETE may or may not
    have reached the upstream, so it is asked first. A 404 means the thread is gone: most
    likely by this deletion's own DELETE, though nobody can know, so its outcome says just
    that (`GONE_AFTER_INTERRUPT`, neither "deleted" nor "already gone"); a thread it still
    has gets the DELETE again (`send_deletion`); a GET that fails is a failed deletion. The
    outcome is recorded for `intent` as `record_deletions` does (its sequence is on the
    answer's `event_sequence`): the thread ends deleted, or back in the state it had before.

    Call it only for a deletion known to be interrupted (its job's lease ran out, or its
    process is gone): the resolution takes the deletion over by moving `deletion_started_at`
    on from the value on `thread`, so of concurrent resolutions of the same one, exactly one
    goes on; the others, and a deletion that has its outcome already, are refused
    (`AlreadyDeleted`, `BeingDeleted`, `NothingToResolve`) with nothing sent or recorded.
    """
    if (intent.action, intent.thread_id, intent.api_key_id) != (
        Action.THREAD_DELETE_INTENT,
        thread.thread_id,
        thread.api_key_id,
    ):
        raise ValueError(f"Event #{intent.sequence} is not an intent to delete {thread.thread_id}.")
    client = client_for(thread.api_key)
    _take_over(thread, intent=intent)
    name = thread.label or thread.thread_id
    try:
        client.retrieve_thread(thread.thread_id)
    except NotFoundError as exc:
        deletion = Deletion(
            thread,
            Outcome.GONE_AFTER_INTERRUPT,
            f"“{name}” was gone upstream when checked after the interrupted deletion; "
            "it is marked deleted.",
            request_id=exc.request_id or "",
            http_status=exc.status,
            details={"resolved": "checked"},
        )
    except UpstreamError as exc:
        message = f"Could not check whether “{name}” was deleted"
        deletion = Deletion.failed(thread, message, exc, resolved="checked")
    else:
        sent = send_deletion(thread, client=client)
        deletion = replace(sent, details={"resolved": "sent again", **sent.details})
    [event] = record_deletions([(intent, deletion)], actor=actor, origin=origin, details=details)
    return replace(deletion, event_sequence=event.sequence)


def _take_over(thread: TrackedThread, *, intent: AuditEvent) -> None:
    """Move the interrupted deletion's `deletion_started_at` on from where `thread` saw it,
    unless `intent` has its outcome; else raise the `Refused` that says why not."""
    now = timezone.now()
    with transaction.atomic(durable=True):
        answered = AuditEvent.objects.filter(
            action=Action.THREAD_DELETED,
            thread_id=intent.thread_id,
            details__intent=intent.sequence,
        ).exists()
        taken = not answered and bool(
            TrackedThread.objects.filter(
                pk=thread.pk, state=State.DELETING, deletion_started_at=thread.deletion_started_at
            ).update(deletion_started_at=now)
        )
        state = TrackedThread.objects.filter(pk=thread.pk).values_list("state", flat=True).first()
    if taken:
        thread.deletion_started_at = now
        return
    if state is not None:
        thread.state = State(state)
    if state == State.DELETED:
        raise refusal_for(thread)
    if state == State.DELETING and not answered:
        raise refusal_for(thread)  # another resolution took it over
    name = thread.label or thread.thread_id
    raise NothingToResolve(
        f"No deletion of “{name}” is in flight under event #{intent.sequence}; nothing was sent."
    )
