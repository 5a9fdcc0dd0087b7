import threading
from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import connection
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from policy import daemons
from policy.models import AuditEntry, LocalDomain, PolicyRevision, RelayNode, RelayNodeSample
from policy.revisions import policy_change
from tests.conftest import make_user

pytestmark = pytest.mark.django_db


def report(node="mx1", serial=1, accepted=0, denied=0, tls=True):
    body = {"node": node, "serial": serial, "tls": tls, "counters": {"accepted": accepted, "relay_denied": denied}}
    return daemons.record_report(daemons.parse_report(body), "192.0.2.10")


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
        # Past the database's columns: refused here, not a 500 from PostgreSQL.
        ({"node": "mx1", "serial": 2**31}, "serial"),
        ({"node": "mx1", "counters": {"accepted": 2**63}}, "counters"),
        ({"node": "mx1", "tls": "yes"}, "tls"),
        (["mx1"], "__all__"),
    ],
)
def test_bad_reports_are_refused(payload, field):
    with pytest.raises(ValidationError) as caught:
        daemons.parse_report(payload)
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


def test_a_fetch_is_shown_on_a_reported_node_and_creates_no_node(viewer_client):
    daemons.record_fetch("mx2", 1, "192.0.2.20")
    assert not RelayNode.objects.exists()  # a fetch alone does not count toward RELAYADMIN_MAX_NODES
    report("mx2", serial=None)
    daemons.record_fetch("mx2", 1, "192.0.2.20")
    body = viewer_client.get(reverse("policy:dashboard")).content.decode()
    assert "fetched 1 0\xa0minutes ago from 192.0.2.20" in body


def test_a_refusal_is_stored_flagged_in_red_and_cleared_by_a_newer_serial(editor_client):
    for _ in range(12):
        publish()
    reason = "trusted_networks[0].network: not normalised: write it as ::a:b/128"
    body = {"node": "mx1", "serial": 11, "refused_serial": 12, "refused_reason": reason}
    daemons.record_report(daemons.parse_report(body), None)
    node = RelayNode.objects.get()
    assert (node.refused_serial, node.refused_reason) == (12, reason)
    assert [status.state for status in daemons.node_statuses()] == ["refused"]
    page = editor_client.get(reverse("policy:dashboard")).content.decode()
    assert f'<p class="bad refusal" role="alert">refused revision 12: {reason}</p>' in page
    listed = editor_client.get("/api/v1/daemons/").json()["results"][0]
    assert listed["state"] == "refused"
    assert (listed["refused_serial"], listed["refused_reason"]) == (12, reason)
    assert listed["refusal"] == f"refused revision 12: {reason}"
    # A report that still carries the refusal but enforces a newer serial clears it, as does one without.
    body = {"node": "mx1", "serial": 13, "refused_serial": 12, "refused_reason": reason}
    daemons.record_report(daemons.parse_report(body), None)
    assert (RelayNode.objects.get().refused_serial, RelayNode.objects.get().refusal) == (None, "")
    assert "refused revision" not in editor_client.get(reverse("policy:dashboard")).content.decode()


def test_a_refused_unreadable_snapshot_has_no_serial():
    body = {"node": "mx1", "serial": 3, "refused_serial": None, "refused_reason": "not valid JSON"}
    daemons.record_report(daemons.parse_report(body), None)
    assert RelayNode.objects.get().refusal == "refused a snapshot: not valid JSON"


@pytest.mark.parametrize(
    "payload",
    [
        {"refused_serial": "12", "refused_reason": "x"},
        {"refused_serial": -1, "refused_reason": "x"},
        {"refused_serial": 12},
        {"refused_serial": 12, "refused_reason": 5},
    ],
)
def test_bad_refusals_are_refused(payload):
    with pytest.raises(ValidationError):
        daemons.parse_report({"node": "mx1", "serial": 3, **payload})


def sources_report(proxy_hosts=(), top_peer=None, node="mx1"):
    body = {"node": node, "serial": 1, "counters": {}, "proxy_hosts": list(proxy_hosts), "top_peer": top_peer}
    return daemons.record_report(daemons.parse_report(body), "192.0.2.10")


@pytest.mark.parametrize(
    ("proxy_hosts", "top_peer", "field"),
    [
        (["10.0.0.1/8"], None, "proxy_hosts"),
        ("10.0.0.0/8", None, "proxy_hosts"),
        ([], {"address": "nope", "connections": 1, "of": 1}, "top_peer"),
        ([], {"address": "10.0.0.1", "connections": -1, "of": 1}, "top_peer"),
        ([], {"address": "10.0.0.1"}, "top_peer"),
    ],
)
def test_bad_client_sources_are_refused(proxy_hosts, top_peer, field):
    with pytest.raises(ValidationError) as error:
        daemons.parse_report({"node": "mx1", "proxy_hosts": proxy_hosts, "top_peer": top_peer})
    assert field in error.value.message_dict


