"""Listen for SMTP and share what every session needs: policy, spool, limits, TLS, metrics; drain on shutdown."""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import ssl
from pathlib import Path
from typing import Any

from relayd.clientaddr import PeerTally, parse_hosts
from relayd.counters import Counters
from relayd.limits import AuthThrottle, ClientLimits, GreetPasses, SessionLimits
from relayd.logs import kv
from relayd.metrics import Counting
from relayd.policy_source import PolicySource
from relayd.session import RelaySession
from relayd.settings import Settings, parse_listen
from relayd.spool_writer import MessageStore
from relayd.verify import RecipientVerifier

log = logging.getLogger("relayd.server")


class Relay:
    """The SMTP side of relayd: its listeners and the state its sessions share."""

    def __init__(
        self,
        settings: Settings,
        policy_source: PolicySource,
        spool: MessageStore,
        metrics: Counting,
        limits: SessionLimits,
    ) -> None:
        self.settings = settings
        self.policy_source = policy_source
        self.spool = spool
        self.metrics = metrics
        self.tls_context = _tls_context(settings)
        # relayd's own (client_limits), or in an intake worker the parent's through relayd/hub.py.
        self.limits = limits
        # Relay-profile counters: shared by the fleet through Redis when configured. Without Redis each
        # intake worker counts alone (docs/relayd.md), as each node of a fleet does.
        self.counters = Counters(settings.redis_url, settings.redis_prefix)
        self.proxy_hosts = parse_hosts(settings.proxy_hosts)
        self.xclient_hosts = parse_hosts(settings.xclient_hosts)
        self.xclient_secret = _read_secret(settings.xclient_secret_file)
        self.peers = PeerTally()
        self.verifier = (
            RecipientVerifier(
                settings.hostname, settings.verify_timeout, settings.verify_positive_ttl, settings.verify_negative_ttl
            )
            if settings.verify_recipients
            else None
        )
        self.sessions: set[RelaySession] = set()
        self.loop: asyncio.AbstractEventLoop  # set by start(), before any session exists
        self._servers: list[asyncio.Server] = []

    async def start(self, sockets: list[socket.socket] | None = None) -> None:
        """Accept on sockets, bound to the listen addresses in order; by default open every listen address."""
        self.loop = asyncio.get_running_loop()
        _ensure_descriptors(self.settings.max_connections + _SPARE_DESCRIPTORS)
        if sockets is None:
            sockets = open_listeners(self.settings.listen)
        for address, sock in zip(self.settings.listen, sockets, strict=True):
            server = await self.loop.create_server(lambda: RelaySession(self), sock=sock, backlog=1024)
            self._servers.append(server)
            log.info(kv(event="listening", address=address, bound=format_address(server.sockets[0].getsockname())))

    @property
    def addresses(self) -> list[tuple[Any, ...]]:
        """Return the socket address of each listener (useful when a port was 0)."""
        return [server.sockets[0].getsockname() for server in self._servers]

    async def stop(self, grace: float) -> None:
        """Stop accepting, let sessions finish the transaction they are in for up to grace seconds, then close them."""
        for server in self._servers:
            server.close()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace
        while self.sessions:
            late = loop.time() >= deadline
            for session in list(self.sessions):
                if late or session.idle:
                    session.say_goodbye("421 4.3.2 Service shutting down, try again later")
            if late:
                break
            await asyncio.sleep(0.05)
        for server in self._servers:
            await server.wait_closed()
        await self.counters.close()


# Descriptors beyond one per session: listeners, pipes to the helpers, policy and HTTP connections.
_SPARE_DESCRIPTORS = 128


def _ensure_descriptors(needed: int) -> None:
    """Raise the open-file limit to needed if the hard limit allows; else warn that --max-connections cannot be met.

    Past the limit, accept() fails with EMFILE and clients see nothing at all instead of 421.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        soft = target
    if soft != resource.RLIM_INFINITY and soft < needed:
        log.warning(
            kv(event="descriptor_limit", limit=soft, needed=needed, advice="lower --max-connections or raise ulimit -n")
        )


def open_listeners(addresses: list[str]) -> list[socket.socket]:
    """Return a listening socket for each address; close those opened if one fails."""
    sockets: list[socket.socket] = []
    try:
        for address in addresses:
            sockets.append(open_listener(address))
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def open_listener(address: str) -> socket.socket:
    """Return a listening socket for IP:PORT; an IPv6 wildcard or IPv4-mapped address also accepts IPv4."""
    host, port = parse_listen(address)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            # Dual-stack for [::] (and [::ffff:a.b.c.d]): IPv4 clients then appear IPv4-mapped,
            # which the decision function normalises. A specific IPv6 address stays IPv6-only.
            dual = host == "::" or host.lower().startswith("::ffff:")
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0 if dual else 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


def client_limits(settings: Settings) -> ClientLimits:
    """Return the limits on clients that relayd's process holds for itself and all its intake workers."""
    return ClientLimits(
        settings.max_connections,
        settings.max_connections_per_ip,
        AuthThrottle(settings.auth_slow_after, settings.auth_refuse_after, settings.auth_delay, settings.auth_window),
        GreetPasses(settings.greet_pass_ttl),
    )


def format_address(sockname: tuple[Any, ...]) -> str:
    """Return a socket address as IP:PORT or [IPv6]:PORT."""
    host, port = sockname[0], sockname[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _read_secret(path: Path | None) -> str:
    """Return the XCLIENT secret of --xclient-secret-file ("" without one); refuse an empty file."""
    if path is None:
        return ""
    secret = path.read_text().strip()
    if len(secret) < 16:
        raise ValueError(f"{path}: the XCLIENT secret must be at least 16 characters")
    return secret


def _tls_context(settings: Settings) -> ssl.SSLContext | None:
    if settings.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(settings.tls_cert, settings.tls_key)
    return context
