"""The retention policy page in the browser: from the key list, preview, then enable (with
htmx and without JavaScript); accessible in light and dark mode."""

from datetime import timedelta

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from threads_app.models import AuditEvent, RetentionPolicy, TrackedThread


@pytest.fixture
def old_threads(api_key, make_thread):
    threads = [make_thread(api_key, label=f"Old chat {n}") for n in range(3)]
    TrackedThread.objects.filter(pk__in=[t.pk for t in threads]).update(
        upstream_created_at=timezone.now() - timedelta(days=400)
    )
    make_thread(api_key, label="Fresh chat")
    return threads


@pytest.mark.parametrize("java_script", [True, False], ids=["htmx", "no-js"])
def test_preview_then_enable(java_script, new_page, log_in, user, api_key, old_threads):
    page = log_in(new_page(java_script_enabled=java_script), user)
    page.goto("/keys/")
    page.get_by_role("link", name=f"Retention of {api_key.label}").click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Retention for “{api_key.label}”")
    # The page opens with the preview of the proposed days (90).
    expect(page.locator("#preview-count")).to_contain_text("3 threads would be deleted now")

    days = page.get_by_label("Delete threads older than (days)")
    days.fill("365")
    page.get_by_role("button", name="Save and enable").click()  # not previewed for 365 yet
    expect(page.get_by_role("alert")).to_have_text("Check the preview, then enable.")
    expect(page.get_by_role("heading", name="Preview: older than 365 days")).to_be_visible()
    assert not RetentionPolicy.objects.exists()

    days.fill("500")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-count")).to_contain_text("No thread would be deleted now")
    days.fill("365")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#preview-count")).to_contain_text("3 threads would be deleted now")
    expect(page.get_by_role("cell", name="Old chat 0")).to_be_visible()
    expect(page.get_by_role("cell", name="Fresh chat")).to_have_count(0)

    page.get_by_role("button", name="Save and enable").click()
    expect(page.get_by_text("threads older than 365 days are deleted").first).to_be_visible()
    policy = RetentionPolicy.objects.get()
    assert (policy.max_age_days, policy.enabled, policy.set_by) == (365, True, user)
    assert AuditEvent.objects.filter(action=AuditEvent.Action.RETENTION_ENABLED).count() == 1
    expect(page.get_by_role("button", name="Turn off")).to_be_visible()


def test_the_policy_page_is_accessible_light_and_dark(
    user_page, api_key, old_threads, check_accessibility, page_problems
):
    page = user_page
    page.goto(f"/keys/{api_key.pk}/retention/")
    expect(page.locator("#preview-count")).to_be_visible()
    check_accessibility(page, "retention policy")
    page.emulate_media(color_scheme="dark")
    assert page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
    check_accessibility(page, "retention policy")
    page.set_viewport_size({"width": 375, "height": 900})
    width = page.evaluate("document.scrollingElement.scrollWidth")
    assert width <= 376, f"the policy page is {width} px wide at 375 px"
    assert not page_problems
