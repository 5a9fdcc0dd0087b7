"""The policy file: serials only grow, refusals are remembered for the status report until a newer policy."""

import pytest

from relayd.dashboard import node_report
from relayd.metrics import Metrics
from relayd.policy_source import PolicySource
from tests.relayd.conftest import policy, publish
from tests.snapshots import network

TRUSTING = {"trusted_networks": [network(1, "127.0.0.1/32")]}


@pytest.fixture
def source(tmp_path):
    path = tmp_path / "policy.json"
    publish(path, policy(serial=5, **TRUSTING))
    source = PolicySource(path, Metrics())
    assert source.load()
    return source


def refresh(source, document) -> bool:
    publish(source.path, document)
    return source.load(force=True)


@pytest.mark.parametrize(
    ("document", "serial", "problem"),
    [
        (policy(serial=5), 5, "5 is the serial in force, with other content; serials only grow"),
        (policy(serial=4, **TRUSTING), 4, "4 is older than the serial in force (5)"),
        (policy(serial=9, trusted_networks=[network(1, "::0.10.0.11/128")]), 9, "not normalised"),
        ({**policy(serial=9), "surprise": 1}, None, "surprise: unknown key"),
        ("{ not json", None, "not valid JSON"),
    ],
)
def test_a_refused_snapshot_keeps_the_policy_and_is_remembered_with_its_serial(source, document, serial, problem):
    assert not refresh(source, document)
    assert source.policy.serial == 5
    assert source.policy.snapshot.trusted_networks  # still the one in force
    assert source.refused["serial"] == serial
    assert problem in source.refused["reason"]
    assert source.status()["refused_serial"] == serial
    report = node_report("n1", source.policy.serial, False, source.metrics, source.refused)
    assert (report["serial"], report["refused_serial"]) == (5, serial)
    assert problem in report["refused_reason"]


def test_the_same_snapshot_again_is_no_change_and_no_refusal(source):
    assert not refresh(source, policy(serial=5, **TRUSTING))
    assert source.refused is None


def test_a_newer_policy_clears_the_refusal(source):
    refresh(source, policy(serial=5))
    assert source.refused is not None
    assert refresh(source, policy(serial=6))
    assert source.refused is None
    report = node_report("n1", 6, False, source.metrics, source.refused)
    assert (report["refused_serial"], report["refused_reason"]) == (None, None)


def test_a_node_keeps_enforcing_when_a_newer_schema_arrives_and_announces_what_it_understands(source):
    """A schema this relayd does not know is refused, never read as an older one (issue 17)."""
    from relayd import __version__
    from relayd.config import SUPPORTED_SCHEMAS

    assert not refresh(source, {**policy(serial=9), "schema": 4, "limits": {"rate": 10}})
    assert source.policy.serial == 5
    assert "unsupported schema 4: this relayd understands schemas 1, 2 and 3" in source.refused["reason"]
    report = node_report("n1", source.policy.serial, False, source.metrics, source.refused)
    assert report["schemas"] == list(SUPPORTED_SCHEMAS) == [1, 2, 3]
    assert report["version"] == __version__
    assert "unsupported schema 4" in report["refused_reason"]
