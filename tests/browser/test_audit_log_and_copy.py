"""The audit log at phone width (groups, dropdown filters, labelled cards, no overflow) and the Copy button."""

import re

import pytest
from playwright.sync_api import expect

from policy import audit
from policy.models import LocalDomain, TrustedNetwork
from policy.revisions import policy_change
from tests.browser.conftest import DESKTOP, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_390 = {"width": 390, "height": 844}


@pytest.fixture
def history(editor):
    """One bulk change of 30 networks with a long description, then one domain on its own."""
    with (
        audit.audit_context(source="web", user=editor, request_id="req-offices", reason="branch offices"),
        policy_change(),
    ):
        for n in range(30):
            TrustedNetwork.objects.create(
                network=f"2001:db8:{n:x}::/48",
                description="Headquarters-and-all-the-regional-branch-offices-of-the-company",
                created_by=editor,
            )
    with audit.audit_context(source="web", user=editor), policy_change():
        LocalDomain.objects.create(domain="example.com")


def scroll_width(page):
    return page.evaluate("document.documentElement.scrollWidth")


def label_of(cell):
    return cell.evaluate("td => getComputedStyle(td, '::before').content")


def test_audit_log_groups_filters_and_fits_a_phone(new_page, editor, history):
    page = new_page(PHONE_390)
    log_in(page, "erin")
    page.goto("/audit/")
    assert scroll_width(page) <= PHONE_390["width"]

    bulk = page.locator("table.audit details")
    expect(bulk).to_have_count(1)
    summary = bulk.locator("summary")
    expect(summary).to_contain_text("31 changes — 30 create trusted network, 1 publish policy revision")
    nested = bulk.locator("table tbody tr")
    expect(nested.first).to_be_hidden()
    summary.click()
    expect(nested).to_have_count(31)
    expect(nested.first).to_be_visible()
    assert scroll_width(page) <= PHONE_390["width"]

    # Each value of a card says what it is; the creator reads as a username, not an id.
    first = nested.nth(1)  # the newest network; the publish that closed the change comes first
    assert label_of(first.locator("td").nth(3)) == '"Action: "'
    assert label_of(first.locator("td").nth(5)) == '"Changes: "'
    expect(first.locator("td").nth(5)).to_contain_text("created_by: — → erin")
    # A long description wraps at its hyphens, never mid-letter; only tokens may break anywhere.
    assert first.locator("td").nth(5).evaluate("td => getComputedStyle(td).overflowWrap") == "normal"
    assert first.locator(".token").first.evaluate("e => getComputedStyle(e).overflowWrap") == "anywhere"

    # The publish of each change shows its hash shortened, with the whole hash in the title.
    page.get_by_label("Action").select_option("publish")
    page.get_by_role("button", name="Filter").click()
    expect(page.get_by_label("Action")).to_have_value("publish")
    digest = page.locator("code.hash").first
    expect(digest).to_have_text(re.compile(r"^[0-9a-f]{12}…$"))
    assert len(digest.get_attribute("title")) == 64
    assert scroll_width(page) <= PHONE_390["width"]

    page.get_by_label("Action").select_option("")
    page.get_by_label("Object type").select_option("local domain")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator("table.audit details")).to_have_count(0)
    expect(page.locator("table.audit > tbody > tr")).to_have_count(1)
    expect(page.locator("table.audit")).to_contain_text("example.com")


def test_new_api_key_copies_to_the_clipboard(browser, live_server, editor):
    # No bypass_csp: copy.js must work under the strict Content-Security-Policy.
    context = browser.new_context(viewport=DESKTOP, base_url=live_server.url)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    page = context.new_page()
    log_in(page, "erin")
    page.goto("/api-tokens/")
    page.locator("#id_name").fill("ansible on ops1")
    page.get_by_role("button", name="Create token").click()

    key = page.get_by_label("API key")
    expect(key).to_have_value(re.compile(r"^[0-9a-f]{12}\.\S{40,}$"))
    assert "monospace" in key.evaluate("e => getComputedStyle(e).fontFamily")
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).to_have_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == key.input_value()
    context.close()


def test_without_the_clipboard_api_copy_selects_the_key(new_page, editor):
    page = new_page(PHONE_390)
    page.add_init_script("Object.defineProperty(navigator, 'clipboard', {value: undefined})")
    log_in(page, "erin")
    page.goto("/api-tokens/")
    page.locator("#id_name").fill("relayd on mx2")
    page.get_by_role("button", name="Create token").click()
    page.get_by_role("button", name="Copy").click()
    expect(page.locator(".copy-status")).to_contain_text("press Ctrl-C")
    key = page.get_by_label("API key")
    expect(key).to_be_focused()
    selected = key.evaluate("e => e.value.slice(e.selectionStart, e.selectionEnd)")
    assert selected == key.input_value()
    assert scroll_width(page) <= PHONE_390["width"]
