"""Issue 11, items 7 to 9: lockout by username and address together, the client IP behind
proxies, secrets kept out of error reports, and private caching of signed-in pages."""

import logging
import sys
import time

import pytest
from django.contrib.sessions.backends.db import SessionStore
from django.test import Client, RequestFactory, override_settings
from django.urls import reverse
from django.views.debug import ExceptionReporter

from tests.conftest import authenticated_at
from threads_app.client_ip import client_ip
from threads_app.views import keys as key_views

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
PASSWORD = "a-long-password-for-tests"
# Far from any frame of the error-report tests: a report quotes the source around each frame.
SECRET = "sk-error-report-secret-0123456789"


def _fail(client: Client, username: str, times: int = 5, **meta: str) -> None:
    for _ in range(times):
        client.post(LOGIN, {"login": username, "password": "wrong"}, **meta)


def _log_in(client: Client, username: str, **meta: str):
    return client.post(LOGIN, {"login": username, "password": PASSWORD}, **meta)


@pytest.fixture
def sam(django_user_model):
    return django_user_model.objects.create_user("sam", "sam@example.com", PASSWORD)


class TestLockout:
    def test_failures_lock_the_username_at_that_address_only(self, sam, django_user_model):
        django_user_model.objects.create_user("kim", "kim@example.com", PASSWORD)
        _fail(Client(), "sam", REMOTE_ADDR="198.51.100.1")

        locked = _log_in(Client(), "sam", REMOTE_ADDR="198.51.100.1")
        assert locked.status_code == 429
        # The same account from another address, and another account from the same address.
        assert _log_in(Client(), "sam", REMOTE_ADDR="198.51.100.2").status_code == 302
        assert _log_in(Client(), "kim", REMOTE_ADDR="198.51.100.1").status_code == 302

    def test_the_locked_out_user_is_told_what_to_do(self, sam):
        _fail(Client(), "sam", REMOTE_ADDR="198.51.100.1")
        page = _log_in(Client(), "sam", REMOTE_ADDR="198.51.100.1").content.decode()
        assert "15 minutes" in page
        assert "another network" in page
        assert "administrator" in page

    def test_a_forwarded_for_header_is_ignored_without_trusted_proxies(self, sam):
        # Rotating a spoofed header must not dodge the lock (nor lock someone else).
        for n in range(5):
            Client().post(
                LOGIN,
                {"login": "sam", "password": "wrong"},
                REMOTE_ADDR="198.51.100.1",
                HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
            )
        again = _log_in(
            Client(), "sam", REMOTE_ADDR="198.51.100.1", HTTP_X_FORWARDED_FOR="203.0.113.99"
        )
        assert again.status_code == 429

    @override_settings(TRUSTED_PROXY_COUNT=1)
    def test_behind_a_proxy_each_client_address_counts_apart(self, sam):
        proxy = {"REMOTE_ADDR": "10.0.0.5"}
        _fail(Client(), "sam", **proxy, HTTP_X_FORWARDED_FOR="203.0.113.7")

        locked = _log_in(Client(), "sam", **proxy, HTTP_X_FORWARDED_FOR="203.0.113.7")
        assert locked.status_code == 429
        # Everyone else behind the same proxy can still log in as sam.
        other = _log_in(Client(), "sam", **proxy, HTTP_X_FORWARDED_FOR="203.0.113.8")
        assert other.status_code == 302


class TestClientIp:
    def request(self, **meta: str):
        return RequestFactory().get("/", **meta)

    def test_remote_addr_without_proxies(self):
        request = self.request(REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR="203.0.113.1")
        assert client_ip(request) == "192.0.2.1"

    @pytest.mark.parametrize(
        ("count", "header", "expected"),
        [
            (1, "203.0.113.1", "203.0.113.1"),
            (1, "6.6.6.6, 203.0.113.1", "203.0.113.1"),  # the left entry is the client's word
            (2, "6.6.6.6, 203.0.113.1, 10.0.0.9", "203.0.113.1"),
            (2, "203.0.113.1", "192.0.2.1"),  # did not pass both proxies
            (1, "not-an-address", "192.0.2.1"),
            (1, "", "192.0.2.1"),
            (1, " 2001:db8::1 ", "2001:db8::1"),
        ],
    )
    def test_the_nth_forwarded_address_from_the_right(self, settings, count, header, expected):
        settings.TRUSTED_PROXY_COUNT = count
        request = self.request(REMOTE_ADDR="192.0.2.1", HTTP_X_FORWARDED_FOR=header)
        assert client_ip(request) == expected

    def test_the_header_is_configurable(self, settings):
        settings.TRUSTED_PROXY_COUNT = 1
        settings.CLIENT_IP_HEADER = "HTTP_X_REAL_IP"
        request = self.request(REMOTE_ADDR="192.0.2.1", HTTP_X_REAL_IP="203.0.113.4")
        assert client_ip(request) == "203.0.113.4"


class TestErrorReports:
    """A crash while adding or rotating a key must not put the secret in Django's report."""

    def report(self, request, view, *args):
        try:
            view(request, *args)
        except RuntimeError:
            reporter = ExceptionReporter(request, *sys.exc_info())
            return reporter.get_traceback_text() + reporter.get_traceback_html()
        raise AssertionError("the view did not crash")

    def crashing_request(self, monkeypatch, user, path):
        def crash(self, *args, **kwargs):
            raise RuntimeError("boom")

        # Deep inside the upstream client, below the view and the services.
        monkeypatch.setattr("requests.Session.send", crash)
        request = RequestFactory().post(path, {"label": "Key", "secret": SECRET})
        request.user = user
        request.htmx = False
        request._dont_enforce_csrf_checks = True
        request.session = SessionStore()  # logged in just now: no reauthentication asked
        authenticated_at(request.session, user, time.time())
        return request

    def test_key_add(self, monkeypatch, user):
        request = self.crashing_request(monkeypatch, user, reverse("threads_app:key_create"))
        report = self.report(request, key_views.key_create)
        assert "boom" in report
        assert SECRET not in report
        assert SECRET[-12:] not in report

    def test_key_rotate(self, monkeypatch, user, api_key):
        path = reverse("threads_app:key_rotate", args=[api_key.pk])
        request = self.crashing_request(monkeypatch, user, path)
        report = self.report(request, key_views.key_rotate, api_key.pk)
        assert "boom" in report
        assert SECRET not in report
        assert SECRET[-12:] not in report


class TestPrivateCaching:
    def test_signed_in_pages_are_never_stored(self, user_client):
        for path in ["/", "/keys/", "/teams/", "/audit/"]:
            cache_control = user_client.get(path)["Cache-Control"]
            assert "private" in cache_control
            assert "no-store" in cache_control

    def test_a_signed_in_htmx_partial_too(self, user_client):
        response = user_client.get("/", HTTP_HX_REQUEST="true")
        assert "no-store" in response["Cache-Control"]


def test_a_request_for_another_host_is_refused_and_logged_in_one_line(client, caplog):
    caplog.set_level("INFO")
    response = client.get("/", HTTP_HOST="evil.example")

    assert response.status_code == 400
    [record] = [r for r in caplog.records if r.name == "django.security.DisallowedHost"]
    assert record.exc_info is None and record.exc_text is None
    line = logging.Formatter().format(record)
    assert line == (
        "Invalid HTTP_HOST header: 'evil.example'. "
        "You may need to add 'evil.example' to ALLOWED_HOSTS."
    )
