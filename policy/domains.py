"""Validate and normalise local domain names and routes (next hops)."""

import re

import idna
import netaddr
from django.core.exceptions import ValidationError

from policy.addresses import AddressError, address_text, parse_address
from relayd.hostport import DOTTED_NUMBERS, join_host_port, split_host_port

_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
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
    if ":" not in route or (route.startswith("[") and route.endswith("]")):
        route = f"{route}:{DEFAULT_SMTP_PORT}"
    try:
        host, port, bracketed = split_host_port(route)
    except ValueError as exc:
        raise ValidationError(f"{exc}.", code="invalid_route") from None
    try:
        ip = parse_address(host)
    except AddressError:
        if bracketed:
            raise ValidationError(f"[{host}] is not a valid IPv6 address.", code="invalid_route") from None
        if DOTTED_NUMBERS.fullmatch(host):
            raise ValidationError(
                f"{host} is not a valid IPv4 address: write all four parts, e.g. 192.0.2.25.", code="invalid_route"
            ) from None
        return f"{normalise_domain(host)}:{port}"
    if ip.is_ipv4_mapped():
        ip = ip.ipv4()  # relayd takes an IPv4 next hop only as IPv4
    return join_host_port(address_text(ip), port)


def _looks_like_ip(text: str) -> bool:
    try:
        netaddr.IPAddress(text.strip("[]"))
    except (netaddr.AddrFormatError, ValueError):
        return False
    return True
