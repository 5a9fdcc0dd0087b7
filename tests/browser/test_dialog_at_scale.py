"""The Routing Restrictions dialog with more entries than fit on a page: search boxes, OK/Cancel in view."""

import ipaddress

import pytest
from playwright.sync_api import expect

from policy.models import DeniedNetwork, TrustedNetwork
from policy.revisions import policy_change
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SITES = 150  # more than one page (100 rows) of the trusted list


@pytest.fixture
def many_networks(editor):
    with policy_change():
        for n in range(SITES):
            TrustedNetwork.objects.create(
                network=str(ipaddress.ip_network((0x0A000000 + (n << 8), 24))), description=f"site {n}"
            )
        TrustedNetwork.objects.create(network="192.0.2.0/24", description="Branch office")
        DeniedNetwork.objects.create(network="198.51.100.0/24", description="scanner farm")


def trusted_list(page):
    return page.locator("#list-trusted")


def search(page, kind, text):
    box = page.locator(f"#list-{kind}").get_by_role("searchbox")
    box.fill(text)
    box.press("Enter")


def test_search_finds_entries_by_address_and_by_description(new_page, many_networks):
    page = new_page()
    log_in(page, "erin")
    page.goto("/restrictions/")
    expect(trusted_list(page)).to_contain_text("Page 1 of 2")

    # An address finds the network that contains it, as the API's ?contains= does.
    search(page, "trusted", "10.0.42.7")
    expect(trusted_list(page).locator("tbody tr")).to_have_count(1)
    expect(trusted_list(page).locator("tbody")).to_contain_text("10.0.42.0/24")
    expect(trusted_list(page).get_by_role("status")).to_have_text("1 entry match “10.0.42.7”.")
    expect(trusted_list(page).get_by_role("searchbox")).to_have_value("10.0.42.7")

    # Other text searches the descriptions (and networks), case-insensitively.
    search(page, "trusted", "branch")
    expect(trusted_list(page).locator("tbody tr")).to_have_count(1)
    expect(trusted_list(page).locator("tbody")).to_contain_text("192.0.2.0/24")

    # Searching another list keeps this list's search.
    search(page, "denied", "198.51.100.9")
    expect(page.locator("#list-denied tbody")).to_contain_text("198.51.100.0/24")
    expect(trusted_list(page).locator("tbody tr")).to_have_count(1)
    expect(trusted_list(page).get_by_role("searchbox")).to_have_value("branch")

    # Nothing matches: the list says so; "Show all" brings every entry back.
    search(page, "trusted", "203.0.113.1")
    expect(trusted_list(page).locator("tbody")).to_contain_text("No entries match.")
    trusted_list(page).get_by_role("button", name="Show all").click()
    expect(trusted_list(page)).to_contain_text("Page 1 of 2")


def test_search_sees_pending_changes_and_keeps_the_draft(new_page, many_networks):
    page = new_page()
    log_in(page, "erin")
    page.goto("/restrictions/")
    trusted_list(page).get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("172.16.0.0/12")
    page.get_by_label("Description").fill("Lab")
    page.get_by_role("button", name="OK").click()
    expect(page.locator("p.pending")).to_contain_text("not saved yet")

    # The pending entry is found like a saved one, marked as added; the draft survives the search.
    search(page, "trusted", "172.16.5.5")
    expect(trusted_list(page).locator("tbody tr")).to_have_count(1)
    expect(trusted_list(page).locator("tr.added")).to_contain_text("172.16.0.0/12")
    expect(page.locator("p.pending")).to_contain_text("not saved yet")

    # Enter in a search box searches; it never presses OK.
    assert not TrustedNetwork.objects.filter(network="172.16.0.0/12").exists()
    page.locator("#dialog-buttons").get_by_role("button", name="OK").click()
    expect(page.locator("#verdict")).to_be_visible()
    assert TrustedNetwork.objects.filter(network="172.16.0.0/12", description="Lab").exists()


def test_ok_and_cancel_stay_in_view_and_the_skip_link_reaches_them(new_page, many_networks):
    page = new_page()
    log_in(page, "erin")
    page.goto("/restrictions/")
    bar = page.locator("#dialog-buttons")
    ok = bar.get_by_role("button", name="OK")
    cancel = bar.get_by_role("button", name="Cancel")

    # The page is many screens tall, yet OK and Cancel are on screen at the top and half-way down.
    height = page.viewport_size["height"]
    assert page.evaluate("document.documentElement.scrollHeight") > 2 * height
    for scroll in (0, 1500):
        page.evaluate(f"window.scrollTo(0, {scroll})")
        for button in (ok, cancel):
            expect(button).to_be_in_viewport()
            box = button.bounding_box()
            assert box["y"] >= 0 and box["y"] + box["height"] <= height

    # The skip link is hidden until focused, then leads the keyboard straight to OK.
    skip = page.get_by_role("link", name="Skip to OK/Cancel")
    page.evaluate("window.scrollTo(0, 0)")
    skip.focus()
    expect(skip).to_be_in_viewport()
    page.keyboard.press("Enter")
    expect(bar).to_be_focused()
    page.keyboard.press("Tab")
    expect(ok).to_be_focused()
    page.keyboard.press("Tab")
    expect(cancel).to_be_focused()


def test_pending_changes_show_in_the_bar_and_cancel_still_asks(new_page, many_networks):
    page = new_page()
    log_in(page, "erin")
    page.goto("/restrictions/")
    page.get_by_label("Hosts and clients that successfully authenticate").uncheck()
    trusted_list(page).get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("172.16.0.0/12")
    page.get_by_role("button", name="OK").click()
    bar = page.locator("#dialog-buttons")
    expect(bar).to_contain_text("2 pending changes")
    bar.get_by_role("button", name="Cancel").click()
    expect(page.locator("#confirm-cancel")).to_contain_text("Discard 2 pending changes?")
