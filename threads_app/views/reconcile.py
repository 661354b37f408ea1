"""'Check now' on a thread: compare the tracked record with the upstream."""

from django.contrib import messages
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST
from django_htmx.http import trigger_client_event

from threads_app import selectors
from threads_app.services.reconcile import CheckResult, check_thread

MESSAGE_LEVELS = {
    CheckResult.OK: messages.SUCCESS,
    CheckResult.GONE: messages.WARNING,
    CheckResult.KEY_REJECTED: messages.ERROR,
    CheckResult.FAILED: messages.ERROR,
    CheckResult.SKIPPED: messages.INFO,
}
UNCHANGED = (CheckResult.FAILED, CheckResult.SKIPPED)


@require_POST
def thread_check(request, pk):
    """Anyone who can see the thread may check it: only the cached copy changes.

    htmx gets the page's record partial (the toast says what was found); a plain POST goes
    back to the thread's page.
    """
    thread = selectors.get_visible_thread(request.user, pk)
    result = check_thread(thread)
    messages.add_message(request, MESSAGE_LEVELS[result.outcome], result.message)
    if not request.htmx:
        return redirect("threads_app:thread_detail", pk=pk)
    # Fetched again: a rejected key is marked failing in the database, not on this object.
    thread = selectors.get_visible_thread(request.user, pk)
    response = render(request, "threads_app/thread_detail.html#record", {"thread": thread})
    if result.outcome not in UNCHANGED:
        trigger_client_event(response, "threadsChanged")
    return response
