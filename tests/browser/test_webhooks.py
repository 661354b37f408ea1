"""In the browser: a webhook endpoint registered on its page (the secret shown once), a
delivery to a real HTTPS receiver seen on the endpoint's page, and "send again"; every page
checked with axe-core in light and dark."""

from playwright.sync_api import expect
from standardwebhooks import Webhook

from threads_app.models import WebhookDelivery
from threads_app.services import webhooks


def _check_both_schemes(page, check_accessibility, name):
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        check_accessibility(page, f"{name} ({scheme})")
    page.emulate_media(color_scheme="light")


def test_an_endpoint_is_registered_and_its_deliveries_seen(
    user_page, user, webhook_receiver, check_accessibility
):
    page = user_page
    page.goto("/overview/")
    page.get_by_role("link", name="Webhooks").click()
    expect(page.get_by_text("No webhook endpoints yet")).to_be_visible()
    _check_both_schemes(page, check_accessibility, "webhooks, none yet")
    page.get_by_role("link", name="Register an endpoint").click()
    _check_both_schemes(page, check_accessibility, "register an endpoint")
    page.get_by_label("URL").fill(webhook_receiver.url())
    page.get_by_label("Description").fill("Pager bridge")
    page.get_by_label("thread.deleted", exact=False).check()
    page.get_by_role("button", name="Register endpoint").click()

    secret = page.get_by_role("textbox", name="Secret").input_value()
    assert secret.startswith("whsec_")
    _check_both_schemes(page, check_accessibility, "the new secret")
    page.get_by_role("link", name="Go to the endpoint").click()
    expect(page.get_by_text("Nothing sent yet")).to_be_visible()
    assert secret not in page.content()

    webhooks.notify(event="thread.deleted", team=None, owner=user, data={"thread_id": "t_1"})
    webhooks.run_due_deliveries()
    page.reload()
    row = page.locator("#deliveries tbody tr")
    expect(row).to_have_count(1)
    expect(row.get_by_text("delivered")).to_be_visible()
    expect(row.get_by_text("thread.deleted")).to_be_visible()
    _check_both_schemes(page, check_accessibility, "an endpoint with a delivery")
    [received] = webhook_receiver.requests
    assert Webhook(secret).verify(received.body, received.headers)["data"] == {"thread_id": "t_1"}

    row.get_by_role("button", name="Send again").click()
    expect(page.get_by_text("Sending the thread.deleted message again")).to_be_visible()
    expect(page.locator("#deliveries tbody tr").get_by_text("pending")).to_be_visible()
    webhooks.run_due_deliveries()
    assert WebhookDelivery.objects.get().attempts == 2
    assert len(webhook_receiver.requests) == 2
    # The list refreshes itself while a delivery is pending: no reload needed.
    expect(page.locator("#deliveries tbody tr").get_by_text("delivered")).to_be_visible(
        timeout=15_000
    )
