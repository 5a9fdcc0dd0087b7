"""Deliver spooled messages to their next hop, retry with exponential backoff, and bounce what fails.

Entry point: relayd/runner.py runs it in a process of its own::

    config = DeliveryConfig(smarthost="smtp.example.net:25", route_of=...)
    stop = asyncio.Event()
    queue_runner = QueueRunner(spool, config, metrics)
    queue_runner.add(message_id)  # for each message intake spools, so it is delivered at once
    await queue_runner.run(stop)  # returns once stop is set and the work in flight is done

The next hop of a recipient is, in order: the route of its local domain (the envelope's "route"),
the smarthost, the MX hosts of its domain (RFC 5321 5.1: the domain's own A/AAAA when it has no
MX; a null MX, RFC 7505, is undeliverable). Recipients with the same next hop share one SMTP
transaction, with STARTTLS whenever the hop offers it. Per recipient, 2xx is done, 5xx failed,
and 4xx or a connection problem is retried after retry_initial seconds, then retry_factor times
longer each time up to retry_max, until queue_lifetime has passed since the message arrived; the
recipients still pending then fail. Failures go back to the sender as an RFC 3464 DSN from <>
(relayd/bounce.py builds it), spooled like any message; a message from <> is never bounced.

The spool (docs/spool.md) is the only state: a recipient is recorded in <id>.state as done or
failed only after its next hop answered, so a crash at any moment repeats a delivery at worst.
In "failed", code 0 marks a failure relayd found itself (DNS, expiry), whose reply text starts
with its enhanced status code. A .msg that cannot be read whole is moved to corrupt/ and skipped.

Each attempt logs one event=delivery line per next hop and outcome (id, to, hop, attempt, result,
reply) and counts deliveries{result=sent|deferred|failed|expired}, bounces{result=queued|dropped}
and delivery_quarantined.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import random
import smtplib
import socket
import ssl
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, NamedTuple

import dns.exception
import dns.name
import dns.resolver

from relayd.bounce import build_dsn
from relayd.hostport import join_host_port, split_host_port
from relayd.logs import kv, repeats
from relayd.metrics import Counting
from relayd.replies import Reply
from relayd.spool import Spool

log = logging.getLogger("relayd.delivery")


def _no_route(address: str) -> None:
    return None


@dataclass(frozen=True)
class DeliveryConfig:
    """Settings of the queue runner; durations are in seconds.

    route_of returns the route of the local domain of an address under the current policy (or
    None): bounces are addressed to senders, who are often in our own local domains.
    resolver is a dnspython-style resolver (resolve(name, rdtype)); None means the system's.
    mx_port is the port of MX hosts: 25, except in tests.
    """

    smarthost: str | None = None
    route_of: Callable[[str], str | None] = _no_route
    resolver: Any = None
    mx_port: int = 25
    helo_name: str = field(default_factory=socket.getfqdn)
    retry_initial: float = 300.0
    retry_factor: float = 2.0
    retry_max: float = 3600.0
    queue_lifetime: float = 5 * 86400.0
    scan_interval: float = 1.0
    concurrency: int = 20
    timeout: float = 60.0
    shutdown_grace: float = 30.0

    def __post_init__(self) -> None:
        if self.smarthost is not None:
            split_host_port(self.smarthost, what="smarthost")
        for name in ("retry_initial", "retry_max", "queue_lifetime", "scan_interval", "timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        if self.shutdown_grace < 0:
            raise ValueError("shutdown_grace must not be negative")
        if self.retry_factor < 1:
            raise ValueError("retry_factor must be at least 1, or retries would come ever sooner")
        if self.retry_max < self.retry_initial:
            raise ValueError("retry_max must be at least retry_initial")
        if self.concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if not 0 < self.mx_port < 65536:
            raise ValueError("mx_port must be a port number (1-65535)")


class Target(NamedTuple):
    """One host to try for a next hop: its name, the address to connect to, and the port."""

    host: str
    address: str
    port: int

    def __str__(self) -> str:
        if self.host == self.address:
            return join_host_port(self.host, self.port)
        return f"{self.host}[{self.address}]:{self.port}"


async def run_queue(spool: Spool, config: DeliveryConfig, metrics: Counting, stop: asyncio.Event) -> None:
    """Deliver the spooled messages until stop is set, then wait up to shutdown_grace for the work in flight."""
    await QueueRunner(spool, config, metrics).run(stop)


class QueueRunner:
    """Deliver the spool: each message when it is due, oldest first, up to config.concurrency at once.

    The runner keeps its own schedule, a heap of (due time, id), and lists queue/ only every
    scan_interval, to find mail it was not told about (after a restart, or spooled by another
    relayd). Rescanning after every delivery instead made a backlog drain in quadratic time: 20,000
    messages took 73 s. A message's due time is its arrival (the time its id starts with) until an
    attempt defers it, so new mail and due retries are served in the order they became due.
    """

    def __init__(self, spool: Spool, config: DeliveryConfig, metrics: Counting) -> None:
        self.spool = spool
        self.config = config
        self.metrics = metrics
        self.resolver = config.resolver
        # The due time of each message waiting (not being delivered), and the same as a heap. A
        # heap entry whose time is no longer the message's in waiting is stale and skipped.
        self.waiting: dict[str, float] = {}
        self.heap: list[tuple[float, str]] = []
        self.tasks: dict[str, asyncio.Task[None]] = {}
        # The state of each message whose .state file could not be written (a full disk): kept
        # here, so that a recipient already delivered is not delivered again while the runner lives.
        self.unsaved: dict[str, dict[str, Any]] = {}
        self.wake = asyncio.Event()
        # SMTP sessions and DNS lookups block, so they run in threads; a pool of their own keeps
        # slow next hops from starving the spool's file operations in the default executor.
        self.executor = ThreadPoolExecutor(max_workers=config.concurrency, thread_name_prefix="relayd-delivery")

    def add(self, message_id: str) -> None:
        """Schedule a message just spooled, unless it is already known."""
        if message_id not in self.waiting and message_id not in self.tasks:
            self._schedule(message_id, _arrival(message_id))
            self.wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Deliver until stop is set, then wait up to shutdown_grace for the deliveries in flight."""
        stop_watch = asyncio.create_task(self._wake_on(stop))
        loop = asyncio.get_running_loop()
        next_scan = loop.time()
        try:
            while not stop.is_set():
                if loop.time() >= next_scan:
                    await self._scan()
                    next_scan = loop.time() + self.config.scan_interval
                self._start_due()
                self.wake.clear()
                wait = next_scan - loop.time()
                if self.heap and len(self.tasks) < self.config.concurrency:
                    wait = min(wait, self.heap[0][0] - time.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.wake.wait(), max(wait, 0))
            if self.tasks:
                # A message cut off here is retried on the next start: at-least-once holds either way.
                await asyncio.wait(self.tasks.values(), timeout=self.config.shutdown_grace)
        finally:
            stop_watch.cancel()
            self.executor.shutdown(wait=False, cancel_futures=True)

    async def _wake_on(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self.wake.set()

    async def _scan(self) -> None:
        """Schedule the messages in queue/ that the runner does not know, and forget those gone from it."""
        try:
            queued = set(await asyncio.to_thread(self.spool.queued))
        except OSError as exc:
            # A spool that vanished or cannot be read (an unmounted disk, say): one line, then try again later.
            repeats.log(log, logging.ERROR, f"scan:{exc.errno}", event="spool_error", error=exc, action="rescan later")
            return
        for gone in self.waiting.keys() - queued:
            del self.waiting[gone]
        for message_id in queued - self.waiting.keys() - self.tasks.keys():
            self._schedule(message_id, _arrival(message_id))
        # Stale entries would otherwise pile up in the heap of a queue whose messages come and go.
        if len(self.heap) > 2 * len(self.waiting) + 64:
            self.heap = [(due, message_id) for message_id, due in self.waiting.items()]
            heapq.heapify(self.heap)

    def _schedule(self, message_id: str, due: float) -> None:
        self.waiting[message_id] = due
        heapq.heappush(self.heap, (due, message_id))

    def _start_due(self) -> None:
        """Start a delivery task for each due message, earliest first, up to the concurrency limit."""
        now = time.time()
        while self.heap and len(self.tasks) < self.config.concurrency and self.heap[0][0] <= now:
            due, message_id = heapq.heappop(self.heap)
            if self.waiting.get(message_id) != due:
                continue
            del self.waiting[message_id]
            self.tasks[message_id] = asyncio.create_task(self._process(message_id))

    async def _process(self, message_id: str) -> None:
        try:
            due = await self._attempt(message_id)
        except OSError as exc:
            # Expected trouble with the spool (a full disk, say): one line, not a traceback per message.
            repeats.log(
                log, logging.ERROR, f"spool:{exc.errno}", event="spool_error", id=message_id, error=exc, action="retry"
            )
            due = time.time() + self.config.retry_initial
        except Exception:
            # One message whose spool files cannot be handled must not stop the others.
            log.exception(kv(event="delivery", id=message_id, result="error"))
            due = time.time() + self.config.retry_initial
        finally:
            del self.tasks[message_id]
            self.wake.set()
        if due is not None:
            self._schedule(message_id, due)

    async def _attempt(self, message_id: str) -> float | None:
        """Try the pending recipients of one message and record the outcome in its state.

        Return when the message is due again, or None once it has left the queue.
        """
        try:
            envelope, message = await asyncio.to_thread(self.spool.read, message_id)
        except FileNotFoundError:
            # Finished already: a scan or a notice from intake can name a message as its delivery ends.
            return None
        except ValueError as exc:
            log.error(kv(event="delivery", id=message_id, result="quarantined", reason=str(exc)))
            self.metrics.inc("delivery_quarantined")
            await asyncio.to_thread(self.spool.quarantine, message_id, str(exc))
            return None
        unsaved = self.unsaved.pop(message_id, None)
        state = (
            unsaved
            or await asyncio.to_thread(self.spool.read_state, message_id)
            or {
                "attempts": 0,
                "next_attempt_at": _iso(time.time()),
                "first_attempt_at": None,
                "done": [],
                "failed": [],
                "last_error": "",
            }
        )
        due = datetime.fromisoformat(state["next_attempt_at"]).timestamp()
        if due > time.time():
            if unsaved is not None:
                self.unsaved[message_id] = unsaved
            return due
        final = set(state["done"]) | {failure["address"] for failure in state["failed"]}
        pending = [rcpt for rcpt in envelope["rcpts"] if rcpt["address"] not in final]
        results: list[str] = []
        if pending:
            replies = await self._deliver(message_id, envelope, message, pending, state["attempts"] + 1)
            retry_at = self._record(message_id, envelope, state, replies, results)
            if retry_at is not None:
                # The record first: anything that can fail after the next hop's reply (counting to
                # intake, say) must not make the delivery look undone and happen again.
                try:
                    await self._save_state(message_id, state)
                finally:
                    self._count(results)
                return retry_at
        try:
            await self._finish(message_id, envelope, message, state)
        except OSError:
            self.unsaved[message_id] = state
            raise
        finally:
            self._count(results)
        return None

    async def _save_state(self, message_id: str, state: dict[str, Any]) -> None:
        try:
            await asyncio.to_thread(self.spool.write_state, message_id, state)
        except OSError:
            self.unsaved[message_id] = state
            raise

    def _count(self, results: list[str]) -> None:
        for result in results:
            self.metrics.inc("deliveries", result=result)

    def _record(
        self,
        message_id: str,
        envelope: dict[str, Any],
        state: dict[str, Any],
        replies: dict[str, Reply],
        results: list[str],
    ) -> float | None:
        """Record this attempt's replies in state, and their results in results; return when to retry, or None."""
        now = time.time()
        expires = datetime.fromisoformat(envelope["received_at"]).timestamp() + self.config.queue_lifetime
        deferred = {}
        for address, reply in replies.items():
            result = reply.result
            results.append(result)
            if result == "sent":
                state["done"].append(address)
            elif result == "failed":
                state["failed"].append({"address": address, "code": reply.code, "reply": reply.text})
            else:
                deferred[address] = reply
        if deferred and now >= expires:
            lifetime = _duration(self.config.queue_lifetime)
            for address, reply in deferred.items():
                text = f"4.4.7 Delivery time expired: not delivered within {lifetime}; last error: {reply}"
                state["failed"].append({"address": address, "code": 0, "reply": text})
                results.append("expired")
            log.info(kv(event="delivery", id=message_id, to=",".join(deferred), result="expired", lifetime=lifetime))
            deferred = {}
        state["attempts"] += 1
        state["first_attempt_at"] = state["first_attempt_at"] or _iso(now)
        if not deferred:
            return None
        config = self.config
        delay: float = min(config.retry_initial * config.retry_factor ** (state["attempts"] - 1), config.retry_max)
        # Never retry later than the expiry, so the bounce is not late.
        due = min(now + delay, expires)
        state["next_attempt_at"] = _iso(due)
        state["last_error"] = "; ".join(f"{address}: {reply}" for address, reply in deferred.items())
        return due

    async def _finish(self, message_id: str, envelope: dict[str, Any], message: bytes, state: dict[str, Any]) -> None:
        """Bounce the failed recipients, if any and if the sender is not <>, then remove the message."""
        sender = envelope["mail_from"]
        if state["failed"] and not sender:
            # RFC 5321 6.1: a bounce must never bounce, or two relays could ping-pong forever.
            failed = ",".join(failure["address"] for failure in state["failed"])
            log.warning(kv(event="bounce", id=message_id, failed=failed, result="dropped", reason="null sender"))
            self.metrics.inc("bounces", result="dropped")
        elif state["failed"]:
            # Saved first, so a crash before the removal repeats the bounce, never the deliveries.
            await self._save_state(message_id, state)
            dsn = build_dsn(envelope, message, state["failed"], self.config.helo_name, datetime.now(UTC))
            bounce = {"mail_from": "", "rcpts": [{"address": sender, "route": self.config.route_of(sender)}]}
            bounce_id = await self.spool.store(bounce, dsn)
            self.add(bounce_id)
            log.info(kv(event="bounce", id=message_id, to=sender, result="queued", dsn=bounce_id))
            self.metrics.inc("bounces", result="queued")
        await asyncio.to_thread(self.spool.remove, message_id)

    async def _deliver(
        self, message_id: str, envelope: dict[str, Any], message: bytes, pending: list[dict[str, Any]], attempt: int
    ) -> dict[str, Reply]:
        """Send message to each pending recipient's next hop, one transaction per hop; return each reply."""
        loop = asyncio.get_running_loop()
        groups: dict[tuple[Target, ...], list[str]] = {}
        by_domain: dict[str, list[str]] = {}
        replies: dict[str, Reply] = {}
        for rcpt in pending:
            address = rcpt["address"]
            hop = rcpt["route"] or self.config.smarthost
            if hop:
                host, port, _ = split_host_port(hop)
                groups.setdefault((Target(host, host, port),), []).append(address)
            else:
                by_domain.setdefault(address.rpartition("@")[2].lower(), []).append(address)
        if by_domain:
            if self.resolver is None:
                # Built on first use: it reads /etc/resolv.conf, and a relay with routes may need no DNS.
                self.resolver = await loop.run_in_executor(self.executor, dns.resolver.Resolver)
            lookups = [
                loop.run_in_executor(self.executor, mx_targets, self.resolver, domain, self.config.mx_port)
                for domain in by_domain
            ]
            for (domain, addresses), found in zip(by_domain.items(), await asyncio.gather(*lookups), strict=True):
                if isinstance(found, Reply):
                    self._log(message_id, addresses, f"mx:{domain}", found, attempt)
                    replies.update(dict.fromkeys(addresses, found))
                else:
                    groups.setdefault(found, []).extend(addresses)
        sessions = [
            loop.run_in_executor(
                self.executor, transact, targets, envelope["mail_from"], addresses, message, self.config
            )
            for targets, addresses in groups.items()
        ]
        for hop, group_replies in await asyncio.gather(*sessions):
            outcomes: dict[Reply, list[str]] = {}
            for address, reply in group_replies.items():
                outcomes.setdefault(reply, []).append(address)
            for reply, addresses in outcomes.items():
                self._log(message_id, addresses, hop, reply, attempt)
            replies.update(group_replies)
        return replies

    def _log(self, message_id: str, addresses: list[str], hop: str, reply: Reply, attempt: int) -> None:
        level = logging.WARNING if reply.result == "failed" else logging.INFO
        to = ",".join(addresses)
        log.log(
            level,
            kv(event="delivery", id=message_id, to=to, hop=hop, attempt=attempt, result=reply.result, reply=reply),
        )


def mx_targets(resolver: Any, domain: str, port: int) -> tuple[Target, ...] | Reply:
    """Return the hosts to try for mail to domain, best first, or the Reply that explains why there are none."""
    if domain.startswith("["):
        # An address literal (RFC 5321 4.1.3) names the host itself.
        literal = domain[1:-1]
        literal = literal[5:] if literal[:5].lower() == "ipv6:" else literal
        return (Target(literal, literal, port),)
    if not domain:
        return Reply(0, "5.1.2 No domain to look up a next hop for, and no smarthost")
    implicit = False
    try:
        records = list(resolver.resolve(domain, "MX"))
    except dns.resolver.NXDOMAIN:
        return Reply(0, f"5.1.2 Domain {domain} does not exist")
    except dns.resolver.NoAnswer:
        # RFC 5321 5.1: without MX records, the domain itself is the mail host.
        implicit = True
        hosts = [domain]
    except dns.exception.DNSException as exc:
        return Reply(0, f"4.4.3 MX lookup for {domain} failed: {exc}")
    else:
        if any(record.exchange == dns.name.root for record in records):
            return Reply(0, f"5.1.10 Domain {domain} accepts no mail (null MX, RFC 7505)")
        # RFC 5321 5.1: spread the load over hosts of equal preference; sort() keeps the shuffle within each.
        random.shuffle(records)
        records.sort(key=lambda record: record.preference)
        hosts = [record.exchange.to_text(omit_final_dot=True) for record in records]
    targets = []
    lookup_error = None
    for host in hosts:
        for rdtype in ("A", "AAAA"):
            try:
                targets += [Target(host, record.address, port) for record in resolver.resolve(host, rdtype)]
            except (dns.resolver.NoAnswer, dns.resolver.NXDOMAIN):
                pass
            except dns.exception.DNSException as exc:
                lookup_error = exc
    if targets:
        return tuple(targets)
    if implicit and lookup_error is None:
        return Reply(0, f"5.1.2 Domain {domain} has no MX and no address records")
    return Reply(0, f"4.4.3 No address found for the mail hosts of {domain}: {lookup_error or ', '.join(hosts)}")


class _NextTarget(Exception):
    """Give up on this host and try the next one; reply says why, in case none is left."""

    def __init__(self, reply: Reply, *, tls_failed: bool = False) -> None:
        super().__init__(str(reply))
        self.reply = reply
        self.tls_failed = tls_failed


def _opportunistic_tls() -> ssl.SSLContext:
    # RFC 7435 opportunistic TLS, like Postfix's "may" level: encrypt whenever the hop offers it,
    # without authenticating it, since MX hosts rarely have certificates for the name we reach them by.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


_TLS = _opportunistic_tls()


def transact(
    targets: tuple[Target, ...], sender: str, rcpts: list[str], message: bytes, config: DeliveryConfig
) -> tuple[str, dict[str, Reply]]:
    """Send message to rcpts through the first target that takes the transaction; return it and each reply."""
    reply = Reply(0, "4.4.1 No host to try")
    for target in targets:
        for use_tls in (True, False):
            try:
                return str(target), _session(target, sender, rcpts, message, config, use_tls)
            except _NextTarget as exc:
                reply = exc.reply
                # As Postfix does at the "may" level: a hop whose TLS is broken still gets the mail in plaintext.
                if not exc.tls_failed:
                    break
    return ",".join(map(str, targets)), dict.fromkeys(rcpts, reply)


def _session(
    target: Target, sender: str, rcpts: list[str], message: bytes, config: DeliveryConfig, use_tls: bool
) -> dict[str, Reply]:
    """Run one SMTP transaction with target; raise _NextTarget if the host does not get as far as MAIL."""
    try:
        smtp = smtplib.SMTP(target.address, target.port, local_hostname=config.helo_name, timeout=config.timeout)
    except smtplib.SMTPConnectError as exc:
        raise _NextTarget(_refusal(target, exc.smtp_code, exc.smtp_error)) from None
    except OSError as exc:
        raise _NextTarget(Reply(0, f"4.4.1 Connection to {target} failed: {exc}")) from None
    try:
        code, text = smtp.ehlo()
        if code != 250:
            code, text = smtp.helo()
            if code != 250:
                raise _NextTarget(_refusal(target, code, text))
        if use_tls and smtp.has_extn("starttls"):
            try:
                smtp.starttls(context=_TLS)
            except smtplib.SMTPResponseException:
                pass  # STARTTLS refused: RFC 3207 lets the session go on in plaintext.
            except (ssl.SSLError, ConnectionError) as exc:
                reply = Reply(0, f"4.7.5 TLS handshake with {target} failed: {exc}")
                raise _NextTarget(reply, tls_failed=True) from None
            else:
                smtp.ehlo()
        parameters = ""
        if smtp.has_extn("size"):
            parameters += f" SIZE={len(message)}"
        if smtp.has_extn("8bitmime") and not message.isascii():
            parameters += " BODY=8BITMIME"
        # docmd, not mail()/rcpt(): smtplib's address quoting would rewrite quoted local parts.
        code, text = smtp.docmd("MAIL", f"FROM:<{sender}>{parameters}")
        if code != 250:
            return dict.fromkeys(rcpts, _reply(code, text))
        replies = {rcpt: _reply(*smtp.docmd("RCPT", f"TO:<{rcpt}>")) for rcpt in rcpts}
        accepted = [rcpt for rcpt, reply in replies.items() if reply.result == "sent"]
        if accepted:
            try:
                reply = _reply(*smtp.data(message))
            except smtplib.SMTPDataError as exc:
                reply = _reply(exc.smtp_code, exc.smtp_error)
            replies.update(dict.fromkeys(accepted, reply))
        with contextlib.suppress(smtplib.SMTPException, OSError):
            smtp.quit()
        return replies
    except OSError as exc:  # smtplib's exceptions included
        # A lost connection may have cost a DATA reply after the hop took the message: retrying
        # may deliver it twice, which at-least-once allows, but never loses it.
        raise _NextTarget(Reply(0, f"4.4.2 Connection to {target} failed: {exc or type(exc).__name__}")) from None
    finally:
        smtp.close()


def _refusal(target: Target, code: int, text: bytes | str) -> Reply:
    """Return the reply recorded when a host refuses the session itself.

    A refusal at the greeting or EHLO says nothing about the recipients, so even a 5xx is retried, as
    Postfix does: the next host may take the mail, or this one may once it is fixed.
    """
    return Reply(0, f"4.3.2 {target} refused the session: {_reply(code, text)}")


def _reply(code: int, text: bytes | str) -> Reply:
    if isinstance(text, bytes):
        # Replies are ASCII (RFC 5321); escaping anything else keeps logs and DSNs 7-bit clean.
        text = text.decode("ascii", "backslashreplace")
    return Reply(code, " ".join(text.split()))


def _arrival(message_id: str) -> float:
    """Return when a message arrived, as epoch seconds: spool ids start with time_ns in 16 hex digits."""
    try:
        return int(message_id[:16], 16) / 1e9
    except ValueError:
        return 0.0  # not a spool id: due at once, so that its attempt reports it


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat()


def _duration(seconds: float) -> str:
    for unit, size in (("days", 86400), ("hours", 3600), ("minutes", 60)):
        if seconds >= size and seconds % size == 0:
            return f"{seconds // size:g} {unit}"
    return f"{seconds:g} seconds"
