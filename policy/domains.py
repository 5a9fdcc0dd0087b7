"""Validate and normalise local domain names and routes (next hops)."""

import re

import idna
import netaddr
from django.core.exceptions import ValidationError

from policy.addresses import AddressError, address_text, parse_address

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_DOTTED_NUMBERS = re.compile(r"[0-9.]+", re.ASCII)
DEFAULT_SMTP_PORT = 25


def normalise_domain(text: str) -> str:
    """Return the domain lowercase, without a trailing dot, IDNs as punycode (IDNA 2008)."""
    domain = (text or "").strip().rstrip(".")
    if not domain:
        raise ValidationError("Enter a domain name, e.g. example.com.", code="required")
    if domain.startswith("*."):
        raise ValidationError(
            f"Enter {domain[2:]} and tick “include subdomains” instead of a wildcard.",
            code="wildcard",
        )
    if "@" in domain:
        raise ValidationError(
            f"Enter only the domain part, e.g. {domain.rsplit('@', 1)[-1]}.",
            code="address",
        )
    if _looks_like_ip(domain):
        raise ValidationError(
            f"{domain} is an IP address, not a domain name; mail for address literals is never local.",
            code="ip_address",
        )
    try:
        ascii_domain = idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ValidationError(f"“{domain}” is not a valid domain name: {exc}.", code="invalid") from None
    if len(ascii_domain) > 253:
        raise ValidationError("A domain name is at most 253 characters long.", code="too_long")
    for label in ascii_domain.split("."):
        if not _LABEL.match(label):
            raise ValidationError(
                f"“{label}” in {domain} is not a valid label: use letters, digits and inner hyphens, 1–63 characters.",
                code="invalid",
            )
    return ascii_domain


def normalise_route(text: str) -> str:
    """Return a next hop as "host:port" ("[v6]:port" for IPv6), or "" for no route of its own.

    A bare host gets port 25. The host is a domain name or an IP address.
    """
    route = (text or "").strip()
    if not route:
        return ""
    host, port = _split_host_port(route)
    if port is not None and not 1 <= port <= 65535:
        raise ValidationError(f"Port {port} is out of range: use 1–65535 (SMTP is 25).", code="port_range")
    port = port or DEFAULT_SMTP_PORT
    try:
        ip = parse_address(host.strip("[]"))
    except AddressError:
        if host.startswith("["):
            raise ValidationError(f"{host} is not a valid IPv6 address.", code="invalid_route") from None
        if _DOTTED_NUMBERS.fullmatch(host):
            # relayd reads a host of digits and dots as an IPv4 address, never as a name (docs/snapshot.md).
            raise ValidationError(
                f"{host} is not a valid IPv4 address: write all four parts, e.g. 192.0.2.25.", code="invalid_route"
            ) from None
        return f"{normalise_domain(host)}:{port}"
    if ip.is_ipv4_mapped():
        ip = ip.ipv4()  # relayd takes an IPv4 next hop only as IPv4
    return f"[{address_text(ip)}]:{port}" if ip.version == 6 else f"{address_text(ip)}:{port}"


def _split_host_port(route: str) -> tuple[str, int | None]:
    if route.startswith("["):
        host, _, rest = route.partition("]")
        host += "]"
        if rest and not rest.startswith(":"):
            raise ValidationError(
                "Write the route as [IPv6]:port, e.g. [2001:db8::25]:25.",
                code="invalid_route",
            )
        port_text = rest[1:]
    elif route.count(":") > 1:
        raise ValidationError(
            f"Put an IPv6 next hop in brackets, e.g. [{route}]:25.",
            code="invalid_route",
        )
    else:
        host, _, port_text = route.partition(":")
    if not port_text:
        return host, None
    # ASCII only: str.isdigit() takes "²", which int() then refuses.
    if not (port_text.isascii() and port_text.isdigit()):
        raise ValidationError(f"“{port_text}” is not a port number.", code="invalid_route")
    return host, int(port_text)


def _looks_like_ip(text: str) -> bool:
    try:
        netaddr.IPAddress(text.strip("[]"))
    except (netaddr.AddrFormatError, ValueError):
        return False
    return True
