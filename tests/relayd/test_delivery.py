"""The queue runner over real SMTP: next hops, retries, RFC 3464 bounces, corrupt files and kill -9."""

import asyncio
import email
import email.policy
import itertools
import json
import logging
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import dns.rdata
import dns.resolver
import pytest

from relayd.delivery import DeliveryConfig, QueueRunner, parse_hop, run_queue
from relayd.metrics import Metrics
from relayd.spool import Spool
from tests.relayd.controllers import SinkController
from tests.snapshots import restrictions

ROOT = Path(__file__).resolve().parents[2]
POLICY = {
    "schema": 1,
    "serial": 1,
    "generated_at": "2026-11-28T00:00:00+00:00",
    "restrictions": restrictions(),
    "trusted_networks": [],
    "denied_networks": [],
    "internal_addresses": [],
    "local_domains": [],
    "smtp_users": [],
}


@dataclass
class Received:
    mail_from: str
    rcpts: list[str]
    content: bytes
    tls: bool

    def parsed(self) -> email.message.EmailMessage:
        return email.message_from_bytes(self.content, policy=email.policy.default)


class Sink:
    """Handle SMTP on the sink: record what arrives and answer RCPT as a test scripts it."""

    def __init__(self) -> None:
        self.port = 0
        self.messages: list[Received] = []
        # address -> replies given to its RCPT in turn; the last one repeats. Unlisted addresses get 250.
        self.replies: dict[str, list[str]] = {}
        self.rcpt_times: dict[str, list[float]] = {}
        self.data_delay = 0.0

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        self.rcpt_times.setdefault(address, []).append(time.monotonic())
        script = self.replies.get(address, ["250 2.1.5 OK"])
        reply = script.pop(0) if len(script) > 1 else script[0]
        if reply.startswith("2"):
            envelope.rcpt_tos.append(address)
        return reply

    async def handle_DATA(self, server, session, envelope):
        await asyncio.sleep(self.data_delay)
        # aiosmtpd keeps the null reverse-path as written, "<>"; the spool writes it "".
        sender = "" if envelope.mail_from == "<>" else envelope.mail_from
        self.messages.append(Received(sender, list(envelope.rcpt_tos), envelope.content, bool(session.ssl)))
        return "250 2.0.0 Queued"

    @property
    def hop(self) -> str:
        return f"127.0.0.1:{self.port}"

    def bounces(self) -> list[Received]:
        return [message for message in self.messages if message.mail_from == ""]


def start_sink(**smtp_options) -> tuple[Sink, SinkController]:
    handler = Sink()
    controller = SinkController(handler, hostname="127.0.0.1", port=0, **smtp_options)
    controller.start()
    handler.port = controller.port
    return handler, controller


@pytest.fixture
def sink():
    handler, controller = start_sink()
    yield handler
    controller.stop()


@pytest.fixture(scope="module")
def tls_context(tmp_path_factory) -> ssl.SSLContext:
    directory = tmp_path_factory.mktemp("tls")
    key, cert = directory / "key.pem", directory / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=sink.test"),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    return context


@pytest.fixture
def spool(tmp_path):
    spool = Spool(tmp_path / "spool")
    yield spool
    spool.close()


class FakeResolver:
    """Answer DNS queries from a table: NXDOMAIN for names it lacks, NoAnswer for types a name lacks."""

    def __init__(self, records: dict[tuple[str, str], list[str]]) -> None:
        self.records = records
        self.queries: list[tuple[str, str]] = []
        # (name, rdtype) -> an error to raise once, as a server failure or timeout would.
        self.failures: dict[tuple[str, str], Exception] = {}

    def resolve(self, name: str, rdtype: str):
        name = name.rstrip(".").lower()
        self.queries.append((name, rdtype))
        if (name, rdtype) in self.failures:
            raise self.failures.pop((name, rdtype))
        if (name, rdtype) in self.records:
            return [dns.rdata.from_text("IN", rdtype, text) for text in self.records[name, rdtype]]
        if any(known == name for known, _ in self.records):
            raise dns.resolver.NoAnswer
        raise dns.resolver.NXDOMAIN


