"""Reputation in a real browser, against the fake DNSBL on loopback: the issue's "done when"."""

import re

import pytest
from playwright.sync_api import expect

from policy.models import WatchedAddress
from tests.browser.conftest import PHONE, log_in
from tests.dnsbl_server import CLEAR, DELIST_URL, LISTED, REASON, REFUSED, SILENT, ZONE, watch

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RED = "rgb(179, 38, 30)"  # --bad in relayadmin.css


def cell(page, address):
    return page.locator(f'tr[data-address="{address}"] td[data-zone="{ZONE}"]')


def test_a_listed_address_turns_the_dashboard_card_red_with_reason_and_delisting_link(new_page, editor, fake_zone):
    page = new_page()
    log_in(page, "erin")
    expect(page.locator("#reputation")).to_contain_text("No addresses watched yet.")
    page.get_by_role("link", name="Reputation", exact=True).click()

    # A private address is refused with the reason; public ones are watched.
    page.get_by_label("Address").fill("192.168.1.25")
    page.get_by_role("button", name="Watch").click()
    expect(page.get_by_role("alert")).to_contain_text("DNSBLs only list public addresses")
    for address in (LISTED, CLEAR, REFUSED, SILENT):
        page.get_by_label("Address").fill(address)
        page.get_by_role("button", name="Watch").click()
        expect(page.locator(f'tr[data-address="{address}"]')).to_contain_text("not checked yet")

    # Check now returns at once; the page follows the background check and shows its results.
    page.get_by_role("button", name="Check now").click()
    expect(page.locator("#reputation-check [role=status]")).to_contain_text("Last check", timeout=15_000)
    expect(page.locator("#reputation-check [role=status]")).to_contain_text("4 queries, 1 listed, 2 failed")
    expect(cell(page, LISTED)).to_contain_text("listed")
    expect(cell(page, LISTED)).to_contain_text(REASON)
    expect(cell(page, LISTED).get_by_role("link", name="Request delisting")).to_have_attribute("href", DELIST_URL)
    expect(cell(page, CLEAR)).to_contain_text("clear")
    expect(cell(page, REFUSED)).to_contain_text("query refused")
    expect(cell(page, REFUSED)).to_contain_text("127.255.255.254")
    expect(cell(page, SILENT)).to_contain_text("timeout")
    expect(cell(page, SILENT)).to_contain_text("no answer from 127.0.0.1:")
    for address in (CLEAR, REFUSED, SILENT):
        expect(cell(page, address)).not_to_contain_text("Request delisting")

    # The dashboard card is red, names the address, the list and the reason, and links to the delisting page.
    page.get_by_role("link", name="Dashboard").click()
    card = page.locator("#reputation")
    expect(card).to_have_class(re.compile(r"\blisted\b"))
    expect(card).to_have_css("border-top-color", RED)
    expect(card).to_contain_text(f"{LISTED} on {ZONE}")
    expect(card).to_contain_text(REASON)
    expect(card.get_by_role("link", name="Request delisting")).to_have_attribute("href", DELIST_URL)
    # The refused query and the timeout are named as such, not as listings.
    expect(card.locator(".dnsbl-problems")).to_contain_text(f"{REFUSED} on {ZONE} (query refused)")
    expect(card.locator(".dnsbl-problems")).to_contain_text(f"{SILENT} on {ZONE} (timeout)")
    expect(card.locator(".dnsbl-listings")).not_to_contain_text(CLEAR)

    # History per address.
    page.get_by_role("link", name="Reputation…").click()
    page.get_by_role("link", name=LISTED).click()
    expect(page.locator("#dnsbl-events")).to_contain_text(ZONE)
    expect(page.locator("#dnsbl-events")).to_contain_text(REASON)


def test_viewers_see_results_but_no_check_button_and_a_clear_card_is_not_red(new_page, viewer, fake_zone):
    from policy import reputation

    watch(CLEAR)
    reputation.run_check()
    page = new_page(PHONE)
    log_in(page, "vic")
    card = page.locator("#reputation")
    expect(card).to_contain_text("None of 1 watched address is listed.")
    expect(card).not_to_have_css("border-top-color", RED)
    page.goto("/reputation/")
    expect(cell(page, CLEAR)).to_contain_text("clear")
    expect(page.get_by_role("button", name="Check now")).to_have_count(0)
    expect(page.get_by_role("button", name="Watch")).to_have_count(0)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert WatchedAddress.objects.count() == 1
