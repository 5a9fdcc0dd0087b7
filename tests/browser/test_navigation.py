"""The main navigation: always shown on a desktop, folded behind "Menu" at phone width."""

import pytest
from playwright.sync_api import expect

from tests.browser.conftest import DESKTOP, log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

PHONE_390 = {"width": 390, "height": 844}


def test_phone_navigation_opens_from_the_menu_button(new_page, editor):
    page = new_page(PHONE_390)
    log_in(page, "erin")
    nav = page.get_by_role("navigation", name="Main")
    menu = page.get_by_role("button", name="Menu")

    expect(nav).to_be_hidden()
    expect(menu).to_have_attribute("aria-expanded", "false")
    # Folded, the top bar is one line, not five.
    assert page.locator(".topbar").bounding_box()["height"] < 80

    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    nav.get_by_role("link", name="Audit log").click()
    expect(page.get_by_role("heading", name="Audit log")).to_be_visible()
    expect(nav).to_be_hidden()  # a new page starts folded again


def test_desktop_navigation_is_always_open(new_page, editor):
    page = new_page(DESKTOP)
    log_in(page, "erin")
    expect(page.get_by_role("navigation", name="Main").get_by_role("link", name="Revisions")).to_be_visible()
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
