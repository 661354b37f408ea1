"""Settings come from the environment and refuse unsafe production starts."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

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
