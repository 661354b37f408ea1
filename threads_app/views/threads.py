"""Thread pages: list, create, import, detail with messages, edit, check, delete and untrack.

Reads go through selectors, writes through `services.threads`, answers through `views.htmx`.
An htmx request gets the page's swappable partial; a plain POST redirects, an htmx POST
answers with a partial, an empty body (the row it removes) or an `HX-Redirect`.
"""

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from django.contrib import messages
from django.http import HttpResponse
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.threads import (
    ADD_ROW,
    ID_MAX,
    BaseMessageFormSet,
    BaseMetadataFormSet,
    MessageFormSet,
    MetadataFormSet,
    ThreadCreateForm,
    ThreadEditForm,
    ThreadFilterForm,
    ThreadImportForm,
    ToolResourcesForm,
    as_typed,
)
from threads_app.models import ApiKey, TrackedThread
from threads_app.paging import Page
from threads_app.services import deletions
from threads_app.services import threads as services
from threads_app.services.reconcile import CheckResult, check_thread
from threads_app.services.refusals import Refused
from threads_app.templatetags.timestamps import timestamp
from threads_app.upstream import MessagePage, NotFoundError, Thread, UpstreamError
from threads_app.views import selections
from threads_app.views.htmx import AuthenticatedHttpRequest, Event, announce, go_to, render_page

PAGE_SIZE = 25
COUNT = "count"  # the list's query parameter asking for the matches to be counted
CHECK_MESSAGE_LEVELS = {
    CheckResult.OK: messages.SUCCESS,
    CheckResult.GONE: messages.WARNING,
    CheckResult.KEY_REJECTED: messages.ERROR,
    CheckResult.FAILED: messages.ERROR,
    CheckResult.SKIPPED: messages.INFO,
}
CHECK_UNCHANGED = (CheckResult.FAILED, CheckResult.SKIPPED)


@require_GET
def thread_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    keys, usable_key_ids = selectors.thread_list_keys(request.user)
    form = ThreadFilterForm(keys, request.GET)
    filters = form.filters()
    if filters is None:  # a typed filter cannot be used: the form says why, nothing is listed
        page = Page([], newer=None, older=None)
    else:
        page = selectors.thread_list_page(
            request.user, filters, keys=keys, size=PAGE_SIZE, **form.cursor
        )
    _set_row_display(page.rows, usable_key_ids, q=filters.q if filters else "")
    context = {
        "nav": "threads",
        "filters": form,
        "page": page,
        "list_count": _count(request, filters, keys, page),
        "pager": _pager(form, page),
        "writable_key_ids": usable_key_ids,
        "has_keys": bool(keys),
        "may_add_threads": bool(usable_key_ids),  # the context processor's, without its query
        "pending_invitations": selectors.my_pending_invitations(request.user).count(),
    }
    context |= selections.list_context(request, filters)
    return render_page(request, "thread_list", context, partial="rows")


def _count(
    request: AuthenticatedHttpRequest,
    filters: selectors.ThreadFilters | None,
    keys: list[ApiKey],
    page: Page,
) -> selectors.ListCount | None:
    """The list's "N threads": free from the counters or the page, else counted only when
    the page asks (`?count=1`: the count's own request, see thread_count.html)."""
    if filters is None:
        return None
    count = selectors.thread_list_count(request.user, filters, keys=keys, page=page)
    if count is None and COUNT in request.GET:
        return selectors.count_matching_threads(request.user, filters)
    return count


def _set_row_display(rows: list[TrackedThread], writable_key_ids: set[int], *, q: str) -> None:
    """What each row shows, worked out once here rather than per use in the template: its
    name, links (the delete one only where it may be deleted), creation time (as the
    `timestamp` tag writes it) and metadata pair (`_shown_pair`)."""
    detail_url = _pk_url("threads_app:thread_detail")
    delete_url = _pk_url("threads_app:thread_delete")
    for thread in rows:
        deletable = thread.api_key_id in writable_key_ids and not thread.deletion_begun
        thread.display_name = str(thread)
        thread.detail_url = detail_url(thread.pk)
        thread.delete_url = delete_url(thread.pk) if deletable else None
        thread.created_time = timestamp(thread.upstream_created_at or thread.tracked_at)
        thread.pair, thread.pair_matched = _shown_pair(thread.metadata or {}, q.lower())
        thread.more_pairs = len(thread.metadata or {}) - (thread.pair is not None)


