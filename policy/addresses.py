"""Parse and check every IP address entry: forms, API and import all come through here.

The Routing Restrictions dialog takes "IP address" plus "Subnet mask"; admins also paste
CIDR. Both normalise to one `netaddr.IPNetwork` with the host bits clear. Every refusal is
an `AddressError` whose message says what is wrong and how to fix it, and whose `field`
says which input ("address" or "mask") it belongs to.
"""

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass

import netaddr
from django.core.exceptions import ValidationError

from relayd import matcher

EXAMPLES = "e.g. 10.1.0.0/16, 10.1.0.0/255.255.0.0, 192.0.2.7 or 2001:db8::/32"
_DOTTED_QUAD = re.compile(r"^\d+\.\d+\.\d+\.\d+$", re.ASCII)

# Ranges that are not reachable from the public internet. A broad entry inside one of
# them (say fc00::/7) cannot turn the server into an open relay for the world.
NON_GLOBAL_BLOCKS = tuple(
    netaddr.IPNetwork(block)
    for block in (
        "0.0.0.0/8",
        "10.0.0.0/8",
        "100.64.0.0/10",
        "127.0.0.0/8",
        "169.254.0.0/16",
        "172.16.0.0/12",
        "192.168.0.0/16",
        "198.18.0.0/15",
        "224.0.0.0/4",
        "240.0.0.0/4",
        "::1/128",
        "fc00::/7",
        "fe80::/10",
        "ff00::/8",
        "2001:db8::/32",
    )
)
# IPv6 blocks that hold a copy of the whole IPv4 internet: a client of any IPv4 address can
# connect from one of them (through NAT64, SIIT or a tunnel), so trusting the block trusts
# every IPv4 host. Trusting a network that covers one is refused like 0.0.0.0/0. The /96 blocks
# embed the IPv4 address in their last 32 bits, so a network inside one of them is judged as
# the IPv4 network it embeds (64:ff9b::/97 is 0.0.0.0/1). ::ffff:0:0/96 (IPv4-mapped) is absent:
# parse_network already writes those networks as IPv4.
IPV4_EMBEDDING_BLOCKS = tuple(
    (netaddr.IPNetwork(block), name)
    for block, name in (
        ("::/96", "as IPv4-compatible addresses, ::a.b.c.d"),
        ("::ffff:0:0:0/96", "through SIIT translation, ::ffff:0:a.b.c.d"),
        ("64:ff9b::/96", "through NAT64, 64:ff9b::a.b.c.d, RFC 6052"),
        ("64:ff9b:1::/48", "through local-use NAT64, RFC 8215"),
        ("2001::/32", "through Teredo tunnels, RFC 4380"),
        ("2002::/16", "through 6to4 tunnels, RFC 3056"),
    )
)
ADDRESS_BITS = {4: 32, 6: 128}
# Public ranges broader than these prefix lengths make the server an open relay.
BROADEST_PUBLIC_PREFIX = {4: 8, 6: 32}


class AddressError(ValidationError):
    """A refused address entry, tagged with the input field it belongs to."""

    def __init__(self, message: str, code: str, field: str = "address"):
        super().__init__(message, code=code)
        self.field = field


def parse_network(address: str, mask: str = "") -> netaddr.IPNetwork:
    """Return the normalised network for an address plus an optional mask or prefix.

    Accepts "10.1.0.0/16", "10.1.0.0/255.255.0.0", "10.1.0.0" with mask "255.255.0.0"
    or "16", a bare address (a host: /32 or /128) and IPv6 in any valid notation.
    IPv4-mapped IPv6 networks (::ffff:10.0.0.0/104) come back as IPv4.
    """
    address = (address or "").strip()
    mask = (mask or "").strip()
    if not address:
        raise AddressError(f"Enter an IP address or network, {EXAMPLES}.", code="required")
    if "/" in address:
        if mask:
            raise AddressError(
                f"{address} already has a prefix; leave the subnet mask empty or remove the /… part.",
                code="double_mask",
                field="mask",
            )
        address, mask = address.split("/", 1)
        mask = mask.strip()
        address = address.strip()
    ip = parse_address(address)
    prefixlen = _parse_mask(mask, ip) if mask else ADDRESS_BITS[ip.version]
    # From the parsed integer, not from text: a bulk import parses 10,000 of these.
    network = netaddr.IPNetwork((int(ip), prefixlen), version=ip.version)
    if network.ip != network.network:
        raise AddressError(
            f"Host bits are set in {address_text(ip)}/{prefixlen}. Did you mean {network_text(network.cidr)}? "
            f"For just this host, enter {address_text(ip)}.",
            code="host_bits",
        )
    return _unmap_ipv4(network)  # already its own CIDR: no host bits


def network_text(network: netaddr.IPNetwork) -> str:
    """Return the canonical text of a network: relayd's own, so what is stored, shown and exported is what relayd takes.

    Never str(network): netaddr writes ::a:b/128 as ::0.10.0.11/128, which relayd refuses.
    """
    return matcher.network_text(network.version, network.first, network.prefixlen)


