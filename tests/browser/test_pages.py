"""Every main page in the browser: accessible (axe-core, light and dark), no CSP violation,
nothing wider than a 375 px phone, and screenshots at 1280 and 375 px."""

import re
from dataclasses import dataclass

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from tests.conftest import OTHER_TEST_KEY
from threads_app.models import ApiKey, BulkDeleteJob, TrackedThread
from threads_app.services import bulk, deletions

NARROW = 375


@dataclass
class Console:
    """A lived-in dashboard: the pages show rows, badges of every kind and audit events."""

    users: dict
    thread: TrackedThread
    team_pk: int
    selection: str
    job_pk: int


@pytest.fixture
def console(
    user, api_key, make_user, make_team, make_key, make_thread, emulator, settings, immediate_tasks
):
    team = make_team("Blue", {user: "owner", make_user("vera"): "viewer"})
    team_key = make_key(team=team, label="Blue key", created_by=user)
    failing = make_key(owner=user, label="Old project", secret=OTHER_TEST_KEY)
    ApiKey.objects.filter(pk=failing.pk).update(
        failing=True, last_error="The Threads API refused the key (401) — request req_abc123"
    )
    retired = make_key(owner=user, label="Retired", secret="sk-retired-key-0000000000000")
    ApiKey.objects.filter(pk=retired.pk).update(revoked_at=timezone.now())

    thread = make_thread(
        api_key,
        label="Refund question",
        metadata={"customer": "c-42", "priority": "high"},
        messages=[
            {"role": "user", "content": "Hello, I would like a refund for order 1234."},
            {"role": "assistant", "content": "Of course. Could you tell me why?"},
            {"role": "user", "content": "It arrived broken.\nThe box was crushed."},
        ],
    )
    team_thread = make_thread(team_key, label="Team plan", metadata={"quarter": "Q3"})
    gone = make_thread(api_key, label="Expired chat")
    TrackedThread.objects.filter(pk=gone.pk).update(state=TrackedThread.State.GONE)

    # Deletions with each outcome, for the audit log's badges.
    deletions.delete_thread(make_thread(api_key, label="Old chat"), actor=user)
    vanished = make_thread(api_key, label="Vanished chat")
    emulator.remove_thread(vanished.thread_id)
    deletions.delete_thread(vanished, actor=user)
    emulator.add_fault("DELETE", "*", "status", status=500)
    deletions.delete_thread(make_thread(api_key, label="Stubborn chat"), actor=user)
    emulator.add_fault("DELETE", "*", "not_deleted")
    deletions.delete_thread(make_thread(api_key, label="Refused chat"), actor=user)

    # A finished bulk delete with a deleted, an already gone and a failed thread.
    batch = [make_thread(api_key, label=f"Batch {n}") for n in range(1, 4)]
    emulator.remove_thread(batch[1].thread_id)
    emulator.add_fault("DELETE", f"/v1/threads/{batch[2].thread_id}", "status", status=500)
    job = bulk.start_bulk_delete(actor=user, thread_ids=[t.pk for t in batch])
    job.refresh_from_db()
    assert job.state == BulkDeleteJob.State.FINISHED

    return Console(
        users={"alice": user, "newcomer": make_user("newcomer")},
        thread=thread,
        team_pk=team.pk,
        selection=f"thread={thread.pk}&thread={team_thread.pk}&thread={gone.pk}",
        job_pk=job.pk,
    )


# (name, who is logged in, path). The names are also the screenshots' file names.
PAGES = [
    ("login", None, "/accounts/login/"),
    ("password reset", None, "/accounts/password/reset/"),
    ("password reset sent", None, "/accounts/password/reset/done/"),
    ("change password", "alice", "/accounts/password/change/"),
    ("two-factor", "alice", "/accounts/2fa/"),
    ("turn on two-factor", "alice", "/accounts/2fa/totp/activate/"),
    ("overview, empty", "newcomer", "/overview/"),
    ("overview", "alice", "/overview/"),
    ("threads list, empty", "newcomer", "/"),
    ("threads list", "alice", "/"),
    ("threads list, filtered and sorted", "alice", "/?team={team}&state=all&sort=label&q=plan"),
    ("threads list, a date that cannot be used", "alice", "/?date_from=2026-02-30"),
    ("create thread", "alice", "/threads/new/"),
    ("import threads", "alice", "/threads/import/"),
    ("thread detail", "alice", "/threads/{thread}/"),
    ("edit thread", "alice", "/threads/{thread}/edit/"),
    ("delete confirmation", "alice", "/threads/{thread}/delete/"),
    ("keys", "alice", "/keys/"),
    ("add key", "alice", "/keys/new/"),
    ("teams", "alice", "/teams/"),
    ("team detail", "alice", "/teams/{team}/"),
    ("audit log", "alice", "/audit/"),
    ("bulk delete confirmation", "alice", "/threads/bulk-delete/?{selection}"),
    ("bulk delete progress", "alice", "/jobs/{job}/"),
]


