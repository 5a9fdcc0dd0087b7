"""Filters, search, ordering and pagination of the lists, one line per case."""

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from policy.audit import audit_context
from policy.models import AuditEntry, DeniedNetwork, LocalDomain, SmtpUser, TrustedNetwork

pytestmark = pytest.mark.django_db

TRUSTED = reverse("api:trustednetwork-list")
AUDIT = reverse("api:auditentry-list")


@pytest.fixture
def networks():
    for network, description, enabled in [
        ("10.0.0.0/8", "corporate", True),
        ("10.1.0.0/16", "Branch office", True),
        ("9.9.9.0/24", "partner", False),
        ("192.0.2.7/32", "printer", True),
        ("2001:db8::/32", "v6 office", True),
        ("::/96", "v4-compatible space", True),  # 10.1.2.3 as a number is inside it: the family must keep it out
    ]:
        TrustedNetwork.objects.create(network=network, description=description, enabled=enabled)


def listed(api, url=TRUSTED, key="network", **params):
    response = api.get(url, params)
    assert response.status_code == 200, response.json()
    return [row[key] for row in response.json()["results"]]


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"contains": "10.1.2.3"}, ["10.0.0.0/8", "10.1.0.0/16"]),
        ({"contains": "::ffff:10.1.2.3"}, ["10.0.0.0/8", "10.1.0.0/16"]),
        ({"contains": "10.2.0.0/16"}, ["10.0.0.0/8"]),
        ({"contains": "192.0.2.7"}, ["192.0.2.7/32"]),
        ({"contains": "192.0.2.8"}, []),
        ({"contains": "2001:db8:1::1"}, ["2001:db8::/32"]),
        ({"family": 6}, ["::/96", "2001:db8::/32"]),
        ({"enabled": "false"}, ["9.9.9.0/24"]),
        ({"description": "OFFICE"}, ["10.1.0.0/16", "2001:db8::/32"]),
        ({"q": "print"}, ["192.0.2.7/32"]),
        ({"q": "10.1."}, ["10.1.0.0/16"]),
        ({"ordering": "network", "family": 4}, ["9.9.9.0/24", "10.0.0.0/8", "10.1.0.0/16", "192.0.2.7/32"]),
        ({"ordering": "-network", "family": 4}, ["192.0.2.7/32", "10.1.0.0/16", "10.0.0.0/8", "9.9.9.0/24"]),
        ({"ordering": "-description", "family": 6}, ["2001:db8::/32", "::/96"]),
    ],
)
def test_network_filters(api, networks, params, expected):
    assert listed(api, **params) == expected


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"contains": "10.1.2.300"}, "octet 300 is out of range"),
        ({"contains": "garbage"}, "is not an IP address"),
        ({"family": "5"}, "Select a valid choice"),
        ({"ordering": "range_end"}, "Select a valid choice"),
    ],
)
def test_bad_filter_values_get_400_with_a_reason(api, params, message):
    response = api.get(TRUSTED, params)
    assert response.status_code == 400
    assert message in str(response.json())


def test_denied_networks_filter_too(api):
    DeniedNetwork.objects.create(network="203.0.113.0/24")
    assert listed(api, reverse("api:deniednetwork-list"), contains="203.0.113.9") == ["203.0.113.0/24"]


def test_pagination(api):
    TrustedNetwork.objects.bulk_create(
        [TrustedNetwork(network=f"10.{i}.0.0/16", family=4, range_start=f"{i:032x}", range_end="") for i in range(150)]
    )
    first = api.get(TRUSTED).json()
    assert (first["count"], len(first["results"]), first["previous"]) == (150, 100, None)
    assert len(api.get(first["next"]).json()["results"]) == 50
    assert len(api.get(TRUSTED, {"page_size": 20}).json()["results"]) == 20
    assert api.get(TRUSTED, {"page": 9}).status_code == 404


def test_other_lists_search_and_filter(api):
    LocalDomain.objects.create(domain="example.com", route="mx.example.net:25")
    LocalDomain.objects.create(domain="example.org", include_subdomains=True)
    SmtpUser.objects.create(username="alice", password_hash="x", enabled=False)
    SmtpUser.objects.create(username="bob", password_hash="x")
    domains = reverse("api:localdomain-list")
    assert listed(api, domains, key="domain", q="example.net") == ["example.com"]
    assert listed(api, domains, key="domain", include_subdomains="true") == ["example.org"]
    assert listed(api, domains, key="domain", ordering="-domain") == ["example.org", "example.com"]
    assert listed(api, reverse("api:smtpuser-list"), key="username", enabled="false") == ["alice"]


@pytest.fixture
def audit_entries(editor, viewer):
    with audit_context(source="web", user=editor):
        TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
    with audit_context(source="api", user=editor, token="ci"):
        LocalDomain.objects.create(domain="example.com")
    with audit_context(source="web", user=viewer, reason="typo fixed"):
        LocalDomain.objects.filter(domain="example.com").get().delete()


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"actor": "ERIN"}, ["create example.com", "create 10.0.0.0/8"]),
        ({"actor": "vic"}, ["delete example.com"]),
        ({"object_type": "Local Domain"}, ["delete example.com", "create example.com"]),
        ({"action": "create", "object_type": "trusted network"}, ["create 10.0.0.0/8"]),
        ({"q": "typo"}, ["delete example.com"]),
        ({"q": "token ci"}, ["create example.com"]),
    ],
)
def test_audit_filters(api, audit_entries, params, expected):
    rows = api.get(AUDIT, params).json()["results"]
    assert [f"{row['action']} {row['object_repr']}" for row in rows] == expected


def test_audit_date_range(api, audit_entries):
    latest = AuditEntry.objects.first().timestamp
    since = (latest + timedelta(seconds=1)).isoformat()
    assert api.get(AUDIT, {"since": since}).json()["count"] == 0
    until = (timezone.now() - timedelta(days=1)).isoformat()
    assert api.get(AUDIT, {"until": until}).json()["count"] == 0
    assert api.get(AUDIT, {"since": "2000-01-01T00:00:00Z", "until": latest.isoformat()}).json()["count"] >= 3
    assert api.get(AUDIT, {"since": "yesterday"}).status_code == 400


def test_audit_is_read_only(api, audit_entries):
    entry = AuditEntry.objects.first()
    assert api.delete(reverse("api:auditentry-detail", args=[entry.pk])).status_code == 405
    assert api.post(AUDIT, {}).status_code == 405
