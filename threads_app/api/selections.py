"""Selections: the list's filters, frozen (the list's own parameters, through its own form),
their preview, and the job that acts on one once its count is typed.

A selection is its creator's. A team token makes its selections narrowed to its team (as it
lists), and sees only those: a selection narrowed elsewhere, or not at all, is out of sight.
The token is the credential: starting a job needs no recent log-in, as a page does.
"""

from datetime import date, datetime
from typing import Any, Literal

from django.http import Http404
from ninja import Field, Router, Schema, Status

from threads_app import selectors
from threads_app.api.base import ApiRequest, Principal, errors, require_scope, scoped
from threads_app.api.job_routes import JobOut, job_out
from threads_app.api.schemas import Body, PathPk, ThreadOut, thread_out
from threads_app.api.threads import ListFilters, list_filters
from threads_app.audit import Origin
from threads_app.models import Selection
from threads_app.services import jobs as job_services

router = Router(tags=["selections"])
READ = "threads:read"
# The scope each action of a selection's job needs.
ACTION_SCOPES = {"delete": "threads:delete", "export": "threads:read"}
TYPED_COUNT_MAX = 2**31 - 1  # the pages' confirmation form's bound


class SelectionIn(Body, ListFilters):
    """The list's filters and sort, by the names of `GET /threads`' query."""


class Count(Schema):
    label: str
    count: int


class ExclusionOut(Schema):
    reason: str
    count: int


class PreviewOut(Schema):
    count: int = Field(description="Threads a job started now would act on")
    excluded: list[ExclusionOut] = Field(description="Matching threads left out, and why")
    by_key: list[Count]
    by_team: list[Count]
    by_state: list[Count]
    first_rows: list[ThreadOut] = Field(description="Its first threads, in the list's order")


class SelectionOut(Schema):
    id: int
    count: int = Field(description="Threads it held when made: the number to type")
    created_at: datetime
    filters: dict[str, str | int] = Field(description="Its filters, as the list's parameters")
    preview: PreviewOut


class SelectionJobIn(Body):
    action: Literal["delete", "export"] = Field(
        description="delete (scope threads:delete) or export (scope threads:read)"
    )
    typed_count: int = Field(ge=0, le=TYPED_COUNT_MAX, description="The selection's count")


def _pairs(counts: list[tuple[str, int]]) -> list[dict[str, Any]]:
    return [{"label": label, "count": count} for label, count in counts]


def selection_out(principal: Principal, selection: Selection) -> dict[str, Any]:
    preview = selectors.selection_preview(principal.user, selection)
    return {
        "id": selection.pk,
        "count": selection.count,
        "created_at": selection.created_at,
        "filters": selection.filters,
        "preview": {
            "count": preview.count,
            "excluded": [{"reason": e.reason, "count": e.count} for e in preview.excluded],
            "by_key": _pairs(preview.by_key),
            "by_team": _pairs(preview.by_team),
            "by_state": _pairs(preview.by_state),
            "first_rows": [thread_out(thread) for thread in preview.first_rows],
        },
    }


def visible_selection(principal: Principal, pk: int) -> Selection:
    """The user's selection; for a team token, only one narrowed to its team (404 else)."""
    selection = selectors.get_visible_selection(principal.user, pk)
    if principal.team_id is not None:
        team_id = selectors.selection_filters(selection).team_id
        if team_id != principal.team_id:
            raise Http404
    return selection


@router.post("/selections", response={201: SelectionOut, **errors(404, 422)}, auth=scoped(READ))
def create_selection(request: ApiRequest, body: SelectionIn) -> Status[dict[str, Any]]:
    """Freeze the list's filters: the threads they match now that the token may act on
    (none tracked later joins), with its preview. Then POST /selections/{id}/jobs."""
    data = {
        name: value.isoformat() if isinstance(value, date) else str(value)
        for name, value in body.model_dump(exclude_none=True).items()
    }
    _form, filters, _keys = list_filters(request.auth, data, source="body")
    selection = job_services.create_selection(user=request.auth.user, filters=filters)
    return Status(201, selection_out(request.auth, selection))


@router.get(
    "/selections/{int:pk}", response={200: SelectionOut, **errors(404, 422)}, auth=scoped(READ)
)
def get_selection(request: ApiRequest, pk: PathPk) -> dict[str, Any]:
    """A selection and its preview now: what a job would act on, per key, team and state,
    what it leaves out and why, its first threads."""
    return selection_out(request.auth, visible_selection(request.auth, pk))


@router.post(
    "/selections/{int:pk}/jobs",
    response={202: JobOut, **errors(404, 409, 422)},
    auth=scoped(*ACTION_SCOPES.values()),
)
def start_selection_job(request: ApiRequest, pk: PathPk, body: SelectionJobIn) -> Status[JobOut]:
    """Start the action on the selection's threads in the background worker, its count
    typed (`count_mismatch` else). Follow it with GET /jobs/{id}."""
    require_scope(request.auth, ACTION_SCOPES[body.action])
    selection = visible_selection(request.auth, pk)
    job = job_services.start_selection_job(
        user=request.auth.user,
        selection=selection,
        action=body.action,
        typed_count=body.typed_count,
        origin=Origin.from_request(request),
    )
    return Status(202, job_out(request.auth, job))