def config(**settings) -> DeliveryConfig:
    """Return settings that make a test fast: a short scan interval and backoff."""
    defaults = {
        "helo_name": "relay.test",
        "scan_interval": 0.02,
        "retry_initial": 0.05,
        "retry_max": 0.2,
        "timeout": 5.0,
        "shutdown_grace": 5.0,
        "resolver": FakeResolver({}),
    }
    return DeliveryConfig(**{**defaults, **settings})


def queue(spool: Spool, sender: str, rcpts: list[str], route: str | None = None, subject: str = "Hello") -> str:
    message = (
        f"Received: from client.test ([192.0.2.1]) by relay.test\r\nFrom: <{sender}>\r\nTo: <{rcpts[0]}>\r\n"
        f"Subject: {subject}\r\nMessage-ID: <{subject}@client.test>\r\n\r\nHello.\r\n.leading dot\r\n"
    ).encode()
    envelope = {"mail_from": sender, "rcpts": [{"address": rcpt, "route": route} for rcpt in rcpts]}
    return asyncio.run(spool.store(envelope, message))


def deliver(spool: Spool, settings: DeliveryConfig, until, timeout: float = 5.0) -> Metrics:
    """Run the queue runner until until() holds, then stop it; fail if that takes longer than timeout."""
    metrics = Metrics()

    async def main():
        stop = asyncio.Event()
        runner = asyncio.create_task(run_queue(spool, settings, metrics, stop))
        deadline = time.monotonic() + timeout
        while not until():
            assert not runner.done(), runner.result()
            assert time.monotonic() < deadline, "the queue runner did not get there in time"
            await asyncio.sleep(0.01)
        stop.set()
        await asyncio.wait_for(runner, 5)

    asyncio.run(main())
    return metrics


def test_local_domain_goes_to_its_route(sink, spool):
    queue(spool, "alice@example.net", ["bob@example.com", "carol@example.com"], route=sink.hop)
    # The smarthost is a dead port: the route must win over it.
    deliver(spool, config(smarthost="127.0.0.1:9"), lambda: not spool.queued())
    [received] = sink.messages
    assert received.mail_from == "alice@example.net"
    assert received.rcpts == ["bob@example.com", "carol@example.com"]
    assert b"Subject: Hello" in received.content
    assert b"\r\n.leading dot\r\n" in received.content


def test_smarthost_without_route(sink, spool):
    resolver = FakeResolver({})
    queue(spool, "alice@example.com", ["someone@example.org"])
    deliver(spool, config(smarthost=sink.hop, resolver=resolver), lambda: not spool.queued())
    assert [message.rcpts for message in sink.messages] == [["someone@example.org"]]
    assert resolver.queries == []


def test_mx_hosts_one_transaction_per_hop(sink, spool):
    resolver = FakeResolver(
        {
            ("example.org", "MX"): ["10 mx.example.org."],
            ("example.net", "MX"): ["5 mx.example.org."],
            ("mx.example.org", "A"): ["127.0.0.1"],
        }
    )
    queue(spool, "alice@example.com", ["a@example.org", "b@example.org", "c@example.net"])
    deliver(spool, config(resolver=resolver, mx_port=sink.port), lambda: not spool.queued())
    [received] = sink.messages
    assert sorted(received.rcpts) == ["a@example.org", "b@example.org", "c@example.net"]


def test_next_mx_when_the_best_refuses_the_connection(sink, spool):
    resolver = FakeResolver(
        {
            ("example.org", "MX"): ["10 mx1.example.org.", "20 mx2.example.org."],
            # The sink listens on 127.0.0.1 only, so 127.0.0.2 refuses the connection.
            ("mx1.example.org", "A"): ["127.0.0.2"],
            ("mx2.example.org", "A"): ["127.0.0.1"],
        }
    )
    queue(spool, "alice@example.com", ["a@example.org"])
    deliver(spool, config(resolver=resolver, mx_port=sink.port), lambda: not spool.queued())
    assert [message.rcpts for message in sink.messages] == [["a@example.org"]]


def test_domain_without_mx_gets_mail_at_its_address(sink, spool):
    resolver = FakeResolver({("example.org", "A"): ["127.0.0.1"], ("example.org", "TXT"): ['"v=spf1 -all"']})
    queue(spool, "alice@example.com", ["a@example.org"])
    deliver(spool, config(resolver=resolver, mx_port=sink.port), lambda: not spool.queued())
    assert [message.rcpts for message in sink.messages] == [["a@example.org"]]
    assert resolver.queries[:2] == [("example.org", "MX"), ("example.org", "A")]


