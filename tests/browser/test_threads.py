"""In the browser: the life of a thread, from creation to deletion, with and without JavaScript."""

import re
from datetime import UTC, datetime

import pytest
from playwright.sync_api import expect

from tests.conftest import TEST_KEY
from threads_app.models import AuditEvent, TrackedThread
from threads_app.upstream import ThreadsClient


@pytest.fixture
def upstream(emulator):
    """A Threads API client for checking what the emulator holds."""
    return ThreadsClient(TEST_KEY, base_url=emulator.base_url)


def _deletes(emulator):
    return [path for method, path in emulator.request_log if method == "DELETE"]


def _mark_document(page):
    """Tag the current document: the tag survives htmx swaps, not a page load."""
    page.evaluate("window.sameDocument = true")


def _assert_same_document(page):
    assert page.evaluate("window.sameDocument") is True, "the page was reloaded"


def test_create_a_thread_with_metadata_and_a_message(api_key, user_page, upstream):
    page = user_page  # loaded once the key exists: "New thread" is offered to who has a key
    page.get_by_role("link", name="New thread").first.click()
    page.get_by_label("Label").fill("Refund question")
    page.get_by_label("Key", exact=True).select_option(str(api_key.pk))
    page.get_by_label("Key of pair 1").fill("customer")
    page.get_by_label("Value of pair 1").fill("c-42")
    page.get_by_role("button", name="Add a pair").click()
    # The new row is numbered for the formset and takes the focus.
    expect(page.locator("[name=meta-1-key]")).to_be_focused()
    page.keyboard.type("priority")
    page.locator("[name=meta-1-value]").fill("high")
    page.get_by_label("Text of message 1").fill("Hello, I would like a refund.")
    page.get_by_role("button", name="Create thread").click()

    expect(page.get_by_role("heading", level=1)).to_have_text("Refund question")
    thread = TrackedThread.objects.get()
    expect(page.locator(".messages")).to_contain_text(f"Created thread {thread.thread_id}")
    live = page.get_by_role("region", name="Live thread")
    expect(live).to_contain_text("customer")
    expect(live).to_contain_text("c-42")
    expect(live).to_contain_text("priority")
    messages = page.get_by_role("region", name=re.compile("^Messages"))
    expect(messages.locator(".message-text")).to_have_text(["Hello, I would like a refund."])
    assert upstream.retrieve_thread(thread.thread_id).metadata == {
        "customer": "c-42",
        "priority": "high",
    }


def test_added_rows_are_numbered_in_their_labels(user_page, api_key):
    page = user_page
    page.goto("/threads/new/")
    add = page.get_by_role("button", name="Add a pair")
    add.click()
    add.click()
    expect(page.get_by_label("Key of pair 3")).to_be_focused()
    page.get_by_role("button", name="Remove pair 2").click()
    add.click()  # a new number, not the removed one's nor one still in use

    rows = page.locator("#meta-rows [data-row]")
    expect(rows).to_have_count(3)
    names = ["Key of pair 1", "Key of pair 3", "Key of pair 4"]
    for row, name in zip(rows.all(), names, strict=True):
        expect(row.get_by_role("textbox").first).to_have_accessible_name(name)
    expect(page.get_by_label("Value of pair 4")).to_have_attribute("name", "meta-3-value")
    expect(page.get_by_role("button", name="Remove pair 4")).to_be_visible()
    page.get_by_role("button", name="Add a message").click()
    expect(page.get_by_label("Text of message 2")).to_have_attribute("name", "msg-1-text")


