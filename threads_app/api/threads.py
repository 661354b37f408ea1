"""Threads: the list (the list page's own filter form and query), one live thread with its
first messages, create, import, update metadata and an idempotent delete."""

from dataclasses import replace
from datetime import datetime
from typing import Any, Literal

from django.http import HttpResponse, QueryDict
from ninja import Field, Query, Router, Schema, Status

from threads_app import selectors
from threads_app.api.base import (
    ApiProblem,
    ApiRequest,
    Principal,
    errors,
    field_errors,
    require_in_team,
    scoped,
    unvalidated,
)
from threads_app.api.schemas import (
    Body,
    Day,
    Metadata,
    PathPk,
    Pk,
    ThreadOut,
    ToolResources,
    UpstreamId,
    text,
    thread_out,
)
from threads_app.audit import Origin
from threads_app.forms.threads import (
    IMPORT_MAX_IDS,
    MESSAGE_TEXT_MAX,
    MESSAGES_MAX,
    ThreadFilterForm,
)
from threads_app.models import ApiKey, AuditEvent, TrackedThread
from threads_app.services import deletions
from threads_app.services import threads as services
from threads_app.upstream import NotFoundError

router = Router(tags=["threads"])
READ, WRITE, DELETE = "threads:read", "threads:write", "threads:delete"


def visible_thread(principal: Principal, pk: int) -> TrackedThread:
    thread = selectors.get_visible_thread(principal.user, pk)
    require_in_team(principal, thread.api_key.team_id)
    return thread


def writable_thread(principal: Principal, pk: int) -> TrackedThread:
    thread = visible_thread(principal, pk)
    return selectors.get_writable_thread(principal.user, thread.pk)


def visible_key(principal: Principal, pk: int) -> ApiKey:
    api_key = selectors.get_visible_key(principal.user, pk)
    require_in_team(principal, api_key.team_id)
    return api_key


class ListFilters(Schema):
    """The list page's filters and sort, read by its own form (`ThreadFilterForm`): typed here
    for the document, parsed there (`list_filters`). The list's query and a selection's body."""

    q: text(200) | None = Field(None, description="Part of a thread's id, label or metadata")  # type: ignore[valid-type]
    key: Pk | None = Field(None, description="A key's id")
    team: Pk | None = Field(None, description="A team's id")
    tracked_by: text(150) | None = Field(None, description="A username, any case")  # type: ignore[valid-type]
    state: Literal["active", "gone", "deleting", "deleted", "all"] | None = Field(
        None, description="Every state but deleted when absent"
    )
    date_from: Day | None = Field(None, description="Created from this UTC day")
    date_to: Day | None = Field(None, description="Created up to this UTC day, included")
    sort: Literal["newest", "oldest", "label"] | None = Field(None, description="newest if absent")


class ThreadQuery(ListFilters):
    before: Pk | None = Field(None, description="The `older` cursor of the previous page")
    after: Pk | None = Field(None, description="The `newer` cursor of a later page")


class ThreadPage(Schema):
    threads: list[ThreadOut]
    older: int | None = Field(description="Cursor of the next page (`before=`), if any")
    newer: int | None = Field(description="Cursor of the previous page (`after=`), if any")


def list_filters(
    principal: Principal, data: QueryDict | dict[str, str], *, source: str = "query"
) -> tuple[ThreadFilterForm, selectors.ThreadFilters, list[ApiKey]]:
    """The list's filters (and cursor) in `data`, through the list page's own form; a team
    token's narrowed to its team. Also the form and the keys the token may see. Raises the
    form's errors (`field_errors`)."""
    keys = selectors.filter_keys(principal.user)
    if principal.team_id is not None:
        keys = keys.filter(team_id=principal.team_id)
    listed = list(keys)
    form = ThreadFilterForm(listed, data)
    filters = form.filters()
    if form.errors or filters is None:
        raise field_errors(form, source)
    if principal.team_id is not None:
        filters = replace(filters, team_id=principal.team_id)
    return form, filters, listed


