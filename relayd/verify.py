"""Verify recipients in local domains by asking their route, as Postfix's reject_unverified_recipient does.

A message for an unknown user of a local domain would otherwise be accepted, refused by the next
hop and bounced to its sender, who is often forged (backscatter). With --verify-recipients, RCPT
asks the route first: EHLO, MAIL FROM:<>, RCPT TO, QUIT (a "call-ahead"), in a thread, and keeps
the answer for a while so that a busy address costs one probe per --verify-positive-ttl:

- 2xx: the recipient exists; accepted.
- 5xx: it does not; refused at RCPT with 550 5.1.1 and the route's reply.
- 4xx, or no answer: unknown for now; 450 4.1.1, so the client retries (Postfix's default). Not kept.
"""

from __future__ import annotations

import asyncio
import smtplib
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import NamedTuple

from relayd.hostport import split_host_port

CAPACITY = 100_000


class Probe(NamedTuple):
    """What the route said about one recipient: 2, 4 or 5 (the reply's class) and the reply."""

    kind: int
    reply: str


class RecipientVerifier:
    """Probe recipients at their route, at most one probe per address at a time, and cache the answers."""

    def __init__(
        self,
        helo_name: str,
        timeout: float,
        positive_ttl: float,
        negative_ttl: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.helo_name = helo_name
        self.timeout = timeout
        self.positive_ttl = positive_ttl
        self.negative_ttl = negative_ttl
        self.clock = clock
        self._cache: OrderedDict[tuple[str, str], tuple[Probe, float]] = OrderedDict()
        self._probing: dict[tuple[str, str], asyncio.Future[Probe]] = {}

    async def verify(self, address: str, hop: str) -> Probe:
        """Return what hop says about address, from the cache when it is fresh."""
        key = (address.lower(), hop)
        cached = self._cache.get(key)
        if cached is not None and cached[1] > self.clock():
            return cached[0]
        pending = self._probing.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future = asyncio.get_running_loop().run_in_executor(None, self.probe, address, hop)
        self._probing[key] = future
        try:
            result = await asyncio.shield(future)
        finally:
            self._probing.pop(key, None)
        ttl = {2: self.positive_ttl, 5: self.negative_ttl}.get(result.kind)
        if ttl:
            self._cache[key] = (result, self.clock() + ttl)
            self._cache.move_to_end(key)
            if len(self._cache) > CAPACITY:
                self._cache.popitem(last=False)
        return result

    def probe(self, address: str, hop: str) -> Probe:
        """Ask hop whether it takes mail for address, without sending any; blocking."""
        host, port, _ = split_host_port(hop)
        try:
            with smtplib.SMTP(host, port, local_hostname=self.helo_name, timeout=self.timeout) as smtp:
                code, text = smtp.ehlo()
                if code != 250:
                    code, text = smtp.helo()
                if code == 250:
                    code, text = smtp.docmd("MAIL", "FROM:<>")
                if code == 250:
                    code, text = smtp.docmd("RCPT", f"TO:<{address}>")
                    kind = code // 100
                else:
                    # The route refused the probe itself: that says nothing about the recipient.
                    kind = 4
                reply = f"{code} {' '.join(text.decode('ascii', 'backslashreplace').split())}"
                return Probe(kind if kind in (2, 5) else 4, reply)
        except (OSError, smtplib.SMTPException) as exc:
            return Probe(4, f"{hop}: {exc or type(exc).__name__}")
