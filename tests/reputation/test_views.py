"""The Reputation page, the history page, the blocklist forms and the dashboard card, through Django's client."""

import pytest
from django.urls import reverse

from policy import reputation
from policy.models import AuditEntry, Blocklist, ReputationCheck, WatchedAddress
from tests.dnsbl_server import CLEAR, DELIST_URL, LISTED, LISTED_V6, REASON, SILENT, ZONE, watch

pytestmark = pytest.mark.django_db


def test_viewers_see_the_results_but_no_controls(viewer_client, fake_zone):
    watch(LISTED)
    reputation.run_check()
    page = viewer_client.get(reverse("policy:reputation")).content.decode()
    assert REASON in page and DELIST_URL in page
    assert "Check now" not in page
    assert "Watch an address" not in page
    assert reverse("policy:blocklist-add") not in page


@pytest.mark.parametrize("name", ["reputation-check", "reputation-address-add", "blocklist-add"])
def test_viewers_cannot_write(viewer_client, name):
    assert viewer_client.post(reverse(f"policy:{name}"), {"address": "1.2.3.4", "zone": "a.example"}).status_code == 403
    assert not WatchedAddress.objects.exists()
    assert not ReputationCheck.objects.exists()


def test_editors_add_an_address_normalised(editor_client, editor):
    response = editor_client.post(reverse("policy:reputation-address-add"), {"address": " 2A00:1450:4001:0::25 "})
    assert response.status_code == 302
    address = WatchedAddress.objects.get()
    assert (address.address, address.created_by) == (LISTED_V6, editor)
    assert AuditEntry.objects.filter(action="create", object_type="watched address").exists()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("192.168.1.25", "192.168.1.25 is a private address. DNSBLs only list public addresses"),
        ("127.0.0.1", "127.0.0.1 is a loopback address. DNSBLs only list public addresses"),
        ("1.2.3.0/24", "is a network"),
        ("mail.example.com", "is not an IP address"),
        ("", "Enter an IP address"),
    ],
)
def test_bad_addresses_are_refused_with_the_reason(editor_client, text, message):
    response = editor_client.post(reverse("policy:reputation-address-add"), {"address": text})
    assert response.status_code == 400
    assert message in response.content.decode().replace("&#x27;", "'")
    assert not WatchedAddress.objects.exists()


def test_a_duplicate_is_refused(editor_client):
    watch(LISTED)
    response = editor_client.post(reverse("policy:reputation-address-add"), {"address": LISTED})
    assert response.status_code == 400
    assert f"{LISTED} is already watched." in response.content.decode()


def test_the_add_form_suggests_relayd_nodes_addresses(editor_client):
    from policy.models import RelayNode

    RelayNode.objects.create(name="mx1", address="81.2.69.142")
    page = editor_client.get(reverse("policy:reputation")).content.decode()
    assert '<option value="81.2.69.142">relayd node mx1</option>' in page
    assert 'list="node-addresses"' in page


def test_a_broken_zone_gets_a_clear_error(editor_client):
    response = editor_client.post(reverse("policy:blocklist-add"), {"zone": "http://zen.spamhaus.org", "enabled": "on"})
    assert response.status_code == 200  # the form again, with the error
    assert (
        "is a web address; enter only the DNS zone that is queried, e.g. zen.spamhaus.org." in response.content.decode()
    )
    response = editor_client.post(reverse("policy:blocklist-add"), {"zone": "ZEN.spamhaus.org."})
    assert "zen.spamhaus.org is already in the list of blocklists." in response.content.decode()
    response = editor_client.post(
        reverse("policy:blocklist-add"), {"zone": "dnsbl.example.net", "delist_url": "javascript:alert(1)"}
    )
    assert "Enter a valid URL." in response.content.decode()


def test_editors_add_edit_and_remove_a_blocklist(editor_client):
    response = editor_client.post(
        reverse("policy:blocklist-add"),
        {"zone": "DNSBL.Example.NET", "delist_url": "https://dnsbl.example.net/remove", "enabled": "on"},
    )
    assert response.status_code == 302
    blocklist = Blocklist.objects.get(zone="dnsbl.example.net")
    editor_client.post(reverse("policy:blocklist-edit", args=[blocklist.pk]), {"zone": "dnsbl.example.net"})
    blocklist.refresh_from_db()
    assert not blocklist.enabled
    editor_client.post(reverse("policy:blocklist-delete", args=[blocklist.pk]))
    assert not Blocklist.objects.filter(zone="dnsbl.example.net").exists()
    assert [e.action for e in AuditEntry.objects.filter(object_type="DNS blocklist").order_by("id")] == [
        "create",
        "update",
        "delete",
    ]


def test_the_matrix_shows_each_state_and_ipv4_only_lists_as_not_applicable(viewer_client, fake_zone):
    Blocklist.objects.create(zone="v4.dnsbl.test", ipv6=False, enabled=False)
    watch(LISTED, CLEAR, SILENT, LISTED_V6)
    reputation.run_check()
    page = viewer_client.get(reverse("policy:reputation")).content.decode()
    assert page.count('<span class="badge dnsbl-listed">listed</span>') == 2
    assert '<span class="badge dnsbl-clear">clear</span>' in page
    assert '<span class="badge dnsbl-timeout">timeout</span>' in page
    assert "n/a (IPv4 only)" in page
    assert "not checked yet" in page  # the disabled list was not asked


def test_history_per_address(viewer_client, fake_dnsbl, fake_zone):
    (address,) = watch(LISTED)
    reputation.run_check()
    fake_dnsbl.answers.clear()
    reputation.run_check()
    page = viewer_client.get(reverse("policy:reputation-address", args=[address.pk])).content.decode()
    assert 'listed → <span class="badge dnsbl-clear">clear</span>' in page
    assert REASON in page


def test_check_status_answers_json(viewer_client, fake_zone):
    assert viewer_client.get(reverse("policy:reputation-check-status")).json() == {
        "id": None,
        "running": False,
        "summary": "never checked",
    }
    check = ReputationCheck.objects.create(started_by_name="erin")
    assert viewer_client.get(reverse("policy:reputation-check-status")).json() == {
        "id": check.pk,
        "running": True,
        "summary": "running",
    }


def test_check_now_refuses_while_a_check_runs(editor_client):
    ReputationCheck.objects.create(started_by_name="erin")
    response = editor_client.post(reverse("policy:reputation-check"), follow=True)
    assert "already running" in response.content.decode()
    assert ReputationCheck.objects.count() == 1


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        ((), "No addresses watched yet."),
        ((CLEAR,), "None of 1 watched address is listed."),
        ((LISTED, CLEAR), f'{LISTED}</span> on <span class="mono">{ZONE}</span>'),
    ],
)
def test_the_dashboard_card(viewer_client, fake_zone, addresses, expected):
    watch(*addresses)
    reputation.run_check()
    page = viewer_client.get(reverse("policy:dashboard")).content.decode()
    assert expected in page
    assert ('class="card reputation-card listed"' in page) == (LISTED in addresses)
    assert (DELIST_URL in page) == (LISTED in addresses)


def test_editors_stop_watching_an_address(editor_client, fake_zone):
    (address,) = watch(LISTED)
    reputation.run_check()
    url = reverse("policy:reputation-address-delete", args=[address.pk])
    assert "Remove watched address 1.2.3.4?" in editor_client.get(url).content.decode()
    assert editor_client.post(url).status_code == 302
    assert not WatchedAddress.objects.exists()
    assert AuditEntry.objects.filter(action="delete", object_type="watched address").exists()