def test_dns_failure_is_retried(sink, spool):
    resolver = FakeResolver({("example.org", "MX"): ["10 mx.example.org."], ("mx.example.org", "A"): ["127.0.0.1"]})
    resolver.failures["example.org", "MX"] = dns.resolver.NoNameservers()
    queue(spool, "alice@example.com", ["a@example.org"])
    metrics = deliver(spool, config(resolver=resolver, mx_port=sink.port), lambda: not spool.queued())
    assert [message.rcpts for message in sink.messages] == [["a@example.org"]]
    assert metrics.value("deliveries", result="deferred") == 1


def test_starttls_when_offered(tls_context, spool):
    sink, controller = start_sink(tls_context=tls_context)
    try:
        queue(spool, "alice@example.com", ["a@example.org"])
        deliver(spool, config(smarthost=sink.hop), lambda: not spool.queued())
    finally:
        controller.stop()
    [received] = sink.messages
    assert received.tls


def test_4xx_is_retried_with_backoff(sink, spool, caplog):
    caplog.set_level(logging.INFO, logger="relayd.delivery")
    sink.replies["a@example.org"] = ["451 4.7.1 Greylisted, try again later", "250 2.1.5 OK"]
    message_id = queue(spool, "alice@example.com", ["a@example.org", "b@example.org"])
    metrics = deliver(spool, config(smarthost=sink.hop, retry_initial=0.2, retry_max=1), lambda: not spool.queued())
    # b was done at once and is not sent again; a arrives on the retry, no sooner than the backoff.
    assert [message.rcpts for message in sink.messages] == [["b@example.org"], ["a@example.org"]]
    first, second = sink.rcpt_times["a@example.org"]
    assert second - first >= 0.2
    assert metrics.value("deliveries", result="deferred") == 1
    assert metrics.value("deliveries", result="sent") == 2
    lines = [record.getMessage() for record in caplog.records]
    prefix = f"event=delivery id={message_id} to=a@example.org hop={sink.hop}"
    assert f'{prefix} attempt=1 result=deferred reply="451 4.7.1 Greylisted, try again later"' in lines
    assert f'{prefix} attempt=2 result=sent reply="250 2.0.0 Queued"' in lines


def test_backoff_grows_exponentially_up_to_the_maximum(sink, spool):
    sink.replies["a@example.org"] = ["451 4.3.0 Try later"]
    queue(spool, "alice@example.com", ["a@example.org"])
    settings = config(smarthost=sink.hop, retry_initial=0.05, retry_factor=3, retry_max=0.2)
    deliver(spool, settings, lambda: len(sink.rcpt_times.get("a@example.org", [])) >= 5)
    times = sink.rcpt_times["a@example.org"]
    gaps = [later - earlier for earlier, later in itertools.pairwise(times)]
    # Uncapped, the delays would be 0.05, 0.15, 0.45, 1.35. A retry may come late on a busy machine,
    # never early.
    for gap, expected in zip(gaps, [0.05, 0.15, 0.2, 0.2], strict=True):
        assert expected <= gap < expected + 0.2


def test_5xx_bounces_an_rfc3464_dsn_to_the_sender(sink, spool):
    sink.replies["bad@example.org"] = ["550 5.1.1 <bad@example.org>: Recipient address rejected"]
    queue(spool, "alice@example.com", ["bad@example.org", "good@example.org"], route=sink.hop, subject="Report")
    # The sender's domain is local and routed to the sink, so the bounce goes there, not to MX.
    settings = config(route_of=lambda address: sink.hop if address.endswith("@example.com") else None)
    metrics = deliver(spool, settings, lambda: not spool.queued() and sink.bounces())
    original, bounce = sink.messages
    assert original.rcpts == ["good@example.org"]
    assert bounce.mail_from == ""
    assert bounce.rcpts == ["alice@example.com"]
    assert metrics.value("bounces", result="queued") == 1

    dsn = bounce.parsed()
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["To"] == "alice@example.com"
    assert dsn["Auto-Submitted"] == "auto-replied"
    human, status, headers = dsn.iter_parts()
    assert human.get_content_type() == "text/plain"
    assert "<bad@example.org>: 550 5.1.1" in human.get_content()
    assert status.get_content_type() == "message/delivery-status"
    per_message, per_recipient = status.get_payload()
    assert per_message["Reporting-MTA"] == "dns; relay.test"
    assert per_message["Arrival-Date"]
    assert per_recipient["Final-Recipient"] == "rfc822; bad@example.org"
    assert per_recipient["Action"] == "failed"
    assert per_recipient["Status"] == "5.1.1"
    assert per_recipient["Diagnostic-Code"] == "smtp; 550 5.1.1 <bad@example.org>: Recipient address rejected"
    assert headers.get_content_type() == "text/rfc822-headers"
    assert "Subject: Report" in headers.get_content()
    assert "Message-ID: <Report@client.test>" in headers.get_content()
    assert "Hello." not in headers.get_content()


