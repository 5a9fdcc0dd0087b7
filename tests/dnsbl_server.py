"""A fake DNS blocklist on loopback UDP, so that no test of the blocklist checks reaches the Internet.

It serves one zone, `dnsbl.test`, the way real lists answer: A 127.0.0.2 plus a TXT reason for
a listed address, NXDOMAIN for a clear one, 127.255.255.254 ("query refused", as Spamhaus says
to public resolvers) for a third, and silence (a timeout) for a fourth. Names outside the zone
get REFUSED, as from an authoritative-only server.
"""

import socket
import threading
from dataclasses import dataclass, field

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
import netaddr
import pytest
from django.test import override_settings

from policy import dnsbl

ZONE = "dnsbl.test"
DELIST_URL = "https://dnsbl.test/removal"
LISTED = "1.2.3.4"
CLEAR = "1.2.3.5"
REFUSED = "1.2.3.6"
SILENT = "1.2.3.7"
LISTED_V6 = "2a00:1450:4001::25"
REASON = "Listed for sending spam to traps; see https://dnsbl.test/lookup?ip=1.2.3.4"
REASON_V6 = "IPv6 listing: open relay reported"


@dataclass
class FakeDnsbl:
    """A UDP DNS server on 127.0.0.1, answering from `answers` (query name → (A codes, TXT or None))."""

    answers: dict = field(default_factory=dict)
    silent: set = field(default_factory=set)
    queries: list = field(default_factory=list)

    def start(self) -> "FakeDnsbl":
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="fake-dnsbl", daemon=True)
        self._thread.start()
        return self

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self.sock.close()

    def list_address(self, address: str, codes=("127.0.0.2",), reason: str | None = None) -> None:
        self.answers[dnsbl.query_name(netaddr.IPAddress(address), ZONE)] = (tuple(codes), reason)

    def ignore(self, address: str) -> None:
        self.silent.add(dnsbl.query_name(netaddr.IPAddress(address), ZONE))

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self.sock.recvfrom(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            reply = self._answer(dns.message.from_wire(data))
            if reply is not None:
                self.sock.sendto(reply.to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message | None:
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        self.queries.append((name, dns.rdatatype.to_text(question.rdtype)))
        response = dns.message.make_response(query)
        if name in self.silent:
            return None
        if not (name == ZONE or name.endswith("." + ZONE)):
            response.set_rcode(dns.rcode.REFUSED)
            return response
        if name not in self.answers:
            response.set_rcode(dns.rcode.NXDOMAIN)
            return response
        codes, reason = self.answers[name]
        if question.rdtype == dns.rdatatype.A:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A", list(codes)))
        elif question.rdtype == dns.rdatatype.TXT and reason:
            response.answer.append(dns.rrset.from_text(question.name, 60, "IN", "TXT", f'"{reason}"'))
        return response


@pytest.fixture
def fake_dnsbl():
    """Serve the fake list with one address of each kind; checks use it as their resolver."""
    server = FakeDnsbl().start()
    server.list_address(LISTED, reason=REASON)
    server.list_address(LISTED_V6, reason=REASON_V6)
    server.list_address(REFUSED, codes=("127.255.255.254",))
    server.ignore(SILENT)
    with override_settings(RELAYADMIN_DNS_RESOLVER=server.address, RELAYADMIN_DNS_TIMEOUT=0.5):
        yield server
    server.stop()


@pytest.fixture
def fake_zone(db, fake_dnsbl):
    """Make the fake list the only blocklist (the migrated defaults would be asked on the Internet)."""
    from policy.models import Blocklist

    Blocklist.objects.all().delete()
    return Blocklist.objects.create(zone=ZONE, delist_url=DELIST_URL, ipv6=True, notes="The test list.")


def watch(*texts: str):
    """Watch these addresses, as an editor would; return them in order."""
    from policy.models import WatchedAddress

    return [WatchedAddress.objects.create(address=text) for text in texts]
