"""Jobs: start a delete of ticked threads, follow it, cancel it, approve or refuse it, get
its receipt, download an export's file (through `api.jobs`)."""

from datetime import datetime
from typing import Any, Literal

from django.http import FileResponse, StreamingHttpResponse
from django.utils.http import content_disposition_header
from ninja import Field, Query, Router, Schema, Status

from threads_app.api import jobs
from threads_app.api.base import ApiRequest, Principal, errors, scoped
from threads_app.api.schemas import Body, PathPk, Pk
from threads_app.audit import Checkpoint, Origin
from threads_app.receipts import ReceiptLine
from threads_app.selectors import MAX_BULK_DELETE
from threads_app.services import receipts
from threads_app.services.approvals import MAX_REASON

router = Router(tags=["jobs"])
GZIP = "application/gzip"


class JobItemOut(Schema):
    thread: int | None
    thread_id: str
    outcome: str
    message: str
    request_id: str


class JobApprovalOut(Schema):
    team: str
    threads: int = Field(description="The team's threads the job deletes")
    decision: Literal["", "approved", "refused"] = Field(description='"" while waiting')
    decided_by: str
    decided_at: datetime | None


class JobOut(Schema):
    id: int
    kind: Literal["delete", "export"]
    state: Literal[
        "queued", "running", "paused", "cancelled", "finished", "failed", "approval", "expired"
    ]
    total: int
    done: int
    counts: dict[str, int]
    created_by: str
    created_at: datetime
    finished_at: datetime | None
    failure: str
    items: list[JobItemOut]
    approval_expires_at: datetime | None = Field(
        description="Until when it awaits approval (null: it needed none)"
    )
    approvals: list[JobApprovalOut] = Field(
        description="The teams' owners' approvals it waits for or got"
    )


class RefuseJobIn(Body):
    reason: str = Field(default="", max_length=MAX_REASON, description="Why, for the audit log")


class DeleteJobIn(Body):
    threads: list[Pk] = Field(
        min_length=1, max_length=MAX_BULK_DELETE, description="Ids of tracked threads"
    )


def job_out(principal: Principal, job: Any) -> JobOut:
    return JobOut.model_validate(jobs.status(principal, job), from_attributes=True)


@router.post("/jobs/delete", response={202: JobOut, **errors(422)}, auth=scoped("threads:delete"))
def start_delete_job(request: ApiRequest, body: DeleteJobIn) -> Status[JobOut]:
    """Delete the ticked threads in the background worker; those the token may not delete are
    left out. Follow it with GET /jobs/{id}."""
    job = jobs.start_delete(
        principal=request.auth,
        thread_ids=list(dict.fromkeys(body.threads)),
        origin=Origin.from_request(request),
    )
    return Status(202, job_out(request.auth, job))


@router.get(
    "/jobs/{int:pk}", response={200: JobOut, **errors(404, 422)}, auth=scoped("threads:read")
)
def get_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """A job's progress: its state, counts per outcome and every item."""
    return job_out(request.auth, jobs.get_job(request.auth, pk))


@router.get(
    "/jobs/{int:pk}/export",
    response={200: None, **errors(404, 409, 410, 422)},
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
    "/jobs/{int:pk}/cancel",
    response={200: JobOut, **errors(404, 409, 422)},
    auth=scoped("threads:delete"),
)
def cancel_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """Stop a running job (the deletions already sent keep their outcomes)."""
    job = jobs.cancel(principal=request.auth, job=jobs.get_job(request.auth, pk))
    return job_out(request.auth, job)


class ReceiptOut(Schema):
    """What `threads_app.receipts.receipt_json` writes (documented only: it is streamed)."""

    receipt: dict[str, Any]
    lines: list[ReceiptLine]
    checkpoint: Checkpoint
    signature: str


@router.get(
    "/jobs/{int:pk}/receipt",
    response={200: ReceiptOut, **errors(404, 409, 422, 503)},
    auth=scoped("audit:read"),
    openapi_extra={
        "responses": {
            200: {
                "description": "The receipt: JSON, or CSV with `?format=csv`",
                # As the answer names them (the plain JSON key is ninja's, and is dropped
                # when an operation documents its own media types).
                "content": {
                    receipts.CONTENT_TYPES["json"]: {
                        "schema": {"$ref": "#/components/schemas/ReceiptOut"}
                    },
                    receipts.CONTENT_TYPES["csv"]: {"schema": {"type": "string"}},
                },
            }
        }
    },
)
def get_receipt(
    request: ApiRequest,
    pk: PathPk,
    format: Literal["json", "csv"] = Query("json"),  # type: ignore[type-arg]
) -> StreamingHttpResponse:
    """A finished (or cancelled) job's receipt, streamed: every thread with its outcome, the
    upstream's status and request id, the time and its audit event's sequence and hash,
    ending with a signed audit checkpoint (`manage.py verify_audit --receipt FILE` checks
    it). 409 until the job has finished. The download is audited."""
    issued = jobs.receipt(
        principal=request.auth,
        job=jobs.get_job(request.auth, pk),
        format=format,
        origin=Origin.from_request(request),
    )
    return StreamingHttpResponse(
        issued.chunks(),
        content_type=issued.content_type,
        headers={"Content-Disposition": content_disposition_header(True, issued.filename)},
    )


@router.post(
    "/jobs/{int:pk}/approve",
    response={200: JobOut, **errors(404, 409, 422)},
    auth=scoped("threads:delete"),
)
def approve_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """Approve a deletion awaiting approval, as an owner of a team it waits for (never its
    requester's own); the last approval it needs queues it."""
    job = jobs.get_job(request.auth, pk)
    return job_out(
        request.auth,
        jobs.approve(principal=request.auth, job=job, origin=Origin.from_request(request)),
    )


@router.post(
    "/jobs/{int:pk}/refuse",
    response={200: JobOut, **errors(404, 409, 422)},
    auth=scoped("threads:delete"),
)
def refuse_job(request: ApiRequest, pk: PathPk, body: RefuseJobIn) -> JobOut:
    """Refuse a deletion awaiting approval: it is cancelled and never runs."""
    job = jobs.get_job(request.auth, pk)
    refused = jobs.refuse(
        principal=request.auth, job=job, origin=Origin.from_request(request), reason=body.reason
    )
    return job_out(request.auth, refused)
