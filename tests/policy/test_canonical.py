"""One canonical text per address and network, and no revision relayd would refuse (issue 10)."""

import json
import re
from importlib import import_module

import pytest
from django.apps import apps as django_apps
from django.core.management import CommandError, call_command
from django.urls import reverse

from policy.models import DeniedNetwork, InternalAddress, LocalDomain, PolicyRevision, TrustedNetwork
from policy.revisions import policy_change
from relayd.config import load_snapshot
from relayd.matcher import address_text, parse_host_address, parse_network
from relayd.policy_source import PolicySource
from tests.api.conftest import issue_token, token_client

pytestmark = pytest.mark.django_db

TRUSTED = "/api/v1/trusted-networks/"

# Notations the dialog, the API and CSV import accept, and the one text each is stored, shown and published as.
CANONICAL = [
    ("::a:b/128", "::a:b/128"),
    ("::a:b", "::a:b/128"),
    ("::1.2.3.4", "::102:304/128"),
    ("::0.10.0.11/128", "::a:b/128"),
    ("::ffff:10.0.0.0/104", "10.0.0.0/8"),
    ("::ffff:192.0.2.7", "192.0.2.7/32"),
    ("64:ff9b::192.0.2.0/120", "64:ff9b::c000:200/120"),
    ("::ffff:0:192.0.2.0/120", "::ffff:0:c000:200/120"),
    ("2001:DB8:0:0:1::/80", "2001:db8:0:0:1::/80"),
    ("2001:db8::1:0:0:1", "2001:db8::1:0:0:1/128"),
    ("fe80:0:0:0:0:0:0:0/10", "fe80::/10"),
]


@pytest.fixture
def policy_file(settings, tmp_path):
    settings.RELAYD_POLICY_PATH = tmp_path / "relayd" / "policy.json"
    return settings.RELAYD_POLICY_PATH


@pytest.fixture
def api(editor):
    return token_client(issue_token(editor))


def relayd_loads(path) -> PolicySource:
    """Load the published file as relayd does; fail if relayd refused it."""
    source = PolicySource(path, metrics=_Metrics())
    assert source.load(), source.last_error
    return source


class _Metrics:
    def set(self, *args, **kwargs):
        pass

    def inc(self, *args, **kwargs):
        pass


