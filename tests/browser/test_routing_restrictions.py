"""The Routing Restrictions dialog in a real browser, as an admin uses it."""

import pytest
from playwright.sync_api import expect

from policy.models import RoutingRestrictions, TrustedNetwork
from tests.browser.conftest import PHONE, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def open_dialog(page):
    page.get_by_role("link", name="Routing Restrictions").first.click()
    expect(page.get_by_role("heading", name="Routing Restrictions")).to_be_visible()


def trusted_list(page):
    return page.locator("#list-trusted")


def test_add_edit_remove_and_localhost(new_page, editor):
    page = new_page()
    log_in(page, "erin")
    open_dialog(page)

    # Add a network as "IP address" plus "Subnet mask", as in the dialog.
    trusted_list(page).get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("10.1.0.0")
    page.get_by_label("Subnet mask").fill("255.255.0.0")
    page.get_by_label("Description").fill("Head office")
    page.get_by_role("button", name="OK").click()
    expect(trusted_list(page)).to_contain_text("10.1.0.0/16")
    expect(page.get_by_role("status")).to_contain_text("not saved yet")

    # An address with host bits set gets a message that suggests the fix, and nothing is added.
    trusted_list(page).get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("192.168.1.5")
    page.get_by_label("Subnet mask").fill("255.255.255.0")
    page.get_by_role("button", name="OK").click()
    expect(page.get_by_role("alert")).to_contain_text("Did you mean 192.168.1.0/24?")
    page.get_by_role("button", name="Cancel").click()
    expect(trusted_list(page)).not_to_contain_text("192.168.1")

    # OK saves the draft.
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#verdict")).to_contain_text("Only 1 trusted network")
    assert TrustedNetwork.objects.get().network == "10.1.0.0/16"

    # Remove it again, then add localhost with one click.
    open_dialog(page)
    # Remove asks first in a native dialog: "Keep it" changes nothing, "Remove" marks it removed.
    trusted_list(page).get_by_role("button", name="Remove 10.1.0.0/16").click()
    confirm = page.get_by_role("dialog")
    expect(confirm).to_contain_text("Remove 10.1.0.0/16 (Head office) from “Hosts and clients with these IP")
    confirm.get_by_role("button", name="Keep it").click()
    expect(confirm).to_be_hidden()
    expect(trusted_list(page).locator("tr.removed")).to_have_count(0)
    trusted_list(page).get_by_role("button", name="Remove 10.1.0.0/16").click()
    confirm.get_by_role("button", name="Remove").click()
    expect(trusted_list(page).locator("tr.removed")).to_contain_text("10.1.0.0/16")
    trusted_list(page).get_by_role("button", name="Add localhost").click()
    expect(trusted_list(page)).to_contain_text("127.0.0.1/32")
    expect(trusted_list(page)).to_contain_text("::1/128")
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#verdict")).to_contain_text("Only 2 trusted networks")
    assert sorted(TrustedNetwork.objects.values_list("network", flat=True)) == ["127.0.0.1/32", "::1/128"]


def test_checkbox_survives_add_and_cancel_discards(new_page, editor):
    page = new_page()
    log_in(page, "erin")
    open_dialog(page)
    page.get_by_label("Hosts and clients that successfully authenticate").uncheck()
    trusted_list(page).get_by_role("button", name="Add localhost").click()
    expect(page.get_by_label("Hosts and clients that successfully authenticate")).not_to_be_checked()
    page.get_by_role("button", name="Cancel").click()
    # Cancel asks first, and "Keep editing" keeps every pending change, the unticked box included.
    expect(page.locator("#confirm-cancel")).to_contain_text("Discard 3 pending changes?")
    page.get_by_role("button", name="Keep editing").click()
    expect(page.get_by_label("Hosts and clients that successfully authenticate")).not_to_be_checked()
    expect(trusted_list(page)).to_contain_text("127.0.0.1")
    page.get_by_role("button", name="Cancel").click()
    page.get_by_role("button", name="Discard changes").click()
    expect(page.get_by_label("Hosts and clients that successfully authenticate")).to_be_checked()
    expect(trusted_list(page)).not_to_contain_text("127.0.0.1")
    assert RoutingRestrictions.load().allow_authenticated is True
    assert not TrustedNetwork.objects.exists()


def test_viewer_sees_no_edit_controls(new_page, viewer):
    TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
    page = new_page()
    log_in(page, "vic")
    open_dialog(page)
    expect(trusted_list(page)).to_contain_text("10.0.0.0/8")
    expect(page.get_by_role("button", name="OK")).to_have_count(0)
    expect(page.get_by_role("button", name="Add localhost")).to_have_count(0)
    expect(page.get_by_role("checkbox").first).to_be_disabled()


def test_dialog_fits_a_phone(new_page, editor):
    TrustedNetwork.objects.create(network="2001:db8:abcd:1234::/64", description="a long IPv6 network description")
    page = new_page(PHONE)
    log_in(page, "erin")
    page.goto("/restrictions/")
    expect(page.get_by_role("button", name="OK")).to_be_visible()
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 0, f"page is {overflow}px wider than a 375px phone screen"


def test_tester_shows_the_effect_of_pending_changes(new_page, editor):
    page = new_page()
    log_in(page, "erin")
    open_dialog(page)
    tester = page.locator("#tester")
    tester.get_by_label("Client address").fill("192.0.2.1")
    tester.get_by_label("Recipient").fill("someone@example.net")
    tester.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("Refused")

    trusted_list(page).get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("192.0.2.0/24")
    page.get_by_role("button", name="OK").click()
    tester.get_by_label("Client address").fill("192.0.2.1")
    tester.get_by_label("Recipient").fill("someone@example.net")
    tester.get_by_role("button", name="Check").click()
    expect(page.locator("#check-result")).to_contain_text("may relay")
    expect(page.locator("#check-result")).to_contain_text("with pending changes")
    expect(page.locator("#check-result")).to_contain_text("trusted network 192.0.2.0/24")
    assert not TrustedNetwork.objects.exists()
