"""Bulk deletion pages: the confirmation of ticked threads, the jobs page, a job's progress,
pausing, resuming or cancelling a job, approving or refusing one that awaits approval, a
finished job's receipt, and an export job's file.

The job runs away from the request (`services.bulk`); its page reads the job's rows, so a
reload shows where it is, and while it runs its progress region polls itself through htmx.
"""

from collections.abc import Callable

from django.contrib import messages
from django.http import FileResponse, HttpResponse, StreamingHttpResponse
from django.http.response import HttpResponseBase
from django.urls import reverse
from django.utils.http import content_disposition_header, urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threads_app import selectors
from threads_app.accounts import recent_authentication_required
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.selections import RefuseJobForm
from threads_app.models import BulkDeleteJob
from threads_app.paging import keyset_page
from threads_app.selectors import BulkDeleteSelection
from threads_app.services import approvals, bulk, exports, jobs, receipts
from threads_app.services.refusals import Refused
from threads_app.views.htmx import AuthenticatedHttpRequest, attempt, go_to, render_page, submit

JOBS_PAGE_SIZE = 25


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def thread_bulk_delete(request: AuthenticatedHttpRequest) -> HttpResponse:
    """GET `?thread=<pk>&…`: what would be deleted, and what not and why. POST: start the job
    and go to its page. A POST that starts nothing answers the confirmation again: 400 for no
    selection or too large a one, 403 when the user may delete none of the threads named."""
    actor = request.user
    if request.method == "GET":
        selection = selectors.bulk_delete_selection(actor, request.GET.getlist("thread"))
        return _confirm(request, selection)
    try:
        job = bulk.start_bulk_delete(
            actor=actor,
            thread_ids=request.POST.getlist("thread"),
            origin=Origin.from_request(request),
            snapshot="snapshot" in request.POST,
        )
    except bulk.NothingToDelete as refusal:
        selection = refusal.selection
        malformed = selection.too_many or not selection.requested
        return _confirm(request, selection, status=400 if malformed else 403)
    return go_to(request, "threads_app:bulk_delete_job", job.pk)


def _confirm(
    request: AuthenticatedHttpRequest, selection: BulkDeleteSelection, *, status: int = 200
) -> HttpResponse:
    context = {
        "nav": "threads",
        "selection": selection,
        "max_threads": selectors.MAX_BULK_DELETE,
        "needs_approval": approvals.needed_for_threads(selection.deletable),
    }
    return render_page(request, "bulk_delete_confirm", context, partial="confirm", status=status)