@pytest.mark.parametrize(("entered", "canonical"), CANONICAL)
def test_every_notation_goes_from_the_api_to_relayd_in_one_text(
    api, policy_file, django_capture_on_commit_callbacks, entered, canonical
):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.post(TRUSTED, {"network": entered}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["network"] == canonical
    assert TrustedNetwork.objects.get().network == canonical
    assert api.get(TRUSTED).json()["results"][0]["network"] == canonical
    snapshot = json.loads(PolicyRevision.objects.get().snapshot)
    assert snapshot["trusted_networks"][0]["network"] == canonical
    assert str(parse_network(canonical)) == canonical  # exactly the text relayd's validator requires
    source = relayd_loads(policy_file)
    assert source.policy.serial == 1
    assert [entry.network.text for entry in source.policy.snapshot.trusted_networks] == [canonical]


def test_embedded_ipv4_entries_keep_relayd_on_the_newest_revision(api, policy_file, django_capture_on_commit_callbacks):
    """The issue's entries, one revision each, and relayd enforces every one of them."""
    source = PolicySource(policy_file, metrics=_Metrics())
    entries = [
        {"network": "::a:b/128"},
        {"network": "::1.2.3.4"},
        {"network": "::ffff:10.0.0.0/104"},
        {"network": "64:ff9b::/96", "open_relay_override": True, "confirm_open_relay": True},
    ]
    for serial, entry in enumerate(entries, 1):
        with django_capture_on_commit_callbacks(execute=True):
            assert api.post(TRUSTED, entry, format="json").status_code == 201
        assert source.load(), source.last_error
        assert source.policy.serial == serial
    networks = {entry.network.text for entry in source.policy.snapshot.trusted_networks}
    assert networks == {"::a:b/128", "::102:304/128", "10.0.0.0/8", "64:ff9b::/96"}


@pytest.mark.parametrize(
    "network", ["::/96", "64:ff9b::/96", "::ffff:0:0/96", "::ffff:0:0:0/96", "::/64", "64:ff9b::/97", "2002::/16"]
)
def test_prefixes_that_embed_every_ipv4_host_are_an_open_relay(api, network):
    response = api.post(TRUSTED, {"network": network}, format="json")
    assert response.status_code == 400
    assert "open relay" in response.json()["network"][0]
    assert not TrustedNetwork.objects.exists()
    response = api.post(
        TRUSTED, {"network": network, "open_relay_override": True, "confirm_open_relay": True}, format="json"
    )
    assert response.status_code == 201, response.json()


def test_embedded_ipv4_prefix_is_judged_as_the_ipv4_network_it_holds(api):
    response = api.post(TRUSTED, {"network": "64:ff9b::a00:0/104"}, format="json")  # 10.0.0.0/8 through NAT64
    assert response.status_code == 201, response.json()


def test_risk_analysis_says_an_overridden_embedding_prefix_is_an_open_relay(editor_client, api):
    api.post(TRUSTED, {"network": "::/96", "open_relay_override": True, "confirm_open_relay": True}, format="json")
    page = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert "::/96 holds every IPv4 address" in page
    assert "this makes the server an open relay" in page


def test_the_dialog_stores_the_canonical_text(editor_client):
    add = reverse("policy:restrictions-entry-add", args=["trusted"])
    response = editor_client.post(add, {"address": "::0.10.0.0", "mask": "112", "enabled": "on"})
    assert response.status_code == 302
    assert "::a:0/112" in editor_client.get(reverse("policy:restrictions")).content.decode()
    editor_client.post(reverse("policy:restrictions"), {"allow_listed_ips": "on", "action": "ok"})
    assert TrustedNetwork.objects.get().network == "::a:0/112"


def test_internal_addresses_and_routes_are_canonical(api):
    response = api.post("/api/v1/internal-addresses/", {"address": "::0.10.0.11"}, format="json")
    assert response.json()["address"] == "::a:b"
    assert InternalAddress.objects.get().address == "::a:b"
    parse_host_address("::a:b")
    response = api.post("/api/v1/domains/", {"domain": "example.com", "route": "[::10.0.0.25]:25"}, format="json")
    assert response.json()["route"] == "[::a00:19]:25"
    response = api.post("/api/v1/domains/", {"domain": "example.org", "route": "[::ffff:192.0.2.25]"}, format="json")
    assert response.json()["route"] == "192.0.2.25:25"


def test_canonical_text_never_has_a_dotted_tail():
    assert address_text(6, 0x0A000B) == "::a:b"
    assert address_text(6, 0xFFFF_0102_0304) == "::ffff:102:304"
    assert address_text(6, 0) == "::"
    assert address_text(6, 1 << 112) == "1::"
    assert address_text(6, 0x2001_0DB8_0000_0000_0001_0000_0000_0001) == "2001:db8::1:0:0:1"
    assert address_text(6, 0x2001_0DB8_0000_0001_0001_0001_0001_0001) == "2001:db8:0:1:1:1:1:1"
    assert address_text(4, 0xC0000207) == "192.0.2.7"


def test_migration_rewrites_stored_text():
    """Rows stored by earlier versions in netaddr's text are rewritten in the canonical one."""
    canonicalise = import_module("policy.migrations.0014_canonical_addresses").canonicalise
    TrustedNetwork.objects.bulk_create(
        [TrustedNetwork(network="::0.10.0.11/128", family=6, range_start="0" * 32, range_end="0" * 32)]
    )
    DeniedNetwork.objects.bulk_create(
        [DeniedNetwork(network="::1.0.0.0/104", family=6, range_start="0" * 32, range_end="0" * 32)]
    )
    LocalDomain.objects.create(domain="example.com", route="[::0.10.0.25]:25")
    canonicalise(django_apps, None)
    assert TrustedNetwork.objects.get().network == "::a:b/128"
    assert DeniedNetwork.objects.get().network == "::100:0/104"
    assert LocalDomain.objects.get().route == "[::a:19]:25"


# A snapshot relayd would refuse is never published.


@pytest.fixture
def legacy_row():
    """A row relayd refuses, as an earlier version stored it; the raw update skips every check."""
    with policy_change():
        network = TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
    TrustedNetwork.objects.filter(pk=network.pk).update(network="::0.10.0.11/128", description="legacy")
    return network


def test_api_change_whose_snapshot_relayd_refuses_is_400_and_saves_nothing(api, legacy_row):
    response = api.post(TRUSTED, {"network": "192.0.2.0/24"}, format="json")
    assert response.status_code == 400
    detail = response.json()["detail"]
    assert "trusted network ::0.10.0.11/128" in detail
    assert "not normalised: write it as ::a:b/128" in detail
    assert not TrustedNetwork.objects.filter(network="192.0.2.0/24").exists()
    assert PolicyRevision.objects.count() == 1


def test_dialog_change_whose_snapshot_relayd_refuses_is_a_form_error(editor_client, legacy_row):
    editor_client.post(reverse("policy:restrictions-entry-add", args=["denied"]), {"address": "198.51.100.0/24"})
    response = editor_client.post(reverse("policy:restrictions"), {"allow_listed_ips": "on", "action": "ok"})
    assert response.status_code == 400
    assert "relayd would refuse the trusted network ::0.10.0.11/128" in response.content.decode()
    assert "policy/restrictions.html" in [template.name for template in response.templates]  # the dialog's error
    assert not DeniedNetwork.objects.exists()
    assert PolicyRevision.objects.count() == 1


def test_csv_import_whose_snapshot_relayd_refuses_saves_nothing(api, legacy_row):
    response = api.post(f"{TRUSTED}bulk/", [{"network": "192.0.2.0/24"}], format="json")
    assert response.status_code == 400
    assert "::0.10.0.11/128" in response.json()["detail"]
    assert TrustedNetwork.objects.count() == 1


def test_publish_command_refuses_with_the_entry(legacy_row):
    with pytest.raises(CommandError, match=re.escape("trusted network ::0.10.0.11/128")):
        call_command("publish")
    assert PolicyRevision.objects.count() == 1


def test_fixing_the_entry_publishes_again(api, legacy_row, policy_file, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        response = api.patch(f"{TRUSTED}{legacy_row.pk}/", {"network": "::a:b/128"}, format="json")
    assert response.status_code == 200, response.json()
    assert load_snapshot(policy_file).trusted_networks[0].network.text == "::a:b/128"


def test_rollback_to_a_revision_in_the_old_spelling_restores_it_canonically(api):
    with policy_change():
        TrustedNetwork.objects.create(network="::a:b/128", description="v6 host")
        InternalAddress.objects.create(address="::a:1")
    old = PolicyRevision.objects.get()
    spelled = old.snapshot.replace('"::a:b/128"', '"::0.10.0.11/128"').replace('"::a:1"', '"::0.10.0.1"')
    PolicyRevision.objects.filter(pk=old.pk).update(snapshot=spelled)
    with policy_change():
        TrustedNetwork.objects.all().delete()
        InternalAddress.objects.all().delete()
    response = api.post(f"/api/v1/revisions/{old.serial}/rollback/", {}, format="json")
    assert response.status_code == 201, response.content
    assert list(TrustedNetwork.objects.values_list("network", flat=True)) == ["::a:b/128"]
    assert list(InternalAddress.objects.values_list("address", flat=True)) == ["::a:1"]
