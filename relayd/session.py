"""Run one SMTP session: aiosmtpd's protocol with relayd's gate, limits, relay decision, DATA checks and spool.

aiosmtpd provides the command loop, EHLO, MAIL, STARTTLS, AUTH framing and RSET. relayd replaces:
- the start of the session: the per-client connection limit and the early-talker test;
- RCPT, to hand the path exactly as the client wrote it to relayd.decision (aiosmtpd's parser
  drops source routes and rejects user@remote@local, hiding the routing attempt), and to log
  one line per verdict;
- MAIL, to refuse early (452 4.3.1) when the spool's file system is nearly full, and to take
  RFC 4954's AUTH= parameter;
- RCPT, also to send <postmaster> and postmaster@ this host to the postmaster address;
- DATA, to refuse bare CR or LF (SMTP smuggling) and NUL, enforce SIZE with enhanced codes, add
  the Received header and spool durably before the 250;
- STARTTLS inside TLS (503), HELP (the real command list) and unknown commands (never echoed);
- AUTH PLAIN and LOGIN, to check the snapshot's password hashes in a thread, throttled per client;
- the timeouts, which answer 421 instead of closing silently;
- the client address: a PROXY header from --proxy-hosts, XCLIENT from --xclient-hosts (relayd.clientaddr).
"""

from __future__ import annotations

import asyncio
import binascii
import functools
import itertools
import logging
import os
import re
import secrets
import time
from base64 import b64decode
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import format_datetime
from types import MethodType
from typing import TYPE_CHECKING, Any, AnyStr, cast

import aiosmtpd.smtp
from aiosmtpd.smtp import (
    MISSING,
    SMTP,
    AuthResult,
    Envelope,
    Session,
    TLSSetupException,
    _AuthMechAttr,
    login_always_fail,
)

from relayd import profiles
from relayd.clientaddr import (
    XCLIENT_ATTRIBUTES,
    XCLIENT_SECRET,
    in_hosts,
    looks_like_proxy_header,
    parse_xclient,
    read_proxy_header,
    secret_matches,
    xclient_address,
)
from relayd.decision import Verdict, decide, parse_recipient, split_source_route
from relayd.limits import client_key
from relayd.logs import kv, repeats
from relayd.matcher import Address, parse_address
from relayd.passwords import parse_password_hash, verify_password
from relayd.spool import new_id


def _sanitized_log_if_enabled(func: Callable[..., None], msg: AnyStr, *args: Any, **kwargs: Any) -> None:
    """Do what aiosmtpd's sanitized_log does, but only when its logger would log at that level.

    aiosmtpd calls it twice for every command line, and it masks AUTH arguments with a regular
    expression before the logger is asked whether it logs at all: relayd keeps mail.log at ERROR,
    so that work was thrown away, a few percent of a relay-denied session.
    """
    if func.__self__.isEnabledFor(_LEVELS[func.__name__]):  # type: ignore[attr-defined]  # a Logger's method
        _aiosmtpd_sanitized_log(func, msg, *args, **kwargs)


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}
_aiosmtpd_sanitized_log = aiosmtpd.smtp.sanitized_log
aiosmtpd.smtp.sanitized_log = _sanitized_log_if_enabled

if TYPE_CHECKING:
    from relayd.config import CompiledPolicy
    from relayd.matcher import Address
    from relayd.server import Relay

log = logging.getLogger("relayd.session")

# An angle-bracketed path, allowing ">" inside a quoted local part.
_ANGLE_PATH = re.compile(r'<(?:"(?:[^"\\]|\\.)*"|[^">])*>')
# Characters a Received header may carry from client-supplied text.
_UNPRINTABLE = re.compile(r"[^!-~]")
# Commands that move no mail; past junk_command_limit of them a session is cut (NOOP floods).
_JUNK = ("NOOP", "RSET", "VRFY", "EXPN", "HELP", "EHLO", "HELO")
# What HELP lists: every command relayd carries out (EXPN only ever gets 502).
_HELP = "AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY"
# SECRET is advertised so that a client sends it only to relayd: Postfix, which lacks it, would refuse it.
_XCLIENT_EHLO = "250-XCLIENT " + " ".join((*XCLIENT_ATTRIBUTES, XCLIENT_SECRET))
# RFC 4954 5: the AUTH= parameter of MAIL is "<>" or an xtext (RFC 3461 4).
_AUTH_PARAMETER = re.compile(r"<>|(?:[!-*,-<>-~]|\+[0-9A-F]{2})+")
# Compared against when the user name is unknown, so that the reply takes as long as for a known one.
_DECOY_DIGEST = "A" * 43 + "="
_DJANGO_DEFAULT_ITERATIONS = 1_000_000
# A session's id names it in the log lines: unique in this process from a random start, without the
# getrandom(2) call per connection that secrets.token_hex made.
_session_numbers = itertools.count(secrets.randbits(40))
_ADMISSION_REPLIES = {
    "max_connections": "421 4.7.0 Too many connections, try again later",
    "too_many_connections": "421 4.7.0 Too many connections from your address, try again later",
}


class RelayEnvelope(Envelope):
    """aiosmtpd's envelope plus each accepted recipient's route, as the spool stores it."""

    def __init__(self) -> None:
        super().__init__()
        self.rcpts: list[dict[str, Any]] = []
        self.relayed = 0  # recipients relayed under a profile holder's grant, so the message counts once
        self.holder: profiles.Holder | None = None  # whose grant relays it, for the usage report


