"""Issue 16: the reauthentication window is an environment variable (REAUTHENTICATION_SECONDS),
and `/health/` answers a plain-HTTP probe under production settings instead of redirecting it
to HTTPS, as every other path is."""

import json
import time

import pytest
from django.test import Client
from django.urls import reverse

from tests.conftest import authenticated_at
from tests.test_settings import manage

SHOW_TIMEOUT = "from django.conf import settings; print(settings.ACCOUNT_REAUTHENTICATION_TIMEOUT)"


class TestReauthenticationSeconds:
    def test_fifteen_minutes_by_default(self):
        result = manage("shell", "-v", "0", "-c", SHOW_TIMEOUT, drop=["REAUTHENTICATION_SECONDS"])
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "900"

    def test_read_from_the_environment(self):
        result = manage(
            "shell", "-v", "0", "-c", SHOW_TIMEOUT, env_overrides={"REAUTHENTICATION_SECONDS": "60"}
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "60"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("soon", "REAUTHENTICATION_SECONDS must be a whole number, not 'soon'."),
            ("0", "REAUTHENTICATION_SECONDS must be at least 1, not 0."),
        ],
    )
    def test_a_value_that_cannot_be_used_is_a_clear_error(self, value, message):
        result = manage("check", env_overrides={"REAUTHENTICATION_SECONDS": value})
        assert result.returncode != 0
        assert message in result.stderr

    @pytest.mark.django_db
    def test_the_window_is_what_the_setting_says(self, client, user, settings):
        """A password entered 2 minutes ago is recent enough for 15 minutes, not for 1."""
        client.force_login(user)
        session = client.session
        authenticated_at(session, user, time.time() - 120)
        key_form = reverse("threads_app:key_create")

        assert client.get(key_form).status_code == 200
        settings.ACCOUNT_REAUTHENTICATION_TIMEOUT = 60
        asked = client.get(key_form)
        assert asked.status_code == 302
        assert asked["Location"].startswith(reverse("account_reauthenticate"))


# Production settings (DJANGO_DEBUG off), a request over plain HTTP as a load balancer's probe
# sends it: /health/ answers (503 here: this database has no tables), anything else redirects.
PROBE = """
from django.test import Client
client = Client(HTTP_HOST="console.example.com")
for path in ("/health/", "/accounts/login/", "/health/x"):
    response = client.get(path)
    print(path, response.status_code, response.get("Location", ""), response.get("Content-Type"))
print(client.get("/health/").content.decode())
"""


def test_health_answers_a_plain_http_probe_in_production(tmp_path):
    result = manage(
        "shell",
        "-v",
        "0",
        "-c",
        PROBE,
        env_overrides={"DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"},
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    health, login, other, body = lines[0].split(), lines[1].split(), lines[2].split(), lines[3]
    assert health[:2] == ["/health/", "503"] and health[2] == "application/json"
    assert json.loads(body)["database"] in {"ok", "unreachable"}
    assert login[:3] == ["/accounts/login/", "301", "https://console.example.com/accounts/login/"]
    assert other[:2] == ["/health/x", "301"]  # the exemption is that one path


@pytest.mark.django_db
def test_health_answers_in_process_with_the_redirect_on(settings):
    """The same with this process's settings: production's exemption list, redirect on."""
    from dashboard import settings as production

    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_REDIRECT_EXEMPT = production.SECURE_REDIRECT_EXEMPT
    client = Client()
    assert client.get("/health/").status_code == 200
    assert client.get(reverse("account_login")).status_code == 301
