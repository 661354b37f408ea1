"""The audit log: events with keyset cursors and every filter of the audit page (its own
form and query), and the same set streamed as NDJSON."""

import json
from collections.abc import Iterator
from datetime import date, datetime
from typing import Any, Literal

from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from ninja import Field, Query, Router, Schema

from threads_app import selectors
from threads_app.api.base import ApiRequest, errors, field_errors, scoped
from threads_app.api.schemas import Pk, text
from threads_app.forms.audit import AuditFilterForm
from threads_app.models import AuditEvent
from threads_app.paging import keyset_page

router = Router(tags=["audit"])
READ = "audit:read"
EXPORT_CHUNK = 1000
NDJSON = "application/x-ndjson"


class AuditQuery(Schema):
    """The audit page's filters, read by its own form (`AuditFilterForm`): typed here for the
    document, parsed there."""

    action: Literal[tuple(AuditEvent.Action.values)] | None = None  # type: ignore[valid-type]
    actor: text(150) | None = Field(None, description="A username, any case")  # type: ignore[valid-type]
    team: Pk | None = Field(None, description="A team's id")
    key: Pk | None = Field(None, description="A key's id")
    outcome: Literal[tuple(AuditEvent.Outcome.values)] | None = None  # type: ignore[valid-type]
    date_from: date | None = Field(None, description="From this UTC day")
    date_to: date | None = Field(None, description="Up to this UTC day, included")
    thread: text(100) | None = Field(None, description="Part of a thread id, any case")  # type: ignore[valid-type]


class AuditEventOut(Schema):
    sequence: int
    created_at: datetime
    actor: str
    action: str
    outcome: str
    team: str | None
    key_hint: str
    thread_id: str
    http_status: int | None
    request_id: str
    client_ip: str | None
    user_agent: str
    details: dict[str, Any]
    hash: str


class AuditPage(Schema):
    events: list[AuditEventOut]
    older: int | None = Field(description="Cursor of the next page (`before=`), if any")
    newer: int | None = Field(description="Cursor of the previous page (`after=`), if any")


def event_out(event: AuditEvent) -> dict[str, Any]:
    return {
        "sequence": event.sequence,
        "created_at": event.created_at,
        "actor": event.actor_username,
        "action": event.action,
        "outcome": event.outcome,
        "team": event.team_name if event.team_id else None,
        "key_hint": event.key_hint,
        "thread_id": event.thread_id,
        "http_status": event.http_status,
        "request_id": event.request_id,
        "client_ip": event.client_ip,
        "user_agent": event.user_agent,
        "details": event.details,
        "hash": event.hash,
    }


def _events(request: ApiRequest) -> QuerySet[AuditEvent]:
    principal = request.auth
    form = AuditFilterForm(principal.user, request.GET)
    filters = form.filters()
    if filters is None:
        raise field_errors(form)
    events = selectors.filtered_audit_events(principal.user, filters)
    if principal.team_id is not None:
        events = events.filter(team_id=principal.team_id)
    return events


@router.get("/audit/events", response={200: AuditPage, **errors(404, 422)}, auth=scoped(READ))
def list_events(
    request: ApiRequest,
    query: Query[AuditQuery],
    before: int | None = Query(None, ge=1, le=2**63 - 1),  # type: ignore[type-arg]
    after: int | None = Query(None, ge=1, le=2**63 - 1),  # type: ignore[type-arg]
    limit: int = Query(50, ge=1, le=500),  # type: ignore[type-arg]
) -> AuditPage:
    """The audit events the token may see, newest first, filtered as on the audit page;
    paged by sequence (`before` the `older` cursor, `after` the `newer` one)."""
    page = keyset_page(
        _events(request), size=limit, order=("-sequence",), before=before, after=after
    )
    return AuditPage(
        events=[AuditEventOut(**event_out(event)) for event in page.rows],
        older=page.older,
        newer=page.newer,
    )


@router.get(
    "/audit/export",
    response={200: AuditEventOut, **errors(404, 422)},
    auth=scoped(READ),
    openapi_extra={
        "responses": {
            200: {
                "description": "One audit event per line (NDJSON), newest first",
                "content": {NDJSON: {"schema": {"$ref": "#/components/schemas/AuditEventOut"}}},
            }
        }
    },
)
def export_events(request: ApiRequest, query: Query[AuditQuery]) -> StreamingHttpResponse:
    """Exactly the filtered set, streamed as NDJSON (one event a line), so a large log never
    sits in memory: for a SIEM's nightly pull."""
    events = _events(request)

    def lines() -> Iterator[str]:
        for event in events.iterator(EXPORT_CHUNK):
            yield json.dumps(event_out(event), default=str, ensure_ascii=False) + "\n"

    return StreamingHttpResponse(lines(), content_type=NDJSON)
