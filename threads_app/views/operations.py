"""For the load balancer and the on-call person: the health endpoint and the metrics page.

Neither needs a login: a load balancer or a scraper has none. The health endpoint says only
what is listed in `selectors.Health`; the metrics page is off unless METRICS_ENABLED, and the
deployment restricts its path (README, "Operability").
"""

import os

from django.conf import settings
from django.contrib.auth.decorators import login_not_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

from threads_app import selectors
from threads_app.metrics import DATABASE_REGISTRY


@login_not_required
@never_cache
@require_GET
def health(request: HttpRequest) -> JsonResponse:
    """200 when the database answers and every migration is applied, else 503; JSON."""
    report = selectors.health()
    healthy = report["database"] == "ok" and report["migrations"] == "applied"
    return JsonResponse(
        {"status": "ok" if healthy else "fail", **report}, status=200 if healthy else 503
    )


def _process_registry() -> CollectorRegistry:
    """This process's metrics, or every process's under PROMETHEUS_MULTIPROC_DIR."""
    if "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


@login_not_required
@never_cache
@require_GET
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus' text format; a 404 unless METRICS_ENABLED."""
    if not settings.METRICS_ENABLED:
        raise Http404
    body = generate_latest(_process_registry()) + generate_latest(DATABASE_REGISTRY)
    return HttpResponse(body, content_type=CONTENT_TYPE_LATEST)
