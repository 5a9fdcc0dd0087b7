"""Hypothesis strategies for what admins type: addresses in every notation, masks, domains, users."""

import ipaddress
from datetime import UTC, datetime, timedelta

from hypothesis import strategies as st

IPV4 = st.integers(0, 2**32 - 1)


def dotted(value: int) -> str:
    return str(ipaddress.IPv4Address(value))


# IPv6 values an admin meets: random ones, ones with runs of zero groups, and the forms that
# embed an IPv4 address (IPv4-compatible, IPv4-mapped, SIIT, NAT64), where notations differ most.
IPV6 = st.one_of(
    st.integers(0, 2**128 - 1),
    st.lists(st.sampled_from([0, 0, 0, 1, 0xA, 0xDB8, 0xFFFF, 0x2001]), min_size=8, max_size=8).map(
        lambda groups: sum(group << (16 * (7 - index)) for index, group in enumerate(groups))
    ),
    IPV4,
    IPV4.map(lambda v4: 0xFFFF << 32 | v4),
    IPV4.map(lambda v4: 0xFFFF << 48 | v4),
    IPV4.map(lambda v4: 0x64FF9B << 96 | v4),
)


@st.composite
def ipv6_text(draw, value: int) -> str:
    """Write value in one of the notations inet_pton and the forms accept."""
    groups = [value >> shift & 0xFFFF for shift in range(112, -16, -16)]
    style = draw(st.sampled_from(["compressed", "exploded", "upper", "dotted", "dotted-compressed", "padded"]))
    address = ipaddress.IPv6Address(value)
    if style == "compressed":
        return address.compressed
    if style == "exploded":
        return address.exploded
    if style == "upper":
        return address.compressed.upper()
    if style == "padded":
        return ":".join(f"{group:04x}" if index % 2 else f"{group:x}" for index, group in enumerate(groups))
    tail = dotted(value & 0xFFFFFFFF)
    head = ipaddress.IPv6Address(value >> 32 << 32).compressed  # ends "::" or in two zero groups
    if style == "dotted" or head.count(":") > 6:  # "1:2:3:4:5:6::" leaves no group for the "::"
        return ":".join(f"{group:x}" for group in groups[:6]) + ":" + tail
    if head.endswith("::"):
        return head + tail
    return head.rsplit(":", 2)[0] + ":" + tail


@st.composite
def network_input(draw) -> tuple[str, str]:
    """Return (address, mask) for a network with its host bits clear, in a notation the dialog takes.

    The mask is "" when the address carries its prefix (CIDR or address/dotted-mask) or is a bare host.
    """
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    prefixlen = draw(st.integers(0, bits) | st.just(bits))
    value = draw(IPV4 if version == 4 else IPV6)
    value &= ((1 << bits) - 1) ^ ((1 << (bits - prefixlen)) - 1)
    address = dotted(value) if version == 4 else draw(ipv6_text(value))
    if prefixlen == bits and draw(st.booleans()):
        return address, ""  # a bare host
    if version == 4 and draw(st.booleans()):
        mask = str(ipaddress.IPv4Network(f"0.0.0.0/{prefixlen}").netmask)
    else:
        mask = str(prefixlen)
    if draw(st.booleans()):
        return f"{address}/{mask}", ""
    return address, mask


@st.composite
def host_input(draw) -> str:
    """Return one address, in any notation."""
    if draw(st.booleans()):
        return dotted(draw(IPV4))
    return draw(ipv6_text(draw(IPV6)))


_ASCII_LABEL = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,8}[A-Za-z0-9])?", fullmatch=True)
_IDN_LABEL = st.sampled_from(["bücher", "münchen", "café", "日本", "пример", "ΕΛΛΆΔΑ", "straße", "xn--bcher-kva"])


@st.composite
def domain_input(draw) -> str:
    """Return a domain as typed: ASCII or IDN labels, any case, perhaps with a trailing dot."""
    labels = draw(st.lists(_ASCII_LABEL | _IDN_LABEL, min_size=1, max_size=4))
    domain = ".".join(labels)
    return domain + "." if draw(st.booleans()) else domain


@st.composite
def route_input(draw) -> str:
    """Return a next hop as typed: empty, a host name, an IPv4 or bracketed IPv6 address, with or without port."""
    kind = draw(st.sampled_from(["none", "name", "ipv4", "ipv6"]))
    if kind == "none":
        return ""
    host = {
        "name": lambda: draw(domain_input()),
        "ipv4": lambda: dotted(draw(IPV4)),
        "ipv6": lambda: f"[{draw(ipv6_text(draw(IPV6)))}]",
    }[kind]()
    port = draw(st.none() | st.integers(1, 65535))
    return host if port is None else f"{host}:{port}"


USERNAMES = st.from_regex(r"\s?[A-Za-z0-9._@+-]{1,40}\s?", fullmatch=True)
PASSWORDS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), min_size=12, max_size=40)
DESCRIPTIONS = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=60)
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
EXPIRY = st.none() | st.integers(-3 * 24 * 60, 3 * 24 * 60).map(lambda minutes: NOW + timedelta(minutes=minutes))

# A relay profile as an admin fills in "Limits…" (issue 15): limits out of range and any domain
# spelling included, so that what the paths accept is checked, not merely what is valid.
LIMITS = st.none() | st.integers(-1, 10**6)


@st.composite
def profile_input(draw) -> dict:
    """Return relay profile fields: limits, sender domains as a list, TLS, owner and ticket."""
    return {
        "rate_limit_per_hour": draw(LIMITS),
        "recipients_per_hour": draw(LIMITS),
        "allowed_sender_domains": draw(st.lists(domain_input(), max_size=3)),
        "require_tls": draw(st.booleans()),
        "owner": draw(DESCRIPTIONS),
        "ticket": draw(st.text(max_size=20)),
    }
