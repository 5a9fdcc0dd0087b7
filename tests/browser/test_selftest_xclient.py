"""The self-test in Chromium (issue 13): with localhost trusted through the dialog, the dashboard's self-test
against the bundled relayd is judged as an Internet client (XCLIENT) and says the server is not an open relay."""

import pytest
from playwright.sync_api import expect

from policy.models import SelfTestRun
from tests.browser.conftest import log_in
from tests.browser.test_routing_restrictions import open_dialog, trusted_list

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
GREEN = "rgb(29, 122, 58)"  # --ok
MUTED = "rgb(91, 100, 117)"  # --muted


def add_localhost_in_the_dialog(page):
    open_dialog(page)
    trusted_list(page).get_by_role("button", name="Add localhost").click()
    page.get_by_role("button", name="OK").click()
    expect(page.locator("#verdict")).to_contain_text("Only 2 trusted networks")


def run_selftest_from_the_dashboard(page):
    page.get_by_role("link", name="Dashboard").first.click()
    page.get_by_role("button", name="Run the self-test").click()
    expect(page.get_by_role("heading", name="Self-test of")).to_be_visible()


def test_with_localhost_trusted_the_self_test_reports_no_open_relay(new_page, editor, start_bundled_relayd):
    page = new_page()
    log_in(page, "erin")
    add_localhost_in_the_dialog(page)
    start_bundled_relayd()
    run_selftest_from_the_dashboard(page)
    verdict = page.locator(".verdict")
    expect(verdict).to_have_text("not an open relay for untrusted clients (0/20), tested as 192.0.2.1")
    expect(verdict).to_have_css("color", GREEN)
    expect(page.locator("main")).to_contain_text("claimed with XCLIENT")
    page.get_by_role("link", name="Dashboard").last.click()
    expect(page.locator("#selftest .selftest-result")).to_contain_text("not an open relay for untrusted clients (0/20)")
    expect(page.locator("#risks")).not_to_contain_text("relayed")
    assert SelfTestRun.objects.get().used_xclient


def test_without_xclient_the_result_is_grey_and_says_why(new_page, editor, start_bundled_relayd):
    page = new_page()
    log_in(page, "erin")
    add_localhost_in_the_dialog(page)
    start_bundled_relayd(xclient=False)
    run_selftest_from_the_dashboard(page)
    verdict = page.locator(".verdict")
    expect(verdict).to_contain_text(
        "tested from 127.0.0.1, which is trusted: this result says nothing about Internet clients"
    )
    expect(verdict).to_have_css("color", MUTED)
