"""Issue 16, clicking through as a new user would: pages with a flash message, allauth's pages
in the console's words, the page after too many reset requests, the team's two-factor rule,
the two-factor page under REQUIRE_2FA and what a viewer is offered. Each page is checked with
axe-core in light and dark."""

import re
import time

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from tests.conftest import authenticated_at
from tests.test_accounts import totp_code
from threads_app.models import Membership, Team

STALE = 16 * 60


@pytest.fixture
def accessible(check_accessibility):
    """axe-core on the page as it is, in light then dark (no reload: a message shows once)."""

    def check(page, name):
        for scheme in ("light", "dark"):
            page.emulate_media(color_scheme=scheme)
            check_accessibility(page, name)

    return check


def session_of(page):
    [cookie] = [c for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME]
    return SessionStore(session_key=cookie["value"])


def message(page):
    """The flash message region: a live region around the list (axe's listitem rule)."""
    return page.get_by_role("status").filter(has=page.locator("ul.messages"))


def test_pages_with_a_message_are_accessible(page, user, accessible):
    # The log-in landing.
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    expect(message(page)).to_contain_text("You are logged in as alice.")
    accessible(page, "log-in landing, with its message")

    # A saved form.
    page.goto("/teams/new/")
    page.get_by_label("Team name").fill("Blue")
    page.get_by_role("button", name="Create team").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Blue")
    expect(message(page)).to_contain_text("Team “Blue” created.")
    accessible(page, "a saved form, with its message")

    # A reauthentication prompt: the form was sent with a session whose password is stale.
    page.goto("/keys/new/")
    page.get_by_label("Label").fill("Production")
    page.get_by_label("Secret").fill("sk-not-sent-anywhere-0123456789")
    authenticated_at(session_of(page), user, time.time() - STALE)
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Confirm it is you")
    expect(message(page)).to_contain_text("Confirm it is you, then do it again")
    accessible(page, "reauthentication prompt, with its message")


def test_a_password_reset_in_the_console_s_words_up_to_the_429(
    new_page, user, accessible, page_problems
):
    page = new_page()
    page.goto("/accounts/password/reset/key/1-forged-token/")
    expect(page.get_by_role("heading", level=1)).to_have_text("This link has expired or was used")
    accessible(page, "expired reset link")
    page.get_by_role("link", name="Ask for a new link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Reset your password")

    for _ in range(5):  # allauth sends 5 a minute to one address
        page.goto("/accounts/password/reset/")
        page.get_by_label("Email").fill("alice@example.test")
        page.get_by_role("button", name="Send the link").click()
        expect(page.get_by_role("heading", level=1)).to_have_text("Check your email")
    accessible(page, "reset link sent")
    page.goto("/accounts/password/reset/")
    page.get_by_label("Email").fill("alice@example.test")
    page.get_by_role("button", name="Send the link").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Too many attempts")
    # The browser logs the 429 answer as a failed load: expected here, and the only problem.
    assert [re.sub(r"localhost:\d+", "host", p) for p in page_problems] == [
        "console error on http://host/accounts/password/reset/: Failed to load resource: "
        "the server responded with a status of 429 (Too Many Requests)"
    ]
    page_problems.clear()
    expect(page.get_by_role("banner").get_by_role("link", name="Threads Console")).to_be_visible()
    accessible(page, "too many attempts")
    page.get_by_role("link", name="Back to the log-in page").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


@pytest.mark.parametrize("java_script", [True, False], ids=["js", "no-js"])
def test_requiring_two_factor_of_a_team_s_owners(
    new_page, log_in, user, other_user, make_team, accessible, java_script
):
    team = make_team("Blue", {user: Membership.Role.OWNER, other_user: Membership.Role.OWNER})
    page = log_in(new_page(java_script_enabled=java_script), user)
    authenticated_at(session_of(page), user, time.time())
    page.goto(f"/teams/{team.pk}/")
    box = page.get_by_label("Owners must use two-factor authentication")
    expect(box).to_be_disabled()
    expect(box).to_have_accessible_description(
        re.compile("^Set up two-factor for your account first")
    )
    if java_script:
        accessible(page, "team page, two-factor rule not yet possible")

    page.get_by_role("link", name="Two-factor authentication").last.click()
    page.get_by_role("link", name="Activate").click()
    secret = page.get_by_label("Authenticator secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_label("Unused codes")).to_be_visible()

    page.goto(f"/teams/{team.pk}/")
    box = page.get_by_label("Owners must use two-factor authentication")
    expect(box).to_be_enabled()
    box.check()
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(
        "Require two-factor authentication of Blue's owners?"
    )
    expect(page.locator("ul.affected-owners li")).to_have_text(["bob"])
    if java_script:
        accessible(page, "two-factor rule confirmation")
    assert not Team.objects.get(pk=team.pk).owners_need_two_factor
    page.get_by_role("button", name="Require it").click()
    expect(message(page)).to_contain_text("Blue's owners must use two-factor authentication.")
    expect(page.get_by_label("Owners must use two-factor authentication")).to_be_checked()
    assert Team.objects.get(pk=team.pk).owners_need_two_factor


def test_the_two_factor_page_offers_no_deactivate_when_it_is_required(
    page, log_in, user, accessible, settings
):
    settings.REQUIRE_2FA = True
    log_in(page, user)
    authenticated_at(session_of(page), user, time.time())
    page.goto("/accounts/2fa/totp/activate/")
    secret = page.get_by_label("Authenticator secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    page.get_by_role("button", name="Activate").click()
    page.goto("/accounts/2fa/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Two-factor authentication")
    expect(page.get_by_text("It stays on.")).to_be_visible()
    expect(page.get_by_role("link", name="Deactivate")).to_have_count(0)
    expect(page.get_by_role("button", name="Deactivate")).to_have_count(0)
    accessible(page, "two-factor page, required")


def test_a_viewer_is_offered_what_they_can_do(
    page, log_in, user, other_user, make_team, make_key, accessible
):
    team = make_team("Blue", {other_user: Membership.Role.OWNER, user: Membership.Role.VIEWER})
    make_key(team=team, label="Blue's key")
    log_in(page, user)
    for path, name in [("/overview/", "overview"), ("/", "threads")]:
        page.goto(path)
        expect(page.get_by_role("link", name="New thread")).to_have_count(0)
        expect(page.get_by_role("link", name=re.compile("^Import"))).to_have_count(0)
        expect(page.get_by_text("The keys you see are for reading only")).to_be_visible()
        accessible(page, f"{name}, as a viewer")
    page.get_by_role("link", name="add a key of your own").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("key", re.I))
