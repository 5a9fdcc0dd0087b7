"""The reputation API: watched addresses with their state per list, the lists, checks and the metrics."""

import time

import pytest
from django.urls import reverse

from policy import reputation
from policy.models import AuditEntry, Blocklist, ReputationCheck, WatchedAddress
from tests.api.conftest import token_client
from tests.dnsbl_server import CLEAR, DELIST_URL, LISTED, REASON, REFUSED, SILENT, ZONE, watch

pytestmark = pytest.mark.django_db


def test_get_lists_each_address_with_its_state_per_list(api, fake_zone):
    watch(LISTED, CLEAR, REFUSED, SILENT)
    reputation.run_check()
    body = api.get(reverse("api:watchedaddress-list")).json()
    rows = {row["address"]: row for row in body["results"]}
    assert rows[LISTED]["listed"] is True
    (listing,) = rows[LISTED]["listings"]
    assert {k: listing[k] for k in ("zone", "state", "reason", "codes", "delist_url")} == {
        "zone": ZONE,
        "state": "listed",
        "reason": REASON,
        "codes": ["127.0.0.2"],
        "delist_url": DELIST_URL,
    }
    assert listing["since"] and listing["checked_at"] and rows[LISTED]["last_checked_at"]
    assert [rows[a]["listings"][0]["state"] for a in (CLEAR, REFUSED, SILENT)] == ["clear", "refused", "timeout"]
    assert not any(rows[a]["listed"] for a in (CLEAR, REFUSED, SILENT))


def test_a_disabled_list_no_longer_counts(api, fake_zone):
    watch(LISTED)
    reputation.run_check()
    Blocklist.objects.update(enabled=False)
    (row,) = api.get(reverse("api:watchedaddress-list")).json()["results"]
    assert (row["listed"], row["listings"]) == (False, [])


def test_post_adds_an_address_normalised_and_audited(api, editor):
    response = api.post(reverse("api:watchedaddress-list"), {"address": "::FFFF:1.2.3.4", "description": "mx1"})
    assert response.status_code == 201, response.json()
    assert response.json()["address"] == "1.2.3.4"
    assert WatchedAddress.objects.get().created_by == editor
    entry = AuditEntry.objects.get(action="create", object_type="watched address")
    assert entry.source == "api" and "token rw" in entry.actor_name


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"address": "10.0.0.1"}, "10.0.0.1 is a private address. DNSBLs only list public addresses"),
        ({"address": "fe80::1"}, "fe80::1 is a link-local address. DNSBLs only list public addresses"),
        ({"address": "1.2.3.4/32"}, None),  # a /32 is one host: accepted as 1.2.3.4
        ({"address": "1.2.3.0/24"}, "is a network"),
        ({"address": "nonsense"}, "is not an IP address"),
        ({}, "This field is required."),
    ],
)
def test_bad_addresses_get_a_400_with_the_reason(api, body, message):
    response = api.post(reverse("api:watchedaddress-list"), body)
    if message is None:
        assert response.status_code == 201
        return
    assert response.status_code == 400
    assert message in response.json()["address"][0]


def test_a_duplicate_gets_a_400(api):
    watch(LISTED)
    response = api.post(reverse("api:watchedaddress-list"), {"address": LISTED})
    assert response.status_code == 400
    assert response.json() == {"address": [f"{LISTED} is already watched."]}


def test_lists_are_managed_with_zone_and_delist_url(api):
    url = reverse("api:blocklist-list")
    assert {row["zone"] for row in api.get(url).json()["results"]} == {
        "zen.spamhaus.org",
        "bl.spamcop.net",
        "b.barracudacentral.org",
    }
    response = api.post(url, {"zone": "DNSBL.Example.NET.", "delist_url": "https://dnsbl.example.net/remove"})
    assert response.status_code == 201, response.json()
    created = response.json()
    assert (created["zone"], created["enabled"], created["ipv6"]) == ("dnsbl.example.net", True, False)
    detail = reverse("api:blocklist-detail", args=[created["id"]])
    assert api.patch(detail, {"enabled": False}).json()["enabled"] is False
    assert api.delete(detail).status_code == 204


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"zone": "zen spamhaus org"}, "zone", "contains a space"),
        ({"zone": "https://zen.spamhaus.org"}, "zone", "is a web address"),
        ({"zone": "ZEN.spamhaus.org"}, "zone", "zen.spamhaus.org is already in the list of blocklists."),
        ({"zone": "dnsbl.example.net", "delist_url": "javascript:alert(1)"}, "delist_url", "Enter a valid URL."),
    ],
)
def test_broken_zones_get_a_400_with_a_clear_error(api, body, field, message):
    response = api.post(reverse("api:blocklist-list"), body)
    assert response.status_code == 400
    assert message in response.json()[field][0]


def test_metrics_are_prometheus_text(api, fake_zone):
    watch(LISTED, CLEAR)
    reputation.run_check()
    response = api.get(reverse("api:reputation-metrics"))
    assert response.status_code == 200
    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "relayadmin_dnsbl_listings 1\n" in response.content.decode()


def test_metrics_need_a_token_or_a_session(client):
    assert client.get(reverse("api:reputation-metrics")).status_code == 401


@pytest.mark.django_db(transaction=True)
def test_post_check_runs_in_the_background_and_get_shows_the_result(fake_zone, editor):
    from tests.api.conftest import issue_token

    api = token_client(issue_token(editor, name="cron"))
    watch(LISTED, SILENT)
    url = reverse("api:reputation-check")
    assert api.get(url).status_code == 404
    started = time.monotonic()
    response = api.post(url)
    assert response.status_code == 202
    assert time.monotonic() - started < 0.5  # the timeout of the silent address is not waited for
    assert response.json()["running"] is True
    assert api.post(url).status_code == 409
    deadline = time.monotonic() + 10
    while ReputationCheck.objects.get().running and time.monotonic() < deadline:
        time.sleep(0.1)
    body = api.get(url).json()
    assert (body["running"], body["queries"], body["listed"], body["failed"]) == (False, 2, 1, 1)
    entry = AuditEntry.objects.get(action="dnsbl_check")
    assert entry.actor_name == "erin (token cron)"


def test_an_address_cannot_be_changed_only_described(api, fake_zone):
    (address,) = watch(LISTED)
    url = reverse("api:watchedaddress-detail", args=[address.pk])
    response = api.patch(url, {"address": CLEAR})
    assert response.status_code == 400
    assert "remove it and add the new one" in response.json()["address"][0]
    assert api.patch(url, {"address": LISTED, "description": "mx1"}).json()["description"] == "mx1"


def test_renaming_a_zone_drops_the_old_zones_answers(api, fake_zone):
    watch(LISTED)
    reputation.run_check()
    response = api.patch(reverse("api:blocklist-detail", args=[fake_zone.pk]), {"zone": "other.dnsbl.test"})
    assert response.status_code == 200
    (row,) = api.get(reverse("api:watchedaddress-list")).json()["results"]
    assert row["listings"] == []
