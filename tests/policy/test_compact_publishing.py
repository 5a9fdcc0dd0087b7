"""Compact network lists (schema 3) are published only to a fleet that reads them, and read back as objects."""

import json
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from policy import daemons
from policy.export import render
from policy.models import PolicyRevision, RelayNode, TrustedNetwork
from policy.revisions import commit_revision, policy_change, republish_for, rollback_to
from policy.snapshot import UnpublishablePolicy, policy_content
from relayd.config import COMPACT_SCHEMA, NETWORK_LISTS, SUPPORTED_SCHEMAS, parse_snapshot

pytestmark = pytest.mark.django_db

NETWORKS = ["10.0.0.0/24", "10.0.0.0/8", "2001:db8::/32", "192.0.2.0/24"]


def report(name, schemas):
    body = {"node": name, "serial": 0, "version": "1.0", "schemas": schemas}
    daemons.record_report(daemons.parse_report(body), "192.0.2.25")


def add(*networks):
    with policy_change():
        for network in networks:
            TrustedNetwork.objects.create(network=network, description=f"site {network}")


def latest():
    return PolicyRevision.objects.order_by("-serial").first()


def published_lists(revision):
    return {key: type(json.loads(revision.snapshot)[key]) for key in NETWORK_LISTS}


def test_a_fleet_that_reads_schema_3_gets_compact_lists_read_back_as_objects():
    report("relay-1", list(SUPPORTED_SCHEMAS))
    add(*NETWORKS)
    revision = latest()
    assert published_lists(revision) == {"trusted_networks": dict, "denied_networks": dict}
    assert json.loads(revision.snapshot)["schema"] == COMPACT_SCHEMA
    assert parse_snapshot(revision.snapshot).schema == COMPACT_SCHEMA
    # The dashboard reads the entries as objects, in network order.
    entries = revision.snapshot_data["trusted_networks"]
    assert [entry["network"] for entry in entries] == ["10.0.0.0/8", "10.0.0.0/24", "192.0.2.0/24", "2001:db8::/32"]
    assert entries[0]["description"] == "site 10.0.0.0/8"
    assert revision.snapshot_data["denied_networks"] == []


@pytest.mark.parametrize(
    "fleet",
    [
        [],  # no node reports: the dashboard cannot know what reads the file
        [("relay-1", [1, 2, 3]), ("relay-2", [1, 2])],
        [("relay-1", [1, 2, 3]), ("relay-old", None)],  # a relayd before it reported schemas: schema 1
    ],
)
def test_lists_stay_objects_while_a_reporting_node_cannot_read_compact_ones(fleet):
    for name, schemas in fleet:
        if schemas is None:
            daemons.record_report(daemons.parse_report({"node": name, "serial": 0}), "192.0.2.25")
        else:
            report(name, schemas)
    add(*NETWORKS)
    assert published_lists(latest()) == {"trusted_networks": list, "denied_networks": list}
    assert latest().snapshot_data["schema"] == 1


def test_a_silent_old_node_does_not_hold_the_fleet_back():
    report("relay-1", [1, 2, 3])
    report("relay-gone", [1, 2])
    RelayNode.objects.filter(name="relay-gone").update(last_seen_at=timezone.now() - timedelta(hours=1))
    add(*NETWORKS)
    assert published_lists(latest()) == {"trusted_networks": dict, "denied_networks": dict}


