"""Build the policy snapshot: the one contract between the dashboard and relayd (docs/snapshot.md)."""

import json
import re

from django.core.exceptions import ValidationError
from django.utils import timezone

from policy.models import DeniedNetwork, InternalAddress, LocalDomain, RoutingRestrictions, SmtpUser, TrustedNetwork
from relayd.config import PROFILES_SCHEMA, Snapshot, SnapshotError, parse_snapshot

SCHEMA = 1
# A policy with relay profiles is published as relayd.config.PROFILES_SCHEMA (issue 15); one without any
# is still schema 1, so that nodes which predate profiles keep enforcing it.


def build_snapshot(serial: int) -> dict:
    """Return the current policy as a snapshot with this serial: schema 2 if it has profiles, else 1."""
    restrictions = RoutingRestrictions.load()
    trusted = [
        network
        for network in TrustedNetwork.objects.filter(enabled=True).select_related("created_by")
        if not network.is_expired
    ]
    accounts = list(SmtpUser.objects.filter(enabled=True))
    profiles = {
        "trusted_networks": [{"id": network.pk, **network.profile()} for network in trusted if network.has_profile],
        "smtp_users": [
            {"username": account.username, **account.profile()} for account in accounts if account.has_profile
        ],
    }
    snapshot = {
        "schema": SCHEMA,
        "serial": serial,
        "generated_at": timezone.now().isoformat(timespec="seconds"),
        "restrictions": {
            "allow_authenticated": restrictions.allow_authenticated,
            "allow_listed_ips": restrictions.allow_listed_ips,
            "allow_internal_addresses": restrictions.allow_internal_addresses,
        },
        # Disabled entries are left out; expired ones too, and expires_at travels along so that
        # a reader stops trusting an entry the moment it expires, even before the next revision.
        "trusted_networks": [
            {
                "id": network.pk,
                "network": network.network,
                "description": network.description,
                "expires_at": _iso(network.expires_at),
                **_added(network),
            }
            for network in trusted
        ],
        "denied_networks": [
            {"id": network.pk, "network": network.network, "description": network.description, **_added(network)}
            for network in DeniedNetwork.objects.select_related("created_by")
        ],
        "internal_addresses": [
            {"id": address.pk, "address": address.address, "description": address.description}
            for address in InternalAddress.objects.all()
        ],
        "local_domains": [
            {"domain": domain.domain, "include_subdomains": domain.include_subdomains, "route": domain.route or None}
            for domain in LocalDomain.objects.all()
        ],
        "smtp_users": [{"username": account.username, "password_hash": account.password_hash} for account in accounts],
    }
    if profiles["trusted_networks"] or profiles["smtp_users"]:
        snapshot["schema"] = PROFILES_SCHEMA
        snapshot["profiles"] = profiles
    return snapshot


# What a revision adds around the policy: its serial, its time, and the audit anchor it witnesses.
ENVELOPE = ("serial", "generated_at", "audit")


class UnpublishablePolicy(ValidationError):
    """The policy's snapshot is one relayd would refuse, so it must not become a revision."""


# The snapshot's lists, as the refusal names an entry of them: what it is and which key says which one.
_ENTRY_NAMES = {
    "trusted_networks": ("trusted network", "network"),
    "denied_networks": ("denied network", "network"),
    "internal_addresses": ("internal address", "address"),
    "local_domains": ("local domain", "domain"),
    "smtp_users": ("SMTP user", "username"),
    "profiles.trusted_networks": ("profile of trusted network", "id"),
    "profiles.smtp_users": ("profile of SMTP user", "username"),
}
_ENTRY_PATH = re.compile(r"(?P<list>[a-z_.]+)\[(?P<index>\d+)\](?:\.(?P<key>\w+))?")


# The snapshot this process checked last. Given as previous, it lets relayd's loader take the
# entries it has already validated from it, as relayd does on reload: checking a 100,000-entry
# policy with a few changes then costs a fraction of a cold check. Checks run under the policy
# lock, one at a time; the result never depends on it.
_last_checked: Snapshot | None = None


def check_publishable(snapshot: dict, text: str) -> None:
    """Raise UnpublishablePolicy naming the entry if relayd would refuse the snapshot text.

    The check is relayd's own loader on the exact text that would be published, so a revision
    that every node would refuse (and so keep enforcing an older one) can never be recorded.
    """
    global _last_checked
    try:
        _last_checked = parse_snapshot(text, previous=_last_checked)
    except SnapshotError as exc:
        raise UnpublishablePolicy(refusal_message(snapshot, exc), code="unpublishable") from None


def last_checked() -> Snapshot | None:
    """Return the snapshot this process checked last: a head start for parsing the revision it became."""
    return _last_checked


def refusal_message(snapshot: dict, error: SnapshotError) -> str:
    """Say in a sentence which entry relayd refuses and why."""
    found = _ENTRY_PATH.fullmatch(error.path)
    if found and found["list"] in _ENTRY_NAMES:
        label, name_key = _ENTRY_NAMES[found["list"]]
        entries = snapshot
        for part in found["list"].split("."):
            entries = entries[part]
        entry = entries[int(found["index"])]
        key = found["key"]
        what = f"{label} {entry.get(name_key)}" + (f" ({key})" if key and key != name_key else "")
        return f"Nothing was saved: relayd would refuse the {what}: {error.problem}."
    return f"Nothing was saved: relayd would refuse this policy ({error.path}: {error.problem})."


def policy_content(snapshot: dict) -> dict:
    """Return the snapshot without its envelope: what decides whether the policy changed."""
    return {key: value for key, value in snapshot.items() if key not in ENVELOPE}


def dumps(snapshot: dict) -> str:
    """Serialise a snapshot exactly as it is stored, published and hashed."""
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


def _added(entry) -> dict:
    return {
        "added_by": entry.created_by.get_username() if entry.created_by else "",
        "added_at": _iso(entry.created_at),
    }