def _shown_pair(metadata: dict[str, Any], q: str) -> tuple[tuple[str, str] | None, bool]:
    """The metadata pair a list row shows, and whether the search matched it: the first pair
    whose value holds the search (what made the row match), else the first pair."""
    pairs = [(str(key), str(value)) for key, value in metadata.items()]
    if q:
        for pair in pairs:
            if q in pair[1].lower():
                return pair, True
    return (pairs[0] if pairs else None), False


def _pk_url(name: str) -> Callable[[int], str]:
    """`reverse(name, args=[pk])` for many pks from one reverse: the pk is the route's last
    number, so another pk takes the place of the 0 in the URL reversed with 0."""
    head, _, tail = reverse(name, args=[0]).rpartition("/0/")
    return lambda pk: f"{head}/{pk}/{tail}"


def _pager(filters: ThreadFilterForm, page: Page) -> dict[str, str | None]:
    """The links to the newest, newer and older pages (None where there is none)."""
    url = reverse("threads_app:thread_list") + "?"
    paged = any(filters.cursor.values())
    return {
        "newest": url + filters.query_string() if paged else None,
        "newer": url + filters.query_string(after=page.newer) if page.newer else None,
        "older": url + filters.query_string(before=page.older) if page.older else None,
    }


@require_http_methods(["GET", "POST"])
def thread_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    form, metadata, initial_messages = _create_forms(request)
    context: dict[str, Any] = {"nav": "threads", "upstream_error": None}
    if form.is_bound and all([form.is_valid(), metadata.is_valid(), initial_messages.is_valid()]):
        try:
            thread = services.create_thread(
                actor=request.user,
                api_key=form.cleaned_data["api_key"],
                label=form.cleaned_data["label"],
                metadata=metadata.metadata(),
                messages=initial_messages.messages(),
                tool_resources=form.tool_resources(),
                origin=Origin.from_request(request),
            )
        except UpstreamError as exc:
            context["upstream_error"] = exc
        else:
            messages.success(request, f"Created thread {thread.thread_id}.")
            return go_to(request, "threads_app:thread_detail", thread.pk)
    context.update(form=form, metadata=metadata, initial_messages=initial_messages)
    return render_page(request, "thread_create", context, partial="form")


def _create_forms(
    request: AuthenticatedHttpRequest,
) -> tuple[ThreadCreateForm, BaseMetadataFormSet, BaseMessageFormSet]:
    """The create page's forms, bound to a POST; after `add_row` (a page without JavaScript),
    unbound copies as typed, with one more row where it was asked for."""
    data = posted(request)
    form = ThreadCreateForm(request.user, data)
    metadata = MetadataFormSet(data, prefix="meta")
    initial_messages = MessageFormSet(data, prefix="msg")
    if data is None or ADD_ROW not in data:
        return form, metadata, initial_messages
    return (
        ThreadCreateForm(request.user, initial=as_typed(form)),
        metadata.as_typed(another=data[ADD_ROW] == metadata.prefix),
        initial_messages.as_typed(another=data[ADD_ROW] == initial_messages.prefix),
    )


@require_http_methods(["GET", "POST"])
def thread_import(request: AuthenticatedHttpRequest) -> HttpResponse:
    """On POST the results table is the answer (not a redirect): importing again is harmless,
    the ids already tracked are reported as such."""
    data = posted(request)
    form = ThreadImportForm(request.user, data)
    results = None
    if data is not None and form.is_valid():
        results = services.import_threads(
            actor=request.user,
            api_key=form.cleaned_data["api_key"],
            thread_ids=form.cleaned_data["thread_ids"],
            label=form.cleaned_data["label"],
            origin=Origin.from_request(request),
        )
    context = {
        "nav": "import",
        "form": form,
        "results": results,
        "summary": Counter(result.status for result in results or ()),
    }
    response = render_page(request, "thread_import", context, partial="import")
    if results and any(result.status == result.TRACKED for result in results):
        announce(response, Event.THREADS_CHANGED)
    return response


