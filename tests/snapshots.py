"""Building blocks of hand-made policy snapshots (docs/snapshot.md) for tests without a database."""

from datetime import datetime

from relayd.config import RESTRICTION_KEYS

LISTS = ("trusted_networks", "denied_networks", "internal_addresses", "local_domains", "smtp_users")


def restrictions(**on: bool) -> dict:
    """Return a snapshot's "restrictions": every checkbox relayd knows, each off unless given.

    Off is the safe setting of every checkbox (each lets more clients relay), so a checkbox added
    later leaves the meaning of existing test snapshots as it was.
    """
    unknown = on.keys() - set(RESTRICTION_KEYS)
    assert not unknown, f"no such checkbox: {', '.join(sorted(unknown))}"
    return {key: on.get(key, False) for key in RESTRICTION_KEYS}


def snapshot(
    serial=1,
    *,
    authenticated=False,
    listed_ips=False,
    internal=False,
    generated_at="2026-11-28T00:40:00+00:00",
    **keys,
) -> dict:
    """Return a schema-1 snapshot with these checkboxes; the lists are empty unless keys give them.

    keys replace or add top-level keys: the lists, "schema", "audit" or "profiles".
    """
    return {
        "schema": 1,
        "serial": serial,
        "generated_at": generated_at,
        "restrictions": restrictions(
            allow_authenticated=authenticated, allow_listed_ips=listed_ips, allow_internal_addresses=internal
        ),
        **{name: [] for name in LISTS},  # a list each: a test may append to one
        **keys,
    }


def network(entry_id, text, description="", expires_at=None, *, denied=False):
    """Return a snapshot network entry; denied ones carry no expires_at."""
    if isinstance(expires_at, datetime):
        expires_at = expires_at.isoformat()
    entry = {
        "id": entry_id,
        "network": text,
        "description": description,
        "expires_at": expires_at,
        "added_by": "alice",
        "added_at": "2026-11-28T00:00:00+00:00",
    }
    if denied:
        del entry["expires_at"]
    return entry


def profile(**limits) -> dict:
    """Return a snapshot profile with these limits and the rest empty."""
    return {
        "rate_limit_per_hour": None,
        "recipients_per_hour": None,
        "allowed_sender_domains": [],
        "require_tls": False,
        "owner": "",
        "ticket": "",
        **limits,
    }
