"""Issue 16, defect 7, in a browser: a log-in form sent in latin-1 answers the app's 400 page,
and one sent with an expired CSRF cookie the app's 403 page; both in the app's layout, and
axe-core finds nothing serious on them in light and dark."""

import re

import pytest
from playwright.sync_api import expect

pytestmark = pytest.mark.django_db(transaction=True)


def _expected_failure(problems, status):
    """Chromium logs the page's own status as a console error: that one is expected."""
    expected = [p for p in problems if f"status of {status}" in p]
    assert len(expected) <= 1, problems
    for problem in expected:
        problems.remove(problem)


def _fill_log_in(page):
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("jos\xe9")
    page.get_by_label("Password").fill("x")


def test_a_form_sent_in_latin_1_is_the_apps_400_page(page, page_problems, check_accessibility):
    def as_latin_1(route):
        headers = {**route.request.headers}
        headers["content-type"] = "application/x-www-form-urlencoded; charset=latin-1"
        body = (route.request.post_data or "").replace("%C3%A9", "%E9").encode()
        route.continue_(headers=headers, post_data=body)

    _fill_log_in(page)
    page.route(re.compile(r".*/accounts/login/$"), as_latin_1)
    with page.expect_response(re.compile(r".*/accounts/login/$")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 400
    expect(page.get_by_role("heading", level=1)).to_have_text("The request could not be read")
    expect(page.get_by_role("link", name="Go to the overview")).to_be_visible()
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        check_accessibility(page, "400: form not readable")
    _expected_failure(page_problems, 400)


def test_an_expired_form_is_the_apps_403_page(page, page_problems, check_accessibility):
    _fill_log_in(page)
    page.context.clear_cookies()  # the CSRF cookie is gone: as after a long while, or a reset
    with page.expect_response(re.compile(r".*/accounts/login/$")) as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 403
    expect(page.get_by_role("heading", level=1)).to_have_text("This form has expired")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        check_accessibility(page, "403: form expired")
    _expected_failure(page_problems, 403)