def _message_rows(page: MessagePage | None) -> list[tuple[Any, datetime]]:
    """(message, creation time) pairs: the template shows the time as a `<time>`."""
    if page is None:
        return []
    return [
        (message, datetime.fromtimestamp(message.created_at, tz=UTC)) for message in page.messages
    ]


@require_GET
def thread_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The local record always; the live thread and its newest messages when the upstream
    answers, both asked for at once (a 404 marks the thread gone)."""
    thread = selectors.get_visible_thread(request.user, pk)
    reason = selectors.unreachable_reason(thread)
    pending = None if reason else services.request_live_thread(thread)
    writable = selectors.can_change_thread(request.user, thread)  # while the calls are out
    upstream = pending.result() if pending else services.LiveThread()
    context = {
        "nav": "threads",
        "thread": thread,
        "live": upstream.live,
        "page": upstream.page,
        "message_rows": _message_rows(upstream.page),
        "error": upstream.error,
        "messages_error": upstream.messages_error,
        "gone": isinstance(upstream.error, NotFoundError),
        "reason": reason,
        "writable": writable,
        "blocked": _blocked(upstream.error),
    }
    return render_page(request, "thread_detail", context, partial="live")


def _blocked(error: UpstreamError | None) -> str | None:
    """Why a thread's page offers Edit, Delete and the transcript disabled, or None."""
    if error is None:
        return None
    if isinstance(error, NotFoundError):
        return (
            "The Threads API no longer has this thread: there is nothing to edit, delete or "
            "download. Untrack it to take it off the list."
        )
    return "Editing, deleting and downloading need the Threads API: try again once it answers."


