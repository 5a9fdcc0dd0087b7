"""The real client behind a connection: PROXY protocol headers, XCLIENT commands, and who the peers are.

The client address is the TCP peer, except (docs/design.md):
- a connection from --proxy-hosts starts with a HAProxy PROXY protocol header (v1 or v2) that
  names the real client; from any other peer such a header is a protocol error;
- an XCLIENT command (Postfix's extension) from --xclient-hosts, with the shared secret of
  --xclient-secret-file, names the client to test as, for the dashboard's self-test.
"""

from __future__ import annotations

import asyncio
import hmac
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiosmtpd.proxy_protocol import V2_CMD, V2_SIGNATURE, get_proxy

from relayd.matcher import Address, Network, parse_address, parse_network

# How a PROXY header starts, v1 and v2 (6 bytes of its signature: no SMTP command starts so).
_PROXY_STARTS = (b"PROXY ", V2_SIGNATURE[:6])
# XCLIENT attributes relayd takes (Postfix's names). LOGIN is refused: it would borrow an SMTP
# user's identity, which the self-test never needs.
XCLIENT_ATTRIBUTES = ("ADDR", "NAME", "HELO", "PROTO", "PORT", "DESTADDR", "DESTPORT")
# The attribute that carries the secret of --xclient-secret-file (relayd's own; Postfix has none).
XCLIENT_SECRET = "SECRET"  # noqa: S105 (an attribute name)


def parse_hosts(texts: Iterable[str]) -> tuple[Network, ...]:
    """Return the networks of a --proxy-hosts or --xclient-hosts list; a bare address is one host."""
    networks = []
    for text in (part.strip() for item in texts for part in item.split(",")):
        if not text:
            continue
        if "/" not in text:
            address = parse_address(text)
            text = f"{text}/{32 if address.version == 4 else 128}"
        networks.append(parse_network(text))
    return tuple(networks)


def in_hosts(address: Address, networks: tuple[Network, ...]) -> bool:
    """Return whether address is in one of networks."""
    return any(net.version == address.version and net.first <= address.value <= net.last for net in networks)


def looks_like_proxy_header(data: bytes) -> bool:
    """Return whether the first bytes of a connection are a PROXY protocol header."""
    return data.startswith(_PROXY_STARTS)


@dataclass(frozen=True)
class ProxyHeader:
    """What a PROXY header said: the client it names (None for LOCAL/UNKNOWN: the proxy itself), or why it is bad."""

    client: Address | None = None
    error: str = ""


async def read_proxy_header(reader: asyncio.StreamReader, timeout: float) -> ProxyHeader:
    """Read a PROXY v1 or v2 header (aiosmtpd's parser of the HAProxy spec) within timeout seconds."""
    try:
        data = await asyncio.wait_for(get_proxy(reader), timeout)
    except TimeoutError:
        return ProxyHeader(error=f"no PROXY header within {timeout:g} seconds")
    except (asyncio.IncompleteReadError, ConnectionError):
        return ProxyHeader(error="connection closed before a complete PROXY header")
    if data.version is None or data.error:
        return ProxyHeader(error=(data.error or "not a PROXY header").removeprefix("PROXY error: "))
    # v2 LOCAL (the proxy's own health check) and v1 UNKNOWN carry no client: the connection is
    # the proxy's own, as the spec says, and so is the address used.
    if data.command == V2_CMD.LOCAL or data.src_addr is None:
        return ProxyHeader()
    try:
        return ProxyHeader(client=parse_address(str(data.src_addr)))
    except ValueError:
        return ProxyHeader(error=f"bad source address {data.src_addr!r}")


def parse_xclient(arg: str | None) -> dict[str, str]:
    """Return the attributes of an XCLIENT command (values xtext-decoded); raise ValueError naming the problem."""
    if not arg or not arg.strip():
        raise ValueError("Syntax: XCLIENT attribute=value ...")
    attributes: dict[str, str] = {}
    for item in arg.split():
        name, equals, value = item.partition("=")
        name = name.upper()
        if not equals or not name:
            raise ValueError(f"Syntax: XCLIENT attribute=value, not {item[:40]!r}")
        if name not in (*XCLIENT_ATTRIBUTES, XCLIENT_SECRET):
            raise ValueError(f"Bad XCLIENT attribute name: {name[:20]}")
        attributes[name] = _xtext_decode(value)
    return attributes


def xclient_address(value: str) -> Address | None:
    """Return the address of an XCLIENT ADDR value ("IPV6:" prefix allowed); None for [UNAVAILABLE]/[TEMPUNAVAIL]."""
    if value.upper() in ("[UNAVAILABLE]", "[TEMPUNAVAIL]"):
        return None
    if value[:5].upper() == "IPV6:":
        value = value[5:]
    return parse_address(value)


def secret_matches(given: str | None, secret: str) -> bool:
    """Compare the secret a client sent with the configured one, in constant time."""
    return given is not None and bool(secret) and hmac.compare_digest(given.encode(), secret.encode())


def _xtext_decode(value: str) -> str:
    """Decode RFC 3461 xtext (+HH escapes), as XCLIENT values are written."""
    parts = value.split("+")
    out = [parts[0]]
    for part in parts[1:]:
        if len(part) < 2:
            raise ValueError("Bad xtext escape in an XCLIENT value")
        try:
            out.append(chr(int(part[:2], 16)) + part[2:])
        except ValueError:
            raise ValueError("Bad xtext escape in an XCLIENT value") from None
    return "".join(out)


class PeerTally:
    """Count connections per TCP peer, to tell the dashboard where most clients come from.

    When one address carries most connections, a NAT or load balancer is in front of relayd:
    trusting that address trusts every client behind it. The tally is bounded: past capacity
    distinct peers it starts over, which only forgets the long tail.
    """

    def __init__(self, capacity: int = 10_000) -> None:
        self.capacity = capacity
        self._counts: Counter[str] = Counter()
        self.total = 0

    def count(self, peer: str) -> None:
        """Count one connection from peer."""
        counts = self._counts
        if peer not in counts and len(counts) >= self.capacity:
            counts.clear()
            self.total = 0
        counts[peer] += 1
        self.total += 1

    def top(self) -> dict[str, Any] | None:
        """Return the peer most connections came from, its count and the total; None before any connection."""
        if not self._counts:
            return None
        ((peer, count),) = self._counts.most_common(1)
        return {"address": peer, "connections": count, "of": self.total}
