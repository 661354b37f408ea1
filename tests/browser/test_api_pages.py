"""In the browser: the access tokens page (a token made, shown once, then revoked) and the
API's docs page (Swagger UI from local files under the strict CSP: any violation is a
console error, which fails the test), both checked with axe-core."""

import pytest
from playwright.sync_api import expect

from threads_app.models import ApiToken


def test_a_token_is_made_shown_once_and_revoked(user_page, check_accessibility):
    page = user_page
    page.goto("/tokens/")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        check_accessibility(page, "access tokens")
    page.get_by_label("Label").fill("nightly export")
    page.get_by_label("audit:read", exact=False).check()
    page.get_by_role("button", name="Make token").click()
    token = page.get_by_role("textbox", name="Token").input_value()
    assert token.startswith("tc_")
    check_accessibility(page, "access tokens, new token")
    page.goto("/tokens/")
    assert token not in page.content()
    expect(page.get_by_role("cell", name="nightly export", exact=True)).to_be_visible()
    page.get_by_role("link", name="Revoke nightly export").click()
    check_accessibility(page, "revoke an access token")
    page.get_by_role("button", name="Revoke token").click()
    expect(page.get_by_text("revoked", exact=True)).to_be_visible()
    assert ApiToken.objects.get().revoked_at is not None


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_api_docs_page_runs_under_the_csp_from_local_files(new_page, live_server, scheme):
    page = new_page(color_scheme=scheme)
    outside = []
    page.on(
        "request",
        lambda request: (
            outside.append(request.url)
            if not request.url.startswith(live_server.url) and not request.url.startswith("data:")
            else None
        ),
    )
    page.goto("/api/v1/docs")
    expect(page.get_by_text("Threads Console API").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/threads").first).to_be_visible()
    assert outside == []
