"""Bulk deletion pages: the confirmation of a selection from the list, and a job's progress.

The job runs away from the request (`services.bulk`); its page reads the job's rows, so a
reload shows where it is, and while it runs its progress region polls itself through htmx.
"""

from collections import Counter

from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.models import BulkDeleteItem, BulkDeleteJob
from threads_app.services import bulk

Outcome = BulkDeleteItem.Outcome
RETRYABLE = (Outcome.REFUSED, Outcome.FAILED)


def _confirm(request, selection, status=200):
    context = {"nav": "threads", "selection": selection, "max_threads": bulk.MAX_THREADS}
    name = "threads_app/bulk_delete_confirm.html"
    return render(request, f"{name}#confirm" if request.htmx else name, context, status=status)


@require_http_methods(["GET", "POST"])
def thread_bulk_delete(request):
    """GET `?thread=<pk>&…`: what would be deleted, and what not and why. POST: start the job
    and go to its page. A POST that starts nothing answers the confirmation again: 400 for no
    selection or too large a one, 403 when the user may delete none of the threads named."""
    if request.method == "GET":
        return _confirm(request, bulk.select_threads(request.user, request.GET.getlist("thread")))
    try:
        job = bulk.start_bulk_delete(
            request.user,
            request.POST.getlist("thread"),
            origin=Origin.from_request(request),
            snapshot="snapshot" in request.POST,
        )
    except bulk.NothingToDelete as exc:
        selection = exc.selection
        malformed = selection.too_many or not selection.requested
        return _confirm(request, selection, status=400 if malformed else 403)
    url = reverse("threads_app:bulk_delete_job", args=[job.pk])
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


def _retry_url(items):
    """The confirmation for the threads that failed or were refused, or None."""
    pks = [i.tracked_thread_id for i in items if i.outcome in RETRYABLE and i.tracked_thread_id]
    if not pks:
        return None
    return reverse("threads_app:thread_bulk_delete") + "?" + urlencode({"thread": pks}, doseq=True)


@require_GET
def bulk_delete_job(request, pk):
    """The job's progress: the whole page, or (htmx, polling) its progress region."""
    job = selectors.get_visible_bulk_delete_job(request.user, pk)
    items = list(job.items.select_related("tracked_thread"))
    counts = Counter(item.outcome for item in items)
    running = job.state == BulkDeleteJob.State.RUNNING
    context = {
        "nav": "threads",
        "job": job,
        "items": items,
        "running": running,
        "total": len(items),
        "done": len(items) - counts[Outcome.PENDING],
        "counts": [(value, label, counts[value]) for value, label in Outcome.choices],
        "retry_url": None if running else _retry_url(items),
    }
    name = "threads_app/bulk_delete_job.html"
    return render(request, f"{name}#progress" if request.htmx else name, context)
