"""Selections and saved views: "Select all N matching" on the list, the selection's preview
(and deleting or exporting it, once its count is typed), and the list's saved views.

The list's filters come in as the list's own query parameters and go through its one parser,
`ThreadFilterForm`; a selection stores them frozen (`services.jobs.create_selection`).
"""

from typing import NamedTuple

from django.conf import settings
from django.contrib import messages
from django.http import HttpResponse
from django.urls import reverse
from django.utils.http import urlencode
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threads_app import selectors
from threads_app.accounts import recent_authentication_required
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.selections import (
    SavedViewForm,
    SelectionDeleteForm,
    SelectionExportForm,
)
from threads_app.forms.threads import ThreadFilterForm
from threads_app.models import BulkDeleteJob, SavedView, Selection
from threads_app.services import approvals, jobs
from threads_app.views.htmx import AuthenticatedHttpRequest, go_to, render_page, submit


def list_url(filters: dict[str, str | int], view: SavedView | None = None) -> str:
    """The thread list narrowed to these filters (`ThreadFilters.to_data()`), from a view."""
    query = {**filters, **({"view": view.pk} if view is not None else {})}
    return reverse("threads_app:thread_list") + ("?" + urlencode(query) if query else "")


def _posted_filters(request: AuthenticatedHttpRequest) -> selectors.ThreadFilters | None:
    """The list's filters as posted (the list's own fields), or None (with a message) when a
    typed one cannot be used."""
    form = ThreadFilterForm(list(selectors.filter_keys(request.user)), request.POST)
    filters = form.filters()
    if filters is None:
        for label, error in form.typed_errors:
            messages.error(request, f"{label}: {error}")
    return filters


@require_POST
def thread_select_all(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Select every thread the list's current filters match: freeze them, show the preview."""
    filters = _posted_filters(request)
    if filters is None:
        return go_to(request, "threads_app:thread_list")
    view_pk = request.POST.get("view", "")
    view = None
    if view_pk.isdigit():
        view = selectors.saved_views(request.user).filter(pk=int(view_pk)).first()
    selection = jobs.create_selection(user=request.user, filters=filters, saved_view=view)
    return go_to(request, "threads_app:selection_detail", selection.pk)


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def selection_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the selection's preview (count, breakdowns, what it leaves out, first rows) and
    the forms to delete or export it. POST: start deleting it, or exporting it (`action`
    "export"), its count typed, then the job's page."""
    selection = selectors.get_visible_selection(request.user, pk)
    exporting = request.method == "POST" and request.POST.get("action") == "export"
    data = posted(request)
    form = SelectionDeleteForm(None if exporting else data)
    export_form = SelectionExportForm(data if exporting else None)
    posted_form = export_form if exporting else form
    action = BulkDeleteJob.Kind.EXPORT if exporting else BulkDeleteJob.Kind.DELETE
    job = submit(
        request,
        posted_form,
        lambda: jobs.start_selection_job(
            user=request.user,
            selection=selection,
            action=action,
            typed_count=posted_form.cleaned_data["typed_count"],
            origin=Origin.from_request(request),
        ),
        done=lambda job: (
            f"Deleting {selection.count} threads: job #{job.pk} waits for another owner's approval."
            if job.state == BulkDeleteJob.State.AWAITING_APPROVAL
            else f"{'Exporting' if exporting else 'Deleting'} {selection.count} threads: "
            f"job #{job.pk} started."
        ),
    )
    if job is not None:
        return go_to(request, "threads_app:bulk_delete_job", job.pk)
    return _preview(request, selection, form, export_form)


def _preview(
    request: AuthenticatedHttpRequest,
    selection: Selection,
    form: SelectionDeleteForm,
    export_form: SelectionExportForm,
) -> HttpResponse:
    preview = selectors.selection_preview(request.user, selection)
    context = {
        "nav": "threads",
        "selection": selection,
        "preview": preview,
        "form": form,
        "export_form": export_form,
        "export_ttl_days": settings.EXPORT_TTL_DAYS,
        "list_url": list_url(selection.filters, selection.saved_view),
        "jobs": list(selection.jobs.order_by("-pk")[:5]),
        "needs_approval": approvals.needed_for_selection(request.user, selection),
    }
    return render_page(request, "selection_detail", context)


@require_POST
def saved_view_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    """Save the list's current filter and sort (posted with the name) as a view."""
    filters = _posted_filters(request)
    if filters is None:
        return go_to(request, "threads_app:thread_list")
    teams = list(selectors.owned_teams(request.user))
    form = SavedViewForm(teams, request.POST)
    view = submit(
        request,
        form,
        lambda: jobs.save_view(
            user=request.user,
            name=form.cleaned_data["name"],
            filters=filters,
            team=next((t for t in teams if t.pk == form.cleaned_data["share_with"]), None),
        ),
        done=lambda view: f"View “{view.name}” saved.",
    )
    if view is None:
        for errors in form.errors.values():
            messages.error(request, f"The view was not saved: {' '.join(map(str, errors))}")
        return go_to(request, list_url(filters.to_data()))
    return go_to(request, list_url(view.filters, view))


@require_POST
def saved_view_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    view = selectors.get_removable_saved_view(request.user, pk)
    jobs.remove_saved_view(user=request.user, view=view)
    messages.success(request, f"View “{view.name}” removed.")
    return go_to(request, "threads_app:thread_list")


class ViewChoice(NamedTuple):
    """A saved view as the list offers it: its link, and whether the user may remove it."""

    view: SavedView
    url: str
    removable: bool


def list_context(
    request: AuthenticatedHttpRequest, filters: selectors.ThreadFilters | None
) -> dict[str, object]:
    """What the list page's "Select all" bar needs: the current filters as data, and the
    saved view the list shows (`?view=`, with its filters unchanged). No query unless the
    URL names a view: the saved views themselves load in a region of their own
    (`saved_view_list`), so the list's own page costs what it did."""
    data = filters.to_data() if filters is not None else {}
    view_pk = request.GET.get("view", "")
    current = None
    if view_pk.isdigit() and len(view_pk) < 19:
        view = selectors.saved_views(request.user).filter(pk=int(view_pk)).first()
        current = view if view is not None and view.filters == data else None
    return {"filter_data": data, "current_view": current}


@require_GET
def saved_view_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    """The saved views (the user's and their teams'), with the form that saves the filters
    given (the list's own parameters) as one: the region above the list (htmx), or a page of
    its own without JavaScript."""
    user = request.user
    filters = ThreadFilterForm(list(selectors.filter_keys(user)), request.GET).filters()
    teams = list(selectors.owned_teams(user))
    owned = {team.pk for team in teams}
    views = [
        ViewChoice(
            view,
            list_url(view.filters, view),
            selectors.may_remove_saved_view(user, view, owned_team_ids=owned),
        )
        for view in selectors.saved_views(user)
    ]
    view_pk = request.GET.get("view", "")
    context = {
        "nav": "threads",
        "saved_views": views,
        "current_pk": int(view_pk) if view_pk.isdigit() and len(view_pk) < 19 else None,
        "filter_data": filters.to_data() if filters is not None else {},
        "owned_teams": teams,
    }
    return render_page(request, "saved_view_list", context, partial="views")
