"""Settings come from the environment and refuse unsafe production starts; cookies and logs."""

import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django.utils.module_loading import import_string

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION_ENV = {
    "DJANGO_SETTINGS_MODULE": "dashboard.settings",
    "DJANGO_DEBUG": "0",
    "DJANGO_SECRET_KEY": "prod-like-secret-9f8e7d6c5b4a3210-ZYXWVUTSRQPONMLKJIHGFEDCBA-qwerty",
    "CREDENTIAL_ENCRYPTION_KEYS": "dGVzdC1vbmx5LWZlcm5ldC1rZXktbnVtYmVyLW9uZS0=",
    "AUDIT_HMAC_KEY": "prod-like-audit-key",
    "DJANGO_ALLOWED_HOSTS": "console.example.com",
}


def manage(*args, env_overrides=None, drop=()):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "AUDIT_"))}
    env.pop("CREDENTIAL_ENCRYPTION_KEYS", None)
    env.update(PRODUCTION_ENV)
    env.update(env_overrides or {})
    for name in drop:
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    "missing", ["DJANGO_SECRET_KEY", "CREDENTIAL_ENCRYPTION_KEYS", "AUDIT_HMAC_KEY"]
)
def test_production_refuses_to_start_without_a_secret(missing):
    result = manage("check", drop=[missing])
    assert result.returncode != 0
    assert f"{missing} must be set when DJANGO_DEBUG is off" in result.stderr


def test_debug_mode_starts_without_secrets():
    result = manage(
        "check",
        env_overrides={"DJANGO_DEBUG": "1"},
        drop=["DJANGO_SECRET_KEY", "CREDENTIAL_ENCRYPTION_KEYS", "AUDIT_HMAC_KEY"],
    )
    assert result.returncode == 0, result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_is_clean_with_production_settings():
    result = manage("check", "--deploy", "--fail-level", "WARNING")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "WARNINGS" not in result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_a_malformed_boolean_is_a_clear_error():
    result = manage("check", env_overrides={"DJANGO_DEBUG": "maybe"})
    assert result.returncode != 0
    assert "DJANGO_DEBUG must be one of" in result.stderr


def test_a_malformed_timeout_is_a_clear_error():
    result = manage("check", env_overrides={"UMAMIAI_READ_TIMEOUT": "soon"})
    assert result.returncode != 0
    assert "UMAMIAI_READ_TIMEOUT must be a number of seconds" in result.stderr


@pytest.mark.django_db
def test_csrf_cookie_is_http_only_and_htmx_takes_the_token_from_the_page(user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(user)
    page = client.get(reverse("threads_app:thread_list"))
    token = re.search(
        r"<body hx-headers='\{\"X-CSRFToken\": \"([^\"]+)\"\}'>", page.content.decode()
    )
    bulk_delete = reverse("threads_app:thread_bulk_delete")

    with_header = client.post(bulk_delete, HTTP_HX_REQUEST="true", HTTP_X_CSRFTOKEN=token[1])
    without = client.post(bulk_delete, HTTP_HX_REQUEST="true")

    assert page.cookies[settings.CSRF_COOKIE_NAME]["httponly"] is True
    assert with_header.status_code == 400  # past the CSRF check: an empty selection
    assert without.status_code == 403


def test_the_configured_log_filter_redacts_api_keys():
    make_filter = import_string(settings.LOGGING["filters"]["redact_secrets"]["()"])
    record = logging.LogRecord(
        "threads_app", logging.INFO, __file__, 1, "rejected %s", ("Bearer sk-live123456789",), None
    )

    assert make_filter().filter(record)
    assert record.getMessage() == "rejected [redacted]"


@pytest.mark.django_db
def test_the_cache_is_a_database_table_every_instance_shares():
    """allauth's limits (reset emails, two-factor codes) count in the cache: one count for
    every app instance, as sessions and lockouts are."""
    from django.core.cache import cache
    from django.db import connection

    cache.set("probe", "shared", 60)

    with connection.cursor() as cursor:
        cursor.execute("SELECT cache_key FROM threads_console_cache")
        keys = [row[0] for row in cursor.fetchall()]
    assert any(key.endswith("probe") for key in keys)
    assert cache.get("probe") == "shared"