@router.get("/threads", response={200: ThreadPage, **errors(404, 422)}, auth=scoped(READ))
def list_threads(
    request: ApiRequest,
    query: Query[ThreadQuery],
    limit: int = Query(25, ge=1, le=100),  # type: ignore[type-arg]
) -> HttpResponse:
    """The threads the token may see, as the list page finds them: search, filters, sort and
    keyset cursors (`older`/`newer`)."""
    principal = request.auth
    form, filters, keys = list_filters(principal, request.GET)
    page = selectors.thread_list_page(principal.user, filters, keys=keys, size=limit, **form.cursor)
    threads = [thread_out(thread) for thread in page.rows]
    return unvalidated(request, {"threads": threads, "older": page.older, "newer": page.newer})


class LiveThread(Schema):
    created_at: int
    metadata: dict[str, str]
    tool_resources: dict[str, Any]


class MessageOut(Schema):
    id: str
    role: str
    created_at: int
    text: str


class ThreadDetail(ThreadOut):
    metadata: dict[str, Any]
    last_checked_at: datetime | None
    live: LiveThread | None = Field(description="The thread as the Threads API has it now")
    messages: list[MessageOut] = Field(description="Its newest messages, newest first")
    more_messages: bool
    unavailable: str | None = Field(description="Why `live` or `messages` are missing")
    request_id: str | None = Field(description="The Threads API's request id")


@router.get(
    "/threads/{int:pk}", response={200: ThreadDetail, **errors(404, 422, 502)}, auth=scoped(READ)
)
def get_thread(request: ApiRequest, pk: PathPk) -> ThreadDetail:
    """The tracked thread, the live one and its newest messages (asked for at once). A thread
    the Threads API no longer has is marked gone; another failure is a 502."""
    thread = visible_thread(request.auth, pk)
    reason = selectors.unreachable_reason(thread)
    upstream = services.request_live_thread(thread).result() if reason is None else None
    live = upstream.live if upstream else None
    if upstream and upstream.error and not isinstance(upstream.error, NotFoundError):
        raise upstream.error
    if upstream and isinstance(upstream.error, NotFoundError):
        reason = "The Threads API no longer has this thread: it is marked gone."
    elif upstream and upstream.messages_error:
        reason = f"Its messages could not be read: {upstream.messages_error}"
    page = upstream.page if upstream else None
    thread.refresh_from_db()
    return ThreadDetail(
        **thread_out(thread),
        metadata=thread.metadata,
        last_checked_at=thread.last_checked_at,
        live=LiveThread(
            created_at=live.created_at, metadata=live.metadata, tool_resources=live.tool_resources
        )
        if live
        else None,
        messages=[
            MessageOut(id=m.id, role=m.role, created_at=m.created_at, text=m.text)
            for m in (page.messages if page else [])
        ],
        more_messages=bool(page and page.has_more),
        unavailable=reason,
        request_id=live.request_id if live else None,
    )


class Tool(Body):
    type: Literal["code_interpreter", "file_search"]


class Attachment(Body):
    file_id: UpstreamId
    tools: list[Tool] = Field(default_factory=list, max_length=2)


class MessageIn(Body):
    role: Literal["user", "assistant"]
    content: text(MESSAGE_TEXT_MAX, min_length=1)  # type: ignore[valid-type]
    attachments: list[Attachment] = Field(default_factory=list, max_length=20)


class ThreadCreate(Body):
    api_key: Pk = Field(description="The id of a key the token's user may use")
    label: text(200) = ""  # type: ignore[valid-type]
    metadata: Metadata = Field(default_factory=dict)
    messages: list[MessageIn] = Field(default_factory=list, max_length=MESSAGES_MAX)
    tool_resources: ToolResources | None = None


@router.post("/threads", response={201: ThreadOut, **errors(404, 422, 502)}, auth=scoped(WRITE))
def create_thread(request: ApiRequest, body: ThreadCreate) -> Status[dict[str, Any]]:
    """Create a thread upstream with the key, and track it."""
    principal = request.auth
    thread = services.create_thread(
        actor=principal.user,
        api_key=visible_key(principal, body.api_key),
        label=body.label,
        metadata=body.metadata,
        messages=[message.model_dump() for message in body.messages],
        tool_resources=body.tool_resources.as_sent() if body.tool_resources else None,
        origin=Origin.from_request(request),
    )
    return Status(201, thread_out(thread))


