"""In the browser, without JavaScript: a password reset followed from the demo's list of
emails sent, two-factor turned on and used to log in, and the reauthentication a key needs.
Every page on the way is checked with axe-core in light and dark."""

import re
import time

import pytest
from django.conf import settings
from django.contrib.sessions.backends.db import SessionStore
from playwright.sync_api import expect

from tests.conftest import authenticated_at
from tests.test_accounts import totp_code
from threads_app.mail import OUTBOX_BACKEND
from threads_app.models import AuditEvent


@pytest.fixture
def accessible(new_page, check_accessibility):
    """axe-core needs JavaScript: check the page a script-less `page` shows in a twin with
    JavaScript and the same cookies, in light and dark."""

    def check(page, name):
        twin = new_page()
        twin.context.add_cookies(page.context.cookies())
        twin.goto(page.url)
        for scheme in ("light", "dark"):
            twin.emulate_media(color_scheme=scheme)
            check_accessibility(twin, name)
        twin.close()

    return check


@pytest.fixture
def outbox(settings, tmp_path):
    settings.DEBUG = True
    settings.EMAIL_BACKEND = OUTBOX_BACKEND
    settings.EMAIL_FILE_PATH = str(tmp_path / "outbox")


def test_a_forgotten_password_is_reset_from_the_emails_page(new_page, user, outbox, accessible):
    page = new_page(java_script_enabled=False)
    page.goto("/")
    page.get_by_role("link", name="Forgot your password?").click()
    accessible(page, "password reset")
    page.get_by_label("Email").fill("alice@example.test")
    page.get_by_role("button", name=re.compile("Reset", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Password Reset", re.I))

    page.goto("/accounts/dev/emails/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Emails sent")
    expect(page.get_by_text("alice@example.test")).to_be_visible()
    accessible(page, "emails sent")
    page.locator('a[href*="/accounts/password/reset/key/"]').click()

    accessible(page, "choose a new password")
    page.get_by_label("New Password:", exact=True).fill("a-brand-new-long-password")
    page.get_by_label("New Password (again):").fill("a-brand-new-long-password")
    page.get_by_role("button", name=re.compile("Change Password", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Password", re.I))

    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("a-brand-new-long-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    assert AuditEvent.objects.filter(action=AuditEvent.Action.PASSWORD_RESET).count() == 1


def test_two_factor_is_turned_on_and_then_asked_at_the_log_in(new_page, user, log_in, accessible):
    page = log_in(new_page(java_script_enabled=False), user)
    page.get_by_role("link", name="alice (your account)").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Change Password", re.I))
    accessible(page, "change password")
    page.get_by_role("navigation", name="Account").get_by_role(
        "link", name="Two-factor authentication"
    ).click()
    accessible(page, "two-factor")
    page.get_by_role("link", name="Activate").click()
    accessible(page, "turn on two-factor")
    page.reload()  # each showing of the page makes a new secret: the twin's is gone
    secret = page.get_by_label("Authenticator secret").input_value()
    page.get_by_label("Authenticator code").fill(totp_code(secret))
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_label("Unused codes")).to_be_visible()
    accessible(page, "recovery codes")
    for path, name in [
        ("/accounts/2fa/recovery-codes/generate/", "new recovery codes"),
        ("/accounts/2fa/totp/deactivate/", "turn off two-factor"),
        ("/accounts/2fa/reauthenticate/", "reauthenticate with a code"),
    ]:
        page.goto(path)
        expect(page.get_by_role("heading", level=1)).to_be_visible()
        accessible(page, name)

    page.get_by_role("button", name="Log out").click()
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile("Two-Factor", re.I))
    accessible(page, "two-factor code")
    page.get_by_label(re.compile("code", re.I)).fill(totp_code(secret))
    page.get_by_role("button", name=re.compile("Sign In", re.I)).click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


def test_adding_a_key_after_a_while_asks_for_the_password_first(new_page, user, log_in, accessible):
    page = log_in(new_page(java_script_enabled=False), user)
    [session] = [c for c in page.context.cookies() if c["name"] == settings.SESSION_COOKIE_NAME]
    authenticated_at(SessionStore(session_key=session["value"]), user, time.time() - 16 * 60)

    page.goto("/keys/new/")
    expect(page).to_have_url(re.compile(r"/accounts/reauthenticate/\?next=%2Fkeys%2Fnew%2F$"))
    accessible(page, "reauthenticate")
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Confirm").click()
    expect(page).to_have_url(re.compile(r"/keys/new/$"))
    expect(page.get_by_label("Secret")).to_be_visible()


def test_someone_new_joins_from_an_emailed_invitation(
    new_page, user, log_in, make_team, outbox, accessible
):
    team = make_team("Blue", {user: "owner"})
    owner = log_in(new_page(java_script_enabled=False), user)
    owner.goto(f"/teams/{team.pk}/")
    owner.get_by_label("Username or email").fill("newbie@example.test")
    owner.get_by_label("Role", exact=True).select_option("viewer")
    owner.get_by_role("button", name="Send invitation").click()
    expect(owner.get_by_role("row", name=re.compile("newbie@example.test"))).to_contain_text(
        "emailed; expires"
    )
    accessible(owner, "team detail, emailed invitation")

    page = new_page(java_script_enabled=False)
    page.goto("/accounts/dev/emails/")
    page.locator('a[href*="/invitations/link/"]').click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Join Blue")
    accessible(page, "invitation link")
    page.get_by_label("Username").fill(user.username.upper())  # taken, in another case
    page.get_by_label("Password", exact=True).fill("a-long-enough-password")
    page.get_by_label("Password (again)").fill("a-long-enough-password")
    page.get_by_role("button", name="Create account and join").click()
    expect(page.locator("form")).to_contain_text("is not available: choose another username")
    accessible(page, "invitation link, a name not available")
    page.get_by_label("Username").fill("newbie")
    page.get_by_label("Password", exact=True).fill("a-long-enough-password")
    page.get_by_label("Password (again)").fill("a-long-enough-password")
    page.get_by_role("button", name="Create account and join").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Blue")
    expect(page.locator(".messages")).to_contain_text("You joined Blue as viewer.")
    expect(page.get_by_role("banner")).to_contain_text("newbie")