def test_null_mx_bounces_at_once(sink, spool):
    resolver = FakeResolver({("example.org", "MX"): ["0 ."]})
    queue(spool, "alice@example.com", ["a@example.org"])
    deliver(spool, config(resolver=resolver, route_of=lambda address: sink.hop), lambda: sink.bounces())
    [bounce] = sink.messages
    status = bounce.parsed().get_payload()[1].get_payload()[1]
    assert status["Status"] == "5.1.10"
    assert status["Diagnostic-Code"].startswith("X-Relayd; 5.1.10 Domain example.org accepts no mail (null MX")


def test_expired_message_bounces_with_the_last_error(sink, spool):
    sink.replies["slow@example.org"] = ["452 4.2.2 Mailbox full"]
    queue(spool, "alice@example.com", ["slow@example.org"])
    settings = config(smarthost=sink.hop, retry_initial=0.05, retry_max=0.1, queue_lifetime=0.5)
    metrics = deliver(spool, settings, lambda: not spool.queued() and sink.bounces())
    [bounce] = sink.bounces()
    assert len(sink.rcpt_times["slow@example.org"]) >= 2
    status = bounce.parsed().get_payload()[1].get_payload()[1]
    assert status["Final-Recipient"] == "rfc822; slow@example.org"
    assert status["Action"] == "failed"
    assert status["Status"] == "4.4.7"
    assert status["Diagnostic-Code"] == (
        "X-Relayd; 4.4.7 Delivery time expired: not delivered within 0.5 seconds; last error: 452 4.2.2 Mailbox full"
    )
    assert metrics.value("deliveries", result="expired") == 1


def test_null_sender_is_never_bounced(sink, spool, caplog):
    sink.replies["bad@example.org"] = ["550 5.1.1 No such user"]
    message_id = queue(spool, "", ["bad@example.org"])
    metrics = deliver(spool, config(smarthost=sink.hop), lambda: not spool.queued())
    assert sink.messages == []
    assert metrics.value("bounces", result="dropped") == 1
    dropped = f'event=bounce id={message_id} failed=bad@example.org result=dropped reason="null sender"'
    assert dropped in [record.getMessage() for record in caplog.records]


def test_truncated_message_is_quarantined_without_blocking_the_queue(sink, spool):
    queue(spool, "alice@example.com", ["a@example.org"], subject="First")
    cut = queue(spool, "alice@example.com", ["b@example.org"], subject="Cut")
    queue(spool, "alice@example.com", ["c@example.org"], subject="Last")
    path = spool.queue / f"{cut}.msg"
    path.write_bytes(path.read_bytes()[:-10])
    metrics = deliver(spool, config(smarthost=sink.hop), lambda: not spool.queued())
    assert sorted(message.rcpts for message in sink.messages) == [["a@example.org"], ["c@example.org"]]
    assert metrics.value("delivery_quarantined") == 1
    assert (spool.corrupt / f"{cut}.msg").exists()
    assert "cut short" in (spool.corrupt / f"{cut}.reason").read_text()


def test_a_backlog_is_delivered_without_listing_the_queue_per_message(sink, spool):
    """Listing queue/ after every delivery made a backlog drain in quadratic time (20,000 messages: 73 s)."""
    for number in range(40):
        queue(spool, "alice@example.com", [f"m{number}@example.org"], subject=f"m{number:02}")
    listings = []
    queued = spool.queued
    spool.queued = lambda: listings.append(1) or queued()
    # Retries are due within the test too, so they must come from the runner's schedule, not a scan.
    sink.replies["m7@example.org"] = ["451 4.3.0 Try later", "250 2.1.5 OK"]
    deliver(spool, config(smarthost=sink.hop, scan_interval=60, concurrency=3), lambda: len(sink.messages) == 40)
    assert len(listings) == 1  # the scan at start-up
    # Oldest first, give or take the three at a time in flight.
    subjects = [message.parsed()["Subject"] for message in sink.messages]
    assert sorted(subjects[:3]) == ["m00", "m01", "m02"]
    assert "m39" in subjects[-4:]


