"""Single sign-on in the browser (issue 20): "Log in with Demo SSO" against the running test
provider (the demo's, threads_app/demo_sso.py), as sso-sam, a member of Demo team through the
mapping; the group removed at the provider, the next log-in takes the membership away and the
audit says why. The new pages pass axe-core in light and dark."""

import re

import pytest
from playwright.sync_api import expect

from threads_app import demo_sso
from threads_app.models import AuditEvent, Membership, Team


@pytest.fixture
def demo_provider(settings, live_server):
    Team.objects.create(name=demo_sso.TEAM)
    with demo_sso.demo_sso(settings, [live_server.url]) as provider:
        yield provider


def _log_in_with_demo_sso(page):
    page.goto("/accounts/login/")
    page.get_by_role("button", name="Log in with Demo SSO").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Demo SSO")
    page.get_by_label("Username").fill(demo_sso.USERNAME)
    page.get_by_label("Password").fill(demo_sso.PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")


def test_log_in_with_demo_sso_then_the_group_goes_and_so_does_the_membership(
    new_page, demo_provider, check_accessibility, log_in, django_user_model, screenshot
):
    page = new_page()
    page.goto("/accounts/login/")
    screenshot(page, "login-with-sso")
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        check_accessibility(page, "log-in with single sign-on")

    _log_in_with_demo_sso(page)
    expect(page.get_by_role("link", name="sso-sam (your account)")).to_be_visible()
    sam = django_user_model.objects.get(username="sso-sam")
    [membership] = Membership.objects.filter(user=sam)
    assert (membership.team.name, membership.role, membership.managed_by) == (
        "Demo team",
        "member",
        "demo-sso",
    )
    page.goto("/teams/")
    expect(page.get_by_role("link", name="Demo team")).to_be_visible()

    # The group is taken away at the provider; the next log-in takes the membership away.
    demo_provider.user(
        demo_sso.USERNAME, password=demo_sso.PASSWORD, groups=[], email="sam@sso.demo.example"
    )
    page.get_by_role("button", name="Log out").click()
    # The provider's account changed (its password was set again): it asks to log in again.
    _log_in_with_demo_sso(page)
    assert not Membership.objects.filter(user=sam).exists()

    admin = django_user_model.objects.create_superuser("root", "root@example.test", "pw-root-1")
    audit = log_in(new_page(), admin)
    audit.goto(f"/audit/?action={AuditEvent.Action.MEMBER_REMOVED}")
    audit.locator(".event-cell summary").first.click()  # the event's facts: its details say why
    why = audit.locator("dl.facts dd", has_text="groups claim")
    expect(why).to_have_count(1)
    expect(why).to_contain_text("provider: Demo SSO")
    expect(why).to_contain_text("username: sso-sam")


@pytest.mark.parametrize(
    ("path", "heading"),
    [
        ("/accounts/oidc/demo-sso/login/", "Log in with Demo SSO"),
        ("/accounts/oidc/demo-sso/login/callback/?state=not-a-state&code=x", "did not work"),
        ("/accounts/oidc/cancelled/", "Log-in cancelled"),
    ],
)
def test_the_new_pages_pass_axe(
    new_page, demo_provider, check_accessibility, page_problems, path, heading
):
    page = new_page()
    response = page.goto(path)
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(heading))
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        check_accessibility(page, heading)
    if response.status == 401:  # the failed log-in's page: its status is the only problem
        assert [p for p in page_problems if "status of 401" not in p] == []
        page_problems.clear()
