"""Jobs: start a delete of ticked threads, follow it, cancel it, download an export's file
(through `api.jobs`)."""

from datetime import datetime
from typing import Any, Literal

from django.http import FileResponse
from ninja import Field, Router, Schema, Status

from threads_app.api import jobs
from threads_app.api.base import ApiRequest, Problem, scoped
from threads_app.api.schemas import Body, PathPk, Pk
from threads_app.audit import Origin
from threads_app.selectors import MAX_BULK_DELETE

router = Router(tags=["jobs"])
GZIP = "application/gzip"
ERRORS: dict[int, Any] = {code: Problem for code in (400, 401, 403, 404, 409, 410, 422, 429)}


class JobItemOut(Schema):
    thread: int | None
    thread_id: str
    outcome: str
    message: str
    request_id: str


class JobOut(Schema):
    id: int
    kind: Literal["delete", "export"]
    state: Literal["queued", "running", "paused", "cancelled", "finished", "failed"]
    total: int
    done: int
    counts: dict[str, int]
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    failure: str
    items: list[JobItemOut]


class DeleteJobIn(Body):
    threads: list[Pk] = Field(
        min_length=1, max_length=MAX_BULK_DELETE, description="Ids of tracked threads"
    )


def job_out(job: Any) -> JobOut:
    return JobOut.model_validate(jobs.status(job), from_attributes=True)


@router.post("/jobs/delete", response={202: JobOut, **ERRORS}, auth=scoped("threads:delete"))
def start_delete_job(request: ApiRequest, body: DeleteJobIn) -> Status[JobOut]:
    """Delete the ticked threads in the background worker; those the token may not delete are
    left out. Follow it with GET /jobs/{id}."""
    job = jobs.start_delete(
        principal=request.auth,
        thread_ids=list(dict.fromkeys(body.threads)),
        origin=Origin.from_request(request),
    )
    return Status(202, job_out(job))


@router.get("/jobs/{int:pk}", response={200: JobOut, **ERRORS}, auth=scoped("threads:read"))
def get_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """A job's progress: its state, counts per outcome and every item."""
    return job_out(jobs.get_job(request.auth, pk))


@router.get(
    "/jobs/{int:pk}/export",
    response={200: None, **ERRORS},
    auth=scoped("threads:read"),
    openapi_extra={
        "responses": {
            200: {
                "description": "The export's file: gzip-compressed JSON Lines, a thread a line",
                "content": {GZIP: {"schema": {"type": "string", "format": "binary"}}},
            }
        }
    },
)
def download_export(request: ApiRequest, pk: PathPk) -> FileResponse:
    """An export job's file, once it finished and until it expires (409 before, 410 after):
    for whoever asked for it and the owners of its team."""
    download = jobs.export_download(
        principal=request.auth, pk=pk, origin=Origin.from_request(request)
    )
    return FileResponse(
        download.file, as_attachment=True, filename=download.filename, content_type=GZIP
    )


@router.post(
    "/jobs/{int:pk}/cancel", response={200: JobOut, **ERRORS}, auth=scoped("threads:delete")
)
def cancel_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """Stop a running job (the deletions already sent keep their outcomes)."""
    job = jobs.cancel(principal=request.auth, job=jobs.get_job(request.auth, pk))
    return job_out(job)
