"""Ask one DNS blocklist about one address: query names, return codes and TXT reasons.

This module knows DNS and the DNSBL conventions (RFC 5782), nothing about the database. An
answer in 127.0.0.0/24 means listed, NXDOMAIN means clear. Everything else is not a listing:
127.255.255.x is how Spamhaus and others say "query refused" (public resolver, volume, typo in
the zone), and a non-127 answer usually means a resolver that rewrites NXDOMAIN to an ad page.
"""

import re
from dataclasses import dataclass, field

import dns.exception
import dns.name
import dns.rcode
import dns.resolver
import netaddr

LISTED = "listed"
CLEAR = "clear"
REFUSED = "refused"
TIMEOUT = "timeout"
ERROR = "error"
STATES = (LISTED, CLEAR, REFUSED, TIMEOUT, ERROR)

DEFAULT_TIMEOUT = 5.0
_LABEL = re.compile(r"^(?!-)[a-z0-9_-]{1,63}(?<!-)$")
# A reversed IPv6 address is 32 one-character labels: 64 characters before the zone.
_MAX_ZONE_LENGTH = 253 - 64
LISTING_CODES = netaddr.IPNetwork("127.0.0.0/24")
REFUSAL_CODES = netaddr.IPNetwork("127.255.255.0/24")
# What Spamhaus says with its refusal codes (https://docs.spamhaus.com/datasets/docs/source/40-real-world-usage/PublicMirrors/MTAs/020-Postfix.html).
REFUSAL_MEANINGS = {
    "127.255.255.252": "typing error in the DNSBL name",
    "127.255.255.254": "query through a public or open resolver, which this list refuses",
    "127.255.255.255": "too many queries from this resolver",
}


class ZoneError(ValueError):
    """A DNSBL zone name that cannot be queried; the message says why and how to fix it."""


@dataclass(frozen=True)
class Answer:
    """What one list said about one address."""

    state: str
    reason: str = ""
    codes: tuple[str, ...] = field(default=())

    @property
    def listed(self) -> bool:
        return self.state == LISTED


def normalise_zone(text: str) -> str:
    """Return a DNSBL zone lowercase without a trailing dot; raise ZoneError for a name that is not one."""
    zone = (text or "").strip().lower().rstrip(".")
    if not zone:
        raise ZoneError("Enter the list's DNS zone, e.g. zen.spamhaus.org.")
    if "://" in zone or "/" in zone:
        host = zone.split("://", 1)[-1].split("/", 1)[0]
        raise ZoneError(f"“{text}” is a web address; enter only the DNS zone that is queried, e.g. {host}.")
    if " " in zone:
        raise ZoneError(f"“{text}” contains a space; a DNS zone is written with dots, e.g. zen.spamhaus.org.")
    labels = zone.split(".")
    if len(labels) < 2:
        raise ZoneError(f"“{text}” is a single label; a DNSBL zone has at least two, e.g. bl.spamcop.net.")
    if len(zone) > _MAX_ZONE_LENGTH:
        raise ZoneError(
            f"The zone is {len(zone)} characters long; with a reversed address in front it must stay "
            f"within DNS's 253, so use at most {_MAX_ZONE_LENGTH}."
        )
    for label in labels:
        if not _LABEL.match(label):
            raise ZoneError(
                f"“{label or '(empty)'}” in {zone} is not a valid DNS label: use letters, digits and inner "
                "hyphens, 1–63 characters, separated by single dots."
            )
    if labels[-1].isdigit():
        raise ZoneError(f"“{text}” looks like an IP address; enter the list's DNS zone, e.g. zen.spamhaus.org.")
    return zone


def query_name(address: netaddr.IPAddress, zone: str) -> str:
    """Return the name to look up: the address reversed (IPv6 by nibbles, RFC 5782) before the zone."""
    labels = str(address).split(".") if address.version == 4 else list(f"{int(address):032x}")
    return ".".join(reversed(labels)) + "." + zone


