"""Downloads of thread transcripts: a live thread's, and the snapshot stored with a deletion."""

from django.contrib import messages
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.utils.http import content_disposition_header
from django.views.decorators.http import require_GET

from threads_app import selectors
from threads_app.services.transcripts import transcript_json
from threads_app.upstream import UpstreamError
from threads_app.views.htmx import AuthenticatedHttpRequest, go_to


def _json_download(text: str, filename: str) -> HttpResponse:
    return HttpResponse(
        text,
        content_type="application/json; charset=utf-8",
        headers={"Content-Disposition": content_disposition_header(True, filename)},
    )


@require_GET
def thread_export(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The thread and all its messages as a JSON file; on failure, back to the thread's page."""
    thread = selectors.get_visible_thread(request.user, pk)
    error = selectors.unreachable_reason(thread)
    if error is None:
        try:
            return _json_download(transcript_json(thread), f"{thread.thread_id}.json")
        except UpstreamError as exc:
            error = f"The transcript could not be downloaded: {exc}"
    messages.error(request, error)
    return go_to(request, "threads_app:thread_detail", pk)


@require_GET
def audit_snapshot(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """The transcript stored with a deletion's intent event (404 without one, or out of sight)."""
    event = get_object_or_404(
        selectors.visible_audit_events(request.user).exclude(snapshot=""), pk=pk
    )
    return _json_download(event.snapshot, f"{event.thread_id}-audit-{event.sequence}.json")