class RelaySession(SMTP):
    """One SMTP connection to relayd."""

    ident = "ESMTP relayd"
    # aiosmtpd types these Optional. They are None only before the connection is made and after it
    # is lost, when aiosmtpd has cancelled the handler; relayd's code runs in between. The envelope
    # is always relayd's own (_create_envelope).
    session: Session
    envelope: RelayEnvelope
    transport: asyncio.Transport

    def __init__(self, relay: Relay) -> None:
        """Set up the protocol the way aiosmtpd's SMTP.__init__ does, without its per-connection introspection.

        SMTP.__init__ (aiosmtpd 1.4.6, pinned) rebuilds its command and AUTH tables with
        inspect.getmembers() for every connection: about 1 ms, which alone would hold intake
        below Postfix's rate. The tables are the same for every session, so they are built from
        fixed names here; test_session_sets_up_everything_aiosmtpd_would (tests/relayd/test_cli.py)
        checks that nothing is missed.
        """
        loop = relay.loop
        asyncio.StreamReaderProtocol.__init__(
            self,
            asyncio.StreamReader(limit=self.line_length_limit, loop=loop),
            client_connected_cb=self._cb_client_connected,
            loop=loop,
        )
        settings = relay.settings
        self.__ident__ = self.ident
        self.loop = loop
        self.event_handler = None
        self.data_size_limit = None  # SIZE is advertised and enforced by relayd, with enhanced codes
        self.enable_SMTPUTF8 = False
        self._decode_data = False
        self.hostname = settings.hostname
        self.tls_context = relay.tls_context
        self.require_starttls = False
        self._timeout_duration = settings.command_timeout
        self._timeout_handle = None
        self._tls_handshake_okay = True
        self._tls_protocol = None
        self._original_transport = None
        self.session = None  # type: ignore[assignment]  # until the connection is made
        self.envelope = None  # type: ignore[assignment]
        self.transport = None  # type: ignore[assignment]
        self._handler_coroutine = None
        self._auth_require_tls = True
        self._proxy_timeout = None
        self._authenticator = None
        self._auth_callback = login_always_fail
        self._auth_required = False
        self._auth_methods = _AUTH_MECHANISMS
        self._handle_hooks = {}
        self._ehlo_hook_ver = "new"
        self._enforce_call_limit = False

        self.relay = relay
        self.id = f"{next(_session_numbers) % 2**40:010x}"
        self.client = ""  # the client's address, IPv4-mapped shown as IPv4
        self.client_key = ""
        self._parsed_client: tuple[str, Address | None] = ("", None)
        self.local_ip = ""
        # The client's Address as the connection or its PROXY header named it, before any XCLIENT.
        self.origin: Address | None = None
        self.marks: dict[str, str] = {}  # proxy=PEER, xclient=ADDRESS: added to the session's log lines
        self._limit_key = ""  # the key the connection limit counted this session under
        self._first_data = True
        self.in_transaction = False  # between DATA and its reply, when shutdown must wait
        self._greeted = False
        self._spoke_early = asyncio.Event()
        self._junk_commands = 0
        self._lifetime_handle: asyncio.TimerHandle | None = None
        self._deadline = 0.0

    def _create_envelope(self) -> RelayEnvelope:
        return RelayEnvelope()

    # A session must hold nothing that refers back to it: it is then freed as soon as it ends, by
    # reference counting. Each reference cycle left the session and some forty objects around it to
    # the cyclic garbage collector, which cost a relay-denied session about a sixth of its CPU time.

    # aiosmtpd's attribute, made a property so that no table is kept.
    @property
    def _smtp_methods(self) -> _Commands:  # type: ignore[override]
        """Return aiosmtpd's command table, made at each lookup: kept, it would refer back to the session."""
        return _Commands(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Called once, just now, by StreamReaderProtocol: a bound method of this session, kept it is a cycle.
        self._client_connected_cb = None

    @property
    def auth_user(self) -> str | None:
        """Return the name the client authenticated as, or None."""
        return self.session.auth_data if self.session and self.session.authenticated else None

    @property
    def idle(self) -> bool:
        """Return whether the session is between mail transactions, so a shutdown may close it now."""
        return not self.in_transaction and (self.envelope is None or self.envelope.mail_from is None)

    # The start of the session.

    def data_received(self, data: bytes) -> None:
        if not self._greeted:
            self._spoke_early.set()
        if self._first_data:
            self._first_data = False
            if looks_like_proxy_header(data) and not self._from_proxy_host():
                self._refuse_proxy_header()
                return
        super().data_received(data)

    @property
    def _peer_ip(self) -> str:
        """Return the IP address the connection comes from (aiosmtpd types its peer loosely: a socket address)."""
        return cast(tuple[str, ...], self.session.peer)[0]

    def _from_proxy_host(self) -> bool:
        proxies = self.relay.proxy_hosts
        return bool(proxies) and in_hosts(parse_address(self._peer_ip), proxies)

    def _refuse_proxy_header(self) -> None:
        """Close a connection that sent a PROXY header from outside --proxy-hosts: it may not name its own address."""
        self.client = self.client or str(parse_address(self._peer_ip))
        self._log_cut("proxy_header_not_allowed", refused=True)
        self.say_goodbye("554 5.5.1 Protocol error: PROXY header not accepted from your address")

    async def _handle_client(self) -> None:
        try:
            await self._serve()
        except asyncio.CancelledError:
            # aiosmtpd ends a session by cancelling this task (QUIT, the client's EOF, a lost
            # connection): that is its normal end. A task ended by CancelledError keeps the exception,
            # whose traceback holds this session's frames; ended normally, it keeps nothing.
            pass
        finally:
            # aiosmtpd's StreamWriter refers back to this protocol; nothing writes to it any more.
            self._writer = None  # type: ignore[assignment]  # the session has ended

    async def _serve(self) -> None:
        relay = self.relay
        host = self._peer_ip
        address = parse_address(host)
        # An IPv4 peer is already in normal form; formatting it again costs more than the check.
        self.client = host if address.version == 4 and ":" not in host else str(address)
        self.local_ip = self.transport.get_extra_info("sockname")[0]
        relay.metrics.inc("connections")
        relay.peers.count(self.client)
        if relay.proxy_hosts and in_hosts(address, relay.proxy_hosts):
            proxied = await self._read_proxy_header(address)
            if proxied is None:
                return
            address = proxied
        self.origin = address
        self._parsed_client = (self.client, address)
        self.client_key = self._limit_key = client_key(address)
        # Counted across every intake worker (relayd/limits.py ClientLimits), not per process.
        refusal, greet_pass = await relay.limits.admit(self._limit_key)
        if refusal is not None:
            # max_connections is all clients together: one host with many addresses must not exhaust
            # memory or descriptors.
            self._log_cut(refusal, refused=True)
            await self.push(_ADMISSION_REPLIES[refusal])
            self.transport.close()
            return
        relay.sessions.add(self)
        try:
            if await self._spoke_before_greeting(greet_pass):
                if self.transport.is_closing():
                    return  # refused already (a PROXY header from outside --proxy-hosts)
                self._log_cut("early_talker", refused=True)
                await self.push("554 5.5.1 Protocol error: command sent before the greeting")
                self.transport.close()
                return
            self._lifetime_handle = self.loop.call_later(relay.settings.session_timeout, self._end_lifetime)
            await super()._handle_client()
        finally:
            relay.sessions.discard(self)
            relay.limits.release(self._limit_key)
            if self._lifetime_handle:
                self._lifetime_handle.cancel()

    async def _read_proxy_header(self, peer: Address) -> Address | None:
        """Return the client a proxy's PROXY header names (the proxy for LOCAL), or None once the session is refused.

        A listed proxy must always send the header: a connection without one would otherwise run
        as the proxy's own address, and every client behind the proxy would share its trust.
        """
        header = await read_proxy_header(self._reader, self.relay.settings.proxy_timeout)
        if header.error:
            self.relay.metrics.inc("connections_refused", reason="bad_proxy_header")
            log.warning(
                kv(
                    event="connection_refused",
                    session=self.id,
                    client=self.client,
                    reason="bad_proxy_header",
                    detail=header.error,
                )
            )
            self.say_goodbye("554 5.5.1 Protocol error: a valid PROXY header is required")
            return None
        self.marks["proxy"] = self.client
        client = header.client or peer
        self.client = str(client)
        # Bytes after the header are the client's: the early-talker test starts over with them.
        self._spoke_early.clear()
        if self._reader._buffer:  # type: ignore[attr-defined]  # asyncio.StreamReader's buffer: what the client sent
            self._spoke_early.set()
        return client

    async def _spoke_before_greeting(self, greet_pass: bool) -> bool:
        """Wait greet_delay before the greeting and return whether the client sent anything meanwhile.

        A real MTA waits for the greeting; spamware often does not. Clients in a trusted network
        and clients that passed recently skip the wait, as with Postfix's postscreen.
        """
        relay = self.relay
        delay = relay.settings.greet_delay
        if delay > 0 and not self._spoke_early.is_set() and not greet_pass and not self._trusted_client():
            try:
                await asyncio.wait_for(self._spoke_early.wait(), delay)
            except TimeoutError:
                relay.limits.greet_passed(self.client_key)
        self._greeted = True
        return self._spoke_early.is_set()

    def _trusted_client(self) -> bool:
        policy = self.relay.policy_source.policy
        return policy is not None and policy.trusted.lookup(self._client_address(), datetime.now(UTC)) is not None

    def _client_address(self) -> Address:
        """Return self.client parsed, parsing it only when it changed (once per connection)."""
        client, address = self._parsed_client
        if client != self.client or address is None:
            address = parse_address(self.client)
            self._parsed_client = (self.client, address)
        return address

    # Limits that end the session.

    def _reset_timeout(self, duration: float | None = None) -> None:
        # aiosmtpd replaces a TimerHandle on every command, and relayd would on every DATA line;
        # moving a deadline that one long-lived timer checks costs an attribute store instead.
        self._deadline = self.loop.time() + (duration or self._timeout_duration)
        if self._timeout_handle is None:
            self._timeout_handle = self.loop.call_at(self._deadline, self._check_deadline)

    def _check_deadline(self) -> None:
        if self.loop.time() >= self._deadline:
            self._timeout_cb()
        else:
            self._timeout_handle = self.loop.call_at(self._deadline, self._check_deadline)

    def _timeout_cb(self) -> None:
        self._log_cut("command_timeout")
        self.say_goodbye("421 4.4.2 Timeout exceeded, closing connection")

    def _end_lifetime(self) -> None:
        self._log_cut("session_lifetime")
        self.say_goodbye("421 4.4.2 Session time limit exceeded, closing connection")

    def say_goodbye(self, reply: str) -> None:
        """Send a final reply out of turn and close the connection."""
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(reply.encode() + b"\r\n")
            self.transport.close()

    async def _junk(self) -> bool:
        """Count a command that moves no mail; past the limit, answer 421, close, and return True."""
        self._junk_commands += 1
        if self._junk_commands <= self.relay.settings.junk_command_limit:
            return False
        self._log_cut("junk_commands")
        await self.push("421 4.7.0 Too many commands without mail, closing connection")
        self.transport.close()
        return True

    async def smtp_NOOP(self, arg: str) -> None:
        if not await self._junk():
            await super().smtp_NOOP(arg)

    async def smtp_RSET(self, arg: str) -> None:
        if not await self._junk():
            await super().smtp_RSET(arg)

    async def smtp_VRFY(self, arg: str) -> None:
        # Not aiosmtpd's, which echoes an address it cannot parse, control bytes and all. relayd
        # knows no mailboxes; RFC 5321 3.5.3 has 252 for that.
        if not await self._junk():
            if arg:
                await self.push("252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery")
            else:
                await self.push("501 5.5.4 Syntax: VRFY <address>")

    async def smtp_EXPN(self, arg: str) -> None:
        if not await self._junk():
            await super().smtp_EXPN(arg)

    async def smtp_HELP(self, arg: str) -> None:
        # aiosmtpd lists only the commands it decorates itself, which relayd mostly replaces.
        if not await self._junk():
            await self.push(f"214 2.0.0 Commands: {_HELP}")

    async def smtp_STARTTLS(self, arg: str) -> None:
        if self._tls_protocol is not None:
            # aiosmtpd would start a second handshake inside the first (RFC 3207 4.2: only once).
            await self.push("503 5.5.1 Error: TLS already active")
            return
        await super().smtp_STARTTLS(arg)

    async def unknown_command(self, arg: str | None) -> None:
        """Answer a command relayd does not know, without echoing it (it may hold NUL or control bytes)."""
        if not await self._junk():
            await self.push("502 5.5.2 Error: command not recognized")

    async def smtp_EHLO(self, hostname: str) -> None:
        # Not aiosmtpd's, which builds the reply line by line for every client, adds SIZE and XCLIENT
        # through a hook, and writes it once per line.
        if await self._junk():
            return
        if not hostname:
            await self.push("501 Syntax: EHLO hostname")
            return
        self._set_rset_state()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated
        self.session.extended_smtp = True
        self.session.host_name = hostname
        in_tls = self._tls_protocol is not None
        starttls = self.tls_context is not None and not in_tls
        size = self.relay.settings.max_message_size
        await self.push(_ehlo_reply(self.hostname, size, starttls, in_tls, self._xclient_allowed()))

    async def smtp_HELO(self, hostname: str) -> None:
        if not await self._junk():
            await super().smtp_HELO(hostname)

    def _log_cut(self, reason: str, refused: bool = False) -> None:
        self.relay.metrics.inc("connections_refused" if refused else "sessions_cut", reason=reason)
        log.warning(
            kv(
                event="connection_refused" if refused else "session_cut",
                session=self.id,
                client=self.client,
                reason=reason,
            )
        )

    # MAIL.

    async def smtp_MAIL(self, arg: str | None) -> None:
        # Not aiosmtpd's: its address parser (email._header_value_parser) cost more than the
        # rest of a transaction, and SIZE refusals need their enhanced code.
        if await self.check_helo_needed():
            return
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Error: nested MAIL command")
            return
        split = _split_path(arg, "FROM:")
        if split is None or (split[1] and not self.session.extended_smtp):
            await self.push("501 5.5.4 Syntax: MAIL FROM:<address>")
            return
        path, params = split
        sender = _mailbox(path)
        if sender and not _valid_sender(sender):
            await self.push("553 5.1.7 Bad sender address syntax")
            return
        declared = 0
        for param in params:
            name, _, value = param.partition("=")
            name, upper = name.upper(), value.upper()
            if name == "SIZE" and value.isdigit():
                declared = int(value)
                if declared > self.relay.settings.max_message_size:
                    await self.push("552 5.3.4 Message size exceeds fixed maximum message size")
                    return
            elif name == "AUTH" and _AUTH_PARAMETER.fullmatch(value):
                # RFC 4954 5: accepted from anyone; relayd vouches for no submitter, so it is as if "<>".
                pass
            elif not (name == "BODY" and upper in ("7BIT", "8BITMIME")):
                await self.push("555 5.5.4 MAIL FROM parameters not recognized or not implemented")
                return
        if not self._room_for(declared):
            await self.push("452 4.3.1 Insufficient system storage")
            return
        # The null sender <> is stored as "", as the spool format wants.
        self.envelope.mail_from = sender
        self.envelope.mail_options.extend(params)
        await self.push("250 2.1.0 Ok")

    def _room_for(self, declared: int) -> bool:
        """Return whether the spool's file system keeps min_free_space free after a message of declared bytes."""
        settings = self.relay.settings
        if not settings.min_free_space:
            return True
        try:
            usage = os.statvfs(settings.spool)
        except OSError as exc:
            repeats.log(log, logging.ERROR, "statvfs", event="spool_error", error=exc)
            return False
        free = usage.f_bavail * usage.f_frsize
        if free - declared >= settings.min_free_space:
            return True
        self.relay.metrics.inc("storage_refusals")
        repeats.log(
            log,
            logging.WARNING,
            "low_storage",
            event="low_storage",
            free=free,
            declared=declared,
            min_free_space=settings.min_free_space,
            action="MAIL answered 452 4.3.1",
        )
        return False

    # XCLIENT: the dashboard's self-test borrows an untrusted client's address.

    def _xclient_allowed(self) -> bool:
        hosts = self.relay.xclient_hosts
        return bool(hosts) and self.origin is not None and in_hosts(self.origin, hosts)

    async def smtp_XCLIENT(self, arg: str | None) -> None:
        """Take the client's address from Postfix's XCLIENT; only from --xclient-hosts, with the shared secret.

        As with Postfix, a successful XCLIENT restarts the session: a new 220 greeting, then EHLO.
        """
        if not self._xclient_allowed():
            await self.unknown_command(arg)
            return
        if self.envelope.mail_from is not None:
            await self.push("503 5.5.1 Error: MAIL transaction in progress")
            return
        try:
            attributes = parse_xclient(arg)
            address = xclient_address(attributes["ADDR"]) if "ADDR" in attributes else None
        except ValueError as exc:
            await self.push(f"501 5.5.4 {exc}")
            return
        if not secret_matches(attributes.get("SECRET"), self.relay.xclient_secret):
            self.relay.metrics.inc("xclient", result="refused")
            log.warning(kv(event="xclient", session=self.id, client=self.client, result="refused", reason="secret"))
            await self.push("550 5.7.0 XCLIENT refused: the secret is missing or wrong")
            return
        self.marks["xclient"] = str(self.origin)
        if address is not None:
            self.client = str(address)
            self.client_key = client_key(address)
        session = self.session
        session.host_name = None
        session.extended_smtp = False
        session.authenticated = False
        session.auth_data = None
        self.envelope = self._create_envelope()
        self.relay.metrics.inc("xclient", result="accepted")
        log.info(
            kv(
                event="xclient",
                session=self.id,
                client=self.client,
                result="accepted",
                name=attributes.get("NAME"),
                **self.marks,
            )
        )
        await self.push(f"220 {self.hostname} {self.__ident__}")

    # RCPT: the relay decision.

    async def smtp_RCPT(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        envelope = self.envelope
        if envelope.mail_from is None:
            await self.push("503 5.5.1 Error: need MAIL command")
            return
        split = _split_path(arg, "TO:")
        if split is None:
            await self.push("501 5.5.4 Syntax: RCPT TO:<address>")
            return
        path, params = split
        if params:
            await self.push("555 5.5.4 RCPT TO parameters not recognized or not implemented")
            return
        if len(envelope.rcpts) >= self.relay.settings.max_recipients:
            self._log_verdict(
                path, "defer", 452, "recipient_limit", f"more than {len(envelope.rcpts)} recipients", None
            )
            await self.push("452 4.5.3 Error: too many recipients")
            return
        policy = self.relay.policy_source.policy
        verdict = decide(policy, self._client_address(), self.local_ip, self.auth_user, path)
        address = _mailbox(path)
        if policy is not None and (verdict.rule == "postmaster" or self._is_own_postmaster(address, verdict)):
            verdict, address = self._postmaster(policy)
        elif verdict.allowed and verdict.rule == "local_domain" and self.relay.verifier is not None:
            verdict = await self._verify(verdict, address)
        elif policy is not None and verdict.allowed and verdict.rule in profiles.RELAY_RULES:
            verdict = await self._check_profile(policy, verdict, envelope.mail_from)
        outcome = "accept" if verdict.allowed else "defer" if verdict.code < 500 else "refuse"
        self._log_verdict(path, outcome, verdict.code, verdict.rule, verdict.detail, policy)
        if verdict.allowed:
            envelope.rcpt_tos.append(path)
            envelope.rcpts.append({"address": address, "route": verdict.route})
        await self.push(verdict.reply)

    async def _check_profile(self, policy: CompiledPolicy, verdict: Verdict, sender: str) -> Verdict:
        """Return the verdict on a relayed recipient once its grant's profile has allowed and counted it."""
        found = profiles.holder(policy, verdict, self.client, self.auth_user, datetime.now(UTC))
        if found is None:
            return verdict
        envelope = self.envelope
        tls = self.session.ssl is not None
        verdict = await profiles.check(
            self.relay.counters, found, verdict, sender, tls, first_relayed=envelope.relayed == 0
        )
        if verdict.allowed:
            envelope.relayed += 1
            envelope.holder = found
        return verdict

    async def _verify(self, verdict: Verdict, address: str) -> Verdict:
        """Return the verdict once the local domain's route has confirmed (or denied) that address exists."""
        hop = verdict.route or self.relay.settings.smarthost
        verifier = self.relay.verifier
        if hop is None or verifier is None:
            # Without a route of its own the domain's MX is used, which may well be this relay.
            return verdict
        probe = await verifier.verify(address, hop)
        detail = f"{verdict.detail}; {hop} said {probe.reply}"
        if probe.kind == 2:
            return Verdict(True, verdict.code, verdict.enhanced, verdict.reply, verdict.rule, detail, verdict.route)
        if probe.kind == 5:
            text = "550 5.1.1 Recipient address rejected: undeliverable address"
            return Verdict(False, 550, "5.1.1", text, "unverified_recipient", detail)
        text = "450 4.1.1 Recipient address rejected: unverified address, try again later"
        return Verdict(False, 450, "4.1.1", text, "unverified_recipient", detail)

    def _is_own_postmaster(self, address: str, verdict: Verdict) -> bool:
        """Return whether address is postmaster@ this host's name (any case), unless that name is a local domain."""
        local, at, domain = address.rpartition("@")
        hostname = self.relay.settings.hostname.lower().rstrip(".")
        own = bool(at) and local.lower() == "postmaster" and domain.lower().rstrip(".") == hostname
        return own and verdict.rule != "local_domain"

    def _postmaster(self, policy: CompiledPolicy) -> tuple[Verdict, str]:
        """Return the verdict on a recipient that means this host's postmaster, and the address it goes to.

        RFC 5321 4.5.1 wants <postmaster> accepted from anyone. It goes to --postmaster-address,
        else to postmaster@ the policy's first local domain. With neither there is nowhere to
        deliver it, and accepting it would end in a bounce to a sender anyone can forge
        (backscatter), so it is refused here instead.
        """
        address = self.relay.settings.postmaster_address
        if address is None and policy.local_domains:
            address = f"postmaster@{next(iter(policy.local_domains))}"
        if address is None:
            return (
                Verdict(
                    False,
                    550,
                    "5.1.1",
                    "550 5.1.1 No postmaster mailbox here: this relay has no local domain",
                    "postmaster",
                    "no --postmaster-address and no local domain to send postmaster mail to",
                ),
                "",
            )
        route = decide(policy, "::", None, None, address).route
        detail = f"postmaster mail goes to {address}" + (f" via {route}" if route else "")
        return Verdict(True, 250, "2.1.5", "250 2.1.5 Recipient OK", "postmaster", detail, route), address

    def _log_verdict(
        self, path: str, outcome: str, code: int, rule: str, detail: str, policy: CompiledPolicy | None
    ) -> None:
        self.relay.metrics.inc("rcpt", verdict=outcome, rule=rule)
        log.info(
            kv(
                event="rcpt",
                session=self.id,
                client=self.client,
                helo=self.session.host_name,
                auth_user=self.auth_user,
                sender=f"<{self.envelope.mail_from}>",
                recipient=path,
                verdict=outcome,
                code=code,
                rule=rule,
                serial=policy.serial if policy else None,
                detail=detail,
                **self.marks,
            )
        )

    # DATA: smuggling checks, Received header, durable spool.

    async def smtp_DATA(self, arg: str | None) -> None:
        if await self.check_helo_needed():
            return
        if "xclient" in self.marks:
            # XCLIENT borrows an address (docs/design.md): such a session tests verdicts, never sends mail.
            await self.push("554 5.7.1 DATA refused: this session used XCLIENT")
            return
        if not self.envelope.rcpts:
            await self.push("503 5.5.1 Error: need RCPT command")
            return
        if arg:
            await self.push("501 5.5.4 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        self.in_transaction = True
        try:
            lines, problem = await self._read_data()
            reply = await self._refuse_data(problem) if problem else await self._queue(lines)
            self._set_post_data_state()  # type: ignore[no-untyped-call]  # aiosmtpd leaves it unannotated
            await self.push(reply)
        finally:
            self.in_transaction = False

    async def _read_data(self) -> tuple[list[bytes], str | None]:
        """Read the message up to the lone dot; return its lines (dot-stuffing removed) or the first problem."""
        reader = self._reader
        limit = self.relay.settings.max_message_size
        lines: list[bytes] = [b""]  # the Received header goes first
        size = 0
        problem = None
        at_line_start = True
        while True:
            try:
                line = await reader.readuntil(b"\r\n")
            except asyncio.LimitOverrunError as exc:
                # More than 1000 octets without CRLF: drop what is buffered and read on to the end.
                await reader.read(exc.consumed)
                problem = problem or "line_too_long"
                at_line_start = False
                continue
            self._reset_timeout()  # the client is making progress
            starts_line, at_line_start = at_line_start, True
            if starts_line and line == b".\r\n":
                return lines, problem
            if problem or not starts_line:
                continue
            size += len(line)
            if size > limit:
                problem = "too_big"
            elif line.count(b"\n") > 1 or line.count(b"\r") > 1:
                # A bare CR or LF is how end-of-data is smuggled past a lenient next hop
                # ("\n.\n", "\r.\r", "\n.\r\n" ...): refuse the whole message rather than pass it on.
                problem = "bare_cr_or_lf"
            elif b"\x00" in line:
                # A next hop that drops NUL would read "\x00.\r\n" as the end of data. NUL is no
                # text (RFC 5322 2.3); Exim refuses such messages too, rather than guess what was meant.
                problem = "nul"
            elif line[0] == 0x2E:
                lines.append(line[1:])
            else:
                lines.append(line)
            if problem:
                lines.clear()

    async def _refuse_data(self, problem: str) -> str:
        self.relay.metrics.inc("messages_refused", reason=problem)
        log.warning(
            kv(
                event="message_refused",
                session=self.id,
                client=self.client,
                sender=f"<{self.envelope.mail_from}>",
                reason=problem,
            )
        )
        if problem == "too_big":
            return "552 5.3.4 Message size exceeds fixed maximum message size"
        if problem == "bare_cr_or_lf":
            return "550 5.6.11 Message contains bare CR or LF, which cannot be sent via DATA"
        if problem == "nul":
            return "554 5.6.0 Message contains NUL characters, which cannot be sent via DATA"
        # RFC 5321 4.2.5 lists 552 and 554, not 500, as replies to the end of data.
        return "554 5.6.0 Message has a line over 1000 octets (RFC 5321 4.5.3.1.6)"

    async def _queue(self, lines: list[bytes]) -> str:
        """Spool the message with its Received header; return the reply: 250 only once it is on disk."""
        relay = self.relay
        envelope = self.envelope
        policy = relay.policy_source.policy
        message_id = new_id()
        lines[0] = self._received_header(message_id)
        message = b"".join(lines)
        record = {
            "id": message_id,
            "client": self.client,
            "helo": self.session.host_name,
            "auth_user": self.auth_user,
            "mail_from": envelope.mail_from,
            "rcpts": envelope.rcpts,
            "policy_serial": policy.serial if policy else None,
        }
        try:
            await relay.spool.store(record, message)
        except OSError as exc:
            relay.metrics.inc("spool_errors")
            key = f"spool_error:{exc.errno}"
            repeats.log(log, logging.ERROR, key, event="spool_error", session=self.id, id=message_id, error=exc)
            return "451 4.3.0 Local problem storing the message, try again later"
        relay.metrics.inc("messages_accepted")
        if envelope.holder is not None:
            relay.metrics.inc("relayed_messages", kind=envelope.holder.kind, holder=envelope.holder.name)
        log.info(
            kv(
                event="queued",
                session=self.id,
                id=message_id,
                client=self.client,
                auth_user=self.auth_user,
                sender=f"<{envelope.mail_from}>",
                rcpts=len(envelope.rcpts),
                size=len(message),
                **self.marks,
            )
        )
        return f"250 2.0.0 Ok: queued as {message_id}"

    def _received_header(self, message_id: str) -> bytes:
        session = self.session
        helo = _UNPRINTABLE.sub("?", session.host_name or "unknown")[:255]
        literal = f"[IPv6:{self.client}]" if ":" in self.client else f"[{self.client}]"
        protocol = "ESMTP" if session.extended_smtp else "SMTP"
        protocol += ("S" if session.ssl is not None else "") + ("A" if self.auth_user else "")
        rcpts = self.envelope.rcpts
        # Only a single recipient is named, as Postfix does: the header must not disclose Bcc lists.
        for_clause = f"\r\n\tfor <{rcpts[0]['address']}>" if len(rcpts) == 1 else ""
        date = _rfc5322_date(int(time.time()))
        return (
            f"Received: from {helo} ({literal})\r\n\tby {self.hostname} (relayd) with {protocol} id {message_id}"
            f"{for_clause};\r\n\t{date}\r\n"
        ).encode()

    # AUTH PLAIN and LOGIN (aiosmtpd has already refused AUTH before STARTTLS with 538 5.7.11).

    async def smtp_AUTH(self, arg: str) -> None:
        if self._tls_protocol and await self.relay.limits.auth_refused(self.client_key):
            await self._refuse_auth()
            return
        await super().smtp_AUTH(arg)

    # Called unbound from _AUTH_MECHANISMS as method(session, args), not bound as aiosmtpd's are.
    async def auth_PLAIN(self, args: list[str]) -> AuthResult:  # type: ignore[override]
        if len(args) == 1:
            challenged = await self.challenge_auth("")
            response = None if challenged is MISSING else challenged
        else:
            response = await self._decode_base64(args[1])
        if response is None:
            return AuthResult(success=False, handled=True)
        parts = response.split(b"\x00")
        if len(parts) != 3:
            await self.push("501 5.5.2 Can't split auth value")
            return AuthResult(success=False, handled=True)
        return await self._check_password(parts[1], parts[2])

    async def auth_LOGIN(self, args: list[str]) -> AuthResult:  # type: ignore[override]  # see auth_PLAIN
        if len(args) == 1:
            challenged = await self.challenge_auth("Username:")
            login = None if challenged is MISSING else challenged
        else:
            login = await self._decode_base64(args[1])
        if login is None:
            return AuthResult(success=False, handled=True)
        password = await self.challenge_auth("Password:")
        if password is MISSING:
            return AuthResult(success=False, handled=True)
        return await self._check_password(login, password)

    async def _decode_base64(self, text: str) -> bytes | None:
        try:
            return b64decode(text, validate=True)
        except binascii.Error:
            await self.push("501 5.5.2 Can't decode base64")
            return None

    async def _check_password(self, login: bytes, password: bytes) -> AuthResult:
        """Verify the credentials against the policy's smtp_users in a thread; tarpit and count failures."""
        relay = self.relay
        policy = relay.policy_source.policy
        username = login.decode("utf-8", "replace")
        user = policy.users.get(username) if policy else None
        matches = False
        if policy is not None:
            reference = user.password_hash if user else _decoy_hash(policy)
            # PBKDF2 with a million iterations takes most of a second: never on the event loop.
            matches = await self.loop.run_in_executor(
                None, verify_password, password.decode("utf-8", "replace"), reference
            )
        if user is not None and matches:
            relay.metrics.inc("auth", result="success")
            log.info(kv(event="auth", session=self.id, client=self.client, user=username, result="success"))
            return AuthResult(success=True, auth_data=username)
        delay, failures = await relay.limits.auth_failed(self.client_key)
        relay.metrics.inc("auth", result="failure")
        log.warning(
            kv(
                event="auth",
                session=self.id,
                client=self.client,
                user=username,
                result="failure",
                failures=failures,
                delay=delay,
            )
        )
        await asyncio.sleep(delay)
        if await relay.limits.auth_refused(self.client_key):
            await self._refuse_auth()
            return AuthResult(success=False, handled=True)
        return AuthResult(success=False, handled=False, message="535 5.7.8 Authentication credentials invalid")

    async def _refuse_auth(self) -> None:
        self._log_cut("auth_failures")
        await self.push("421 4.7.0 Too many authentication failures, try again later")
        self.transport.close()

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that breaks off or botches the handshake: its doing, not a fault of relayd.
            # aiosmtpd closes the connection after this.
            cause = error.__cause__ or error
            self.relay.metrics.inc("tls_failures")
            repeats.log(
                log,
                logging.WARNING,
                "tls_failed",
                event="tls_failed",
                session=self.id,
                client=self.client,
                error=type(cause).__name__ + (f": {cause}" if str(cause) else ""),
            )
            return "454 4.7.0 TLS not available due to temporary reason"
        # aiosmtpd's default reply names the exception; a client must never see internals.
        log.error(
            kv(event="session_error", session=self.id, client=self.client, error=type(error).__name__), exc_info=error
        )
        return "451 4.3.0 Local error in processing, try again later"


_COMMANDS = {name[5:]: getattr(RelaySession, name) for name in dir(RelaySession) if name.startswith("smtp_")}
# aiosmtpd calls a built-in mechanism as method(session, args): one table, unbound, serves every session.
_AUTH_MECHANISMS = {name: _AuthMechAttr(getattr(RelaySession, f"auth_{name}"), True) for name in ("LOGIN", "PLAIN")}


class _Commands:
    """The smtp_* methods of one session, bound when looked up: aiosmtpd's table, without building it per connection."""

    __slots__ = ("_session",)

    def __init__(self, session: RelaySession) -> None:
        self._session = session

    def get(self, name: str) -> Callable[..., Any]:
        session = self._session
        if session.transport is None or session.transport.is_closing():
            # Cut off already: aiosmtpd still reads what the client pipelined, which must neither
            # run nor repeat the cut (and its log line) once per command.
            return _ignore
        # Never None: aiosmtpd would then answer by echoing the command, control bytes and all.
        function = _COMMANDS.get(name, RelaySession.unknown_command)
        return MethodType(function, session)

    def items(self) -> list[tuple[str, Callable[..., Any]]]:
        return [(name, MethodType(function, self._session)) for name, function in _COMMANDS.items()]


async def _ignore(arg: str | None) -> None:
    """Do nothing: the command of a session that is being closed."""


def _valid_sender(address: str) -> bool:
    """Return whether a reverse-path mailbox is syntactically valid (RFC 5321 4.1.2)."""
    try:
        return parse_recipient(address).domain is not None
    except ValueError:
        return False


@functools.lru_cache(maxsize=16)
def _ehlo_reply(hostname: str, size: int, starttls: bool, auth: bool, xclient: bool) -> str:
    """Return the whole multi-line EHLO reply, for one write; cached, as it differs only by these."""
    lines = [f"250-{hostname}", f"250-SIZE {size}", *([_XCLIENT_EHLO] if xclient else []), "250-8BITMIME"]
    lines += ["250-STARTTLS"] if starttls else []
    # AUTH only inside TLS (aiosmtpd refuses it before STARTTLS with 538 5.7.11).
    lines += ["250-AUTH " + " ".join(sorted(_AUTH_MECHANISMS))] if auth else []
    return "\r\n".join([*lines, "250 HELP"])


@functools.lru_cache(maxsize=1)
def _rfc5322_date(second: int) -> str:
    """Return a Unix time as an RFC 5322 date; cached, as every message in the same second shares it."""
    return format_datetime(datetime.fromtimestamp(second, UTC))


def _split_path(arg: str | None, keyword: str) -> tuple[str, list[str]] | None:
    """Split "TO:<path> params" into the path as written and the parameters; None if malformed."""
    if arg is None or arg[: len(keyword)].upper() != keyword:
        return None
    rest = arg[len(keyword) :].lstrip()
    match = _ANGLE_PATH.match(rest)
    if match:
        path, params = match[0], rest[match.end() :]
        if params and not params[0].isspace():
            return None
    else:
        # Without brackets (not RFC 5321, but common): the path ends at the first space.
        path, _, params = rest.partition(" ")
    return (path, params.split()) if path else None


def _mailbox(path: str) -> str:
    """Return the address to deliver to: the path without brackets or a source route (RFC 5321 C)."""
    if path.startswith("<") and path.endswith(">"):
        path = path[1:-1]
    return split_source_route(path)[1]


def _decoy_hash(policy: CompiledPolicy) -> str:
    """Return a hash no password matches, as costly to check as the policy's real ones."""
    first = next(iter(policy.users.values()), None)
    iterations = parse_password_hash(first.password_hash)[0] if first else _DJANGO_DEFAULT_ITERATIONS
    return f"pbkdf2_sha256${iterations}$relayd-decoy${_DECOY_DIGEST}"
