"""Writes for tracked threads: create, import, refresh, edit and untrack.

Each write takes the acting user (`actor=`), checks they may use the key, calls the upstream
through `client_for`, notes the key's result and records an audit event (`refresh_thread`
and `list_messages` are reads: the view has checked visibility). `origin` (an
`audit.Origin`) is where the change came from, for its audit event.

Audit policy: an event records something that happened. A create, import, edit or untrack
that the upstream refused (or that never reached it) changes nothing and records nothing;
the user sees the error instead. A deletion is the exception: its intent is recorded and
committed *before* the DELETE is sent, and its outcome (success, already gone, refused or
failed) after, so every attempt leaves a pair of events: `services.deletions`.
"""

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from threads_app import audit, selectors
from threads_app.audit import Origin
from threads_app.models import ApiKey, AuditEvent, TrackedThread
from threads_app.services.keys import LAST_USED_PRECISION, client_for, note_key_result
from threads_app.services.refusals import NotAllowed
from threads_app.upstream import (
    InvalidRequestError,
    MessagePage,
    NotFoundError,
    Thread,
    ThreadsClient,
    UpstreamError,
)

Action = AuditEvent.Action
Outcome = AuditEvent.Outcome
State = TrackedThread.State
T = TypeVar("T")
R = TypeVar("R")

MESSAGES_PAGE_SIZE = 20


def _require_usable_key(api_key: ApiKey, *, actor: User) -> None:
    if not selectors.usable_keys(actor).filter(pk=api_key.pk).exists():
        raise NotAllowed("You may not use this key.")


def require_writable(thread: TrackedThread, *, actor: User) -> None:
    """Raise `NotAllowed` unless the actor may change the thread."""
    if not selectors.can_change_thread(actor, thread):
        raise NotAllowed("You may look at this thread but not change it.")


def _call(api_key: ApiKey, call: Callable[[ThreadsClient], T]) -> T:
    """`call(client)` with the key's client; the key's last result is noted either way."""
    try:
        result = call(client_for(api_key))
    except UpstreamError as exc:
        note_key_result(api_key, exc)
        raise
    note_key_result(api_key)
    return result


def _record_thread_change(
    thread: TrackedThread,
    action: str,
    *,
    actor: User,
    origin: Origin | None,
    request_id: str | None = None,
    **details: object,
) -> None:
    """The audit row of a thread write that happened (a success), with the API's request id."""
    audit.record(
        action=action,
        outcome=Outcome.SUCCESS,
        actor=actor,
        api_key=thread.api_key,
        thread_id=thread.thread_id,
        request_id=request_id or "",
        origin=origin,
        details=details,
    )