@require_GET
def thread_messages(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The next page of messages after the `after` cursor; htmx gets the rows to append."""
    thread = selectors.get_visible_thread(request.user, pk)
    after = request.GET.get("after", "").strip()[:ID_MAX] or None
    page = error = None
    reason = selectors.unreachable_reason(thread)
    if reason is None:
        try:
            page = services.list_messages(thread, after=after)
        except UpstreamError as exc:
            error = exc
    context = {
        "nav": "threads",
        "thread": thread,
        "page": page,
        "message_rows": _message_rows(page),
        "after": after,
        "error": error,
        "reason": reason,
    }
    return render_page(request, "thread_messages", context, partial="items")


@require_http_methods(["GET", "POST"])
def thread_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Metadata and tool_resources, pre-filled from the live thread; no form if it is out of
    reach. The new metadata map replaces the old one. A POST with `add_row` (no JavaScript)
    shows the form again with one more pair."""
    thread = selectors.get_writable_thread(request.user, pk)
    data = posted(request)
    if data is None:
        return _edit_page(request, thread, *_edit_forms_from_live(thread))
    form = ThreadEditForm(data)
    metadata = MetadataFormSet(data, prefix="meta")
    if ADD_ROW in data:
        form = ThreadEditForm(initial=as_typed(form))
        return _edit_page(request, thread, form, metadata.as_typed(another=True))
    if not (form.is_valid() and metadata.is_valid()):
        return _edit_page(request, thread, form, metadata)
    try:
        services.update_thread(
            thread,
            actor=request.user,
            metadata=metadata.metadata(),
            tool_resources=form.tool_resources(keep_empty=True),
            # A post without the field (an older page, a script) keeps the label.
            label=form.cleaned_data["label"] if "label" in data else None,
            origin=Origin.from_request(request),
        )
    except UpstreamError as exc:
        return _edit_page(request, thread, form, metadata, error=exc)
    messages.success(request, f"Saved thread {thread.thread_id}.")
    return go_to(request, "threads_app:thread_detail", pk)


def _edit_forms_from_live(
    thread: TrackedThread,
) -> tuple[ThreadEditForm | None, BaseMetadataFormSet | None, UpstreamError | None]:
    """The edit forms filled from the live thread, or no forms and why it could not be read."""
    try:
        live: Thread = services.refresh_thread(thread)
    except UpstreamError as exc:
        return None, None, exc
    initial = {**ToolResourcesForm.initial_from(live.tool_resources), "label": thread.label}
    form = ThreadEditForm(initial=initial)
    metadata = MetadataFormSet(
        initial=[{"key": key, "value": value} for key, value in live.metadata.items()],
        prefix="meta",
    )
    return form, metadata, None


def _edit_page(
    request: AuthenticatedHttpRequest,
    thread: TrackedThread,
    form: ThreadEditForm | None,
    metadata: BaseMetadataFormSet | None,
    error: UpstreamError | None = None,
) -> HttpResponse:
    context = {"nav": "threads", "thread": thread, "form": form, "metadata": metadata}
    return render_page(request, "thread_edit", {**context, "error": error}, partial="form")


@require_POST
def thread_check(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """'Check now': anyone who can see the thread may check it, only the cached copy changes.

    htmx gets the page's record partial (the toast says what was found); a plain POST goes
    back to the thread's page.
    """
    thread = selectors.get_visible_thread(request.user, pk)
    result = check_thread(thread)
    messages.add_message(request, CHECK_MESSAGE_LEVELS[result.outcome], result.message)
    if not request.htmx:
        return go_to(request, "threads_app:thread_detail", pk)
    # Fetched again: a rejected key is marked failing in the database, not on this object.
    thread = selectors.get_visible_thread(request.user, pk)
    response = render_page(request, "thread_detail", {"thread": thread}, partial="record")
    if result.outcome not in CHECK_UNCHANGED:
        announce(response, Event.THREADS_CHANGED)
    return response


def _confirm(request: AuthenticatedHttpRequest, thread: TrackedThread, action: str) -> HttpResponse:
    """The confirmation: a page, or (htmx) the dialog's content; `?row` when a list row opened
    it, so that its form removes that row in place."""
    in_row = "row" in request.GET and bool(request.htmx)
    context = {"nav": "threads", "thread": thread, "action": action, "in_row": in_row}
    return render_page(request, "thread_confirm", context, partial="confirm")


def _row_removed(request: AuthenticatedHttpRequest) -> HttpResponse:
    """A thread left the list: htmx gets an empty body (the row goes), a page the list."""
    if request.htmx:
        return announce(HttpResponse(""), Event.THREADS_CHANGED)
    return go_to(request, "threads_app:thread_list")


def _row_kept(request: AuthenticatedHttpRequest, to: str, pk: int) -> HttpResponse:
    """A thread stays: htmx gets 204 (the row stays, the toast says why), a page `to`."""
    return HttpResponse(status=204) if request.htmx else go_to(request, to, pk)


@require_http_methods(["GET", "POST"])
def thread_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: confirmation. POST: delete upstream. htmx (the list's row button): an empty body
    removes the row; on failure 204 keeps it, and the toast says why. A transcript that was
    asked for but could not be saved stops the deletion: back to the confirmation. A thread
    deleted already, or being deleted, is not sent again: back to the thread (htmx: 204, and
    the list refreshes to show its state)."""
    thread = selectors.get_writable_thread(request.user, pk)
    if request.method == "GET":
        return _confirm(request, thread, "delete")
    try:
        deletion = deletions.delete_thread(
            thread,
            actor=request.user,
            origin=Origin.from_request(request),
            snapshot="snapshot" in request.POST,
        )
    except deletions.DeletionUnderway as exc:
        messages.error(request, str(exc))
        return announce(_row_kept(request, "threads_app:thread_detail", pk), Event.THREADS_CHANGED)
    except Refused as exc:
        messages.error(request, str(exc))
        return _row_kept(request, "threads_app:thread_delete", pk)
    if deletion.removed:
        messages.success(request, deletion.message)
        return _row_removed(request)
    messages.error(request, deletion.message)
    return _row_kept(request, "threads_app:thread_detail", pk)


@require_http_methods(["GET", "POST"])
def thread_untrack(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: confirmation. POST: forget the thread here; the upstream keeps it."""
    thread = selectors.get_writable_thread(request.user, pk)
    if request.method == "GET":
        return _confirm(request, thread, "untrack")
    name = str(thread)
    services.untrack_thread(thread, actor=request.user, origin=Origin.from_request(request))
    messages.success(request, f"Stopped tracking {name}. It still exists upstream.")
    return _row_removed(request)
