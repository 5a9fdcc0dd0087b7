"""Snapshots for the MTA export tests (plain pytest, no Django database)."""

from datetime import UTC, datetime, timedelta

from tests.snapshots import network, restrictions

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
LAB_EXPIRES = NOW + timedelta(days=3)
OLD_EXPIRED = NOW - timedelta(days=1)


def make_snapshot(listed_ips=True, authenticated=True, internal=True, **lists):
    """Return a schema-1 snapshot: the three checkboxes, and sample lists unless lists= replaces them."""
    snapshot = {
        "schema": 1,
        "serial": 7,
        "generated_at": "2026-11-28T11:59:00+00:00",
        "restrictions": restrictions(
            allow_authenticated=authenticated, allow_listed_ips=listed_ips, allow_internal_addresses=internal
        ),
        "trusted_networks": [
            network(3, "10.0.0.0/8", "LAN"),
            network(4, "2001:db8::/32", "lab", LAB_EXPIRES),
            # Expired before the export: no MTA table may trust it.
            network(5, "192.0.2.0/24", "old contractor", OLD_EXPIRED),
        ],
        "denied_networks": [
            network(1, "10.66.0.0/16", "guest Wi-Fi", denied=True),
            network(2, "10.66.5.0/24", "kiosks", denied=True),
            network(6, "2001:db8:bad::/48", "lab guests", denied=True),
        ],
        "internal_addresses": [
            {"id": 1, "address": "192.168.1.10", "description": "LAN interface"},
            {"id": 2, "address": "2001:db8:1::10", "description": "LAN interface, IPv6"},
        ],
        "local_domains": [
            {"domain": "example.com", "include_subdomains": True, "route": "mail.internal.example.com:25"},
            # A subdomain without a route of its own: example.com's route must not apply to it.
            {"domain": "legacy.example.com", "include_subdomains": True, "route": None},
            {"domain": "v6.example.net", "include_subdomains": False, "route": "[2001:db8::25]:2525"},
            {"domain": "xn--bcher-kva.example", "include_subdomains": False, "route": None},
        ],
        "smtp_users": [],
    }
    snapshot.update(lists)
    return snapshot


def empty_snapshot(listed_ips=True, authenticated=True, internal=True):
    """Return a snapshot with every checkbox as given and every list empty."""
    return make_snapshot(
        listed_ips,
        authenticated,
        internal,
        trusted_networks=[],
        denied_networks=[],
        internal_addresses=[],
        local_domains=[],
    )
