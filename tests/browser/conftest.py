"""Playwright driving Debian's Chromium against pytest-django's live server and the emulator.

Every page a test opens is watched: a console error (a Content Security Policy violation, a
failed load) or an uncaught JavaScript error on any of them fails the test (at teardown).
"""

import os
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "screenshots"
WIDTHS = {"desktop": 1280, "mobile": 375}
SERIOUS = {"serious", "critical"}
_AXE_RUNS = pytest.StashKey[set]()


def _in_ci():
    return os.environ.get("CI", "").lower() in {"1", "true", "yes"}


@pytest.fixture(scope="package")
def browser():
    if not CHROMIUM.exists():
        message = f"Chromium not found at {CHROMIUM}: install it with `apt-get install chromium`."
        if _in_ci():
            pytest.fail(message + " CI must install it (see .ci/run).")
        pytest.skip(message)
    # Playwright's sync API runs an event loop in this thread, so Django would refuse the ORM
    # calls the tests make to set up data. Allowed for the browser tests only.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    from playwright.sync_api import sync_playwright

    try:
        with sync_playwright() as playwright:
            chromium = playwright.chromium.launch(
                executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
            )
            yield chromium
            chromium.close()
    finally:
        # Django keeps a connection per context, and Playwright's greenlets bring contexts of
        # their own: the connection left in this one can hold a stale schema, as others dropped
        # and re-created the audit triggers meanwhile. SQLite trips over it ("trigger … already
        # exists") when the next test's teardown re-installs them; a fresh one reads it anew.
        connection.close()
        if previous is None:
            del os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"]
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


def _watch(page, problems):
    """Collect the console errors (CSP violations, failed loads) and uncaught exceptions of
    `page` into `problems`."""

    def on_console(message):
        if message.type == "error":
            problems.append(f"console error on {page.url}: {message.text}")

    page.on("console", on_console)
    page.on("pageerror", lambda error: problems.append(f"JavaScript error on {page.url}: {error}"))


@pytest.fixture
def page_problems():
    """Console errors (a CSP violation is one) and uncaught exceptions seen so far."""
    return []


@pytest.fixture
def new_page(browser, live_server, page_problems):
    """Open pages in fresh contexts (separate cookies), closed at the end of the test."""
    contexts = []

    def open_page(width=WIDTHS["desktop"], java_script_enabled=True, color_scheme="light"):
        context = browser.new_context(
            base_url=live_server.url,
            viewport={"width": width, "height": 900},
            java_script_enabled=java_script_enabled,
            color_scheme=color_scheme,
        )
        context.set_default_timeout(10_000)
        contexts.append(context)
        page = context.new_page()
        _watch(page, page_problems)
        return page

    yield open_page
    for context in contexts:
        context.close()
    assert not page_problems, "\n".join(page_problems)


@pytest.fixture
def page(new_page):
    return new_page()


@pytest.fixture
def log_in(live_server):
    """Log `user` in by giving the page's context a session cookie, then open the home page.

    The login form itself is tested once (test_accounts.py); skipping it elsewhere saves a
    page load and a POST per user.
    """

    def log_in_as(page, user):
        client = Client()
        client.force_login(user)
        session = client.cookies[settings.SESSION_COOKIE_NAME].value
        page.context.add_cookies(
            [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
        )
        page.goto("/")
        return page

    return log_in_as


@pytest.fixture
def user_page(page, user, log_in):
    """A page logged in as `user` (alice)."""
    return log_in(page, user)


@pytest.fixture
def screenshot():
    """Save a full-page screenshot of the page at both widths (output folder is git-ignored)."""

    def take(page, name):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        original = page.viewport_size
        for label, width in WIDTHS.items():
            page.set_viewport_size({"width": width, "height": 900})
            page.screenshot(path=SCREENSHOTS / f"{name}-{label}.png", full_page=True)
        page.set_viewport_size(original)

    return take


@pytest.fixture
def check_accessibility(request):
    """Run axe-core over the page; fail on any violation rated serious or critical.

    Every run is counted (page name, colour scheme) for the end-of-run summary.
    """
    from axe_playwright_python.sync_playwright import Axe

    runs = request.config.stash.setdefault(_AXE_RUNS, set())

    def check(page, name):
        dark = page.evaluate("matchMedia('(prefers-color-scheme: dark)').matches")
        scheme = "dark" if dark else "light"
        results = Axe().run(page)
        runs.add((name, scheme))
        serious = [v for v in results.response["violations"] if v["impact"] in SERIOUS]
        assert not serious, f"{name} ({page.url}, {scheme}):\n" + "\n".join(
            results.generate_report(violation["id"]) for violation in serious
        )

    return check


def pytest_terminal_summary(terminalreporter, config):
    runs = config.stash.get(_AXE_RUNS, None)
    if runs:
        pages = {name for name, _ in runs}
        terminalreporter.write_line(
            f"axe-core: {len(pages)} pages checked ({len(runs)} runs in light and dark mode)"
        )