def address_text(ip: netaddr.IPAddress) -> str:
    """Return the canonical text of an address (relayd's; see network_text)."""
    return matcher.address_text(ip.version, int(ip))


def parse_address(text: str) -> netaddr.IPAddress:
    """Return a single IP address, refusing anything else with a message that suggests the fix."""
    text = (text or "").strip()
    if not text:
        raise AddressError(f"Enter an IP address, {EXAMPLES}.", code="required")
    if _DOTTED_QUAD.match(text):
        octets = text.split(".")
        for octet in octets:
            if int(octet) > 255:
                raise AddressError(
                    f"{text} is not a valid IPv4 address: octet {octet} is out of range (each octet is 0–255).",
                    code="octet_range",
                )
        if any(len(o) > 1 and o.startswith("0") for o in octets):
            fixed = ".".join(str(int(o)) for o in octets)
            raise AddressError(
                f"{text} has leading zeros, which some systems read as octal: write {fixed}.",
                code="leading_zero",
            )
    if "%" in text:
        raise AddressError(
            f"{text} has an IPv6 zone (%…); zones are local to one host, so enter the address without it.",
            code="zone",
        )
    try:
        return netaddr.IPAddress(text)
    except (netaddr.AddrFormatError, ValueError, TypeError):
        raise AddressError(f"“{text}” is not an IP address. Enter one {EXAMPLES}.", code="invalid") from None


def parse_host(text: str) -> netaddr.IPAddress:
    """Return one address of this server; networks are refused, IPv4-mapped addresses unmapped."""
    text = (text or "").strip()
    if "/" in text:
        network = parse_network(text)
        if network.size != 1:
            raise AddressError(
                f"{text} is a network; an internal address is one address of this server, e.g. 192.168.1.10.",
                code="not_host",
            )
        return network.ip
    ip = parse_address(text)
    return ip.ipv4() if ip.is_ipv4_mapped() else ip


