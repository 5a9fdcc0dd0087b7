"""Building blocks of hand-made policy snapshots (docs/snapshot.md) for tests without a database."""

from datetime import datetime


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
