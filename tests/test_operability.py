"""Operability: the health endpoint for load balancers, and the Prometheus metrics page."""

from datetime import timedelta

import pytest
from django.conf import settings
from django.db import OperationalError, connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from tests.conftest import OTHER_TEST_KEY, TEST_KEY
from tests.threads_helpers import url
from tests.worker_tasks import sleep_for
from threads_app.models import BulkDeleteJob, WorkerHeartbeat

pytestmark = pytest.mark.django_db

HEALTH_KEYS = {"status", "database", "migrations", "worker_heartbeat_age_seconds", "queue_depth"}


def beat(seconds_ago):
    at = timezone.now() - timedelta(seconds=seconds_ago)
    WorkerHeartbeat.objects.create(
        worker_id=f"w{seconds_ago}", hostname="host-9", pid=4242, started_at=at, beat_at=at
    )


def test_health_answers_the_anonymous_with_the_listed_numbers_only(client):
    beat(7)
    beat(40)
    sleep_for.enqueue(1)
    sleep_for.enqueue(2)
    sleep_for.using(run_after=timezone.now() + timedelta(hours=1)).enqueue(3)  # not ready

    response = client.get("/health/")

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json"
    assert "no-cache" in response["Cache-Control"]
    body = response.json()
    assert set(body) == HEALTH_KEYS
    assert body["status"] == "ok"
    assert (body["database"], body["migrations"]) == ("ok", "applied")
    assert 7 <= body["worker_heartbeat_age_seconds"] < 9
    assert body["queue_depth"] == 2
    assert "host-9" not in response.content.decode()
    assert "4242" not in response.content.decode()


def test_health_without_any_worker_is_still_up(client):
    body = client.get(url("health")).json()
    assert body["worker_heartbeat_age_seconds"] is None
    assert body["queue_depth"] == 0


def test_health_is_503_when_the_database_is_unreachable(client, monkeypatch):
    def refuse():
        raise OperationalError("connection refused")

    monkeypatch.setattr(connection, "ensure_connection", refuse)
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json() == {
        "status": "fail",
        "database": "unreachable",
        "migrations": "unknown",
        "worker_heartbeat_age_seconds": None,
        "queue_depth": None,
    }


def test_health_is_503_while_migrations_are_pending(client, monkeypatch):
    monkeypatch.setattr(
        MigrationExecutor, "migration_plan", lambda self, targets, clean_start=False: [("m", 0)]
    )
    response = client.get("/health/")
    assert response.status_code == 503
    assert response.json()["migrations"] == "pending"
    assert response.json()["database"] == "ok"


def test_health_takes_only_get(client):
    assert client.post("/health/").status_code == 405


def test_metrics_are_off_by_default(client, user_client):
    assert settings.METRICS_ENABLED is False
    assert client.get("/metrics/").status_code == 404
    assert user_client.get("/metrics/").status_code == 404


SECRETS = (
    TEST_KEY,
    OTHER_TEST_KEY,
    *settings.CREDENTIAL_ENCRYPTION_KEYS,
    settings.SECRET_KEY,
    settings.AUDIT_HMAC_KEY,
)


def test_metrics_when_enabled_cover_views_upstream_jobs_and_queue_without_secrets(
    client, user_client, settings, api_key, make_thread, user, emulator
):
    settings.METRICS_ENABLED = True
    thread = make_thread(api_key, label="metered")
    assert user_client.get(url("thread_detail", thread.pk)).status_code == 200  # calls upstream
    emulator.remove_thread(thread.thread_id)
    user_client.get(url("thread_detail", thread.pk))  # a 404 upstream
    BulkDeleteJob.objects.create(created_by=user)
    sleep_for.enqueue(1)
    beat(3)

    response = client.get("/metrics/")  # a scraper has no login

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    text = response.content.decode()
    for name in (
        "django_http_requests_total_by_view_transport_method_total",
        "django_http_requests_latency_seconds_by_view_method",
        "threads_upstream_request_duration_seconds",
        "threads_upstream_retries_total",
        "threads_database_up 1.0",
        "threads_task_queue_depth 1.0",
        'threads_tasks{status="READY"} 1.0',
        'threads_bulk_delete_jobs{state="running"} 1.0',
        "threads_worker_heartbeat_age_seconds 3.",
    ):
        assert name in text, name
    assert 'view="threads_app:thread_detail"' in text
    assert 'threads_upstream_requests_total{method="GET",status="200"}' in text
    assert 'threads_upstream_requests_total{method="GET",status="404"}' in text
    for secret in SECRETS:
        assert secret not in text
    assert thread.thread_id not in text  # no ids: labels are methods, statuses and views
