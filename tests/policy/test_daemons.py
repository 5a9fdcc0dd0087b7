from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.urls import reverse
from django.utils import timezone

from policy import daemons
from policy.models import LocalDomain, PolicyRevision, RelayNode
from policy.revisions import policy_change

pytestmark = pytest.mark.django_db


def report(node="mx1", serial=1, accepted=0, denied=0, tls=True):
    return daemons.record_report(
        {"node": node, "serial": serial, "tls": tls, "counters": {"accepted": accepted, "relay_denied": denied}},
        "192.0.2.10",
    )


def publish():
    with policy_change():
        LocalDomain.objects.create(domain=f"d{PolicyRevision.objects.count()}.example")


def test_report_updates_the_node():
    report(serial=None)
    node = report(serial=3, accepted=5)
    assert (node.serial, node.counters["accepted"], node.address) == (3, 5, "192.0.2.10")
    assert RelayNode.objects.count() == 1


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({}, "node"),
        ({"node": "  "}, "node"),
        ({"node": "mx1", "serial": -1}, "serial"),
        ({"node": "mx1", "serial": "7"}, "serial"),
        ({"node": "mx1", "counters": {"accepted": -2}}, "counters"),
        ({"node": "mx1", "counters": []}, "counters"),
    ],
)
def test_bad_reports_are_refused(payload, field):
    with pytest.raises(ValidationError) as caught:
        daemons.record_report(payload, None)
    assert field in caught.value.message_dict


def test_states_current_updating_behind_silent():
    publish()
    report("current", serial=1)
    report("old", serial=0)
    report("gone", serial=1)
    RelayNode.objects.filter(name="gone").update(last_seen_at=timezone.now() - timedelta(minutes=5))
    states = {status.node.name: status.state for status in daemons.node_statuses()}
    assert states == {"current": "current", "old": "updating", "gone": "silent"}
    PolicyRevision.objects.update(created_at=timezone.now() - timedelta(minutes=1))
    assert {s.node.name: s.state for s in daemons.node_statuses()}["old"] == "behind"


def test_tls_ready():
    assert daemons.tls_ready() is None
    report("a", tls=True)
    assert daemons.tls_ready() is True
    report("b", tls=False)
    assert daemons.tls_ready() is False


def test_dashboard_shows_nodes_and_chart(viewer_client):
    publish()
    report("mx1", serial=1, accepted=3)
    body = viewer_client.get(reverse("policy:dashboard")).content.decode()
    assert "mx1" in body
    assert "state-current" in body
    assert "No traffic yet" in body  # one report is only the baseline of the counters
