"""Safe by design (issue 13), in a real browser: dangerous saves, the tester, import "Replace", rollback."""

import pytest
from playwright.sync_api import expect

from policy.models import ApiToken, PolicyRevision, RelayNode, SelfTestRun, TrustedNetwork
from policy.revisions import policy_change
from tests.browser.conftest import log_in

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

RED = "rgb(179, 38, 30)"  # --bad


def trusted_list(page):
    return page.locator("#list-trusted")


def add_everyone(page):
    page.goto("/restrictions/")
    trusted_list(page).get_by_role("button", name="Add…").click()
    page.get_by_label("IP address").fill("0.0.0.0/0")
    page.get_by_label("I understand").check()
    page.get_by_role("button", name="OK").click()
    expect(trusted_list(page)).to_contain_text("0.0.0.0/0")


def test_an_open_relay_is_saved_only_after_typing_the_word(new_page, editor):
    page = new_page()
    log_in(page, "erin")
    expect(page.locator("#verdict")).not_to_have_class("verdict open-relay")
    add_everyone(page)

    # A plain OK shows the danger and saves nothing, however often it is pressed.
    for _ in range(2):
        page.get_by_role("button", name="OK", exact=True).click()
        confirm = page.locator("#confirm-open-relay")
        expect(confirm).to_contain_text("Nothing was saved: these changes make the server an open relay")
        expect(confirm).to_contain_text("0.0.0.0/0 is every IPv4 address")
        expect(page.get_by_label("Type OPEN RELAY to save anyway")).to_be_focused()
    assert not TrustedNetwork.objects.exists()
    assert not PolicyRevision.objects.exists()

    # A wrong word neither; the word, with Enter in its field, saves (Enter means OK in the dialog).
    page.get_by_label("Type OPEN RELAY to save anyway").fill("yes")
    page.get_by_role("button", name="OK", exact=True).click()
    expect(page.locator("#confirm-open-relay")).to_be_visible()
    assert not TrustedNetwork.objects.exists()
    page.get_by_label("Type OPEN RELAY to save anyway").fill("OPEN RELAY")
    page.get_by_label("Type OPEN RELAY to save anyway").press("Enter")
    page.wait_for_url("**/")

    # While the danger lasts, the dashboard says so in red.
    verdict = page.locator("#verdict")
    expect(verdict).to_contain_text("OPEN RELAY: any IPv4 host may relay.")
    expect(verdict).to_have_css("color", RED)
    expect(verdict).to_have_attribute("role", "alert")
    assert TrustedNetwork.objects.get().network == "0.0.0.0/0"
    assert PolicyRevision.objects.count() == 1


def test_the_api_refuses_an_open_relay_without_confirm_open_relay(new_page, editor):
    key = _token(editor)
    page = new_page()
    headers = {"Authorization": f"Token {key}"}
    body = {"network": "::/0", "open_relay_override": True}
    refused = page.request.post("/api/v1/trusted-networks/", data=body, headers=headers)
    assert refused.status == 400
    assert "confirm_open_relay" in refused.json()["detail"]
    assert any("::/0 is every IPv6 address" in risk for risk in refused.json()["risks"])
    log_in(page, "erin")
    expect(page.locator("#verdict")).not_to_contain_text("OPEN RELAY")

    confirmed = page.request.post(
        "/api/v1/trusted-networks/", data={**body, "confirm_open_relay": True}, headers=headers
    )
    assert confirmed.status == 201
    page.reload()
    expect(page.locator("#verdict")).to_contain_text("OPEN RELAY: any IPv6 host may relay.")


def test_enter_in_the_tester_runs_check_and_shows_the_verdict_in_view(new_page, editor):
    for i in range(40):  # a long list above the tester, as at a real site
        TrustedNetwork.objects.create(network=f"10.{i}.0.0/16", description=f"site {i}")
    page = new_page()
    log_in(page, "erin")
    page.goto("/restrictions/")
    page.get_by_label("Hosts and clients that successfully authenticate").uncheck()  # pending, not yet sent
    tester = page.locator("#tester")
    tester.get_by_label("Client address").fill("10.7.1.2")
    tester.get_by_label("Recipient").fill("someone@example.net")
    tester.get_by_label("Recipient").press("Enter")

    page.wait_for_url("**/restrictions/#tester")
    result = page.locator("#check-result")
    expect(result).to_contain_text("may relay")
    expect(result).to_contain_text("10.7.0.0/16")
    expect(result).to_be_in_viewport()
    # The check kept the unsent tick in the draft, and opened no Edit form.
    expect(page.get_by_label("Hosts and clients that successfully authenticate")).not_to_be_checked()
    expect(page.get_by_role("heading", name="Routing Restrictions")).to_be_visible()


