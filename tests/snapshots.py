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
