"""Importing a 10,000-line CSV file in a real browser: the progress bar, then the preview, then the commit."""

import pytest
from playwright.sync_api import expect

from policy.models import TrustedNetwork
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

LINES = 10_000
UPLOAD_BYTES_PER_SECOND = 200_000  # throttled, so that the bar is seen moving on a fast loopback


def csv_file(tmp_path, bad_line=None):
    rows = ["network,description"] + [f"10.{i // 256}.{i % 256}.0/255.255.255.0,site {i}" for i in range(LINES)]
    if bad_line:
        rows[bad_line - 1] = "10.200.0.7/24,typo"
    path = tmp_path / "networks.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def choose_file(page, path):
    page.goto("/networks/import/")
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": UPLOAD_BYTES_PER_SECOND},
    )
    page.get_by_label("CSV file").set_input_files(str(path))


def test_progress_bar_then_preview_with_the_bad_line(new_page, editor, tmp_path):
    page = new_page()
    log_in(page, "erin")
    choose_file(page, csv_file(tmp_path, bad_line=5002))

    progress = page.locator("#import-progress")
    expect(progress).to_be_hidden()
    page.get_by_role("button", name="Preview").click()
    expect(progress).to_be_visible()
    expect(progress.get_by_role("status")).to_contain_text("Uploading…")
    expect(progress.locator("progress")).not_to_have_attribute("value", "0")
    page.wait_for_url("**/networks/import/preview/", timeout=60_000)

    expect(page.get_by_role("alert")).to_contain_text("1 line cannot be imported")
    errors = page.locator("#import-errors")
    expect(errors).to_contain_text("5002")
    expect(errors).to_contain_text("Host bits are set in 10.200.0.7/24. Did you mean 10.200.0.0/24?")
    expect(page.get_by_role("button", name="Import")).to_have_count(0)
    assert not TrustedNetwork.objects.exists()


def test_a_clean_file_imports_after_the_preview(new_page, editor, tmp_path):
    page = new_page()
    log_in(page, "erin")
    choose_file(page, csv_file(tmp_path))
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/networks/import/preview/", timeout=60_000)
    expect(page.get_by_role("heading", name="Ready to import")).to_be_visible()
    # Hold the submission back once, to see the page while the import would be running.
    page.evaluate("document.getElementById('import-commit').addEventListener('submit', e => e.preventDefault())")
    page.get_by_role("button", name="Import").click()
    expect(page.locator("#import-progress")).to_be_visible()
    expect(page.locator("#import-progress").get_by_role("status")).to_have_text(f"Importing {LINES} lines…")
    expect(page.get_by_role("button", name="Import")).to_be_disabled()
    page.evaluate("document.getElementById('import-commit').submit()")
    expect(page.get_by_text(f"{LINES} created")).to_be_visible(timeout=60_000)
    assert TrustedNetwork.objects.count() == LINES


def test_a_bad_file_shows_the_reason_in_place(new_page, editor, tmp_path):
    path = tmp_path / "colours.csv"
    path.write_text("network,colour\n10.0.0.0/8,red\n")
    page = new_page()
    log_in(page, "erin")
    choose_file(page, path)
    page.get_by_role("button", name="Preview").click()
    expect(page.get_by_role("alert")).to_contain_text("Unknown column “colour”")
    # The form that came back works the same way.
    page.get_by_label("CSV file").set_input_files(str(csv_file(tmp_path)))
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/networks/import/preview/", timeout=60_000)
