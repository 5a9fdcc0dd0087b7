"""Relay profiles enforced over real SMTP on loopback (issue 15): rate, recipients, sender domains, TLS.

The fleet-wide counter is checked with two relayd processes sharing the loopback Redis, each test
under a key prefix of its own, and with Redis unreachable.
"""

import logging
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from relayd.config import PROFILES_SCHEMA
from tests.relayd.conftest import ALICE_PASSWORD, policy, publish, send
from tests.snapshots import network, profile

REMOTE = "<bob@remote.test>"
LOCAL = "<bob@example.com>"
ROOT = Path(__file__).resolve().parents[2]
REDIS_URL = "redis://127.0.0.1:6379/0"


def profiled(networks=(), users=(), **changes) -> dict:
    """Return a schema-2 test snapshot trusting 127.0.0.0/8 (id 1) with these profiles."""
    return policy(
        schema=PROFILES_SCHEMA,
        trusted_networks=changes.pop("trusted_networks", [network(1, "127.0.0.0/8")]),
        profiles={"trusted_networks": list(networks), "smtp_users": list(users)},
        **changes,
    )


def test_message_rate_limit_defers_with_450_and_local_delivery_goes_on(start_relay):
    relay = start_relay(profiled([{"id": 1, **profile(rate_limit_per_hour=2)}]))
    with relay.smtp() as client:
        for _ in range(2):
            rcpt, data = send(client, "a@client.test", REMOTE)
            assert rcpt[0] == 250 and data[0] == 250
        rcpt, _ = send(client, "a@client.test", REMOTE)
        assert rcpt[0] == 450
        assert rcpt[1].startswith(b"4.7.1 ")
        # The limit is on relaying only: mail for a local domain is never held back by it.
        assert send(client, "a@client.test", LOCAL)[0][0] == 250
    assert len(relay.queued()) == 3


def test_a_message_counts_once_whatever_its_recipients(start_relay):
    relay = start_relay(profiled([{"id": 1, **profile(rate_limit_per_hour=1)}]))
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<a@client.test>")
        assert [client.docmd(f"RCPT TO:<user{n}@remote.test>")[0] for n in range(3)] == [250, 250, 250]
        client.rset()
        assert send(client, "a@client.test", REMOTE)[0][0] == 450


def test_recipient_rate_limit_defers_further_recipients(start_relay):
    relay = start_relay(profiled([{"id": 1, **profile(recipients_per_hour=2)}]))
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<a@client.test>")
        replies = [client.docmd(f"RCPT TO:<user{n}@remote.test>") for n in range(3)]
        assert [code for code, _ in replies] == [250, 250, 450]
        assert replies[2][1].startswith(b"4.7.1 ")
        assert client.docmd("RCPT TO:<carol@example.com>")[0] == 250
        assert client.data(b"Subject: t\r\n\r\nhi\r\n")[0] == 250


@pytest.mark.parametrize(
    ("sender", "code"),
    [
        ("a@corp.test", 250),
        ("a@Mail.Corp.Test", 250),  # a subdomain, in any case
        ("a@evilcorp.test", 553),  # a suffix that is not a subdomain
        ("a@remote.test", 553),
        ("", 553),  # the null sender has no domain to allow
    ],
)
def test_sender_domains_limit_relaying(start_relay, sender, code):
    relay = start_relay(profiled([{"id": 1, **profile(allowed_sender_domains=["corp.test"])}]))
    with relay.smtp() as client:
        rcpt, _ = send(client, sender, REMOTE)
        assert rcpt[0] == code
        if code == 553:
            assert rcpt[1].startswith(b"5.7.1 ")
            # Delivery to local domains is not limited by the profile.
            assert send(client, sender, LOCAL)[0][0] == 250


def test_require_tls_refuses_relaying_in_plaintext_and_allows_it_after_starttls(start_relay, tls_files, tls_client):
    cert, key = tls_files
    relay = start_relay(profiled([{"id": 1, **profile(require_tls=True)}]), tls_cert=cert, tls_key=key)
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0] == (530, b"5.7.0 Must issue a STARTTLS command first")
        assert send(client, "a@client.test", LOCAL)[0][0] == 250
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        assert send(client, "a@client.test", REMOTE)[0][0] == 250


def test_most_specific_network_profile_applies(start_relay):
    networks = [network(1, "127.0.0.0/8"), network(2, "127.0.0.1/32")]
    document = profiled(
        [{"id": 1, **profile(allowed_sender_domains=["corp.test"])}, {"id": 2, **profile(rate_limit_per_hour=1)}],
        trusted_networks=networks,
    )
    relay = start_relay(document)
    with relay.smtp() as client:
        # The /32's profile, not the /8's: any sender, but one message an hour.
        assert send(client, "a@other.test", REMOTE)[0][0] == 250
        assert send(client, "a@other.test", REMOTE)[0][0] == 450


