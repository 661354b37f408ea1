"""The audit log: a filtered, keyset-paged list and a streamed CSV export of the same set."""

import csv
import itertools
import json
from datetime import UTC

from django.db.models import Q
from django.http import StreamingHttpResponse
from django.shortcuts import render
from django.utils import timezone
from django.utils.cache import patch_vary_headers
from django.views.decorators.http import require_GET

from threads_app import selectors
from threads_app.forms.audit import filtered_audit_events
from threads_app.models import TrackedThread
from threads_app.paging import keyset_page

PAGE_SIZE = 50
CSV_CHUNK_SIZE = 1000
CSV_HEADER = [
    "sequence",
    "time",
    "actor",
    "action",
    "outcome",
    "team",
    "key hint",
    "thread id",
    "http status",
    "request id",
    "client ip",
    "user agent",
    "details",
    "hash",
]
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cursor(value):
    try:
        cursor = int(value)
    except (TypeError, ValueError):
        return None
    return cursor if cursor > 0 else None


def _link_tracked_threads(user, events):
    """Set `thread_pk` on events whose thread is still tracked and visible (one query)."""
    thread_ids = {event.thread_id for event in events if event.thread_id}
    tracked = {}
    if thread_ids:
        rows = (
            selectors.visible_threads(user)
            .filter(thread_id__in=thread_ids)
            .exclude(state=TrackedThread.State.DELETED)
            .values_list("api_key_id", "thread_id", "pk")
        )
        tracked = {(key_id, thread_id): pk for key_id, thread_id, pk in rows}
    for event in events:
        event.thread_pk = tracked.get((event.api_key_id, event.thread_id))


def _details_summary(details):
    return ", ".join(
        f"{name}: {value if isinstance(value, str) else json.dumps(value)}"
        for name, value in sorted(details.items())
    )


@require_GET
def audit_list(request):
    form, events = filtered_audit_events(request.user, request.GET)
    # Transcripts can be large: the page only needs to know which events keep one.
    events = events.defer("snapshot").annotate(has_snapshot=~Q(snapshot=""))
    page = keyset_page(
        events,
        size=PAGE_SIZE,
        field="sequence",
        before=_cursor(request.GET.get("before")),
        after=_cursor(request.GET.get("after")),
    )
    _link_tracked_threads(request.user, page.rows)
    for event in page.rows:
        event.details_summary = _details_summary(event.details)
    template = "threads_app/audit_list.html"
    if request.htmx and not request.htmx.history_restore_request:
        template += "#rows"
    response = render(request, template, {"form": form, "page": page, "nav": "audit"})
    # The same URL answers with a page or a partial: caches must tell them apart.
    patch_vary_headers(response, ["HX-Request"])
    return response


class _Echo:
    """A file-like object whose write() hands the line back (Django's streaming CSV recipe)."""

    def write(self, value):
        return value


def _cell(value):
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_row(event):
    return [
        _cell(value)
        for value in (
            event.sequence,
            event.created_at.astimezone(UTC).isoformat(),
            event.actor_username,
            event.action,
            event.outcome,
            event.team_name if event.team_id else "personal",
            event.key_hint,
            event.thread_id,
            event.http_status,
            event.request_id,
            event.client_ip,
            event.user_agent,
            json.dumps(event.details, sort_keys=True, ensure_ascii=False),
            event.hash,
        )
    ]


@require_GET
def audit_export(request):
    """Exactly the filtered set, streamed, so a large log never sits in memory."""
    _form, events = filtered_audit_events(request.user, request.GET)
    writer = csv.writer(_Echo())
    events = events.defer("snapshot").order_by("-sequence")
    rows = (_csv_row(event) for event in events.iterator(CSV_CHUNK_SIZE))
    lines = (writer.writerow(row) for row in itertools.chain([CSV_HEADER], rows))
    filename = timezone.now().strftime("audit-%Y%m%d-%H%M%S.csv")
    return StreamingHttpResponse(
        lines,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