def make_resolver(server: str = "", timeout: float = DEFAULT_TIMEOUT) -> dns.resolver.Resolver:
    """Return a resolver for "host:port" (or "[v6]:port", or a bare address for port 53), else the system's.

    Raise ValueError for a malformed server. Answers are never cached: a delisting must show at
    the next check.
    """
    if server.strip():
        host, port = split_server(server)
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host]
        resolver.port = port
    else:
        resolver = dns.resolver.Resolver()
    resolver.timeout = timeout
    resolver.lifetime = timeout
    resolver.cache = None
    return resolver


def split_server(text: str) -> tuple[str, int]:
    """Return (address, port) of a resolver written "host:port", "[v6]:port" or a bare IP address."""
    text = text.strip()
    try:
        return str(netaddr.IPAddress(text.strip("[]"))), 53
    except (netaddr.AddrFormatError, ValueError):
        pass
    host, sep, port = text.rpartition(":")
    try:
        address = netaddr.IPAddress(host.strip("[]")) if sep and host else None
    except (netaddr.AddrFormatError, ValueError):
        address = None
    if address is None or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError(
            f"RELAYADMIN_DNS_RESOLVER={text!r} is not an address and port: write e.g. 127.0.0.1:53 or [::1]:53."
        )
    return str(address), int(port)


def lookup(address: netaddr.IPAddress, zone: str, resolver: dns.resolver.Resolver) -> Answer:
    """Ask the list about the address; never raise for what the network or the list answers."""
    name = query_name(address, zone)
    try:
        answer = resolver.resolve(name + ".", "A", raise_on_no_answer=False)
    except dns.resolver.NXDOMAIN:
        return Answer(CLEAR)
    except dns.exception.Timeout:
        return Answer(TIMEOUT, f"no answer from {_servers(resolver)} within {resolver.lifetime:g} s")
    except dns.resolver.NoNameservers as exc:
        return _server_failure(exc, resolver)
    except dns.exception.DNSException as exc:
        return Answer(ERROR, str(exc) or type(exc).__name__)
    codes = tuple(sorted(rr.address for rr in answer)) if answer.rrset is not None else ()
    if not codes:
        return Answer(CLEAR)  # the name exists without an A record: not a listing
    return _judge_codes(codes, name, resolver)


def _judge_codes(codes: tuple[str, ...], name: str, resolver) -> Answer:
    refusals = [code for code in codes if netaddr.IPAddress(code) in REFUSAL_CODES]
    if refusals:
        meaning = REFUSAL_MEANINGS.get(refusals[0], "the list refused the query")
        return Answer(REFUSED, f"{meaning} ({refusals[0]})", codes)
    strange = [code for code in codes if netaddr.IPAddress(code) not in LISTING_CODES]
    if strange:
        return Answer(
            ERROR,
            f"unexpected answer {', '.join(strange)}: not a DNSBL return code; does the resolver rewrite NXDOMAIN?",
            codes,
        )
    return Answer(LISTED, _txt_reason(name, resolver) or f"listed ({', '.join(codes)})", codes)


def _txt_reason(name: str, resolver) -> str:
    """Return the list's TXT explanation, or "" when it gives none (the listing stands regardless)."""
    try:
        answer = resolver.resolve(name + ".", "TXT", raise_on_no_answer=False)
    except dns.exception.DNSException:
        return ""
    if answer.rrset is None:
        return ""
    texts = (b"".join(rr.strings).decode("utf-8", "replace") for rr in answer)
    return " / ".join(sorted(texts))[:1000]


def _server_failure(exc: dns.resolver.NoNameservers, resolver) -> Answer:
    # Each error is (server, tcp, port, exception or rcode text, response or None).
    errors = exc.kwargs.get("errors", [])
    rcodes = {error[-1].rcode() for error in errors if error[-1] is not None}
    if dns.rcode.REFUSED in rcodes:
        return Answer(REFUSED, f"the resolver {_servers(resolver)} refused the query (REFUSED)")
    problems = sorted({str(error[3]) for error in errors}) or ["no usable answer"]
    return Answer(ERROR, f"the resolver {_servers(resolver)} failed: {'; '.join(problems)}"[:1000])


def _servers(resolver) -> str:
    port = getattr(resolver, "port", 53)
    return ", ".join(f"[{ns}]:{port}" if ":" in str(ns) else f"{ns}:{port}" for ns in resolver.nameservers)