def test_import_replace_lists_removals_and_risks_and_asks_first(new_page, editor, tmp_path):
    kept = ["127.0.0.1/32", "::1/128", *[f"192.0.2.{i * 16}/28" for i in range(6)]]
    for network in kept:
        TrustedNetwork.objects.create(network=network)
    path = tmp_path / "replace.csv"
    path.write_text("network,description\n10.1.0.0/16,branch\n")
    page = new_page()
    log_in(page, "erin")
    page.goto("/networks/import/")
    page.get_by_label("CSV file").set_input_files(str(path))
    page.get_by_label("Replace").check()
    page.get_by_role("button", name="Preview").click()
    page.wait_for_url("**/networks/import/preview/")

    removals = page.locator("#import-removals")
    expect(removals).to_contain_text("8 entries will be removed")
    for network in kept:
        expect(removals).to_contain_text(network)
    expect(page.locator("#import-risks")).to_contain_text("localhost (127.0.0.1 and ::1) is not trusted")

    # The danger-styled button does nothing until the removals are ticked.
    button = page.get_by_role("button", name="Import and remove 8 entries")
    expect(button).to_have_css("background-color", RED)
    button.click()
    assert page.url.endswith("/networks/import/preview/")  # the browser refused to send it
    assert TrustedNetwork.objects.count() == 8
    page.get_by_label("Remove 8 entries").check()
    button.click()
    page.wait_for_url("**/restrictions/")
    assert list(TrustedNetwork.objects.values_list("network", flat=True)) == ["10.1.0.0/16"]


def test_rollback_past_an_added_open_relay_leaves_nothing_behind(new_page, editor):
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
        TrustedNetwork.objects.create(network="192.0.2.0/24", description="old office", enabled=False)
    with policy_change():
        TrustedNetwork.objects.create(network="0.0.0.0/0", open_relay_override=True)
    page = new_page()
    log_in(page, "erin")
    expect(page.locator("#verdict")).to_contain_text("OPEN RELAY")
    page.goto("/revisions/1/")
    page.get_by_role("button", name="Roll back to revision 1").click()
    expect(page.get_by_text("Rolled back: revision 3 restores revision 1.")).to_be_visible()

    page.goto("/restrictions/")
    expect(trusted_list(page)).not_to_contain_text("0.0.0.0/0")
    expect(trusted_list(page).locator("tbody tr")).to_have_count(2)
    expect(trusted_list(page)).to_contain_text("192.0.2.0/24")  # its disabled entry, as it was
    assert sorted(TrustedNetwork.objects.values_list("network", "enabled", "open_relay_override")) == [
        ("10.0.0.0/8", True, False),
        ("192.0.2.0/24", False, False),
    ]
    page.goto("/")
    expect(page.locator("#verdict")).not_to_contain_text("OPEN RELAY")


def test_revoking_the_token_of_a_relayd_node_names_the_node(new_page, editor):
    key = _token(editor, node="mx2", read_only=True)
    page = new_page()
    report = {"node": "mx2", "serial": None, "tls": True, "counters": {}}
    response = page.request.post("/api/v1/daemons/", data=report, headers={"Authorization": f"Token {key}"})
    assert response.status == 201
    assert RelayNode.objects.get().token.name == "automation"
    log_in(page, "erin")
    page.goto("/api-tokens/")
    page.get_by_role("link", name="Revoke automation").click()
    expect(page.locator("#revoke-nodes")).to_contain_text("The relayd node “mx2” uses this token")
    page.get_by_role("link", name="Cancel").click()
    assert ApiToken.objects.exists()
    page.get_by_role("link", name="Revoke automation").click()
    page.get_by_role("button", name="Revoke").click()
    expect(page.get_by_text("“mx2” will no longer receive policy updates")).to_be_visible()
    assert not ApiToken.objects.exists()


def _token(user, **fields) -> str:
    token = ApiToken(user=user, name="automation", **fields)
    key = token.generate_key()
    token.save()
    return key


def test_a_self_test_result_goes_grey_and_stale_after_a_policy_change(new_page, editor):
    with policy_change():
        TrustedNetwork.objects.create(network="127.0.0.1/32")
    SelfTestRun.objects.create(target="127.0.0.1:2525", run_by_name="erin", accepted=15, total=20, revision_serial=1)
    page = new_page()
    log_in(page, "erin")
    result = page.locator("#selftest .selftest-result")
    expect(result).to_have_css("color", RED)
    expect(page.locator("#risks")).to_contain_text("relayed 15 of 20")

    with policy_change():
        TrustedNetwork.objects.filter(network="127.0.0.1/32").delete()
    page.reload()
    expect(page.locator("#selftest-stale")).to_contain_text("The policy changed since this test (it is now revision 2)")
    expect(result).to_have_css("color", "rgb(91, 100, 117)")  # --muted: neither a pass nor a fail
    expect(page.locator("#risks")).not_to_contain_text("relayed 15 of 20")


def test_a_self_test_that_could_not_run_is_red_not_green(new_page, editor):
    SelfTestRun.objects.create(target="127.0.0.1:1", run_by_name="erin", error="Connection refused")
    page = new_page()
    log_in(page, "erin")
    result = page.locator("#selftest .selftest-result")
    expect(result).to_contain_text("could not run (Connection refused)")
    expect(result).to_have_css("color", RED)
