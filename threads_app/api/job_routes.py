"""Jobs: start a delete of ticked threads, follow it, cancel it, approve or refuse it
(through `api.jobs`)."""

from datetime import datetime
from typing import Any, Literal

from ninja import Field, Router, Schema, Status

from threads_app.api import jobs
from threads_app.api.base import ApiRequest, Problem, scoped
from threads_app.api.schemas import Body, PathPk, Pk
from threads_app.audit import Origin
from threads_app.selectors import MAX_BULK_DELETE
from threads_app.services.approvals import MAX_REASON

router = Router(tags=["jobs"])
ERRORS: dict[int, Any] = {code: Problem for code in (400, 401, 403, 404, 409, 422, 429)}


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
    kind: Literal["delete"]
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


@router.post(
    "/jobs/{int:pk}/cancel", response={200: JobOut, **ERRORS}, auth=scoped("threads:delete")
)
def cancel_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """Stop a running job (the deletions already sent keep their outcomes)."""
    job = jobs.cancel(principal=request.auth, job=jobs.get_job(request.auth, pk))
    return job_out(job)


@router.post(
    "/jobs/{int:pk}/approve", response={200: JobOut, **ERRORS}, auth=scoped("threads:delete")
)
def approve_job(request: ApiRequest, pk: PathPk) -> JobOut:
    """Approve a deletion awaiting approval, as an owner of a team it waits for (never its
    requester's own); the last approval it needs queues it."""
    job = jobs.get_job(request.auth, pk)
    return job_out(
        jobs.approve(principal=request.auth, job=job, origin=Origin.from_request(request))
    )


@router.post(
    "/jobs/{int:pk}/refuse", response={200: JobOut, **ERRORS}, auth=scoped("threads:delete")
)
def refuse_job(request: ApiRequest, pk: PathPk, body: RefuseJobIn) -> JobOut:
    """Refuse a deletion awaiting approval: it is cancelled and never runs."""
    job = jobs.get_job(request.auth, pk)
    refused = jobs.refuse(
        principal=request.auth, job=job, origin=Origin.from_request(request), reason=body.reason
    )
    return job_out(refused)
