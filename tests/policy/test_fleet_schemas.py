"""The dashboard never publishes a snapshot that a reporting relayd could not enforce (issue 17).

A feature that needs a newer schema declares it in policy.snapshot.SCHEMA_FEATURES; relay profiles
(schema 2) are the first. Most tests here declare a feature of their own instead (a local domain
named needs-schema-2.test), so that they hold whatever later schemas add.
"""

from datetime import timedelta

import pytest
from django.utils import timezone

from policy import daemons
from policy.models import LocalDomain, PolicyRevision, RelayNode, TrustedNetwork
from policy.revisions import policy_change
from policy.snapshot import SchemaFeature, UnpublishablePolicy, build_snapshot, required_schema

pytestmark = pytest.mark.django_db

FEATURE = SchemaFeature(
    2,
    "the test feature",
    lambda snapshot: any(domain["domain"] == "needs-schema-2.test" for domain in snapshot["local_domains"]),
)


def limit(network):
    network.rate_limit_per_hour = 10
    network.save()


def test_relay_profiles_wait_for_a_node_that_runs_a_relayd_before_profiles():
    """The real schema-2 feature: a trusted network's rate limit (issue 15)."""
    report("relay-3", [1])
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
    with (
        pytest.raises(
            UnpublishablePolicy,
            match=r"node relay-3 runs an older relayd \(schemas 1\): upgrade it before"
            " enabling relay profiles",
        ),
        policy_change(),
    ):
        limit(TrustedNetwork.objects.get(network="10.0.0.0/8"))
    assert TrustedNetwork.objects.get(network="10.0.0.0/8").rate_limit_per_hour is None
    report("relay-3", [1, 2])
    with policy_change():
        limit(TrustedNetwork.objects.get(network="10.0.0.0/8"))
    assert PolicyRevision.objects.order_by("-serial").first().snapshot_data["schema"] == 2


@pytest.fixture
def schema_2_feature(monkeypatch):
    monkeypatch.setattr("policy.snapshot.SCHEMA_FEATURES", [FEATURE])
    monkeypatch.setattr("relayd.config.SUPPORTED_SCHEMAS", (1, 2))


def report(name, schemas=None, **extra):
    body = {"node": name, "serial": 0, "version": "0.9.0", **extra}
    if schemas is not None:
        body["schemas"] = schemas
    return daemons.record_report(daemons.parse_report(body), "192.0.2.25")


def add_domain(name):
    with policy_change():
        LocalDomain.objects.create(domain=name)


def test_a_snapshot_carries_the_oldest_schema_that_expresses_it(schema_2_feature):
    add_domain("example.com")
    assert build_snapshot(1)["schema"] == 1
    add_domain("needs-schema-2.test")
    snapshot = build_snapshot(3)
    assert snapshot["schema"] == 2
    assert required_schema(snapshot) == (2, [FEATURE])


def test_a_feature_is_refused_while_a_reporting_node_runs_an_older_relayd(schema_2_feature):
    report("relay-1", [1, 2])
    report("relay-3", [1])
    with pytest.raises(UnpublishablePolicy) as refused:
        add_domain("needs-schema-2.test")
    assert refused.value.messages == [
        "Nothing was saved: node relay-3 runs an older relayd (schemas 1): upgrade it before enabling the test feature."
    ]
    assert not LocalDomain.objects.filter(domain="needs-schema-2.test").exists()
    # Changes the old node can enforce still publish, in schema 1.
    add_domain("example.com")
    assert PolicyRevision.objects.order_by("-serial").first().snapshot_data["schema"] == 1


def test_a_node_that_never_reported_its_schemas_counts_as_schema_1(schema_2_feature):
    report("relay-old")
    assert RelayNode.objects.get(name="relay-old").schemas == [1]
    with pytest.raises(UnpublishablePolicy, match="node relay-old runs an older relayd"):
        add_domain("needs-schema-2.test")


def test_the_feature_publishes_once_every_reporting_node_is_upgraded_or_silent(schema_2_feature):
    report("relay-1", [1, 2])
    report("relay-3", [1])
    RelayNode.objects.filter(name="relay-3").update(last_seen_at=timezone.now() - timedelta(hours=1))
    add_domain("needs-schema-2.test")
    assert PolicyRevision.objects.order_by("-serial").first().snapshot_data["schema"] == 2


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("schemas", []),
        ("schemas", [0]),
        ("schemas", ["1"]),
        ("schemas", [True]),
        ("schemas", 1),
        ("schemas", [1001]),
        ("schemas", list(range(1, 22))),
        ("version", 5),
    ],
)
def test_a_report_with_bad_software_fields_is_refused(field, value):
    with pytest.raises(daemons.ValidationError, match=field):
        daemons.parse_report({"node": "relay-1", "serial": 0, field: value})


def test_the_node_table_shows_the_version_and_schemas(client, viewer):
    report("relay-3", [1], version="1.4.2")
    client.force_login(viewer)
    page = client.get("/").content.decode()
    assert "1.4.2" in page and "schemas 1" in page