def _fits_narrow_screen(page):
    page.set_viewport_size({"width": NARROW, "height": 900})
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= NARROW + 1, f"{page.url} is {width} px wide at {NARROW} px"


@pytest.mark.parametrize(("name", "who", "path"), PAGES, ids=[name for name, _, _ in PAGES])
def test_main_page(
    name, who, path, console, new_page, log_in, check_accessibility, screenshot, page_problems
):
    page = new_page()
    if who:
        log_in(page, console.users[who])
    response = page.goto(
        path.format(
            thread=console.thread.pk,
            team=console.team_pk,
            selection=console.selection,
            job=console.job_pk,
        )
    )
    assert response.status == 200
    expect(page.get_by_role("heading", level=1)).to_be_visible()

    check_accessibility(page, name)
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    check_accessibility(page, name)
    page.emulate_media(color_scheme="light")

    screenshot(page, re.sub(r"\W+", "-", name))
    _fits_narrow_screen(page)
    assert not page_problems  # no CSP violation, failed load or script error on this page


LINES = """elements => elements.map(element => Math.round(
    element.getBoundingClientRect().height / parseFloat(getComputedStyle(element).lineHeight)
))"""


def test_narrow_screens_drop_minor_columns_and_keep_ids_readable(console, new_page, log_in):
    page = log_in(new_page(), console.users["alice"])
    ids = page.locator("#rows code.id")
    expect(ids.first).to_be_visible()
    assert set(ids.evaluate_all(LINES)) == {1}  # an id never wraps

    page.set_viewport_size({"width": NARROW, "height": 900})
    table = page.locator("#rows table")
    expect(table.get_by_role("columnheader", name="Key")).to_be_hidden()
    assert set(ids.evaluate_all(LINES)) == {1}

    page.goto("/audit/")
    table = page.get_by_role("region", name="Audit events").locator("table")
    expect(table.get_by_role("columnheader", name="Time")).to_be_visible()
    expect(table.get_by_role("columnheader", name="Team")).to_be_hidden()
    assert max(table.locator("code.id").evaluate_all(LINES)) <= 3


def test_form_errors_are_accessible(user_page, api_key, check_accessibility):
    page = user_page
    page.goto("/threads/new/")
    page.get_by_label("Value of pair 1").fill("a value without its key")
    page.get_by_role("button", name="Create thread").click()
    expect(page.get_by_role("alert")).to_contain_text("Please correct the errors below")
    expect(page.locator(".errorlist")).to_contain_text("Pair 1, key: A value needs a key.")
    expect(page.get_by_label("Value of pair 1")).to_have_value("a value without its key")
    check_accessibility(page, "create thread, with errors")

    page.goto("/keys/new/")
    page.get_by_label("Label").fill("Wrong")
    page.get_by_label("Secret").fill("sk-not-a-key-the-api-knows-0000")
    page.get_by_role("button", name="Add key").click()
    expect(page.get_by_role("alert")).to_contain_text("401")
    page.emulate_media(color_scheme="dark")
    check_accessibility(page, "add key, refused")


def test_the_overview_chart_follows_the_colour_scheme(console, new_page, log_in):
    """Its bars are drawn with the page's colours (CSS classes, no inline style): they change
    with the scheme, and the chart's table opens without JavaScript."""
    page = log_in(new_page(java_script_enabled=False), console.users["alice"])
    page.goto("/overview/")
    chart = page.get_by_role(
        "img", name="Threads created, imported and deleted per day, last 30 days"
    )
    expect(chart).to_be_visible()
    bar = chart.locator("rect.bar.deleted").first
    light = bar.evaluate("bar => getComputedStyle(bar).fill")
    page.emulate_media(color_scheme="dark")
    dark = bar.evaluate("bar => getComputedStyle(bar).fill")
    assert light == "rgb(179, 38, 30)" and dark == "rgb(242, 139, 130)"  # --danger, each scheme

    page.get_by_text("The chart as a table").click()
    table = page.get_by_role(
        "table", name="Threads created, imported and deleted per day, last 30 days"
    )
    expect(table).to_be_visible()
    expect(table.get_by_role("row")).to_have_count(31)  # a header and 30 days
    page.set_viewport_size({"width": NARROW, "height": 900})
    _fits_narrow_screen(page)
    box = chart.bounding_box()
    assert box and box["width"] <= NARROW
