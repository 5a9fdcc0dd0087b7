"""Split host:port text: the one reader of next hops, snapshot routes and listen addresses."""

from __future__ import annotations

import re
from typing import NamedTuple

# relayd reads a host of digits and dots as an IPv4 address, never as a name (docs/snapshot.md).
DOTTED_NUMBERS = re.compile(r"[0-9.]+", re.ASCII)
# A port as written canonically: int() would also take " 25", "+25", "2_5" and non-ASCII digits, and a
# leading zero reads as octal to some tools, so "025" is refused rather than guessed at.
_PORT = re.compile(r"0|[1-9][0-9]{0,4}", re.ASCII)


class HostPort(NamedTuple):
    """A host (without its brackets), a port, and whether the host was written in brackets."""

    host: str
    port: int
    bracketed: bool


def split_host_port(text: str, *, what: str = "next hop", lowest_port: int = 1) -> HostPort:
    """Split "host:port" or "[IPv6]:port" (RFC 3986 §3.2.2); raise ValueError saying how to write it.

    An IPv6 address must be in brackets: "2001:db8::25:25" splits into a host and a port in more
    than one way. What the host may be (a name, IPv4, IPv6) is the caller's to check.
    """
    host, colon, port = text.rpartition(":")
    bracketed = host.startswith("[") and host.endswith("]")
    if bracketed:
        host = host[1:-1]
    elif ":" in host:
        raise ValueError(f"{text!r}: write an IPv6 {what} in brackets, e.g. [2001:db8::25]:25")
    if not colon:
        raise ValueError(f"{what} {text!r} has no port: write it as host:port, e.g. {text}:25")
    if not _PORT.fullmatch(port) or not lowest_port <= int(port) <= 65535:
        raise ValueError(f"{what} {text!r} has no valid port: use a number from {lowest_port} to 65535 (SMTP is 25)")
    if not host:
        raise ValueError(f"{what} {text!r} has no host: write it as host:port, e.g. smtp.example.net:25")
    return HostPort(host, int(port), bracketed)


def join_host_port(host: str, port: int) -> str:
    """Return host:port, an IPv6 address (the only host with a colon) in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
