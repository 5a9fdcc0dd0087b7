"""The API accepts what the forms accept, normalises it the same way and refuses it in the same words."""

import pytest
from django.urls import reverse

from policy.forms import InternalAddressForm, SmtpUserForm, TrustedNetworkForm
from policy.models import AuditEntry, LocalDomain, RoutingRestrictions, TrustedNetwork

pytestmark = pytest.mark.django_db

TRUSTED = reverse("api:trustednetwork-list")
RESTRICTIONS = reverse("api:restrictions")


def form_errors(address, listed=()):
    form = TrustedNetworkForm(data={"address": address, "mask": ""}, listed=listed)
    assert not form.is_valid()
    # The dialog has two inputs; the API's one `network` field carries the mask's errors too.
    return form.errors.get("address", []) + form.errors.get("mask", [])


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("10.1.0.0/16", "10.1.0.0/16"),
        ("10.1.0.0/255.255.0.0", "10.1.0.0/16"),
        (" 10.1.0.0 / 16 ", "10.1.0.0/16"),
        ("192.0.2.7", "192.0.2.7/32"),
        ("2001:DB8::/32", "2001:db8::/32"),
        ("::ffff:10.1.0.0/112", "10.1.0.0/16"),
        ("0000:0000:0000:0000:0000:0000:0000:0001/0000000128", "::1/128"),  # longer than the stored column
    ],
)
def test_every_form_the_dialog_accepts_comes_back_normalised(api, given, stored):
    response = api.post(TRUSTED, {"network": given})
    assert response.status_code == 201, response.json()
    assert response.json()["network"] == stored


@pytest.mark.parametrize(
    "bad",
    [
        "10.1.2.3/16",
        "10.0.0.0/255.0.255.0",
        "10.0.0.0/0.0.255.255",
        "300.1.1.1",
        "10.01.0.0/16",
        "fe80::/64%eth0",
        "garbage",
        "",
    ],
)
def test_bad_networks_get_the_forms_message(api, bad):
    response = api.post(TRUSTED, {"network": bad})
    assert response.status_code == 400
    if bad:  # an empty field is refused by the serializer before the parser sees it
        assert response.json()["network"] == form_errors(bad)


@pytest.mark.parametrize("bad", ["abc", "10.0.0.0/8", "300.1.1.1", "10.01.1.1", "fe80::1%eth0"])
def test_bad_internal_addresses_get_the_forms_message(api, bad):
    response = api.post(reverse("api:internaladdress-list"), {"address": bad})
    form = InternalAddressForm(data={"address": bad})
    assert not form.is_valid()
    assert response.status_code == 400
    assert response.json()["address"] == form.errors["address"]


def test_duplicate_in_another_notation_gets_the_forms_message(api):
    existing = TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
    response = api.post(TRUSTED, {"network": "10.0.0.0/255.0.0.0"})
    assert response.status_code == 400
    assert response.json()["network"] == form_errors("10.0.0.0/8", listed=[existing.as_listed()])
    assert "edit that entry instead" in response.json()["network"][0]


def test_open_relay_is_refused_unless_overridden(api):
    refused = api.post(TRUSTED, {"network": "0.0.0.0/0"})
    assert refused.status_code == 400
    assert refused.json()["network"] == form_errors("0.0.0.0/0")
    assert "open relay" in refused.json()["network"][0]
    accepted = api.post(TRUSTED, {"network": "0.0.0.0/0", "open_relay_override": True, "confirm_open_relay": True})
    assert accepted.status_code == 201
    assert accepted.json()["open_relay_override"] is True


def test_create_answers_with_overlap_warnings(api):
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    response = api.post(TRUSTED, {"network": "10.1.0.0/16"})
    assert response.status_code == 201
    assert response.json()["warnings"] == ["10.1.0.0/16 is already covered by 10.0.0.0/8."]


def test_update_to_a_duplicate_is_refused(api):
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    other = TrustedNetwork.objects.create(network="192.0.2.0/24")
    response = api.patch(reverse("api:trustednetwork-detail", args=[other.pk]), {"network": "10.0.0.0/8"})
    assert response.status_code == 400
    assert "already in this list" in response.json()["network"][0]


def test_smtp_password_rule_is_the_forms(api):
    response = api.post(reverse("api:smtpuser-list"), {"username": "alice", "password": "short"})
    form = SmtpUserForm(data={"username": "alice", "password1": "short", "password2": "short", "enabled": "on"})
    assert not form.is_valid()
    assert response.status_code == 400
    assert response.json()["password"] == form.errors["password1"]


def test_smtp_user_without_password_is_refused(api):
    response = api.post(reverse("api:smtpuser-list"), {"username": "alice"})
    assert response.status_code == 400
    assert response.json() == {"non_field_errors": ["Set a password for this account."]}


def test_duplicate_domain_in_another_case_gets_the_models_message(api):
    LocalDomain.objects.create(domain="example.com")
    response = api.post(reverse("api:localdomain-list"), {"domain": "EXAMPLE.com."})
    assert response.status_code == 400
    assert response.json() == {"domain": ["This domain is already a local domain."]}


def test_restrictions_get_put_patch_are_audited(api):
    # Every checkbox, with its default until first saved; the three named here keep their API names.
    assert api.get(RESTRICTIONS).json() | {"updated_at": None} == {
        **{flag.name: flag.default for flag in RoutingRestrictions.FLAGS},
        "allow_authenticated": True,
        "allow_listed_ips": True,
        "allow_internal_addresses": False,
        "updated_at": None,
    }
    flags = {"allow_authenticated": False, "allow_listed_ips": True, "allow_internal_addresses": True}
    assert api.put(RESTRICTIONS, flags).status_code == 200
    assert api.patch(RESTRICTIONS, {"allow_authenticated": True}).status_code == 200
    restrictions = RoutingRestrictions.load()
    assert (restrictions.allow_authenticated, restrictions.allow_internal_addresses) == (True, True)
    entry = AuditEntry.objects.filter(object_type="routing restrictions").first()
    assert (entry.action, entry.actor_name, entry.after["allow_authenticated"]) == ("update", "erin (token rw)", True)
