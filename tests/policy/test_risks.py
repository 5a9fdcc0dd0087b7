from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from policy import services
from policy.models import DeniedNetwork, InternalAddress, RoutingRestrictions, TrustedNetwork
from policy.revisions import policy_change
from policy.risks import DANGER, analyse, is_open_relay, policy_dangers, saved_dangers
from policy.tester import current_snapshot

pytestmark = pytest.mark.django_db


def codes(snapshot=None, **kwargs):
    return {risk.code for risk in analyse(snapshot or current_snapshot(), **kwargs)}


def test_safe_policy_has_no_danger():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
        TrustedNetwork.objects.create(network="127.0.0.1/32")
        TrustedNetwork.objects.create(network="::1/128")
    risks = analyse(current_snapshot())
    assert not is_open_relay(risks)
    assert risks == []


@pytest.mark.parametrize(
    ("setup", "code", "level"),
    [
        (lambda: TrustedNetwork.objects.create(network="0.0.0.0/0", open_relay_override=True), "huge_range", DANGER),
        (lambda: TrustedNetwork.objects.create(network="8.0.0.0/7", open_relay_override=True), "huge_range", DANGER),
        (lambda: TrustedNetwork.objects.create(network="203.0.113.0/24"), "public_range", "warning"),
        (lambda: TrustedNetwork.objects.create(network="2000::/3", open_relay_override=True), "huge_range", DANGER),
        (
            lambda: (
                InternalAddress.objects.create(address="192.168.1.10"),
                RoutingRestrictions(allow_internal_addresses=True).save(),
            ),
            "internal_trap",
            DANGER,
        ),
        (
            lambda: TrustedNetwork.objects.create(network="192.0.2.0/24", expires_at="2020-01-01T00:00Z"),
            "expired",
            "info",
        ),
        (
            lambda: (
                TrustedNetwork.objects.create(network="10.0.0.0/8"),
                TrustedNetwork.objects.create(network="10.1.0.0/16"),
            ),
            "shadowed",
            "info",
        ),
        (
            lambda: (
                TrustedNetwork.objects.create(network="10.1.0.0/16"),
                DeniedNetwork.objects.create(network="10.0.0.0/8"),
            ),
            "denied_trusted",
            "warning",
        ),
        (lambda: None, "no_localhost", "info"),
    ],
)
def test_each_risk_is_flagged(setup, code, level):
    with policy_change():
        setup()
    risks = {risk.code: risk for risk in analyse(current_snapshot())}
    assert risks[code].level == level


def test_two_internal_addresses_are_not_the_single_card_trap():
    with policy_change():
        InternalAddress.objects.create(address="192.168.1.10")
        InternalAddress.objects.create(address="203.0.113.10")
        RoutingRestrictions(allow_internal_addresses=True).save()
    assert "internal_trap" not in codes()


def test_auth_without_tls_is_flagged_only_when_known():
    assert "auth_without_tls" in codes(tls_ready=False)
    assert "auth_without_tls" not in codes(tls_ready=None)
    assert "auth_without_tls" not in codes(tls_ready=True)


def test_dashboard_and_dialog_show_risks(editor_client):
    with policy_change():
        TrustedNetwork.objects.create(network="0.0.0.0/0", open_relay_override=True)
    assert "Open relay" in editor_client.get(reverse("policy:dashboard")).content.decode()
    editor_client.post(reverse("policy:restrictions"), {"allow_listed_ips": "on", "action": "add-localhost"})
    page = editor_client.get(reverse("policy:restrictions"))
    assert page.context["pending"] is True
    assert "Open relay" in page.content.decode()


def test_many_findings_of_one_kind_become_one_line_with_show_all(viewer_client):
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    for i in range(5):
        TrustedNetwork.objects.create(network=f"10.{i}.0.0/16")
    page = viewer_client.get(reverse("policy:dashboard")).content.decode()
    assert "5 trusted entries are already covered by a broader entry." in page
    assert "show all 5" in page
    assert page.count("is already covered by 10.0.0.0/8") == 5  # inside the collapsed list


def test_disabled_and_expired_entries_warn_of_no_overlap():
    TrustedNetwork.objects.create(network="0.0.0.0/0", open_relay_override=True, enabled=False)
    TrustedNetwork.objects.create(network="10.0.0.0/8", expires_at=timezone.now() - timedelta(days=1))
    rows = [{"network": f"10.{i}.0.0/16"} for i in range(20)]
    result = services.import_networks(TrustedNetwork, rows, dry_run=True)
    assert result.warnings == []
    assert services.network_warnings(TrustedNetwork.objects.get(network="0.0.0.0/0")) == []


@pytest.mark.parametrize(
    "make",
    [
        lambda: None,
        lambda: TrustedNetwork.objects.create(network="0.0.0.0/0", open_relay_override=True),
        lambda: TrustedNetwork.objects.create(network="::/0", open_relay_override=True, enabled=False),
        lambda: TrustedNetwork.objects.create(
            network="8.0.0.0/6", open_relay_override=True, expires_at=timezone.now() - timedelta(hours=1)
        ),
        lambda: (
            TrustedNetwork.objects.create(network="8.0.0.0/6", open_relay_override=True),
            RoutingRestrictions(allow_listed_ips=False).save(),
        ),
        lambda: (
            InternalAddress.objects.create(address="192.0.2.25"),
            RoutingRestrictions(allow_internal_addresses=True).save(),
        ),
    ],
)
def test_saved_dangers_are_the_dangers_of_the_snapshot(make):
    make()
    assert saved_dangers() == policy_dangers(current_snapshot())