def test_mail_the_runner_is_told_about_goes_out_without_waiting_for_a_scan(sink, spool):
    async def main():
        runner = QueueRunner(spool, config(smarthost=sink.hop, scan_interval=60), Metrics())
        stop = asyncio.Event()
        task = asyncio.create_task(runner.run(stop))
        await asyncio.sleep(0.1)  # past the scan at start-up, of an empty queue
        envelope = {"mail_from": "alice@example.com", "rcpts": [{"address": "a@example.org", "route": None}]}
        message_id = await spool.store(envelope, b"Subject: new\r\n\r\nHello.\r\n")
        runner.add(message_id)
        told = time.monotonic()
        while not sink.messages:
            assert time.monotonic() - told < 2, "not delivered until a scan"
            await asyncio.sleep(0.01)
        # Told again after the delivery, as a late notice could: nothing is sent twice, nothing fails.
        runner.add(message_id)
        await asyncio.sleep(0.2)
        stop.set()
        await asyncio.wait_for(task, 5)

    asyncio.run(main())
    assert len(sink.messages) == 1 and not spool.queued()


def test_kill_9_mid_queue_then_restart_delivers_every_message(sink, spool, tmp_path):
    """Kill the whole daemon while it delivers; after a restart every spooled message has reached the sink."""
    sink.data_delay = 0.02
    subjects = [f"m{number:02}" for number in range(40)]
    for subject in subjects:
        queue(spool, "alice@example.com", [f"{subject}@example.org"], subject=subject)
    policy = tmp_path / "policy.json"
    policy.write_text(json.dumps(POLICY))
    command = [sys.executable, "-m", "relayd", "--policy", str(policy), "--spool", str(spool.root)]
    command += ["--listen", "127.0.0.1:0", "--metrics-listen", "off", "--smarthost", sink.hop]
    command += ["--delivery-concurrency", "2", "--hostname", "relay.test", "--log-level", "warning"]

    def wait_for(condition):
        deadline = time.monotonic() + 10
        while not condition():
            assert time.monotonic() < deadline
            time.sleep(0.01)

    daemon = subprocess.Popen(command, cwd=ROOT)
    try:
        wait_for(lambda: len(sink.messages) >= 10)
        daemon.send_signal(signal.SIGKILL)
        daemon.wait()
        assert spool.queued(), "the kill should come while messages are still queued"
        daemon = subprocess.Popen(command, cwd=ROOT)
        wait_for(lambda: not spool.queued())
        daemon.terminate()
        assert daemon.wait(timeout=10) == 0
    finally:
        daemon.kill()
    # Duplicates are allowed (at-least-once), losses are not.
    assert sorted({message.parsed()["Subject"] for message in sink.messages}) == subjects


@pytest.mark.parametrize(
    ("text", "hop"),
    [
        ("smtp.example.net:25", ("smtp.example.net", 25)),
        ("192.0.2.1:2525", ("192.0.2.1", 2525)),
        ("[2001:db8::25]:25", ("2001:db8::25", 25)),
    ],
)
def test_parse_hop(text, hop):
    assert parse_hop(text) == hop


@pytest.mark.parametrize("text", ["smtp.example.net", "2001:db8::25:25", "host:0", "host:65536", ":25", "host:x"])
def test_parse_hop_refuses(text):
    with pytest.raises(ValueError, match="next hop"):
        parse_hop(text)


@pytest.mark.parametrize(
    ("settings", "problem"),
    [
        ({"retry_factor": 0.5}, "retry_factor must be at least 1"),
        ({"retry_initial": 10, "retry_max": 5}, "retry_max must be at least retry_initial"),
        ({"queue_lifetime": 0}, "queue_lifetime must be a positive"),
        ({"smarthost": "smtp.example.net"}, "not a next hop"),
    ],
)
def test_config_refuses(settings, problem):
    with pytest.raises(ValueError, match=problem):
        DeliveryConfig(**settings)
