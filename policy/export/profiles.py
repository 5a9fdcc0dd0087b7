"""Where each relay profile applies, for the MTA renderers (issue 15): one reading of docs/design.md item 6.

relayd applies an authenticated session's SMTP user profile, else the profile of the most specific
trusted network containing the client. An MTA host list has no "most specific" rule, so a
network's profile is written as its network less the more specific trusted networks inside it,
which have a profile (or none) of their own.
"""

from __future__ import annotations

from typing import NamedTuple

from relayd.config import Profile, Snapshot
from relayd.matcher import Network
from relayd.profiles import limits_text

__all__ = ["NetworkScope", "UserScope", "enforced", "limits_text", "network_scopes", "user_scopes"]


class NetworkScope(NamedTuple):
    """A trusted network's profile and the clients it applies to: network, less the nested ones."""

    network: Network
    profile: Profile
    nested: tuple[Network, ...]


class UserScope(NamedTuple):
    username: str
    profile: Profile


def network_scopes(policy: Snapshot) -> list[NetworkScope]:
    """Return the scope of each trusted network's profile, while relaying by IP address is on."""
    if not policy.restrictions.allow_listed_ips:
        return []
    by_id = policy.profiles.trusted_networks
    networks = [entry.network for entry in policy.trusted_networks]
    scopes = []
    for entry in policy.trusted_networks:
        profile = by_id.get(entry.id)
        if profile is None or not enforced(profile):
            continue
        outer = entry.network
        nested = tuple(
            sorted(
                {inner for inner in networks if inner != outer and _inside(inner, outer)},
                key=lambda network: (network.prefixlen, network.first),
                reverse=True,
            )
        )
        scopes.append(NetworkScope(outer, profile, nested))
    return scopes


def user_scopes(policy: Snapshot) -> list[UserScope]:
    """Return each SMTP user's profile, while relaying for authenticated clients is on."""
    if not policy.restrictions.allow_authenticated:
        return []
    return [
        UserScope(username, profile)
        for username, profile in sorted(policy.profiles.smtp_users.items())
        if enforced(profile)
    ]


def enforced(profile: Profile) -> bool:
    """Return whether a profile limits anything (owner and ticket alone only document)."""
    return bool(
        profile.rate_limit_per_hour
        or profile.recipients_per_hour
        or profile.allowed_sender_domains
        or profile.require_tls
    )


def _inside(inner: Network, outer: Network) -> bool:
    return (
        inner.version == outer.version
        and inner.prefixlen > outer.prefixlen
        and outer.first <= inner.first
        and inner.last <= outer.last
    )
