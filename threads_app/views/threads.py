"""Thread pages: list, create, import, detail with messages, edit, delete and untrack.

Reads go through selectors, writes through `services.threads`. An htmx request gets the
page's swappable partial; a plain POST redirects, an htmx POST answers with a partial, an
empty body (the row it removes) or an `HX-Redirect`.
"""

from collections import Counter
from datetime import UTC, datetime

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.forms.threads import (
    ID_MAX,
    MessageFormSet,
    MetadataFormSet,
    ThreadCreateForm,
    ThreadFilterForm,
    ThreadImportForm,
    ToolResourcesForm,
)
from threads_app.paging import keyset_page
from threads_app.services import deletions
from threads_app.services import threads as services
from threads_app.services.transcripts import SnapshotFailed
from threads_app.upstream import NotFoundError, UpstreamError

PAGE_SIZE = 25
CHANGED = "threadsChanged"


def _render(request, template, partial, context):
    """The whole page, or only its `partial` for an htmx request."""
    name = f"threads_app/{template}.html"
    return render(request, f"{name}#{partial}" if request.htmx else name, context)


def _redirect(request, url):
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _changed(response):
    return trigger_client_event(response, CHANGED)


@require_GET
def thread_list(request):
    user = request.user
    keys = list(selectors.visible_keys(user).only("pk", "label", "hint", "revoked_at"))
    filters = ThreadFilterForm(keys, request.GET)
    threads = filters.filter(selectors.visible_threads(user))
    page = keyset_page(
        threads,
        size=PAGE_SIZE,
        before=filters.cleaned_data.get("before"),
        after=filters.cleaned_data.get("after"),
        # Read each key's newest rows through its index, so a user with few threads in a
        # large table pays for their rows only (a superuser's keys are everyone's: no gain).
        partitions=None if user.is_superuser else ("api_key_id", [key.pk for key in keys]),
    )
    paged = bool(filters.cleaned_data.get("before") or filters.cleaned_data.get("after"))
    url = reverse("threads_app:thread_list") + "?"
    context = {
        "nav": "threads",
        "filters": filters,
        "page": page,
        "pager": {
            "newest": url + filters.query_string() if paged else None,
            "newer": url + filters.query_string(after=page.newer) if page.newer else None,
            "older": url + filters.query_string(before=page.older) if page.older else None,
        },
        "writable_key_ids": set(selectors.usable_keys(user).values_list("pk", flat=True)),
        "has_keys": bool(keys),
        "pending_invitations": selectors.my_pending_invitations(user).count(),
    }
    return _render(request, "thread_list", "rows", context)


@require_http_methods(["GET", "POST"])
def thread_create(request):
    data = request.POST if request.method == "POST" else None
    form = ThreadCreateForm(request.user, data)
    metadata = MetadataFormSet(data, prefix="meta")
    initial_messages = MessageFormSet(data, prefix="msg")
    upstream_error = None
    if data is not None and all(
        [form.is_valid(), metadata.is_valid(), initial_messages.is_valid()]
    ):
        try:
            thread = services.create_thread(
                request.user,
                form.cleaned_data["api_key"],
                label=form.cleaned_data["label"],
                metadata=metadata.metadata(),
                messages=initial_messages.messages(),
                tool_resources=form.tool_resources(),
                origin=Origin.from_request(request),
            )
        except UpstreamError as exc:
            upstream_error = exc
        else:
            messages.success(request, f"Created thread {thread.thread_id}.")
            return _redirect(request, reverse("threads_app:thread_detail", args=[thread.pk]))
    context = {
        "nav": "threads",
        "form": form,
        "metadata": metadata,
        "initial_messages": initial_messages,
        "upstream_error": upstream_error,
    }
    return _render(request, "thread_create", "form", context)


@require_http_methods(["GET", "POST"])
def thread_import(request):
    """On POST the results table is the answer (not a redirect): importing again is harmless,
    the ids already tracked are reported as such."""
    data = request.POST if request.method == "POST" else None
    form = ThreadImportForm(request.user, data)
    results = None
    if data is not None and form.is_valid():
        results = services.import_threads(
            request.user,
            form.cleaned_data["api_key"],
            form.cleaned_data["thread_ids"],
            origin=Origin.from_request(request),
        )
    context = {
        "nav": "import",
        "form": form,
        "results": results,
        "summary": Counter(result.status for result in results or ()),
    }
    response = _render(request, "thread_import", "import", context)
    if results and any(result.status == result.TRACKED for result in results):
        _changed(response)
    return response


