"""In the browser: the details that make the dashboard pleasant (toasts, loading indicators,
relative times, copy buttons, dark mode, visible focus and where it goes, short announcements)."""

import re
from contextlib import contextmanager

import pytest
from playwright.sync_api import expect

from threads_app import audit
from threads_app.models import AuditEvent
from threads_app.services import bulk
from threads_app.views import audit as audit_views
from threads_app.views import threads as thread_views


def _hold(page, url_pattern):
    """Hold back the browser's requests to `url_pattern`; the caller lets them through."""
    held = []
    page.route(url_pattern, lambda route: held.append(route))
    return held


def _release(held):
    assert len(held) == 1
    held.pop().continue_()


@contextmanager
def _spinning(page, url_pattern, spinner):
    """`spinner` is hidden, and shows while the request to `url_pattern` that the block makes
    is under way; the request is then let through."""
    expect(spinner).to_have_css("opacity", "0")
    held = _hold(page, url_pattern)
    yield
    expect(spinner).to_have_css("opacity", "1")
    _release(held)
    page.unroute(url_pattern)


@pytest.fixture
def long_thread(api_key, make_thread):
    return make_thread(
        api_key,
        label="Long chat",
        messages=[{"role": "user", "content": f"message {n}"} for n in range(1, 26)],
    )


def test_loading_more_messages_shows_a_spinner_until_they_arrive(user_page, long_thread):
    page = user_page
    page.goto(f"/threads/{long_thread.pk}/")
    spinner = page.locator(".thread-messages .more .spinner")
    expect(spinner).to_have_css("opacity", "0")
    held = _hold(page, re.compile(r"/messages/\?after="))

    page.get_by_role("link", name="Load more").click()
    expect(spinner).to_have_css("opacity", "1")
    _release(held)
    expect(page.locator(".thread-messages .message-text")).to_have_count(25)
    expect(spinner).to_have_count(0)


def test_deleting_a_row_shows_its_spinner_then_a_toast(user_page, api_key, make_thread):
    page = user_page
    thread = make_thread(api_key, label="Slow delete")
    page.goto("/")
    spinner = page.locator(f"#thread-{thread.pk}-spinner")
    expect(spinner).to_have_css("opacity", "0")
    held = _hold(page, f"**/threads/{thread.pk}/delete/")

    page.locator(f"#thread-{thread.pk}").get_by_role("button", name=re.compile("^Delete")).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete thread").click()
    expect(spinner).to_have_css("opacity", "1")
    _release(held)
    expect(page.locator(f"#thread-{thread.pk}")).to_have_count(0)
    expect(page.locator("main .messages .message.success")).to_have_text("Deleted “Slow delete”.")


def test_a_failed_delete_keeps_the_row_and_the_toast_says_why(
    user_page, api_key, make_thread, emulator
):
    page = user_page
    thread = make_thread(api_key, label="Stubborn")
    emulator.add_fault("DELETE", "*", "status", status=500)
    page.goto("/")

    row = page.locator(f"#thread-{thread.pk}")
    row.get_by_role("button", name=re.compile("^Delete")).click()
    page.get_by_role("dialog").get_by_role("button", name="Delete thread").click()
    toast = page.locator("main .messages .message.error")
    expect(toast).to_contain_text("Could not delete “Stubborn”")
    expect(toast).to_contain_text("500")
    expect(toast).to_contain_text(re.compile(r"request req_\w+"))
    expect(row).to_be_visible()
    expect(row).to_contain_text("active")


def test_paging_the_thread_list_shows_a_spinner(user_page, api_key, make_thread, monkeypatch):
    monkeypatch.setattr(thread_views, "PAGE_SIZE", 1)
    make_thread(api_key, label="Older thread")
    make_thread(api_key, label="Newer thread")
    page = user_page
    page.goto("/")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_text([re.compile("Newer thread")])

    pager = page.get_by_role("navigation", name="Pages")
    spinner = page.locator("#pager-spinner")
    with _spinning(page, re.compile(r"/\?before="), spinner):
        pager.get_by_role("link", name="Older").click()
    expect(rows).to_have_text([re.compile("Older thread")])
    with _spinning(page, re.compile(r"/\?after="), spinner):
        pager.get_by_role("link", name="Newer").click()
    expect(rows).to_have_text([re.compile("Newer thread")])


def test_paging_and_filtering_the_audit_log_show_a_spinner(user_page, user, api_key, monkeypatch):
    monkeypatch.setattr(audit_views, "PAGE_SIZE", 1)
    success = AuditEvent.Outcome.SUCCESS
    audit.record(action=AuditEvent.Action.KEY_ADDED, outcome=success, actor=user, api_key=api_key)
    audit.record(action=AuditEvent.Action.KEY_ROTATED, outcome=success, actor=user, api_key=api_key)
    page = user_page
    page.goto("/audit/")
    rows = page.locator("#rows tbody tr")
    expect(rows).to_have_text([re.compile("Key rotated")])

    pager = page.get_by_role("navigation", name="Audit log pages")
    with _spinning(page, re.compile(r"/audit/\?before="), page.locator("#audit-pager-spinner")):
        pager.get_by_role("link", name="Older events").click()
    expect(rows).to_have_text([re.compile("Key added")])

    with _spinning(page, re.compile(r"/audit/\?.*actor=nobody"), page.locator("#filter-spinner")):
        page.get_by_label("Actor").fill("nobody")
    expect(page.get_by_text("No audit events match these filters")).to_be_visible()


