"""Real Chromium (Debian's /usr/bin/chromium) driven by Playwright against the live test server."""

import os

import pytest
from playwright.sync_api import sync_playwright

from tests.conftest import PASSWORD

CHROMIUM = "/usr/bin/chromium"
# Without the background-networking flags Chromium keeps dialling out, which this closed network refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 375, "height": 740}

# Playwright's sync API runs an event loop in the test thread; Django then refuses ORM calls from
# that thread unless told that this is deliberate.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture(scope="package")
def browser():
    """Start Chromium once for the browser tests, and stop it after them.

    Package scope, not session: Playwright's sync API keeps an event loop running in this
    thread while it lives, and later tests (relayd's) call asyncio.run().
    """
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


@pytest.fixture
def new_page(browser, live_server):
    """Return a function that opens a fresh page of the given size, closed after the test."""
    contexts = []

    def open_page(viewport=DESKTOP):
        context = browser.new_context(viewport=viewport, base_url=live_server.url)
        context.set_default_timeout(10_000)
        contexts.append(context)
        return context.new_page()

    yield open_page
    for context in contexts:
        context.close()


def log_in(page, username):
    page.goto("/login/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/")
