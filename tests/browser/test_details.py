"""In the browser: the details that make the dashboard pleasant (toasts, loading indicators,
relative times, copy buttons, dark mode, visible focus)."""

import re

import pytest
from playwright.sync_api import expect


def _hold(page, url_pattern):
    """Hold back the browser's requests to `url_pattern`; the caller lets them through."""
    held = []
    page.route(url_pattern, lambda route: held.append(route))
    return held


def _release(held):
    assert len(held) == 1
    held.pop().continue_()


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
    page.on("dialog", lambda dialog: dialog.accept())

    page.locator(f"#thread-{thread.pk}").get_by_role("button", name=re.compile("^Delete")).click()
    expect(spinner).to_have_css("opacity", "1")
    _release(held)
    expect(page.locator(f"#thread-{thread.pk}")).to_have_count(0)
    expect(page.locator("#toasts .toast.success")).to_have_text("Deleted “Slow delete”.")


def test_a_failed_delete_keeps_the_row_and_the_toast_says_why(
    user_page, api_key, make_thread, emulator
):
    page = user_page
    thread = make_thread(api_key, label="Stubborn")
    emulator.add_fault("DELETE", "*", "status", status=500)
    page.goto("/")
    page.on("dialog", lambda dialog: dialog.accept())

    row = page.locator(f"#thread-{thread.pk}")
    row.get_by_role("button", name=re.compile("^Delete")).click()
    toast = page.locator("#toasts .toast.error")
    expect(toast).to_contain_text("Could not delete “Stubborn”")
    expect(toast).to_contain_text("500")
    expect(toast).to_contain_text(re.compile(r"request req_\w+"))
    expect(row).to_be_visible()
    expect(row).to_contain_text("active")


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
    page.goto("/login/")
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