def test_live_search_updates_the_rows_without_a_page_load(user_page, api_key, make_thread):
    page = user_page
    make_thread(api_key, label="Invoice dispute", metadata={"customer": "acme"})
    make_thread(api_key, label="Shipping delay")
    wanted = make_thread(api_key, label="Password reset", metadata={"ticket": "T-991"})
    page.goto("/")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_count(3)
    _mark_document(page)

    page.get_by_label("Search").fill("t-991")  # a metadata value, any case
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Password reset")
    expect(page).to_have_url(re.compile(r"[?&]q=t-991"))

    page.get_by_label("Search").fill("nothing like this")
    expect(page.get_by_text("No thread matches “nothing like this”")).to_be_visible()
    expect(rows).to_have_count(0)

    page.get_by_label("Search").fill("invoice")
    expect(rows).to_have_count(1)
    expect(rows).to_contain_text("Invoice dispute")
    _assert_same_document(page)

    page.get_by_label("Search").fill(wanted.thread_id)
    page.get_by_role("link", name="Password reset").click()
    expect(page).to_have_url(re.compile(rf"/threads/{wanted.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Password reset")


def test_load_more_messages(user_page, api_key, make_thread):
    page = user_page
    thread = make_thread(
        api_key,
        label="Long chat",
        messages=[{"role": "user", "content": f"message {n}"} for n in range(1, 26)],
    )
    page.goto(f"/threads/{thread.pk}/")
    texts = page.locator(".thread-messages .message-text")
    expect(texts).to_have_count(20)
    expect(texts.first).to_have_text("message 25")
    expect(texts.last).to_have_text("message 6")
    _mark_document(page)

    page.get_by_role("link", name="Load more").click()
    expect(texts).to_have_count(25)
    expect(texts.last).to_have_text("message 1")
    expect(page.get_by_role("link", name="Load more")).to_have_count(0)
    _assert_same_document(page)


def test_edit_metadata(user_page, api_key, make_thread, upstream):
    page = user_page
    thread = make_thread(api_key, label="Edit me", metadata={"stage": "draft", "owner": "alice"})
    page.goto(f"/threads/{thread.pk}/")
    page.get_by_role("link", name="Edit").click()
    expect(page.get_by_label("Key of pair 1")).to_have_value("stage")
    expect(page.get_by_label("Value of pair 1")).to_have_value("draft")
    page.get_by_label("Value of pair 1").fill("final")
    page.get_by_role("button", name="Remove pair 2").click()
    page.get_by_role("button", name="Add a pair").click()
    added = page.locator("#meta-rows [data-row]").last
    expect(added.get_by_label(re.compile("^Key"))).to_be_focused()
    page.keyboard.type("reviewer")
    added.get_by_label(re.compile("^Value")).fill("bob")
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(re.compile(rf"/threads/{thread.pk}/$"))
    expect(page.locator(".messages")).to_contain_text(f"Saved thread {thread.thread_id}")
    live = page.get_by_role("region", name="Live thread")
    expect(live).to_contain_text("final")
    expect(live).to_contain_text("reviewer")
    expect(live).not_to_contain_text("owner")
    expected = {"stage": "final", "reviewer": "bob"}
    assert upstream.retrieve_thread(thread.thread_id).metadata == expected
    thread.refresh_from_db()
    assert thread.metadata == expected


def test_edit_two_metadata_pairs_without_javascript(
    new_page, log_in, user, api_key, make_thread, upstream
):
    page = log_in(new_page(java_script_enabled=False), user)
    thread = make_thread(api_key, label="Plain edit", metadata={})
    page.goto(f"/threads/{thread.pk}/edit/")
    page.get_by_label("Key of pair 1").fill("stage")
    page.get_by_label("Value of pair 1").fill("draft")
    page.get_by_label("File search vector store id").fill("vs_1")
    page.get_by_role("button", name="Add a pair").click()  # a form submit: the page comes back

    expect(page).to_have_url(re.compile(rf"/threads/{thread.pk}/edit/$"))
    expect(page.get_by_label("Key of pair 1")).to_have_value("stage")
    expect(page.get_by_label("Value of pair 1")).to_have_value("draft")
    expect(page.get_by_label("File search vector store id")).to_have_value("vs_1")
    page.get_by_label("Key of pair 2").fill("owner")
    page.get_by_label("Value of pair 2").fill("alice")
    page.get_by_role("button", name="Save").click()

    expect(page).to_have_url(re.compile(rf"/threads/{thread.pk}/$"))
    expect(page.locator(".messages")).to_contain_text(f"Saved thread {thread.thread_id}")
    live = upstream.retrieve_thread(thread.thread_id)
    assert live.metadata == {"stage": "draft", "owner": "alice"}
    assert live.tool_resources["file_search"] == {"vector_store_ids": ["vs_1"]}


def test_enter_in_a_pair_saves_rather_than_adding_a_pair(user_page, api_key, make_thread, upstream):
    page = user_page
    thread = make_thread(api_key, label="Enter", metadata={"stage": "draft"})
    page.goto(f"/threads/{thread.pk}/edit/")
    page.get_by_label("Value of pair 1").fill("final")
    page.get_by_label("Value of pair 1").press("Enter")

    expect(page).to_have_url(re.compile(rf"/threads/{thread.pk}/$"))
    assert upstream.retrieve_thread(thread.thread_id).metadata == {"stage": "final"}


def test_delete_from_the_list_after_confirming(user_page, api_key, make_thread, emulator):
    page = user_page
    kept = make_thread(api_key, label="Keep me")
    doomed = make_thread(api_key, label="Delete me")
    page.goto("/")
    row = page.locator(f"#thread-{doomed.pk}")
    delete = row.get_by_role("button", name=re.compile("^Delete"))

    questions = []
    page.once("dialog", lambda dialog: (questions.append(dialog.message), dialog.dismiss()))
    delete.click()
    assert questions == ["Delete “Delete me” upstream? This cannot be undone."]
    expect(row).to_be_visible()
    assert _deletes(emulator) == []

    page.on("dialog", lambda dialog: dialog.accept())
    delete.click()
    expect(row).to_have_count(0)
    expect(page.locator("#toasts")).to_contain_text("Deleted “Delete me”.")
    expect(page.locator(f"#thread-{kept.pk}")).to_be_visible()
    assert _deletes(emulator) == [f"/v1/threads/{doomed.thread_id}"]

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Audit log").click()
    events = page.get_by_role("row", name=re.compile(doomed.thread_id))
    expect(events.filter(has_text="Thread deletion outcome")).to_contain_text("Success")
    expect(events.filter(has_text="Thread deletion requested")).to_be_visible()


def test_delete_without_javascript(new_page, log_in, user, api_key, make_thread, live_server):
    page = log_in(new_page(java_script_enabled=False), user)
    thread = make_thread(api_key, label="Delete me plainly")
    page.goto("/")
    page.locator(f"#thread-{thread.pk}").get_by_role("button", name=re.compile("^Delete")).click()

    expect(page).to_have_url(re.compile(rf"/threads/{thread.pk}/delete/\??$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Delete this thread?")
    expect(page.get_by_text(thread.thread_id)).to_be_visible()
    page.get_by_role("button", name="Delete thread").click()

    expect(page).to_have_url(live_server.url + "/")
    expect(page.locator(".messages")).to_contain_text("Deleted “Delete me plainly”.")
    expect(page.locator(f"#thread-{thread.pk}")).to_have_count(0)
    thread.refresh_from_db()
    assert thread.state == TrackedThread.State.DELETED
    outcome = AuditEvent.objects.get(action=AuditEvent.Action.THREAD_DELETED)
    assert outcome.outcome == AuditEvent.Outcome.SUCCESS


def _tab_to(page, locator, limit=40):
    """Press Tab until `locator` has the focus (at most `limit` times)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if locator.evaluate("element => element === document.activeElement"):
            return
    pytest.fail(f"{locator} never got the focus after {limit} presses of Tab")


def test_the_keyboard_alone_finds_and_opens_a_thread(user_page, api_key, make_thread):
    page = user_page
    make_thread(api_key, label="First")
    wanted = make_thread(api_key, label="Second")
    page.goto("/")

    page.keyboard.press("Tab")
    expect(page.get_by_role("link", name="Skip to content")).to_be_focused()
    search = page.get_by_label("Search")
    _tab_to(page, search)
    page.keyboard.type("second")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_count(1)

    _tab_to(page, page.get_by_role("link", name="Second"))
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(rf"/threads/{wanted.pk}/$"))
    expect(page.get_by_role("heading", level=1)).to_have_text("Second")


@pytest.fixture
def sortable(user, other_user, api_key, make_key, make_team):
    """A personal thread and two of team Blue's, one tracked by bob, made on three days."""
    team = make_team("Blue", {user: "member", other_user: "member"})
    team_key = make_key(team=team, label="Blue key", created_by=user)

    def track(key, label, day, tracked_by):
        return TrackedThread.objects.create(
            api_key=key,
            thread_id=f"thread_sortable_{day}",
            label=label,
            tracked_by=tracked_by,
            upstream_created_at=datetime(2026, 3, day, 12, tzinfo=UTC),
        )

    return {
        "personal": track(api_key, "Zeta personal", 3, user),
        "beta": track(team_key, "beta team", 2, other_user),
        "alpha": track(team_key, "Alpha team", 1, user),
        "team": team,
    }


def test_filter_and_sort_the_list_without_a_page_load(user_page, sortable, check_accessibility):
    page = user_page
    page.goto("/")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_text([re.compile("Zeta"), re.compile("beta"), re.compile("Alpha")])
    _mark_document(page)

    page.get_by_label("Team", exact=True).select_option(label="Blue")
    expect(rows).to_have_count(2)
    page.get_by_label("Sort", exact=True).select_option(label="Label A–Z")  # noqa: RUF001
    expect(rows).to_have_text([re.compile("Alpha team"), re.compile("beta team")])
    expect(page).to_have_url(re.compile(rf"team={sortable['team'].pk}.*sort=label"))
    page.get_by_label("Tracked by", exact=True).fill("BOB")
    expect(rows).to_have_text([re.compile("beta team")])
    page.get_by_label("Created from (UTC)", exact=True).fill("2026-03-03")
    expect(page.get_by_text("No threads match these filters")).to_be_visible()
    page.get_by_label("Created from (UTC)", exact=True).fill("2026-03-02")
    expect(rows).to_have_text([re.compile("beta team")])
    _assert_same_document(page)

    check_accessibility(page, "threads list, filtered with htmx")
    page.emulate_media(color_scheme="dark")
    check_accessibility(page, "threads list, filtered with htmx")


def test_filter_and_sort_without_javascript(new_page, log_in, user, sortable):
    page = log_in(new_page(java_script_enabled=False), user)
    page.goto("/")
    page.get_by_label("Sort", exact=True).select_option(label="Oldest first")
    page.get_by_label("Created to (UTC)", exact=True).fill("2026-03-02")
    page.get_by_role("button", name="Filter").click()

    expect(page).to_have_url(re.compile(r"date_to=2026-03-02.*sort=oldest"))
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_text([re.compile("Alpha team"), re.compile("beta team")])
    expect(page.get_by_label("Sort", exact=True)).to_have_value("oldest")

    page.goto("/?date_from=2026-02-30&date_to=10000-01-01")
    alert = page.get_by_role("alert")
    expect(alert).to_contain_text("These filters cannot be used, so nothing is shown")
    expect(alert).to_contain_text("Created from (UTC): Enter a valid date")
    expect(alert).to_contain_text("Created to (UTC): Enter a valid date")
    expect(rows).to_have_count(0)  # (axe, which needs scripts, checks this page in test_pages)
