"""The audit log: a filtered, keyset-paged list and a streamed CSV export of the same set."""

import csv
import itertools
import json
from dataclasses import dataclass
from datetime import UTC
from typing import Any, cast

from django.db.models import QuerySet
from django.http import HttpResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from threads_app import selectors
from threads_app.forms.audit import AuditFilterForm
from threads_app.models import AuditEvent
from threads_app.paging import keyset_page
from threads_app.views.htmx import AuthenticatedHttpRequest, render_page

Action = AuditEvent.Action
PAGE_SIZE = 50
CSV_CHUNK_SIZE = 1000
# The action and outcome in the page's words; their machine names in columns of their own, last
# (where they were added, so that the columns before keep their places).
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
    "action code",
    "outcome code",
]
# A spreadsheet runs a cell starting with one of these as a formula (CSV injection).
FORMULA_PREFIXES = ("=", "+", "-", "@", "\t", "\r")


def _cursor(value: str | None) -> int | None:
    """A page cursor (an event's sequence), or None for anything else."""
    try:
        cursor = int(value or "")
    except ValueError:
        return None
    return cursor if 0 < cursor < 2**63 else None


def _filtered(request: AuthenticatedHttpRequest) -> tuple[AuditFilterForm, QuerySet[AuditEvent]]:
    """The filter form and the events it selects (none while a filter is invalid)."""
    user = request.user
    form = AuditFilterForm(user, request.GET)
    return form, selectors.filtered_audit_events(user, form.filters())


def _details_summary(details: dict[str, Any]) -> str:
    return ", ".join(
        f"{name}: {value if isinstance(value, str) else json.dumps(value)}"
        for name, value in sorted(details.items())
    )


@dataclass(frozen=True)
class AuditRow:
    """A row of the page: one event, or a deletion's request (`intent`) and its `outcome`
    together (either may be missing: a deletion still without an outcome, an outcome whose
    request the user cannot see)."""

    event: AuditEvent | None = None
    intent: AuditEvent | None = None
    outcome: AuditEvent | None = None

    @property
    def first(self) -> AuditEvent:
        """The row's earliest event: its sequence and time lead the row."""
        return self.event or self.intent or cast(AuditEvent, self.outcome)


def _rows(events: list[AuditEvent], partners: dict[int, AuditEvent]) -> list[AuditRow]:
    """The page's rows: a deletion's request and outcome as one row, where the outcome is
    (or the request, when its outcome is on no page before this one)."""
    on_page = {event.sequence for event in events}
    rows = []
    for event in events:
        partner = partners.get(event.sequence)
        if event.action == Action.THREAD_DELETE_INTENT:
            if partner is None or partner.sequence not in on_page:
                rows.append(AuditRow(intent=event, outcome=partner))
        elif event.action == Action.THREAD_DELETED:
            rows.append(AuditRow(intent=partner, outcome=event))
        else:
            rows.append(AuditRow(event=event))
    return rows


@require_GET
def audit_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    form, events = _filtered(request)
    page = keyset_page(
        selectors.with_snapshot_flag(events),
        size=PAGE_SIZE,
        order=("-sequence",),
        before=_cursor(request.GET.get("before")),
        after=_cursor(request.GET.get("after")),
    )
    partners = selectors.deletion_partners(request.user, page.rows)
    shown = [*page.rows, *partners.values()]
    tracked = selectors.tracked_thread_pks(request.user, shown)
    for event in shown:
        event.thread_pk = tracked.get((event.api_key_id, event.thread_id))
        event.details_summary = _details_summary(event.details)
    rows = _rows(page.rows, partners)
    context = {"form": form, "page": page, "rows": rows, "nav": "audit"}
    return render_page(request, "audit_list", context, partial="rows")


class _Echo:
    """A file-like object whose write() hands the line back (Django's streaming CSV recipe)."""

    def write(self, value: str) -> str:
        return value


def _cell(value: object) -> str:
    if value is None:
        return ""
    text = str(value)
    return "'" + text if text.startswith(FORMULA_PREFIXES) else text


def _csv_row(event: AuditEvent) -> list[str]:
    return [
        _cell(value)
        for value in (
            event.sequence,
            event.created_at.astimezone(UTC).isoformat(),
            event.actor_username,
            event.get_action_display(),
            event.get_outcome_display(),
            event.team_name if event.team_id else "personal",
            event.key_hint,
            event.thread_id,
            event.http_status,
            event.request_id,
            event.client_ip,
            event.user_agent,
            json.dumps(event.details, sort_keys=True, ensure_ascii=False),
            event.hash,
            event.action,
            event.outcome,
        )
    ]


@require_GET
def audit_export(request: AuthenticatedHttpRequest) -> StreamingHttpResponse:
    """Exactly the filtered set, streamed, so a large log never sits in memory."""
    _form, events = _filtered(request)
    writer = csv.writer(_Echo())
    rows = (_csv_row(event) for event in events.iterator(CSV_CHUNK_SIZE))
    lines = (writer.writerow(row) for row in itertools.chain([CSV_HEADER], rows))
    filename = timezone.now().strftime("audit-%Y%m%d-%H%M%S.csv")
    return StreamingHttpResponse(
        lines,
        content_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{filename}"'},
    )
