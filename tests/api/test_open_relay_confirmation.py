"""A write that makes the server an open relay is refused (400, nothing saved) unless it says confirm_open_relay."""

import pytest
from django.urls import reverse

from policy.models import InternalAddress, PolicyRevision, RoutingRestrictions, TrustedNetwork
from policy.revisions import policy_change

pytestmark = pytest.mark.django_db

TRUSTED = reverse("api:trustednetwork-list")
BULK = reverse("api:trustednetwork-bulk")
RESTRICTIONS = reverse("api:restrictions")
EVERYONE = {"network": "0.0.0.0/0", "open_relay_override": True, "description": "everyone"}


def assert_refused(response, risk_text):
    assert response.status_code == 400, response.content
    body = response.json()
    assert "open relay" in body["detail"]
    assert "confirm_open_relay" in body["detail"]
    assert any(risk_text in risk for risk in body["risks"])


def test_open_relay_network_needs_confirmation(api):
    revisions = PolicyRevision.objects.count()
    assert_refused(api.post(TRUSTED, EVERYONE), "0.0.0.0/0 is every IPv4 address")
    assert not TrustedNetwork.objects.exists()
    assert PolicyRevision.objects.count() == revisions  # nothing saved, nothing published

    confirmed = api.post(TRUSTED, {**EVERYONE, "confirm_open_relay": True})
    assert confirmed.status_code == 201, confirmed.json()
    assert TrustedNetwork.objects.get().network == "0.0.0.0/0"


def test_update_into_an_open_relay_needs_confirmation(api):
    lan = TrustedNetwork.objects.create(network="10.0.0.0/8")
    url = reverse("api:trustednetwork-detail", args=[lan.pk])
    assert_refused(api.patch(url, {"network": "::/0", "open_relay_override": True}), "::/0")
    assert TrustedNetwork.objects.get().network == "10.0.0.0/8"
    confirmed = {"network": "::/0", "open_relay_override": True, "confirm_open_relay": True}
    assert api.patch(url, confirmed).status_code == 200


def test_a_danger_already_saved_does_not_ask_again(api):
    TrustedNetwork.objects.create(**EVERYONE)
    assert api.post(TRUSTED, {"network": "10.0.0.0/8"}).status_code == 201


def test_bulk_replace_into_an_open_relay_needs_confirmation(api):
    TrustedNetwork.objects.create(network="127.0.0.1/32")
    assert_refused(api.post(f"{BULK}?mode=replace", [EVERYONE]), "0.0.0.0/0")
    assert list(TrustedNetwork.objects.values_list("network", flat=True)) == ["127.0.0.1/32"]
    assert api.post(f"{BULK}?mode=replace&confirm_open_relay=true", [EVERYONE]).status_code == 200
    assert list(TrustedNetwork.objects.values_list("network", flat=True)) == ["0.0.0.0/0"]


def test_flags_and_internal_addresses_that_open_the_internal_trap_need_confirmation(api):
    InternalAddress.objects.create(address="192.0.2.25")
    assert_refused(api.patch(RESTRICTIONS, {"allow_internal_addresses": True}), "single internal address")
    assert RoutingRestrictions.load().allow_internal_addresses is False
    response = api.patch(RESTRICTIONS, {"allow_internal_addresses": True, "confirm_open_relay": True})
    assert response.status_code == 200
    assert RoutingRestrictions.load().allow_internal_addresses is True


def test_removing_the_second_internal_address_opens_the_trap(api):
    RoutingRestrictions(allow_internal_addresses=True).save()
    InternalAddress.objects.create(address="192.0.2.25")
    second = InternalAddress.objects.create(address="192.0.2.26")
    url = reverse("api:internaladdress-detail", args=[second.pk])
    assert_refused(api.delete(url), "single internal address")
    assert InternalAddress.objects.count() == 2
    assert api.delete(f"{url}?confirm_open_relay=true").status_code == 204


def test_rolling_back_to_an_open_relay_needs_confirmation(api):
    with policy_change():
        TrustedNetwork.objects.create(**EVERYONE)
    with policy_change():
        TrustedNetwork.objects.all().delete()
    url = reverse("api:policyrevision-rollback", args=[1])
    assert_refused(api.post(url, {}), "0.0.0.0/0")
    assert not TrustedNetwork.objects.exists()
    assert PolicyRevision.objects.count() == 2
    assert api.post(url, {"confirm_open_relay": True}).status_code == 201
    assert TrustedNetwork.objects.get().network == "0.0.0.0/0"


def test_rolling_back_to_an_open_relay_in_the_page_needs_the_word(editor_client):
    with policy_change():
        TrustedNetwork.objects.create(**EVERYONE)
    with policy_change():
        TrustedNetwork.objects.all().delete()
    assert (
        "Type OPEN RELAY to roll back anyway"
        in editor_client.get(reverse("policy:revision", args=[1])).content.decode()
    )
    url = reverse("policy:revision-rollback", args=[1])
    editor_client.post(url, {"reason": "oops"})
    assert not TrustedNetwork.objects.exists()
    editor_client.post(url, {"reason": "really", "confirm_word": "OPEN RELAY"})
    assert TrustedNetwork.objects.get().network == "0.0.0.0/0"