def create_thread(
    *,
    actor: User,
    api_key: ApiKey,
    label: str = "",
    metadata: dict[str, str] | None = None,
    messages: list[dict[str, Any]] | None = None,
    tool_resources: dict[str, Any] | None = None,
    origin: Origin | None = None,
) -> TrackedThread:
    """Create a thread upstream and track it; raises `UpstreamError` with nothing tracked."""
    _require_usable_key(api_key, actor=actor)
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
            thread_id=live.id,
            api_key=api_key,
            label=label,
            tracked_by=actor,
            **selectors.live_fields(live, checked_at=timezone.now()),
        )
        details = {"label": label, "messages": len(messages or ())}
        _record_thread_change(
            thread,
            Action.THREAD_CREATED,
            actor=actor,
            origin=origin,
            request_id=live.request_id,
            **details,
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


def import_threads(
    *,
    actor: User,
    api_key: ApiKey,
    thread_ids: list[str],
    label: str = "",
    origin: Origin | None = None,
) -> list[ImportResult]:
    """Verify each id with a GET and track those the key can see, under `label` (the
    dashboard's own name for them); one result per id, in order. An id already tracked keeps
    its label.

    A 404 or 400 refuses that id alone, and so does an answer about another thread than the
    one asked for. Any other error concerns the key or the service (401, 429, 5xx, timeout,
    unreadable answer), so the remaining ids are not sent: they are refused with that error
    rather than making the user wait for each to fail the same way.
    """
    _require_usable_key(api_key, actor=actor)
    existing = {
        thread.thread_id: thread
        for thread in TrackedThread.objects.filter(api_key=api_key, thread_id__in=thread_ids)
    }
    results: list[ImportResult] = []
    stopped_by: str | None = None
    for thread_id in thread_ids:
        if thread_id in existing:
            result = ImportResult(
                thread_id, ImportResult.ALREADY_TRACKED, thread=existing[thread_id]
            )
        elif stopped_by is not None:
            result = ImportResult(thread_id, ImportResult.REFUSED, f"Not checked: {stopped_by}")
        else:
            try:
                result = _import_one(
                    thread_id, actor=actor, api_key=api_key, label=label, origin=origin
                )
            except UpstreamError as exc:
                stopped_by = str(exc)
                result = ImportResult(thread_id, ImportResult.REFUSED, stopped_by)
        results.append(result)
    return results


def _import_one(
    thread_id: str, *, actor: User, api_key: ApiKey, label: str, origin: Origin | None
) -> ImportResult:
    try:
        live = _call(api_key, lambda client: client.retrieve_thread(thread_id))
    except NotFoundError as exc:
        message = "No such thread for this key"
        if exc.request_id:
            message += f" (request {exc.request_id})"
        return ImportResult(thread_id, ImportResult.REFUSED, message + ".")
    except InvalidRequestError as exc:
        return ImportResult(thread_id, ImportResult.REFUSED, str(exc))
    if live.id != thread_id:  # only the id that was asked for, and checked, is tracked
        return ImportResult(
            thread_id,
            ImportResult.REFUSED,
            f"The Threads API answered with another thread (“{live.id[:40]}”); "
            "nothing was tracked.",
        )
    with transaction.atomic():
        thread, created = TrackedThread.objects.get_or_create(
            api_key=api_key,
            thread_id=live.id,
            defaults={
                "tracked_by": actor,
                "label": label,
                **selectors.live_fields(live, checked_at=timezone.now()),
            },
        )
        if not created:  # tracked meanwhile by a concurrent import
            return ImportResult(thread_id, ImportResult.ALREADY_TRACKED, thread=thread)
        _record_thread_change(
            thread, Action.THREAD_IMPORTED, actor=actor, origin=origin, request_id=live.request_id
        )
    return ImportResult(thread_id, ImportResult.TRACKED, thread=thread)


def refresh_thread(thread: TrackedThread) -> Thread:
    """The live thread; refreshes the cached copy, and marks a thread the upstream lost as gone.

    A cache refresh, not a change anyone made: not audited, and only needs read access.
    Raises `UpstreamError` (after marking the thread gone on a 404).
    """
    try:
        live = _call(thread.api_key, lambda client: client.retrieve_thread(thread.thread_id))
    except NotFoundError:
        _remember(thread, None)
        raise
    _remember(thread, live)
    return live


@dataclass(frozen=True)
class LiveThread:
    """What a thread's page shows of the upstream: the live thread and its first messages,
    or why each could not be had (`error`: the thread's; `messages_error`: its messages')."""

    live: Thread | None = None
    page: MessagePage | None = None
    error: UpstreamError | None = None
    messages_error: UpstreamError | None = None


# The threads a page's upstream reads run on: they only speak HTTP, never the database (whose
# connections are per thread). Shared by the process, so a page starts no thread of its own; a
# sync gunicorn worker serves one page (two calls) at a time, a threaded server a few.
_readers = ThreadPoolExecutor(max_workers=8, thread_name_prefix="upstream-read")


@dataclass(frozen=True)
class PendingLiveThread:
    """A thread's two reads in flight: the thread and its newest messages."""

    thread: TrackedThread
    live: Future[Thread]
    page: Future[MessagePage]

    def result(self) -> LiveThread:
        """Wait for both answers, then note them (the key's last use, the refreshed cached
        copy: on the caller's thread). When the thread cannot be had, its error is the page's
        and the messages are not shown."""
        live, error = _answer(self.live.result)
        page, messages_error = _answer(self.page.result)
        note_key_result(self.thread.api_key, error or messages_error)
        if live is not None or isinstance(error, NotFoundError):
            _remember(self.thread, live)
        if live is None:
            return LiveThread(error=error)
        return LiveThread(live, page, messages_error=messages_error)


def request_live_thread(thread: TrackedThread) -> PendingLiveThread:
    """`refresh_thread` and the first page of `list_messages`, both sent at once: the page
    waits for one round trip, not two, and may read the database while they are in flight.

    It returns once both readers have begun. A reader needs the GIL to build and send its
    request, and a caller going on with its own work would hold the GIL until that work
    waits: the requests would leave after the work instead of during it. A reader that has
    begun holds the GIL until its first wait on the network (or until the interpreter's
    switch interval, 5 ms, hands it on), which comes once its request is sent."""
    client = client_for(thread.api_key)
    begun = threading.Semaphore(0)

    def read(call: Callable[..., R], *args: Any) -> R:
        begun.release()
        return call(*args)

    live = _readers.submit(read, client.retrieve_thread, thread.thread_id)
    page = _readers.submit(read, _messages_page, client, thread)
    for _ in (live, page):
        begun.acquire()
    return PendingLiveThread(thread, live=live, page=page)


def _answer(call: Callable[[], T]) -> tuple[T | None, UpstreamError | None]:
    try:
        return call(), None
    except UpstreamError as exc:
        return None, exc


def _remember(thread: TrackedThread, live: Thread | None) -> None:
    """Save what a check found (`live`: the answer, None for a 404), unless a deletion began
    meanwhile (its claim, or its outcome, must not be undone): the row is locked while it is
    checked and saved.

    Nothing is written when nothing changed and the last check is recent (`last_checked_at` is
    kept to LAST_USED_PRECISION, as a key's last use is): a page looked at again and again
    costs no write.
    """
    now = timezone.now()
    fields = selectors.refreshed_fields(thread, live, checked_at=now)
    last = thread.last_checked_at
    changed = any(
        getattr(thread, name) != value
        for name, value in fields.items()
        if name != "last_checked_at"
    )
    if not changed and last is not None and now - last < LAST_USED_PRECISION:
        return
    for name, value in fields.items():
        setattr(thread, name, value)
    with transaction.atomic():
        live_row = TrackedThread.objects.select_for_update().filter(pk=thread.pk)
        if live_row.exclude(state__in=(State.DELETING, State.DELETED)).exists():
            thread.save(update_fields=list(fields))  # save() keeps the search text in step


def list_messages(thread: TrackedThread, *, after: str | None = None) -> MessagePage:
    """One page of the thread's messages, oldest first (a conversation reads downwards);
    raises `UpstreamError`."""
    return _call(thread.api_key, lambda client: _messages_page(client, thread, after))


def _messages_page(
    client: ThreadsClient, thread: TrackedThread, after: str | None = None
) -> MessagePage:
    return client.list_messages(
        thread.thread_id, limit=MESSAGES_PAGE_SIZE, order="asc", after=after
    )


def update_thread(
    thread: TrackedThread,
    *,
    actor: User,
    metadata: dict[str, str],
    tool_resources: dict[str, Any] | None = None,
    label: str | None = None,
    origin: Origin | None = None,
) -> TrackedThread:
    """Replace the thread's metadata and tool_resources (None: not sent, left as they are
    upstream), and its label here when one is given (the label is the dashboard's own: the
    upstream never sees it); raises `UpstreamError`, and then nothing changes.

    The new metadata map is sent whole. The emulator (emulator/validation.py,
    `thread_modify`) replaces each field present as a whole, as OpenAI's modify does, so the
    keys left out are removed; sending them with "" would instead store empty strings.
    tool_resources is sent with both sections, empty lists included, so that clearing the
    file ids or the vector store also clears them upstream.
    """
    require_writable(thread, actor=actor)
    before = thread.metadata
    live = _call(
        thread.api_key,
        lambda client: client.modify_thread(
            thread.thread_id, metadata=metadata, tool_resources=tool_resources
        ),
    )
    fields = selectors.live_fields(live, checked_at=timezone.now())
    details: dict[str, Any] = {"metadata_before": before, "metadata_after": live.metadata}
    if label is not None and label != thread.label:
        details.update(label_before=thread.label, label_after=label)
        fields["label"] = label
    for name, value in fields.items():
        setattr(thread, name, value)
    with transaction.atomic():
        thread.save(update_fields=list(fields))
        _record_thread_change(
            thread,
            Action.THREAD_UPDATED,
            actor=actor,
            origin=origin,
            request_id=live.request_id,
            **details,
        )
    return thread


def untrack_thread(thread: TrackedThread, *, actor: User, origin: Origin | None = None) -> None:
    """Forget a thread locally; the upstream is not called."""
    require_writable(thread, actor=actor)
    with transaction.atomic():
        thread.delete()
        details = {"label": thread.label, "state": thread.state}
        _record_thread_change(
            thread, Action.THREAD_UNTRACKED, actor=actor, origin=origin, **details
        )
