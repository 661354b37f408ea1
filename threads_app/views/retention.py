"""A key's retention policy: set the days, preview what would go, enable or turn it off."""

from django.http import HttpResponse
from django.views.decorators.http import require_http_methods

from threads_app import selectors
from threads_app.accounts import reauthentication_needed
from threads_app.audit import Origin
from threads_app.forms.base import posted
from threads_app.forms.retention import DEFAULT_DAYS, RetentionPolicyForm
from threads_app.models import ApiKey, RetentionPolicy
from threads_app.services.retention import set_retention_policy
from threads_app.views.htmx import AuthenticatedHttpRequest, go_to, render_page, submit


@require_http_methods(["GET", "POST"])
def key_retention(request: AuthenticatedHttpRequest, pk: int) -> HttpResponse:
    """GET: the policy, its form and the preview of its days. POST "preview": the preview of
    the days entered; "enable" (only for the days just previewed) or "disable": save."""
    actor = request.user
    api_key = selectors.get_manageable_key(actor, pk)
    policy = selectors.retention_policy(api_key)
    initial = {"max_age_days": policy.max_age_days if policy else DEFAULT_DAYS}
    form = RetentionPolicyForm(posted(request), initial=initial)
    if form.is_valid() and form.enables and (stale := reauthentication_needed(request)):
        return stale
    if form.is_valid() and form.saves:
        saved = submit(
            request,
            form,
            lambda: set_retention_policy(
                api_key,
                actor=actor,
                max_age_days=form.cleaned_data["max_age_days"],
                enabled=form.enables,
                previewed_days=form.cleaned_data["previewed_days"],
                origin=Origin.from_request(request),
            ),
            done=_saved_message,
        )
        if saved:
            return go_to(request, "threads_app:key_retention", api_key.pk)
    return _page(request, api_key, policy, form)


def _page(
    request: AuthenticatedHttpRequest,
    api_key: ApiKey,
    policy: RetentionPolicy | None,
    form: RetentionPolicyForm,
) -> HttpResponse:
    days = form.preview_days()
    context = {
        "nav": "keys",
        "api_key": api_key,
        "policy": policy,
        "form": form,
        "preview": selectors.retention_preview(api_key, max_age_days=days) if days else None,
        "not_enforced": selectors.retention_not_enforced(policy) if policy else None,
    }
    return render_page(request, "key_retention", context, partial="policy")


def _saved_message(policy: RetentionPolicy) -> str:
    label, days = policy.api_key.label, policy.max_age_days
    if policy.enabled:
        return f"Retention for “{label}” is on: threads older than {days} days are deleted."
    return f"Retention for “{label}” is saved ({days} days) and off."
