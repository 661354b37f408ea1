"""Issue 16, defect 7: a form body that cannot be read is a 400 with the app's error page,
never a 500, and a failed CSRF check is the app's 403 page; neither handler reads the body
again. Debug is off (the test settings' default), as in production."""

import pytest
from django.conf import settings
from django.test import Client

from tests.test_fuzz_pages import BODY_ENCODINGS, post_body

pytestmark = pytest.mark.django_db

LOGIN = "/accounts/login/"
URLENCODED = "application/x-www-form-urlencoded"


def _client_with_token() -> tuple[Client, str]:
    """An anonymous browser that has loaded the log-in page: its CSRF cookie and token."""
    client = Client(enforce_csrf_checks=True)
    page = client.get(LOGIN)
    return client, str(page.context["csrf_token"])


def test_the_issues_latin_1_post_is_a_400_with_the_apps_page():
    assert settings.DEBUG is False
    client, token = _client_with_token()
    body = f"csrfmiddlewaretoken={token}&login=jos\xe9&password=x".encode("latin-1")

    response = client.generic("POST", LOGIN, body, content_type=f"{URLENCODED}; charset=latin-1")

    assert response.status_code == 400
    page = response.content.decode()
    assert "The request could not be read" in page
    assert "Threads Console" in page and 'href="/static/css/' in page  # the app's layout
    assert "Go to the overview" in page


def test_a_missing_csrf_token_is_the_apps_403_page_without_reading_the_body():
    client, _token = _client_with_token()
    response = client.post(LOGIN, {"login": "alice", "password": "x"})
    assert response.status_code == 403
    assert "This form has expired" in response.content.decode()

    broken = client.generic("POST", LOGIN, b"--x\r\n", content_type="multipart/form-data")
    assert broken.status_code == 400


@pytest.mark.parametrize("encoding", sorted(BODY_ENCODINGS))
@pytest.mark.parametrize("token_in", ["body", "header", "none"])
def test_every_odd_body_on_the_log_in_is_never_a_server_error(encoding, token_in):
    """Each way the fuzz harness may send a form (tests/test_fuzz_pages.py), once each: the
    unreadable ones are the 400 page, the rest the form's answer or the CSRF page."""
    fields = {"login": "jos\xe9", "password": "x"}
    post_body(Client(), LOGIN, fields, encoding, token_in=token_in)
