"""The "Limits…" section of a trusted network's Add form, in a real browser (issue 15)."""

import pytest
from playwright.sync_api import expect

from policy.models import TrustedNetwork
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_limits_are_folded_away_until_opened_and_saved_with_the_entry(new_page, editor):
    page = new_page()
    log_in(page, "erin")
    page.get_by_role("link", name="Routing Restrictions").first.click()
    page.locator("#list-trusted").get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("10.1.0.0/16")
    limits = page.locator("details.limits")
    expect(page.get_by_label("Messages per hour")).to_be_hidden()  # closed until asked for
    limits.locator("summary", has_text="Limits…").click()
    page.get_by_label("Messages per hour").fill("0")
    page.get_by_role("button", name="OK").click()
    # The error opens the section again beside the field.
    expect(page.get_by_role("alert")).to_contain_text("greater than or equal to 1")
    page.get_by_label("Messages per hour").fill("100")
    page.get_by_label("Allowed sender domains").fill("example.com")
    page.get_by_label("Relay only over TLS (STARTTLS)").check()
    page.get_by_label("Owner").fill("ops@example.com")
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#list-trusted")).to_contain_text("10.1.0.0/16")
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#verdict")).to_be_visible()
    network = TrustedNetwork.objects.get()
    assert (network.rate_limit_per_hour, network.allowed_sender_domains, network.require_tls) == (
        100,
        ["example.com"],
        True,
    )
    assert network.owner == "ops@example.com"
