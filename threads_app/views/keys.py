"""Stored API keys: list, add, rotate, revoke. The secret never travels back to a browser."""

from itertools import groupby

from django.contrib import messages
from django.db.models import Count, Exists, F, OuterRef, Q
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRedirect, trigger_client_event

from threads_app import selectors
from threads_app.audit import Origin
from threads_app.forms.keys import KeyCreateForm, KeyRotateForm
from threads_app.models import TrackedThread
from threads_app.services import keys as key_service


def _listed_keys(user):
    """Visible keys with their tracked-thread count and whether the user may manage them."""
    return (
        selectors.visible_keys(user)
        .select_related("team", "owner")
        .annotate(
            tracked_count=Count("threads", filter=~Q(threads__state=TrackedThread.State.DELETED)),
            can_manage=Exists(selectors.manageable_keys(user).filter(pk=OuterRef("pk"))),
        )
        .order_by(F("team__name").asc(nulls_first=True), "owner_id", "label", "id")
    )


def _group_title(user, key):
    if key.team is not None:
        return key.team.name
    return "Personal" if key.owner_id == user.pk else f"Personal: {key.owner.get_username()}"


def _page(request, template, partial, context):
    """The whole page, or just its `partial` region for an htmx request."""
    context = {"nav": "keys", **context}
    return render(request, f"{template}#{partial}" if request.htmx else template, context)


def _to_key_list(request):
    url = reverse("threads_app:key_list")
    return HttpResponseClientRedirect(url) if request.htmx else redirect(url)


@require_GET
def key_list(request):
    groups = [
        {"title": title, "keys": list(keys)}
        for title, keys in groupby(
            _listed_keys(request.user), key=lambda key: _group_title(request.user, key)
        )
    ]
    return _page(request, "threads_app/key_list.html", "keys", {"groups": groups})


@require_http_methods(["GET", "POST"])
def key_create(request):
    form = KeyCreateForm(request.user, request.POST if request.method == "POST" else None)
    if form.is_valid():
        data = form.cleaned_data
        try:
            api_key = key_service.add_key(
                actor=request.user,
                label=data["label"],
                secret=data["secret"],
                team=data["team"],
                verify=not data["save_unverified"],
                origin=Origin.from_request(request),
            )
        except key_service.KeyChangeRefused as exc:
            form.refuse(exc)
        else:
            unverified = " without verifying it" if data["save_unverified"] else ""
            messages.success(request, f"Added the key “{api_key.label}”{unverified}.")
            return _to_key_list(request)
    return _page(request, "threads_app/key_create.html", "form", {"form": form})


@require_http_methods(["GET", "POST"])
def key_rotate(request, pk):
    api_key = selectors.get_manageable_key(request.user, pk)
    form = KeyRotateForm(request.POST if request.method == "POST" else None)
    if form.is_valid():
        verify = not form.cleaned_data["save_unverified"]
        try:
            key_service.rotate_key(
                actor=request.user,
                api_key=api_key,
                secret=form.cleaned_data["secret"],
                verify=verify,
                origin=Origin.from_request(request),
            )
        except key_service.KeyChangeRefused as exc:
            form.refuse(exc)
        else:
            unverified = "" if verify else " without verifying the new secret"
            messages.success(request, f"Rotated the key “{api_key.label}”{unverified}.")
            return _to_key_list(request)
    context = {
        "api_key": api_key,
        "form": form,
        "tracked_count": key_service.tracked_thread_count(api_key),
    }
    return _page(request, "threads_app/key_rotate.html", "form", context)


@require_http_methods(["GET", "POST"])
def key_revoke(request, pk):
    """GET: the confirmation page. POST: revoke; the htmx path swaps the key's row."""
    api_key = selectors.get_manageable_key(request.user, pk)
    if request.method == "GET":
        context = {
            "api_key": api_key,
            "tracked_count": key_service.tracked_thread_count(api_key),
        }
        return _page(request, "threads_app/key_revoke.html", "confirm", context)
    try:
        threads = key_service.revoke_key(
            actor=request.user, api_key=api_key, origin=Origin.from_request(request)
        )
    except key_service.KeyChangeRefused as exc:
        messages.error(request, str(exc))
    else:
        messages.success(
            request,
            f"Revoked the key “{api_key.label}”; its tracked threads ({threads}) "
            "stay listed, read-only.",
        )
    if not request.htmx:
        return redirect("threads_app:key_list")
    row = _listed_keys(request.user).get(pk=api_key.pk)
    response = render(request, "threads_app/key_list.html#key-row", {"key": row})
    return trigger_client_event(response, "threadsChanged")
