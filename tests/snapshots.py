"""Building blocks of hand-made policy snapshots (docs/snapshot.md) for tests without a database."""

from datetime import datetime

from relayd.config import RESTRICTION_KEYS


def restrictions(**on: bool) -> dict:
    """Return a snapshot's "restrictions": every checkbox relayd knows, each off unless given.

    Off is the safe setting of every checkbox (each lets more clients relay), so a checkbox added
    later leaves the meaning of existing test snapshots as it was.
    """
    unknown = on.keys() - set(RESTRICTION_KEYS)
    assert not unknown, f"no such checkbox: {', '.join(sorted(unknown))}"
    return {key: on.get(key, False) for key in RESTRICTION_KEYS}


def network(entry_id, text, description, expires_at=None, *, denied=False):
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
