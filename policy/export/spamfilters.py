"""Render a policy snapshot for spam filters: rspamd's local_addrs and SpamAssassin's trusted networks.

A spam filter must trust the same hosts as the relay (issue 15): a host the relay lets relay is
one of ours, so its mail is outbound and must not be judged as if it came from the Internet; a
host the relay no longer trusts must not keep the filter's trust either. Both lists are the
relay's trusted networks less the denied ones, from the same revision.
"""

from __future__ import annotations

import netaddr

from policy import addresses
from policy.export import BUNDLE_DIRECTORY, describe, specificity
from relayd.config import Snapshot

TITLE = "Spam filters"
DESCRIPTION = "rspamd local_addrs map and SpamAssassin trusted_networks / internal_networks from the same revision."

RSPAMD_MAP = "rspamd_local_addrs.map"
RSPAMD_OPTIONS = "rspamd_options.inc"
SPAMASSASSIN = "spamassassin_relayadmin.cf"


def render(policy: Snapshot) -> dict[str, str]:
    """Return the spam filter files for policy as {file name: body}."""
    return {
        RSPAMD_MAP: _rspamd_map(policy),
        RSPAMD_OPTIONS: _rspamd_options(),
        SPAMASSASSIN: _spamassassin(policy),
    }


def _trusted(policy: Snapshot) -> list:
    """Return the trusted networks that make a client trusted; none while the checkbox is off."""
    if not policy.restrictions.allow_listed_ips:
        return []
    return sorted(policy.trusted_networks, key=lambda entry: specificity(entry.network))


def _trusted_addresses(policy: Snapshot) -> list[str]:
    """Return the trusted networks less the denied ones, as the fewest CIDR blocks, IPv4 first.

    A denied network inside a trusted one is cut out exactly: those clients never relay, so the
    filters must not trust them either.
    """
    trusted = netaddr.IPSet(str(entry.network) for entry in _trusted(policy))
    trusted -= netaddr.IPSet(str(entry.network) for entry in policy.denied_networks)
    blocks = sorted(trusted.iter_cidrs(), key=lambda block: (block.version, block.first))
    return [addresses.network_text(block) for block in blocks]


def _rspamd_map(policy: Snapshot) -> str:
    lines = [
        "# rspamd radix map of local addresses (options local_addrs): the relay's trusted networks",
        "# less its denied networks.",
        *_sources(policy),
    ]
    lines += _trusted_addresses(policy)
    return "\n".join(lines) + "\n"


def _sources(policy: Snapshot) -> list[str]:
    """Return comment lines naming the entries the list is made of."""
    if not policy.restrictions.allow_listed_ips:
        return ['# "Hosts and clients with these IP addresses" is off: no network is trusted.']
    lines = [
        f"#   trusted {entry.network}: {describe(entry.description, entry.added_by)}" for entry in _trusted(policy)
    ]
    lines += [
        f"#   denied {entry.network}: {describe(entry.description, entry.added_by)}" for entry in policy.denied_networks
    ]
    return lines


def _rspamd_options() -> str:
    return (
        "\n".join(
            [
                "# rspamd: add this line to /etc/rspamd/local.d/options.inc (unpack the bundle into /etc/rspamd,",
                f"# the files land in /etc/rspamd/{BUNDLE_DIRECTORY}/), then run rspamadm configtest and reload.",
                f'local_addrs = "/etc/rspamd/{BUNDLE_DIRECTORY}/{RSPAMD_MAP}";',
            ]
        )
        + "\n"
    )


def _spamassassin(policy: Snapshot) -> str:
    blocks = _trusted_addresses(policy)
    lines = [
        "# SpamAssassin: the relay's trusted networks less its denied networks, as trusted_networks and",
        "# internal_networks (the relay's trusted hosts are our own MTAs and clients).",
        f"# Install: unpack the bundle into /etc/spamassassin (the file lands in {BUNDLE_DIRECTORY}/), then in",
        f"# local.cf add: include {BUNDLE_DIRECTORY}/{SPAMASSASSIN}",
        "# and remove your own trusted_networks and internal_networks lines; check with spamassassin --lint.",
        *_sources(policy),
        "clear_trusted_networks",
        "clear_internal_networks",
    ]
    if blocks:
        lines += [f"trusted_networks {' '.join(blocks)}", f"internal_networks {' '.join(blocks)}"]
    else:
        lines.append("# No trusted networks: only this host itself (127.0.0.0/8, ::1) is trusted.")
    return "\n".join(lines) + "\n"