@require_GET
def bulk_delete_job(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The job's progress: the whole page, or (htmx, polling) its progress region."""
    job = selectors.get_visible_job(request.user, pk)
    teams = selectors.job_thread_teams(request.user, job)
    progress = selectors.job_progress(job, teams=teams)
    export = job.kind == BulkDeleteJob.Kind.EXPORT
    context = {
        "nav": "jobs",
        "job": job,
        "progress": progress,
        "sees_every_thread": teams is None,
        "retry_url": None if export or teams is not None else _retry_url(progress.retryable),
        "approval": selectors.approval_status(request.user, job),
        "export": selectors.export_status(request.user, job) if export else None,
    }
    return render_page(request, "bulk_delete_job", context, partial="progress")


@require_GET
def job_export_download(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    """An export's file (gzip JSON Lines), streamed; its download audited. Not (yet, or any
    more) there: back to the job's page, which says why."""
    job = selectors.get_downloadable_export(request.user, pk)
    try:
        download = exports.open_export(
            user=request.user, job=job, origin=Origin.from_request(request)
        )
    except Refused as refusal:
        messages.error(request, str(refusal))
        return go_to(request, "threads_app:bulk_delete_job", job.pk)
    return FileResponse(
        download.file,
        as_attachment=True,
        filename=download.filename,
        content_type="application/gzip",
    )


def _retry_url(thread_pks: list[int]) -> str | None:
    """The confirmation for these threads (the failed and refused ones), or None."""
    if not thread_pks:
        return None
    query = urlencode({"thread": thread_pks}, doseq=True)
    return reverse("threads_app:thread_bulk_delete") + "?" + query


@require_GET
def job_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Recent jobs the user may see (theirs, and their teams' for owners), newest first,
    paged by an "older" cursor. `?live` from htmx: only the overview's card of the running,
    waiting and paused ones (it loads on its own, so the overview's page costs no query)."""
    if request.htmx and "live" in request.GET:
        return render_page(request, "jobs_card", {"live_jobs": selectors.live_jobs(request.user)})
    before = request.GET.get("before", "")
    page = keyset_page(
        selectors.visible_jobs(request.user),
        size=JOBS_PAGE_SIZE,
        order=("-pk",),
        before=int(before) if before.isdigit() and len(before) < 19 else None,
    )
    older = reverse("threads_app:job_list") + f"?before={page.older}" if page.older else None
    awaiting = list(selectors.jobs_awaiting_approval(request.user)[:JOBS_PAGE_SIZE])
    context = {"nav": "jobs", "page": page, "older": older, "awaiting": awaiting}
    return render_page(request, "job_list", context)


def _steer(
    request: AuthenticatedHttpRequest, pk: int, change: Callable[[BulkDeleteJob], object], done: str
) -> HttpResponse:
    job = selectors.get_visible_job(request.user, pk)
    attempt(request, lambda: change(job), done=lambda _: done)
    return go_to(request, "threads_app:bulk_delete_job", job.pk)


@require_POST
def job_pause(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def pause(job: BulkDeleteJob) -> object:
        return jobs.pause_job(user=request.user, job=job)

    return _steer(request, pk, pause, "Paused: the deletions in flight finish first.")


@require_POST
def job_resume(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def resume(job: BulkDeleteJob) -> object:
        return jobs.resume_job(user=request.user, job=job, origin=Origin.from_request(request))

    return _steer(request, pk, resume, "Resumed.")


@require_POST
def job_cancel(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    def cancel(job: BulkDeleteJob) -> object:
        return jobs.cancel_job(user=request.user, job=job)

    return _steer(request, pk, cancel, "Cancelled: nothing more is begun.")


def _receipt(
    request: AuthenticatedHttpRequest, pk: int, format: receipts.Format
) -> HttpResponseBase:
    """The job's receipt, streamed; a job without one yet goes back to its page, saying why."""
    job = selectors.get_visible_job(request.user, pk)
    try:
        receipt = receipts.issue_receipt(
            user=request.user, job=job, format=format, origin=Origin.from_request(request)
        )
    except Refused as refusal:
        messages.error(request, str(refusal))
        return go_to(request, "threads_app:bulk_delete_job", job.pk)
    return StreamingHttpResponse(
        receipt.chunks(),
        content_type=receipt.content_type,
        headers={"Content-Disposition": content_disposition_header(True, receipt.filename)},
    )


@require_GET
def job_receipt_csv(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    return _receipt(request, pk, "csv")


@require_GET
def job_receipt_json(request: AuthenticatedHttpRequest, pk: int) -> HttpResponseBase:
    return _receipt(request, pk, "json")


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def job_approve(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: what approving the job lets happen, and the button. POST: approve it (a refusal
    is a message), then the job's page."""
    job = selectors.get_visible_job(request.user, pk)
    if request.method == "GET":
        return _decide(request, job, "job_approve")
    origin = Origin.from_request(request)
    attempt(
        request,
        lambda: approvals.approve_job(user=request.user, job=job, origin=origin),
        done=lambda job: (
            "Approved: the deletion is queued."
            if job.state != BulkDeleteJob.State.AWAITING_APPROVAL
            else "Approved: the deletion still waits for another team's owners."
        ),
    )
    return go_to(request, "threads_app:bulk_delete_job", job.pk)


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def job_refuse(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the refusal's confirmation, with a field for why. POST: refuse it (cancelled,
    it never runs), then the job's page; an invalid reason or a refusal answers the form
    again, with the error."""
    job = selectors.get_visible_job(request.user, pk)
    form = RefuseJobForm(posted(request))
    refused = submit(
        request,
        form,
        lambda: approvals.refuse_job(
            user=request.user,
            job=job,
            origin=Origin.from_request(request),
            reason=form.cleaned_data["reason"],
        ),
        done=lambda _: "Refused: the deletion is cancelled and will not run.",
    )
    if refused is not None:
        return go_to(request, "threads_app:bulk_delete_job", job.pk)
    return _decide(request, job, "job_refuse", form=form)


def _decide(
    request: AuthenticatedHttpRequest,
    job: BulkDeleteJob,
    decision: str,
    *,
    form: RefuseJobForm | None = None,
) -> HttpResponse:
    context = {
        "nav": "jobs",
        "job": job,
        "decision": decision,
        "approval": selectors.approval_status(request.user, job),
        "form": form,
    }
    return render_page(request, "job_decide", context, partial="confirm")