def test_an_old_node_back_from_silence_that_refuses_compact_lists_gets_the_policy_as_objects():
    report("relay-1", [1, 2, 3])
    report("relay-gone", [1, 2])
    RelayNode.objects.filter(name="relay-gone").update(last_seen_at=timezone.now() - timedelta(hours=1))
    add(*NETWORKS)
    compact = latest()
    assert published_lists(compact) == {"trusted_networks": dict, "denied_networks": dict}
    # It comes back, refuses the compact revision and keeps its old policy: the dashboard records
    # the same policy again, in lists of objects, so that the old node enforces the removal too.
    refusal = {"node": "relay-gone", "serial": 0, "schemas": [1, 2], "refused_serial": compact.serial}
    refusal["refused_reason"] = "unsupported schema 3: this relayd understands schemas 1 and 2"
    daemons.record_report(daemons.parse_report(refusal), "192.0.2.25")
    republished = republish_for(RelayNode.objects.get(name="relay-gone"))
    assert republished is not None and republished.serial == compact.serial + 1
    assert published_lists(republished) == {"trusted_networks": list, "denied_networks": list}
    assert policy_content(republished.snapshot_data) == policy_content(compact.snapshot_data)
    assert republished.created_by_name == "system: republish: node relay-gone reads no compact lists"
    # Once is enough: the node now enforces what it can read.
    assert republish_for(RelayNode.objects.get(name="relay-gone")) is None


def test_only_a_fleet_that_cannot_read_the_form_makes_a_revision_of_the_same_policy():
    report("relay-1", [1, 2])
    add(*NETWORKS)
    report("relay-1", [1, 2, 3])  # upgraded: the same policy would now be published compact
    assert commit_revision() is None
    add("198.51.100.0/24")
    assert published_lists(latest()) == {"trusted_networks": dict, "denied_networks": dict}
    # Back down to schema 2: compact lists it cannot read would leave it on its old policy, so the
    # same policy is recorded again as objects.
    report("relay-1", [1, 2])
    assert published_lists(commit_revision()) == {"trusted_networks": list, "denied_networks": list}
    assert commit_revision() is None


def test_rollback_diff_and_export_read_compact_revisions_as_objects(viewer_client):
    report("relay-1", [1, 2, 3])
    add(*NETWORKS)
    first = latest().serial
    with policy_change():
        TrustedNetwork.objects.filter(network="10.0.0.0/24").delete()
        TrustedNetwork.objects.filter(network="10.0.0.0/8").update(description="LAN")
    diff = viewer_client.get(reverse("policy:revision-diff") + f"?a={first}&b={latest().serial}")
    assert diff.status_code == 200
    body = diff.content.decode()
    assert "10.0.0.0/24" in body and "LAN" in body
    download = json.loads(viewer_client.get(reverse("policy:revision-snapshot", args=[first])).content)
    assert len(download["trusted_networks"]) == len(NETWORKS)
    exported = "".join(render("postfix", latest().snapshot_data).values())
    assert "192.0.2.0/24" in exported and "10.0.0.0/24" not in exported
    rollback_to(first)
    assert sorted(TrustedNetwork.objects.values_list("network", "description")) == sorted(
        (network, f"site {network}") for network in NETWORKS
    )


def test_a_compact_snapshot_relayd_would_refuse_is_refused_naming_the_entry():
    report("relay-1", [1, 2, 3])
    add("10.0.0.0/8", "192.0.2.0/24")
    # As an earlier version stored it; the raw update skips every check.
    TrustedNetwork.objects.filter(network="10.0.0.0/8").update(network="::0.10.0.11/128")
    with pytest.raises(
        UnpublishablePolicy,
        match=r"relayd would refuse the trusted network ::0\.10\.0\.11/128: not normalised: write it as ::a:b/128",
    ):
        add("198.51.100.0/24")
    assert not TrustedNetwork.objects.filter(network="198.51.100.0/24").exists()


def test_no_republish_where_no_form_helps_and_the_report_still_succeeds():
    report("relay-1", [1, 2, 3])
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", rate_limit_per_hour=10)  # a profile: schema 2 at least
    compact = latest()
    assert compact.snapshot_data["schema"] == COMPACT_SCHEMA
    refusal = {"node": "relay-old", "serial": 0, "refused_serial": compact.serial, "refused_reason": "schema"}
    daemons.record_report(daemons.parse_report(refusal), "192.0.2.26")  # before schemas were reported: schema 1
    assert republish_for(RelayNode.objects.get(name="relay-old")) is None
    assert latest() == compact
