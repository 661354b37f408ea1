"""Webhook endpoints: the list, register, the endpoint's page with its recent deliveries (and
"send again"), edit, rotate the secret, delete. A new or rotated secret is shown once, in the
answer to that POST (never in a URL); every other page shows none."""

from functools import partial

from django.contrib import messages
from django.http import HttpResponse
from django.views.decorators.debug import sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from threads_app import selectors
from threads_app.accounts import recent_authentication_required
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.webhooks import WebhookCreateForm, WebhookEditForm
from threads_app.models import WebhookDelivery, WebhookEndpoint
from threads_app.services import webhooks as webhook_service
from threads_app.views.htmx import AuthenticatedHttpRequest, attempt, go_to, render_page, submit

WEBHOOK_LIST = "threads_app:webhook_list"
WEBHOOK_DETAIL = "threads_app:webhook_detail"
NAV = "webhooks"


@require_GET
def webhook_list(request: AuthenticatedHttpRequest) -> HttpResponse:
    actor = request.user
    context = {
        "nav": NAV,
        "endpoints": selectors.visible_webhooks(actor),
        "manageable": set(selectors.manageable_webhooks(actor).values_list("pk", flat=True)),
    }
    return render_page(request, "webhook_list", context, partial="endpoints")


def _secret_page(
    request: AuthenticatedHttpRequest, endpoint: WebhookEndpoint, secret: str
) -> HttpResponse:
    """The one page that shows a secret: the answer to the POST that made it (never stored by
    a browser or cache: PrivatePagesMiddleware)."""
    return render_page(
        request, "webhook_secret", {"nav": NAV, "endpoint": endpoint, "secret": secret}
    )


@require_http_methods(["GET", "POST"])
@recent_authentication_required
@sensitive_variables()  # innermost: it hides the locals of the function it wraps
def webhook_create(request: AuthenticatedHttpRequest) -> HttpResponse:
    actor = request.user
    form = WebhookCreateForm(actor, posted(request))
    data = form.cleaned_data if form.is_valid() else {}
    made = submit(
        request,
        form,
        lambda: webhook_service.create_endpoint(
            actor=actor,
            url=data["url"],
            events=data["events"],
            description=data["description"],
            team=data["team"],
            origin=Origin.from_request(request),
        ),
        done=lambda made: (
            f"Registered the endpoint “{made[0]}”. Copy its secret now: it is not shown again."
        ),
    )
    if made:
        return _secret_page(request, *made)
    return render_page(request, "webhook_create", {"nav": NAV, "form": form}, partial="form")


@require_GET
def webhook_detail(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    endpoint = selectors.get_visible_webhook(actor, pk)
    deliveries = selectors.recent_deliveries(endpoint)
    context = {
        "nav": NAV,
        "endpoint": endpoint,
        "may_manage": selectors.may_manage_webhook(actor, endpoint),
        "deliveries": deliveries,
        "shown": selectors.RECENT_DELIVERIES,
        # The list refreshes itself while something is still to be delivered.
        "pending": any(
            delivery.status == WebhookDelivery.Status.PENDING for delivery in deliveries
        ),
    }
    return render_page(request, "webhook_detail", context, partial="deliveries")


@require_http_methods(["GET", "POST"])
@recent_authentication_required
def webhook_edit(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    actor = request.user
    endpoint = selectors.get_manageable_webhook(actor, pk)
    initial = {
        "url": endpoint.url,
        "description": endpoint.description,
        "events": endpoint.events,
        "enabled": endpoint.enabled,
    }
    form = WebhookEditForm(posted(request), initial=initial)
    changed = submit(
        request,
        form,
        lambda: webhook_service.update_endpoint(
            endpoint,
            actor=actor,
            url=form.cleaned_data["url"],
            events=form.cleaned_data["events"],
            description=form.cleaned_data["description"],
            enabled=form.cleaned_data["enabled"],
            origin=Origin.from_request(request),
        ),
        done=lambda changed: f"Saved the endpoint “{changed}”.",
    )
    if changed:
        return go_to(request, WEBHOOK_DETAIL, endpoint.pk)
    context = {"nav": NAV, "endpoint": endpoint, "form": form}
    return render_page(request, "webhook_edit", context, partial="form")


@require_http_methods(["GET", "POST"])
@recent_authentication_required
@sensitive_variables()
def webhook_rotate(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation. POST: a new secret, shown once."""
    actor = request.user
    endpoint = selectors.get_manageable_webhook(actor, pk)
    if request.method == "GET":
        return render_page(
            request,
            "webhook_confirm",
            {"nav": NAV, "endpoint": endpoint, "rotate": True},
            partial="confirm",
        )
    # Its only refusal is NotAllowed, which the lookup above has answered already (403).
    rotated, secret = webhook_service.rotate_secret(
        endpoint, actor=actor, origin=Origin.from_request(request)
    )
    messages.success(request, "Rotated the secret. Copy it now: it is not shown again.")
    return _secret_page(request, rotated, secret)


@require_http_methods(["GET", "POST"])
def webhook_delete(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the confirmation. POST: delete, back to the list."""
    actor = request.user
    endpoint = selectors.get_manageable_webhook(actor, pk)
    if request.method == "GET":
        return render_page(
            request,
            "webhook_confirm",
            {"nav": NAV, "endpoint": endpoint, "rotate": False},
            partial="confirm",
        )
    attempt(
        request,
        partial(
            webhook_service.delete_endpoint,
            endpoint,
            actor=actor,
            origin=Origin.from_request(request),
        ),
        done=lambda deleted: f"Deleted the endpoint “{deleted}”.",
    )
    return go_to(request, WEBHOOK_LIST)


@require_POST
def webhook_resend(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """Send a delivery again (now, then retried as a new one would be); back to its endpoint."""
    actor = request.user
    delivery = selectors.get_manageable_delivery(actor, pk)
    attempt(
        request,
        partial(
            webhook_service.send_again, delivery, actor=actor, origin=Origin.from_request(request)
        ),
        done=lambda sent: f"Sending the {sent.event} message again.",
    )
    return go_to(request, WEBHOOK_DETAIL, delivery.endpoint_id)
