"""Writes for tracked threads: create, import, refresh, edit, delete and untrack.

Each write takes the acting user, checks they may use the key, calls the upstream through
`client_for`, notes the key's result and records an audit event (`refresh_thread` and
`list_messages` are reads: the view has checked visibility). `origin` (an
`audit.Origin`) is where the change came from, for its audit event.

Audit policy: an event records something that happened. A create, import, edit or untrack
that the upstream refused (or that never reached it) changes nothing and records nothing;
the user sees the error instead. A deletion is the exception: its intent is recorded and
committed *before* the DELETE is sent, and its outcome (success, already gone, refused or
failed) after, so every attempt leaves a pair of events: `services.deletions`.
"""

from dataclasses import dataclass
from datetime import UTC, datetime

from django.core.exceptions import PermissionDenied
from django.db import transaction
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.models import AuditEvent, TrackedThread
from threads_app.services.keys import client_for, note_key_result
from threads_app.upstream import InvalidRequestError, NotFoundError, UpstreamError

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome
State = TrackedThread.State

MESSAGES_PAGE_SIZE = 20


def _require_usable_key(user, api_key):
    if not selectors.usable_keys(user).filter(pk=api_key.pk).exists():
        raise PermissionDenied("You may not use this key.")


def require_writable(user, thread):
    if not selectors.can_change_thread(user, thread):
        raise PermissionDenied("You may look at this thread but not change it.")


def _call(api_key, call):
    """`call(client)` with the key's client; the key's last result is noted either way."""
    try:
        result = call(client_for(api_key))
    except UpstreamError as exc:
        note_key_result(api_key, exc)
        raise
    note_key_result(api_key)
    return result


def _cache_fields(live):
    """What a tracked thread remembers of the live one."""
    return {
        "upstream_created_at": datetime.fromtimestamp(live.created_at, tz=UTC),
        "metadata": live.metadata,
        "tool_resources": live.tool_resources,
        "last_checked_at": timezone.now(),
    }


def create_thread(
    user, api_key, *, label="", metadata=None, messages=None, tool_resources=None, origin=None
):
    """Create a thread upstream and track it; raises `UpstreamError` with nothing tracked."""
    _require_usable_key(user, api_key)
    live = _call(
        api_key,
        lambda client: client.create_thread(
            messages=messages or None,
            metadata=metadata or None,
            tool_resources=tool_resources or None,
        ),
    )
    with transaction.atomic():
        thread = TrackedThread.objects.create(
            thread_id=live.id, api_key=api_key, label=label, tracked_by=user, **_cache_fields(live)
        )
        audit.record(
            action=Action.THREAD_CREATED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=api_key,
            thread_id=live.id,
            request_id=live.request_id or "",
            origin=origin,
            details={"label": label, "messages": len(messages or ())},
        )
    return thread


@dataclass(frozen=True)
class ImportResult:
    TRACKED = "tracked"
    ALREADY_TRACKED = "already_tracked"
    REFUSED = "refused"

    thread_id: str
    status: str
    message: str = ""
    thread: TrackedThread | None = None


def import_threads(user, api_key, thread_ids, origin=None):
    """Verify each id with a GET and track those the key can see; one result per id, in order.

    A 404 or 400 refuses that id alone. Any other error concerns the key or the service
    (401, 429, 5xx, timeout, unreadable answer), so the remaining ids are not sent: they are
    refused with that error rather than making the user wait for each to fail the same way.
    """
    _require_usable_key(user, api_key)
    existing = {
        thread.thread_id: thread
        for thread in TrackedThread.objects.filter(api_key=api_key, thread_id__in=thread_ids)
    }
    results, stopped_by = [], None
    for thread_id in thread_ids:
        if thread_id in existing:
            result = ImportResult(
                thread_id, ImportResult.ALREADY_TRACKED, thread=existing[thread_id]
            )
        elif stopped_by is not None:
            result = ImportResult(thread_id, ImportResult.REFUSED, f"Not checked: {stopped_by}")
        else:
            try:
                result = _import_one(user, api_key, thread_id, origin)
            except UpstreamError as exc:
                stopped_by = str(exc)
                result = ImportResult(thread_id, ImportResult.REFUSED, stopped_by)
        results.append(result)
    return results