def test_authenticated_user_relays_under_the_users_profile(start_relay, tls_files, tls_client):
    cert, key = tls_files
    document = profiled(
        [{"id": 1, **profile(allowed_sender_domains=["corp.test"])}],
        [{"username": "alice", **profile(allowed_sender_domains=["alice.test"], rate_limit_per_hour=1)}],
    )
    relay = start_relay(document, tls_cert=cert, tls_key=key)
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        client.login("alice", ALICE_PASSWORD)
        assert send(client, "a@corp.test", REMOTE)[0][0] == 553
        assert send(client, "a@alice.test", REMOTE)[0][0] == 250
        assert send(client, "a@alice.test", REMOTE)[0][0] == 450


def test_relayed_messages_are_reported_per_holder(start_relay):
    relay = start_relay(profiled())
    with relay.smtp() as client:
        for _ in range(3):
            assert send(client, "a@client.test", REMOTE)[1][0] == 250
        assert send(client, "a@client.test", LOCAL)[1][0] == 250
    report = relay.daemon._node_report()
    assert report["usage"] == {"trusted_networks": {"127.0.0.0/8": 3}, "smtp_users": {}}


def test_the_log_line_says_how_much_of_the_limit_is_used(start_relay, caplog):
    relay = start_relay(profiled([{"id": 1, **profile(rate_limit_per_hour=100)}]))
    with caplog.at_level(logging.INFO, logger="relayd.session"), relay.smtp() as client:
        send(client, "a@client.test", REMOTE)
    assert "trusted network 127.0.0.0/8: 1 of 100 messages this hour on this node" in caplog.text


def test_redis_down_counts_locally_logs_once_and_keeps_accepting(start_relay, caplog):
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    relay = start_relay(
        profiled([{"id": 1, **profile(rate_limit_per_hour=2)}]), redis_url=f"redis://127.0.0.1:{dead}/0"
    )
    with caplog.at_level(logging.INFO), relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[1][0] == 250
        assert send(client, "a@client.test", REMOTE)[1][0] == 250
        assert send(client, "a@client.test", REMOTE)[0][0] == 450  # the local limit still holds
    assert caplog.text.count("event=counters_local") == 1


def answers(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
    except OSError:
        return False
    return True


@pytest.fixture
def redis_url(tmp_path):
    """Return the loopback Redis's URL; without one on 6379, start a private redis-server (make test installs it)."""
    if answers(6379):
        yield REDIS_URL
        return
    server = shutil.which("redis-server")
    if server is None:
        pytest.fail("The fleet counter test needs Redis: run one on 127.0.0.1:6379 or install redis-server")
    port = free_port()
    process = subprocess.Popen(
        [server, "--bind", "127.0.0.1", "--port", str(port), "--save", "", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while not answers(port):
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        process.terminate()
        process.wait(10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_process(directory: Path, redis_url: str, prefix: str) -> tuple[subprocess.Popen, int]:
    """Start relayd as a process of its own on the shared snapshot and Redis; return it and its port."""
    port = free_port()
    spool = directory / f"spool{port}"
    arguments = [
        *(sys.executable, "-m", "relayd", "--policy", str(directory / "policy.json"), "--spool", str(spool)),
        *("--listen", f"127.0.0.1:{port}", "--metrics-listen", "off", "--greet-delay", "0"),
        *("--hostname", "relay.test", "--no-delivery", "--redis-url", redis_url, "--redis-prefix", prefix),
    ]
    process = subprocess.Popen(arguments, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return process, port
        except OSError:
            assert process.poll() is None, "relayd exited"
            assert time.monotonic() < deadline, "relayd did not start listening"
            time.sleep(0.05)


def test_two_relayd_processes_share_the_limit_through_redis(tmp_path, redis_url):
    publish(tmp_path / "policy.json", profiled([{"id": 1, **profile(rate_limit_per_hour=3)}]))
    prefix = f"relayd-test-{uuid.uuid4().hex}"
    processes = [start_process(tmp_path, redis_url, prefix) for _ in range(2)]
    try:
        codes = []
        for index in range(5):
            _, port = processes[index % 2]
            with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
                client.ehlo("client.test")
                codes.append(send(client, "a@client.test", REMOTE)[0][0])
        # Three for the fleet, not three per node.
        assert codes == [250, 250, 250, 450, 450]
    finally:
        for process, _ in processes:
            process.terminate()
            process.wait(30)