def _message_rows(page):
    """(message, creation time) pairs: the template shows the time as a `<time>`."""
    if page is None:
        return []
    return [
        (message, datetime.fromtimestamp(message.created_at, tz=UTC)) for message in page.messages
    ]


@require_GET
def thread_detail(request, pk):
    """The local record always; the live thread and its newest messages when the upstream
    answers (a 404 marks the thread gone)."""
    thread = selectors.get_visible_thread(request.user, pk)
    live = page = error = None
    reason = services.unreachable_reason(thread)
    if reason is None:
        try:
            live = services.refresh_thread(thread)
            page = services.list_messages(thread)
        except UpstreamError as exc:
            error = exc
    context = {
        "nav": "threads",
        "thread": thread,
        "live": live,
        "page": page,
        "message_rows": _message_rows(page),
        "error": error,
        "gone": isinstance(error, NotFoundError),
        "reason": reason,
        "writable": selectors.can_change_thread(request.user, thread),
    }
    return _render(request, "thread_detail", "live", context)


@require_GET
def thread_messages(request, pk):
    """The next page of messages after the `after` cursor; htmx gets the rows to append."""
    thread = selectors.get_visible_thread(request.user, pk)
    after = request.GET.get("after", "").strip()[:ID_MAX] or None
    page = error = None
    reason = services.unreachable_reason(thread)
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
    return _render(request, "thread_messages", "items", context)


@require_http_methods(["GET", "POST"])
def thread_edit(request, pk):
    """Metadata and tool_resources, pre-filled from the live thread; no form if it is out of
    reach. The new metadata map replaces the old one."""
    thread = selectors.get_writable_thread(request.user, pk)
    context = {"nav": "threads", "thread": thread, "error": None}
    if request.method == "POST":
        form = ToolResourcesForm(request.POST)
        metadata = MetadataFormSet(request.POST, prefix="meta")
        if form.is_valid() and metadata.is_valid():
            try:
                services.update_thread(
                    request.user,
                    thread,
                    metadata=metadata.metadata(),
                    tool_resources=form.tool_resources(keep_empty=True),
                    origin=Origin.from_request(request),
                )
            except UpstreamError as exc:
                context["error"] = exc
            else:
                messages.success(request, f"Saved thread {thread.thread_id}.")
                return _redirect(request, reverse("threads_app:thread_detail", args=[pk]))
    else:
        try:
            live = services.refresh_thread(thread)
        except UpstreamError as exc:
            context["error"] = exc
            form = metadata = None
        else:
            form = ToolResourcesForm(initial=ToolResourcesForm.initial_from(live.tool_resources))
            metadata = MetadataFormSet(
                initial=[{"key": key, "value": value} for key, value in live.metadata.items()],
                prefix="meta",
            )
    context.update(form=form, metadata=metadata)
    return _render(request, "thread_edit", "form", context)


def _confirm(request, thread, action):
    return _render(
        request, "thread_confirm", "confirm", {"nav": "threads", "thread": thread, "action": action}
    )


@require_http_methods(["GET", "POST"])
def thread_delete(request, pk):
    """GET: confirmation. POST: delete upstream. htmx (the list's row button): an empty body
    removes the row; on failure 204 keeps it, and the toast says why. A transcript that was
    asked for but could not be saved stops the deletion: back to the confirmation."""
    thread = selectors.get_writable_thread(request.user, pk)
    if request.method == "GET":
        return _confirm(request, thread, "delete")
    try:
        deletion = deletions.delete_thread(
            request.user,
            thread,
            origin=Origin.from_request(request),
            snapshot="snapshot" in request.POST,
        )
    except SnapshotFailed as exc:
        messages.error(request, str(exc))
        if request.htmx:
            return HttpResponse(status=204)
        return redirect("threads_app:thread_delete", pk=pk)
    if deletion.removed:
        messages.success(request, deletion.message)
        if request.htmx:
            return _changed(HttpResponse(""))
        return redirect("threads_app:thread_list")
    messages.error(request, deletion.message)
    if request.htmx:
        return HttpResponse(status=204)
    return redirect("threads_app:thread_detail", pk=pk)


@require_http_methods(["GET", "POST"])
def thread_untrack(request, pk):
    """GET: confirmation. POST: forget the thread here; the upstream keeps it."""
    thread = selectors.get_writable_thread(request.user, pk)
    if request.method == "GET":
        return _confirm(request, thread, "untrack")
    name = str(thread)
    services.untrack_thread(request.user, thread, origin=Origin.from_request(request))
    messages.success(request, f"Stopped tracking {name}. It still exists upstream.")
    if request.htmx:
        return _changed(HttpResponse(""))
    return redirect("threads_app:thread_list")
