"""The Content-Security-Policy in real Chromium: our pages break no rule, and the API docs still work."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import log_in
from tests.conftest import PASSWORD

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PAGES = ["/", "/restrictions/", "/domains/", "/check/", "/revisions/", "/audit/", "/networks/import/", "/password/"]


def csp_violations(page) -> list[str]:
    """Collect what Chromium refused because of the policy, as it reports it on the console."""
    refused = []
    page.on("console", lambda message: refused.append(message.text) if "Content Security Policy" in message.text else 0)
    return refused


def test_our_pages_break_no_rule_of_the_policy(new_page, editor):
    page = new_page()
    refused = csp_violations(page)
    log_in(page, "erin")
    for url in PAGES:
        page.goto(url)
        page.wait_for_load_state("networkidle")
    assert refused == []


def test_a_user_changes_their_password_from_the_nav(new_page, viewer):
    page = new_page()
    log_in(page, "vic")
    page.get_by_role("link", name="Change password").click()
    page.get_by_label("Old password").fill(PASSWORD)
    page.get_by_label("New password:", exact=True).fill("a brand new passphrase 42")
    page.get_by_label("New password confirmation").fill("a brand new passphrase 42")
    page.get_by_role("button", name="Change my password").click()
    expect(page.get_by_role("heading", name="Password changed")).to_be_visible()
    viewer.refresh_from_db()
    assert viewer.check_password("a brand new passphrase 42")


def test_swagger_ui_renders_the_api_under_the_policy(new_page, viewer):
    page = new_page()
    refused = csp_violations(page)
    log_in(page, "vic")
    page.goto("/api/v1/schema/swagger-ui/")
    expect(page.get_by_text("relayadmin API").first).to_be_visible()
    expect(page.locator(".opblock-summary-path", has_text="/api/v1/trusted-networks/bulk/")).to_be_visible()
    assert [text for text in refused if "script" in text] == []