def test_trying_messages_again_shows_a_spinner(user_page, long_thread, emulator):
    page = user_page
    page.goto(f"/threads/{long_thread.pk}/")
    emulator.add_fault("GET", f"/v1/threads/{long_thread.thread_id}/messages", status=500)
    page.get_by_role("link", name="Load more").click()
    expect(page.get_by_role("alert")).to_contain_text("The messages could not be loaded")

    with _spinning(page, re.compile(r"/messages/\?after="), page.locator(".more .spinner")):
        page.get_by_role("link", name="Try again").click()
    expect(page.locator(".thread-messages .message-text")).to_have_count(25)
    expect(page.get_by_role("alert")).to_have_count(0)


def test_a_bulk_delete_shows_a_spinner_then_its_progress(user_page, api_key, make_thread):
    # No worker runs here: the job's task stays queued, and the test runs the job itself.
    threads = [make_thread(api_key, label=f"Bulk {n}") for n in (1, 2)]
    page = user_page
    page.goto("/threads/bulk-delete/?" + "&".join(f"thread={t.pk}" for t in threads))

    with _spinning(page, "**/threads/bulk-delete/", page.locator("#bulk-delete-spinner")):
        page.get_by_role("button", name="Delete 2 threads").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(re.compile(r"^Bulk delete #\d+$"))
    progress = page.get_by_role("region", name=re.compile("^Waiting for a worker"))
    expect(progress.locator(".spinner")).to_be_visible()
    job_id = int(page.url.rstrip("/").rsplit("/", 1)[1])

    bulk.run_bulk_delete(job_id)
    finished = page.get_by_role("region", name="Finished")
    expect(finished).to_contain_text("2 of 2 threads done")
    expect(finished.locator(".spinner")).to_have_count(0)


def test_deleting_a_row_hands_the_keyboard_focus_on(user_page, api_key, make_thread):
    first = make_thread(api_key, label="First")
    second = make_thread(api_key, label="Second")
    page = user_page
    page.goto("/")
    confirm = page.get_by_role("dialog").get_by_role("button", name="Delete thread")

    # Newest first: deleting the second thread's row moves the focus to the first's link,
    # and keeps it there when the list refreshes itself (a new #rows element).
    page.locator("#rows").evaluate("element => element.classList.add('before-delete')")
    page.locator(f"#thread-{second.pk}").get_by_role("button", name=re.compile("^Delete")).focus()
    page.keyboard.press("Enter")
    confirm.press("Enter")  # the dialog closes, the focus goes back to its row
    expect(page.locator(f"#thread-{second.pk}")).to_have_count(0)
    expect(page.locator("#rows.before-delete")).to_have_count(0)
    expect(page.get_by_role("link", name="First")).to_be_focused()

    # The last row: the search box takes the focus.
    page.locator(f"#thread-{first.pk}").get_by_role("button", name=re.compile("^Delete")).focus()
    page.keyboard.press("Enter")
    confirm.press("Enter")
    expect(page.get_by_text("No threads tracked yet")).to_be_visible()
    expect(page.get_by_label("Search")).to_be_focused()


def test_searching_announces_how_many_threads_not_the_whole_table(user_page, api_key, make_thread):
    make_thread(api_key, label="Invoice dispute")
    make_thread(api_key, label="Invoice copy")
    make_thread(api_key, label="Shipping delay")
    page = user_page
    page.goto("/")
    status = page.get_by_role("status").and_(page.locator("#rows-status"))
    expect(status).to_have_text("")
    assert page.locator("[aria-live]").evaluate_all(
        "elements => elements.map(element => element.id)"
    ) == ["toasts"]

    page.get_by_label("Search").fill("invoice")
    expect(status).to_have_text("2 threads shown")
    page.get_by_label("Search").fill("shipping")
    expect(status).to_have_text("1 thread shown")
    page.get_by_label("Search").fill("nothing like this")
    expect(status).to_have_text("No threads shown")
    assert status.bounding_box()["width"] <= 1  # for screen readers only


def test_relative_times_with_the_exact_time_on_hover(user_page, long_thread):
    page = user_page
    page.goto(f"/threads/{long_thread.pk}/")
    created = page.get_by_role("region", name="Live thread").locator("time").first
    expect(created).to_have_text(re.compile(r"^(now|\d+ seconds? ago)$"))
    expect(created).to_have_attribute("title", re.compile(str(long_thread.tracked_at.year)))
    expect(created).to_have_attribute("datetime", re.compile(r"^\d{4}-\d\d-\d\dT"))


def test_copy_button_copies_the_thread_id(user_page, long_thread):
    page = user_page
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    page.goto("/")
    page.locator(f"#thread-{long_thread.pk}").get_by_role(
        "button", name=re.compile("^Copy")
    ).click()
    expect(page.locator("#toasts")).to_contain_text(f"Copied {long_thread.thread_id}")
    assert page.evaluate("navigator.clipboard.readText()") == long_thread.thread_id


@pytest.mark.parametrize(
    ("scheme", "background"), [("light", "rgb(247, 247, 249)"), ("dark", "rgb(20, 22, 26)")]
)
def test_follows_the_system_colour_scheme(new_page, scheme, background):
    page = new_page(color_scheme=scheme)
    page.goto("/accounts/login/")
    expect(page.locator("body")).to_have_css("background-color", background)


def test_the_focus_is_visible_and_the_skip_link_works(user_page):
    page = user_page
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_in_viewport()
    expect(skip).to_have_css("outline-style", "solid")
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