class ThreadImport(Body):
    api_key: Pk
    thread_ids: list[UpstreamId] = Field(min_length=1, max_length=IMPORT_MAX_IDS)


class ImportResultOut(Schema):
    thread_id: str
    status: Literal["tracked", "already_tracked", "refused"]
    message: str
    thread: int | None


@router.post(
    "/threads/import", response={200: list[ImportResultOut], **errors(404, 422)}, auth=scoped(WRITE)
)
def import_threads(request: ApiRequest, body: ThreadImport) -> list[ImportResultOut]:
    """Track existing threads: each id is checked with the Threads API first; one result per
    id, in order (importing again is harmless)."""
    principal = request.auth
    results = services.import_threads(
        actor=principal.user,
        api_key=visible_key(principal, body.api_key),
        thread_ids=list(dict.fromkeys(body.thread_ids)),
        origin=Origin.from_request(request),
    )
    return [
        ImportResultOut(
            thread_id=result.thread_id,
            status=result.status,  # type: ignore[arg-type]
            message=result.message,
            thread=result.thread.pk if result.thread else None,
        )
        for result in results
    ]


class ThreadUpdate(Body):
    metadata: Metadata = Field(description="The new metadata, whole: keys left out are removed")
    tool_resources: ToolResources | None = Field(None, description="Left as they are if absent")


@router.patch(
    "/threads/{int:pk}", response={200: ThreadOut, **errors(404, 409, 422, 502)}, auth=scoped(WRITE)
)
def update_thread(request: ApiRequest, pk: PathPk, body: ThreadUpdate) -> dict[str, Any]:
    """Replace the thread's metadata (and tool resources, if given)."""
    principal = request.auth
    thread = writable_thread(principal, pk)
    if thread.deletion_begun:
        raise deletions.refusal_for(thread)
    services.update_thread(
        thread,
        actor=principal.user,
        metadata=body.metadata,
        tool_resources=body.tool_resources.as_sent() if body.tool_resources else None,
        origin=Origin.from_request(request),
    )
    return thread_out(thread)


class DeletionOut(Schema):
    thread: int
    thread_id: str
    outcome: Literal["success", "already_gone", "gone_interrupted"]
    message: str
    request_id: str | None
    repeated: bool = Field(description="True when the thread was deleted before: nothing sent")


def _recorded(thread: TrackedThread) -> DeletionOut:
    event = selectors.recorded_deletion(thread)
    outcome = event.outcome if event else AuditEvent.Outcome.ALREADY_GONE
    return DeletionOut(
        thread=thread.pk,
        thread_id=thread.thread_id,
        outcome=outcome,  # type: ignore[arg-type]
        message=f"Deleted on {event.created_at:%Y-%m-%d %H:%M:%S} UTC; nothing was sent."
        if event
        else "Deleted earlier; nothing was sent.",
        request_id=event.request_id or None if event else None,
        repeated=True,
    )


@router.delete(
    "/threads/{int:pk}",
    response={200: DeletionOut, **errors(404, 409, 422, 502)},
    auth=scoped(DELETE),
)
def delete_thread(request: ApiRequest, pk: PathPk, snapshot: bool = False) -> DeletionOut:
    """Delete the thread upstream (audited: intent, then outcome). Idempotent: a thread
    deleted already answers its recorded outcome, and nothing is sent again. A deletion the
    Threads API refused or failed answers a problem (the thread can be deleted again); one
    under way elsewhere, 409. `snapshot`: keep its transcript in the audit log first."""
    principal = request.auth
    thread = writable_thread(principal, pk)
    if thread.state == TrackedThread.State.DELETED:
        return _recorded(thread)
    try:
        deletion = deletions.delete_thread(
            thread, actor=principal.user, origin=Origin.from_request(request), snapshot=snapshot
        )
    except deletions.AlreadyDeleted:
        return _recorded(thread)
    if not deletion.removed:
        raise ApiProblem(
            502,
            "deletion_failed",
            deletion.message,
            request_id=deletion.request_id or None,
            upstream_status=deletion.http_status,
        )
    return DeletionOut(
        thread=thread.pk,
        thread_id=thread.thread_id,
        outcome=deletion.outcome,  # type: ignore[arg-type]
        message=deletion.message,
        request_id=deletion.request_id or None,
        repeated=False,
    )