_RESERVED_KINDS = (
    ("is_loopback", "a loopback address"),
    ("is_link_local", "a link-local address"),
    ("is_multicast", "a multicast address"),
    ("is_unspecified", "the unspecified address"),
)
_RESERVED_BLOCKS = tuple(
    (netaddr.IPNetwork(block), label)
    for label, blocks in (
        ("a private address", ("10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "fc00::/7")),
        ("a shared (carrier-grade NAT) address", ("100.64.0.0/10",)),
        ("a documentation address", ("192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32")),
    )
    for block in blocks
)


def parse_public_address(text: str) -> netaddr.IPAddress:
    """Return one public address to watch; refuse networks and every address no DNSBL lists."""
    ip = parse_host(text)
    python_ip = ipaddress.ip_address(str(ip))
    if python_ip.is_global and not python_ip.is_multicast:  # Python counts some multicast as global
        return ip
    kind = next((label for attr, label in _RESERVED_KINDS if getattr(python_ip, attr)), None)
    if kind is None:
        kind = next((label for block, label in _RESERVED_BLOCKS if ip in block), "a reserved address")
    raise AddressError(
        f"{ip} is {kind}. DNSBLs only list public addresses: enter the address your server sends "
        "mail from on the Internet.",
        code="not_public",
    )


def _parse_mask(mask: str, ip: netaddr.IPAddress) -> int:
    """Return the prefix length for a "/16"-style length or a dotted IPv4 subnet mask."""
    width = ADDRESS_BITS[ip.version]
    # ASCII only: str.isdigit() takes "²" (which int() then refuses, a 500) and int() reads "٨" as 8.
    if mask.isascii() and mask.isdigit():
        prefixlen = int(mask)
        if prefixlen > width:
            raise AddressError(
                f"/{mask} is too long for an IPv{ip.version} address: the prefix length is 0–{width}.",
                code="prefix_range",
                field="mask",
            )
        return prefixlen
    if ip.version == 6:
        raise AddressError(
            f"“{mask}” is not a prefix length: for IPv6 enter a number of bits 0–128, e.g. 64.",
            code="invalid_mask",
            field="mask",
        )
    try:
        netmask = parse_address(mask)
    except AddressError:
        raise AddressError(
            f"“{mask}” is not a subnet mask: enter a mask like 255.255.255.0 or a prefix length like 24.",
            code="invalid_mask",
            field="mask",
        ) from None
    if netmask.version != 4:
        raise AddressError(
            f"{mask} is an IPv6 value; an IPv4 subnet mask looks like 255.255.255.0.",
            code="invalid_mask",
            field="mask",
        )
    if netmask.is_netmask():
        return netmask.netmask_bits()
    if netmask.is_hostmask():
        inverted = netaddr.IPAddress(int(netmask) ^ 0xFFFFFFFF)
        raise AddressError(
            f"{mask} looks like a wildcard (inverse) mask; the subnet mask is {inverted}.",
            code="wildcard_mask",
            field="mask",
        )
    nearest = netaddr.IPNetwork(f"0.0.0.0/{_leading_ones(int(netmask))}").netmask
    raise AddressError(
        f"{mask} is not a valid subnet mask: its 1-bits must be contiguous from the left "
        f"(e.g. 255.255.0.0); did you mean {nearest}?",
        code="noncontiguous_mask",
        field="mask",
    )


def _leading_ones(value: int) -> int:
    count = 0
    for bit in range(31, -1, -1):
        if not value >> bit & 1:
            break
        count += 1
    return count


def _unmap_ipv4(network: netaddr.IPNetwork) -> netaddr.IPNetwork:
    """Write ::ffff:a.b.c.d/N (N >= 96) as the IPv4 network it is; clients are unmapped too."""
    if network.version == 6 and network.prefixlen >= 96 and network.ip.is_ipv4_mapped():
        return netaddr.IPNetwork(f"{network.ip.ipv4()}/{network.prefixlen - 96}")
    return network


def open_relay_problem(network: netaddr.IPNetwork) -> str | None:
    """Return why trusting this network makes the server an open relay, or None if it does not.

    The one home of the open-relay rule: the dialog, the API, CSV import and the risk analysis all ask here.
    """
    text = network_text(network)
    if network.prefixlen == 0:
        return (
            f"{text} is every IPv{network.version} address: this makes the server an open relay. "
            "Trust your own networks instead."
        )
    limit = BROADEST_PUBLIC_PREFIX[network.version]
    if network.prefixlen < limit and not any(
        network.version == block.version and network in block for block in NON_GLOBAL_BLOCKS
    ):
        return (
            f"{text} is a public range broader than /{limit}: this makes the server an open relay "
            "for everyone in it. Trust only your own networks."
        )
    for block, name in IPV4_EMBEDDING_BLOCKS if network.version == 6 else ():
        if block in network:
            holds = "holds" if block == network else f"covers {network_text(block)}, which holds"
            return (
                f"{text} {holds} every IPv4 address ({name}): trusting it trusts every IPv4 host, like "
                "0.0.0.0/0, and this makes the server an open relay. Trust your own networks instead."
            )
        if block.prefixlen == 96 and network in block:
            ipv4 = netaddr.IPNetwork(f"{netaddr.IPAddress(network.first & 0xFFFFFFFF, 4)}/{network.prefixlen - 96}")
            problem = open_relay_problem(ipv4)
            if problem:
                return f"{text} is {network_text(ipv4)} ({name}): {problem}"
    return None


@dataclass(frozen=True)
class ListedNetwork:
    """One entry already in a list, as the overlap checks see it."""

    key: object
    network: netaddr.IPNetwork
    description: str = ""
    active: bool = True  # disabled or expired entries still count as duplicates, but overlap nothing

    def label(self) -> str:
        text = network_text(self.network)
        return f"{text} ({self.description})" if self.description else text


class Listing:
    """Entries of one list held in memory, asked as the forms ask a list (see draft.DraftListing)."""

    def __init__(self, entries: Iterable[ListedNetwork] = ()):
        self.entries = list(entries)

    def duplicate(self, network: netaddr.IPNetwork) -> ListedNetwork | None:
        return find_duplicate(network, self.entries)

    def related(self, network: netaddr.IPNetwork) -> list[ListedNetwork]:
        """Return the entries that cover this network or that it covers."""
        return [
            entry
            for entry in self.entries
            if entry.network.version == network.version and (entry.network in network or network in entry.network)
        ]


def as_listing(listed) -> "Listing":
    """Accept a listing (anything with duplicate() and related()) or a plain list of entries."""
    return listed if hasattr(listed, "duplicate") else Listing(listed)


def duplicate_message(entry: ListedNetwork) -> str:
    return f"{entry.label()} is already in this list; edit that entry instead of adding it twice."


def find_duplicate(network: netaddr.IPNetwork, listed: Iterable[ListedNetwork]) -> ListedNetwork | None:
    """Return the entry that is exactly this network, if any."""
    return next((entry for entry in listed if entry.network == network), None)


def overlap_warnings(network: netaddr.IPNetwork, listed: Iterable[ListedNetwork]) -> list[str]:
    """Describe entries that already cover this network, or that it would cover."""
    covering, covered = [], []
    for entry in listed:
        if not entry.active or entry.network.version != network.version or entry.network == network:
            continue
        if network in entry.network:
            covering.append(entry)
        elif entry.network in network:
            covered.append(entry)
    text = network_text(network)
    warnings = [f"{text} is already covered by {entry.label()}." for entry in covering]
    if covered:
        names = ", ".join(entry.label() for entry in covered[:3])
        more = f" and {len(covered) - 3} more" if len(covered) > 3 else ""
        warnings.append(f"{text} covers existing entries {names}{more}; they become redundant.")
    return warnings