def trust(*networks):
    from policy.models import TrustedNetwork

    with policy_change():
        for network in networks:
            TrustedNetwork.objects.create(network=network)


def risk_codes(client):
    return [risk.code for risk in client.get(reverse("policy:dashboard")).context["risks"]]


def test_a_trusted_network_holding_a_proxy_is_flagged(viewer_client):
    trust("10.0.0.0/8")
    sources_report(proxy_hosts=["10.1.0.5/32"])
    sources_report(proxy_hosts=["192.0.2.0/24"], node="mx2")
    [risk] = [risk for risk in viewer_client.get(reverse("policy:dashboard")).context["risks"] if "proxy" in risk.code]
    assert risk.code == "trusted_proxy" and "10.0.0.0/8" in risk.message and "mx1" in risk.message


def test_the_nat_trap_is_flagged_when_most_clients_come_from_one_trusted_address(viewer_client):
    trust("10.0.0.0/8", "127.0.0.1/32")
    sources_report(top_peer={"address": "10.0.0.1", "connections": 10, "of": 100})
    assert "nat_trap" not in risk_codes(viewer_client)  # one client among many
    sources_report(top_peer={"address": "10.0.0.1", "connections": 90, "of": 100})
    assert "nat_trap" in risk_codes(viewer_client)
    sources_report(top_peer={"address": "127.0.0.1", "connections": 90, "of": 100})
    assert "nat_trap" not in risk_codes(viewer_client)  # local programs
    sources_report(top_peer={"address": "192.0.2.1", "connections": 90, "of": 100})
    assert "nat_trap" not in risk_codes(viewer_client)  # not trusted: no trap


@pytest.mark.django_db(transaction=True)
def test_new_nodes_reporting_at_once_cannot_pass_the_cap(settings):
    settings.RELAYADMIN_MAX_NODES = 3
    start, admitted, refused, errors = threading.Barrier(8), [], [], []

    def new_node(number):
        try:
            start.wait(10)
            report(node=f"mx{number}")
            admitted.append(number)
        except daemons.TooManyNodes:
            refused.append(number)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            connection.close()

    threads = [threading.Thread(target=new_node, args=(number,)) for number in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert (len(admitted), len(refused), RelayNode.objects.count()) == (3, 5, 3)


def test_an_editor_forgets_a_retired_node_and_frees_its_place(editor_client, settings):
    settings.RELAYADMIN_MAX_NODES = 1
    retired = report(node="mx-old", accepted=7)
    with pytest.raises(daemons.TooManyNodes):
        report(node="mx-new")
    page = editor_client.get(reverse("policy:node-forget", args=[retired.pk]))
    assert "revoke its token to stop it" in page.content.decode()
    response = editor_client.post(reverse("policy:node-forget", args=[retired.pk]))
    assert response.url == reverse("policy:dashboard")
    assert not RelayNode.objects.exists()
    assert not RelayNodeSample.objects.exists()
    entry = AuditEntry.objects.get(action="delete", object_type="relay node")
    assert (entry.object_repr, entry.actor_username, entry.before["counters"]["accepted"]) == ("mx-old", "erin", 7)
    assert report(node="mx-new").name == "mx-new"


def test_the_api_forgets_a_node_by_name(editor):
    report(node="mx-old")
    client = APIClient()
    client.force_authenticate(editor)
    assert client.delete("/api/v1/daemons/mx-old/").status_code == 204
    assert client.delete("/api/v1/daemons/mx-old/").status_code == 404
    assert AuditEntry.objects.get(action="delete", object_type="relay node").source == "api"


@pytest.mark.parametrize(("role", "sees_link", "post_status"), [("viewer", False, 403), ("editor", True, 302)])
def test_only_editors_may_forget_a_node(client, role, sees_link, post_status):
    client.force_login(make_user(f"a {role}", role=role))
    link = reverse("policy:node-forget", args=[report(node="mx-old").pk])
    assert (link in client.get(reverse("policy:dashboard")).content.decode()) is sees_link
    assert client.post(link).status_code == post_status
    assert RelayNode.objects.exists() is not sees_link


@pytest.mark.parametrize(
    "body",
    [
        {"node": "mx1", "version": "1.0\x00"},
        {"node": "mx1", "refused_serial": 2, "refused_reason": "bad\x00"},
        {"node": "mx1", "usage": {"smtp_users": {"al\x00ice": 1}}},
    ],
)
def test_a_report_with_a_nul_character_is_refused_not_stored(body):
    with pytest.raises(ValidationError, match="NUL"):
        daemons.parse_report(body)