def _import_one(user, api_key, thread_id, origin):
    try:
        live = _call(api_key, lambda client: client.retrieve_thread(thread_id))
    except NotFoundError as exc:
        message = "No such thread for this key"
        if exc.request_id:
            message += f" (request {exc.request_id})"
        return ImportResult(thread_id, ImportResult.REFUSED, message + ".")
    except InvalidRequestError as exc:
        return ImportResult(thread_id, ImportResult.REFUSED, str(exc))
    with transaction.atomic():
        thread, created = TrackedThread.objects.get_or_create(
            api_key=api_key,
            thread_id=live.id,
            defaults={"tracked_by": user, **_cache_fields(live)},
        )
        if not created:  # tracked meanwhile by a concurrent import
            return ImportResult(thread_id, ImportResult.ALREADY_TRACKED, thread=thread)
        audit.record(
            action=Action.THREAD_IMPORTED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=api_key,
            thread_id=live.id,
            request_id=live.request_id or "",
            origin=origin,
        )
    return ImportResult(thread_id, ImportResult.TRACKED, thread=thread)


def unreachable_reason(thread):
    """Why the upstream is not asked about this thread, or None."""
    if thread.state == State.DELETED:
        return "This thread was deleted; the Threads API no longer has it."
    if thread.api_key.is_revoked:
        return (
            f"Its key “{thread.api_key.label}” is revoked, so the dashboard no longer calls "
            "the Threads API with it."
        )
    return None


def refresh_thread(thread):
    """The live thread; refreshes the cached copy, and marks a thread the upstream lost as gone.

    A cache refresh, not a change anyone made: not audited, and only needs read access.
    Raises `UpstreamError` (after marking the thread gone on a 404).
    """
    try:
        live = _call(thread.api_key, lambda client: client.retrieve_thread(thread.thread_id))
    except NotFoundError:
        if thread.state == State.ACTIVE:
            thread.state = State.GONE
        thread.last_checked_at = timezone.now()
        _save_unless_deleted(thread, ["state", "last_checked_at"])
        raise
    fields = _cache_fields(live)
    for name, value in fields.items():
        setattr(thread, name, value)
    if thread.state == State.GONE:
        thread.state = State.ACTIVE
    _save_unless_deleted(thread, [*fields, "state", "search_text"])
    return live


def _save_unless_deleted(thread, field_names):
    """Save cached fields, unless a deletion finished meanwhile (it must not be undone)."""
    thread.search_text = thread.build_search_text()
    values = {name: getattr(thread, name) for name in field_names}
    TrackedThread.objects.filter(pk=thread.pk).exclude(state=State.DELETED).update(**values)


def list_messages(thread, after=None):
    """One page of the thread's messages, newest first; raises `UpstreamError`."""
    return _call(
        thread.api_key,
        lambda client: client.list_messages(
            thread.thread_id, limit=MESSAGES_PAGE_SIZE, order="desc", after=after
        ),
    )


def update_thread(user, thread, *, metadata, tool_resources, origin=None):
    """Replace the thread's metadata and tool_resources; raises `UpstreamError`.

    The new metadata map is sent whole. The emulator (emulator/validation.py,
    `thread_modify`) replaces each field present as a whole, as OpenAI's modify does, so the
    keys left out are removed; sending them with "" would instead store empty strings.
    tool_resources is sent with both sections, empty lists included, so that clearing the
    file ids or the vector store also clears them upstream.
    """
    require_writable(user, thread)
    before = thread.metadata
    live = _call(
        thread.api_key,
        lambda client: client.modify_thread(
            thread.thread_id, metadata=metadata, tool_resources=tool_resources
        ),
    )
    fields = _cache_fields(live)
    for name, value in fields.items():
        setattr(thread, name, value)
    with transaction.atomic():
        thread.save(update_fields=list(fields))
        audit.record(
            action=Action.THREAD_UPDATED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=thread.api_key,
            thread_id=thread.thread_id,
            request_id=live.request_id or "",
            origin=origin,
            details={"metadata_before": before, "metadata_after": live.metadata},
        )
    return thread


def untrack_thread(user, thread, origin=None):
    """Forget a thread locally; the upstream is not called."""
    require_writable(user, thread)
    with transaction.atomic():
        thread.delete()
        audit.record(
            action=Action.THREAD_UNTRACKED,
            outcome=Outcome.SUCCESS,
            actor=user,
            api_key=thread.api_key,
            thread_id=thread.thread_id,
            origin=origin,
            details={"label": thread.label, "state": thread.state},
        )
