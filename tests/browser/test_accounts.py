"""In the browser: logging in, adding a key, and what team roles allow."""

import re

from playwright.sync_api import expect

from tests.conftest import TEST_KEY
from threads_app.models import ApiKey, AuditEvent, TrackedThread
from threads_app.services import teams as team_services


def test_a_wrong_password_is_refused_then_the_right_one_logs_in(page, user, live_server):
    page.goto("/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))

    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("not-her-password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("password you specified are not correct")
    expect(page.get_by_label("Username")).to_have_value("alice")
    expect(page.get_by_label("Password")).to_have_value("")

    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(live_server.url + "/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Threads")
    expect(page.get_by_role("banner")).to_contain_text("alice")


def test_logging_in_from_the_login_page_lands_on_the_overview(page, user, live_server):
    page.goto("/login/")
    page.get_by_label("Username").fill("alice")
    page.get_by_label("Password").fill("pw-alice")
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(live_server.url + "/overview/")
    expect(page.get_by_role("heading", level=1)).to_have_text("Overview")
    nav = page.get_by_role("navigation", name="Main")
    expect(nav.get_by_role("link", name="Overview")).to_have_attribute("aria-current", "page")
    nav.get_by_role("link", name="Threads").click()
    expect(page).to_have_url(live_server.url + "/")


def test_add_a_key_after_the_api_refused_a_wrong_one(page, user, log_in, emulator):
    log_in(page, user)
    page.get_by_role("navigation", name="Main").get_by_role("link", name="Keys").click()
    expect(page.get_by_text("You have no API keys yet")).to_be_visible()
    page.get_by_role("link", name="Add a key").click()

    page.get_by_label("Label").fill("Production")
    page.get_by_label("Secret").fill("sk-not-a-key-the-api-knows-0000")
    page.get_by_role("button", name="Add key").click()
    # The htmx swap shows the API's refusal in place; the label is kept, the secret is not.
    expect(page.get_by_role("alert")).to_contain_text("401")
    expect(page.get_by_label("Label")).to_have_value("Production")
    expect(page.get_by_label("Secret")).to_have_value("")
    assert not ApiKey.objects.exists()

    page.get_by_label("Secret").fill(TEST_KEY)
    page.get_by_role("button", name="Add key").click()
    expect(page).to_have_url(re.compile(r"/keys/$"))
    expect(page.locator(".messages")).to_contain_text("Added the key “Production”")
    row = page.get_by_role("row", name=re.compile("Production"))
    expect(row).to_contain_text(TEST_KEY[-4:])
    expect(row.get_by_text("live")).to_be_visible()
    assert TEST_KEY not in page.content()
    assert ApiKey.objects.get().owner == user


def _team_with_thread(make_user, make_team, make_key, make_thread, members):
    owner = make_user("olivia")
    team = make_team("Blue", {owner: "owner", **members})
    key = make_key(team=team, label="Blue key", created_by=owner)
    thread = make_thread(key, label="Team plan", tracked_by=owner)
    return owner, team, thread


def test_an_owner_invites_and_the_invitee_accepts_then_sees_the_team_thread(
    new_page, log_in, make_user, make_team, make_key, make_thread, check_accessibility
):
    mia = make_user("mia")
    owner, team, thread = _team_with_thread(make_user, make_team, make_key, make_thread, {})

    owner_page = log_in(new_page(), owner)
    owner_page.goto(f"/teams/{team.pk}/")
    owner_page.get_by_label("Username or email").fill("MIA@example.test")
    owner_page.get_by_label("Role", exact=True).select_option("member")
    owner_page.get_by_role("button", name="Send invitation").click()
    expect(owner_page.locator("main .messages")).to_contain_text(
        "Invitation to Blue sent to “mia@example.test” as member."
    )
    # The members region was swapped in place: the pending invitation, an empty form.
    pending = owner_page.get_by_role("row", name=re.compile("mia@example.test"))
    expect(pending).to_contain_text("Member")
    expect(owner_page.get_by_label("Username or email")).to_have_value("")
    check_accessibility(owner_page, "team detail, pending invitation")

    member_page = log_in(new_page(), mia)
    expect(member_page.get_by_text("You have 1 pending team invitation.")).to_be_visible()
    member_page.get_by_role("link", name="See your invitations").click()
    expect(member_page.get_by_role("heading", level=1)).to_have_text("Invitations")
    row = member_page.get_by_role("row", name=re.compile("Blue"))
    expect(row).to_contain_text("olivia")
    check_accessibility(member_page, "invitations")
    member_page.emulate_media(color_scheme="dark")
    check_accessibility(member_page, "invitations")
    member_page.emulate_media(color_scheme="light")

    row.get_by_role("button", name="Accept the invitation to Blue").click()
    expect(member_page.get_by_role("heading", level=1)).to_have_text("Blue")
    expect(member_page.locator(".messages")).to_contain_text("You joined Blue as member.")
    member_page.goto("/")
    expect(member_page.get_by_text("pending team invitation")).to_have_count(0)
    thread_row = member_page.get_by_role("row", name=re.compile("Team plan"))
    expect(thread_row).to_contain_text(thread.thread_id)
    expect(thread_row.get_by_role("button", name=re.compile("^Delete"))).to_be_visible()

    owner_page.reload()
    expect(owner_page.get_by_label("Role of mia")).to_have_value("member")
    expect(owner_page.get_by_text("No pending invitations.")).to_be_visible()


def test_an_invitee_declines_without_javascript(new_page, log_in, make_user, make_team):
    owner, vera = make_user("olivia"), make_user("vera")
    team = make_team("Blue", {owner: "owner"})
    team_services.invite_member(team, actor=owner, identifier="vera", role="viewer")

    page = log_in(new_page(java_script_enabled=False), vera)
    page.get_by_role("link", name="See your invitations").click()
    page.get_by_role("button", name="Decline the invitation to Blue").click()
    expect(page.locator(".messages")).to_contain_text("You declined the invitation to Blue.")
    expect(page.get_by_text("No pending invitations.")).to_be_visible()
    assert not team.memberships.filter(user=vera).exists()


def test_a_viewer_has_no_delete_button_and_is_refused_when_posting_anyway(
    new_page, log_in, make_user, make_team, make_key, make_thread, emulator
):
    viewer = make_user("vera")
    _, _, thread = _team_with_thread(
        make_user, make_team, make_key, make_thread, {viewer: "viewer"}
    )
    page = log_in(new_page(), viewer)
    row = page.get_by_role("row", name=re.compile("Team plan"))
    expect(row).to_be_visible()
    expect(row.get_by_role("button")).to_have_text([re.compile("^Copy")])

    row.get_by_role("link", name="Team plan").click()
    expect(page.get_by_role("heading", level=1)).to_have_text("Team plan")
    expect(page.get_by_role("link", name="Delete")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit")).to_have_count(0)

    token = page.locator("input[name=csrfmiddlewaretoken]").first.input_value()
    response = page.request.post(
        f"/threads/{thread.pk}/delete/", form={"csrfmiddlewaretoken": token}
    )
    assert response.status == 403
    thread.refresh_from_db()
    assert thread.state == TrackedThread.State.ACTIVE
    assert not [call for call in emulator.request_log if call[0] == "DELETE"]
    assert not AuditEvent.objects.filter(thread_id=thread.thread_id).exists()
