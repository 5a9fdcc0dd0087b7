"""What a stress campaign found (issue 12), each over real SMTP on loopback: postmaster routing,
STARTTLS inside TLS, TLS failures, AUTH=<>, storage and connection caps, and the smaller points."""

import json
import logging
import os
import smtplib
import socket
import ssl
import time

import pytest

from tests.relayd.conftest import ALICE_PASSWORD, policy, send
from tests.snapshots import network


def envelope_rcpts(path) -> list[dict]:
    return json.loads(path.read_bytes().partition(b"\n")[0])["rcpts"]


def session_log(caplog, event: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if f"event={event} " in record.getMessage()]


# Finding 2: <postmaster> goes where it can be delivered, or is refused; never accepted and bounced.

ROUTED = [{"domain": "example.com", "include_subdomains": True, "route": "127.0.0.1:2"}]


@pytest.mark.parametrize(
    "recipient", ["<postmaster>", "<POSTMASTER>", "<postmaster@relay.test>", "<PostMaster@Relay.Test.>"]
)
def test_postmaster_goes_to_the_first_local_domains_postmaster_by_default(start_relay, recipient):
    relay = start_relay(policy(local_domains=ROUTED))
    with relay.smtp() as client:
        rcpt, data = send(client, "anyone@forged.test", recipient)
        assert rcpt == (250, b"2.1.5 Recipient OK") and data[0] == 250
    [path] = relay.queued()
    assert envelope_rcpts(path) == [{"address": "postmaster@example.com", "route": "127.0.0.1:2"}]


def test_postmaster_goes_to_the_postmaster_address(start_relay):
    relay = start_relay(policy(local_domains=ROUTED), postmaster_address="hostmaster@example.com")
    with relay.smtp() as client:
        assert send(client, "anyone@forged.test", "<postmaster>")[1][0] == 250
    assert envelope_rcpts(relay.queued()[0]) == [{"address": "hostmaster@example.com", "route": "127.0.0.1:2"}]


def test_postmaster_is_refused_at_rcpt_when_there_is_nowhere_to_deliver_it(start_relay):
    relay = start_relay(policy(local_domains=[]))
    with relay.smtp() as client:
        for recipient in ("<postmaster>", "<postmaster@relay.test>"):
            rcpt, _ = send(client, "anyone@forged.test", recipient)
            assert rcpt == (550, b"5.1.1 No postmaster mailbox here: this relay has no local domain")
    assert relay.queued() == []


def test_postmaster_of_another_host_is_still_relaying(start_relay):
    relay = start_relay(policy(local_domains=ROUTED))
    with relay.smtp() as client:
        rcpt, _ = send(client, "anyone@forged.test", "<postmaster@elsewhere.test>")
        assert rcpt[0] == 550 and rcpt[1].startswith(b"5.7.1")


def test_postmaster_mail_is_delivered_to_the_route(start_relay, serve_smtp):
    received = []

    class Sink:
        async def handle_DATA(self, server, session, envelope):
            received.append(envelope.rcpt_tos)
            return "250 2.0.0 Ok"

    port = serve_smtp(Sink())
    domains = [{"domain": "example.com", "include_subdomains": False, "route": f"127.0.0.1:{port}"}]
    relay = start_relay(policy(local_domains=domains), delivery=True)
    with relay.smtp() as client:
        assert send(client, "anyone@forged.test", "<postmaster>")[1][0] == 250
    deadline = time.monotonic() + 15
    while not received:
        assert time.monotonic() < deadline, "postmaster mail not delivered"
        time.sleep(0.05)
    assert received == [["postmaster@example.com"]]


def test_hostname_defaults_to_the_fqdn_and_postmaster_address_is_checked():
    from relayd.settings import Settings

    fqdn = socket.getfqdn()
    expected = fqdn if "." in fqdn and not fqdn.startswith("localhost") else socket.gethostname()
    assert Settings(policy="p", spool="s").hostname == expected
    with pytest.raises(ValueError, match="postmaster-address"):
        Settings(policy="p", spool="s", postmaster_address="<a@b.test>")


# Finding 3 and 4: STARTTLS inside TLS, and TLS handshakes that fail.


def tls_relay(start_relay, tls_files):
    cert, key = tls_files
    return start_relay(policy(), tls_cert=cert, tls_key=key)


def test_starttls_inside_tls_is_503(start_relay, tls_files, tls_client):
    relay = tls_relay(start_relay, tls_files)
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        assert "starttls" not in client.esmtp_features
        assert client.docmd("STARTTLS") == (503, b"5.5.1 Error: TLS already active")
        assert client.noop()[0] == 250
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250


@pytest.mark.parametrize("after_220", [b"", b"GARBAGE NOT TLS\r\n", b"\x16\x03\x01\x00\x05hello"])
def test_failed_or_aborted_tls_handshake_is_one_line_without_traceback(start_relay, tls_files, caplog, after_220):
    relay = tls_relay(start_relay, tls_files)
    caplog.set_level(logging.INFO, logger="relayd")
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as raw:
        stream = raw.makefile("rb")
        stream.readline()
        raw.sendall(b"EHLO client.test\r\n")
        while not stream.readline().startswith(b"250 "):
            pass
        raw.sendall(b"STARTTLS\r\n")
        assert stream.readline().startswith(b"220 ")
        if after_220:
            raw.sendall(after_220)
        raw.shutdown(socket.SHUT_WR)
        stream.read()  # relayd closes its side
    # Another client is served as usual.
    with relay.smtp() as client:
        assert client.noop()[0] == 250
    assert not [record for record in caplog.records if record.exc_info]
    [line] = session_log(caplog, "tls_failed")
    assert "client=127.0.0.1" in line and "error=" in line


def test_client_that_rejects_our_certificate_is_one_line(start_relay, tls_files, caplog):
    relay = tls_relay(start_relay, tls_files)
    caplog.set_level(logging.INFO, logger="relayd")
    with relay.smtp() as client, pytest.raises(ssl.SSLError):
        client.starttls(context=ssl.create_default_context())  # does not trust the self-signed certificate
    assert not [record for record in caplog.records if record.exc_info]


# Finding 5: MAIL FROM:<x> AUTH=<> (RFC 4954 5).


def test_auth_parameter_of_mail_is_accepted(start_relay, tls_files, tls_client):
    relay = tls_relay(start_relay, tls_files)
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        client.login("alice", ALICE_PASSWORD)
        assert client.docmd("MAIL FROM:<alice@example.com> AUTH=<>") == (250, b"2.1.0 Ok")
        assert client.docmd("RCPT TO:<x@remote.test>")[0] == 250
        assert client.data(b"Subject: hi\r\n\r\nhi\r\n")[0] == 250
        assert client.docmd("MAIL FROM:<alice@example.com> AUTH=alice+40example.com SIZE=10")[0] == 250
        client.rset()
        assert client.docmd("MAIL FROM:<alice@example.com> AUTH=bad+zz")[0] == 555


# Finding 7: --min-free-space (the real full disk is in test_disk_full.py).


def test_mail_gets_452_when_free_space_is_below_min_free_space(start_relay):
    relay = start_relay(policy(), min_free_space=10**18)
    with relay.smtp() as client:
        assert client.docmd("MAIL FROM:<a@client.test>") == (452, b"4.3.1 Insufficient system storage")


def test_mail_gets_452_when_the_declared_size_does_not_fit(start_relay):
    relay = start_relay(policy(), max_message_size=10**18, min_free_space=1)
    usage = os.statvfs(relay.spool)
    free = usage.f_bavail * usage.f_frsize
    with relay.smtp() as client:
        assert client.docmd(f"MAIL FROM:<a@client.test> SIZE={free * 2}") == (452, b"4.3.1 Insufficient system storage")
        assert client.docmd("MAIL FROM:<a@client.test> SIZE=1000")[0] == 250


# Finding 8: --max-connections.


def test_connections_from_all_clients_are_capped(start_relay):
    relay = start_relay(policy(), max_connections=2)

    def connect(source: str) -> smtplib.SMTP:
        client = smtplib.SMTP("127.0.0.1", relay.port, timeout=10, source_address=(source, 0))
        client.ehlo("client.test")
        return client

    first, second = connect("127.0.0.1"), connect("127.0.0.2")
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        connect("127.0.0.3")
    assert refused.value.smtp_code == 421 and refused.value.smtp_error == b"4.7.0 Too many connections, try again later"
    first.quit()
    with connect("127.0.0.3") as third:
        assert third.noop()[0] == 250
    second.quit()


# Finding 9: the smaller points.


def test_overlong_data_line_is_554_not_500(start_relay):
    relay = start_relay(policy())
    with relay.smtp() as client:
        _, data = send(client, "a@client.test", "<bob@example.com>", b"x" * 1200 + b"\r\n")
        assert data == (554, b"5.6.0 Message has a line over 1000 octets (RFC 5321 4.5.3.1.6)")
    assert relay.queued() == []


def test_junk_command_cut_is_logged_once(start_relay, caplog):
    relay = start_relay(policy(), junk_command_limit=3)
    caplog.set_level(logging.INFO, logger="relayd")
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as raw:
        raw.makefile("rb").readline()
        raw.sendall(b"NOOP\r\n" * 10)  # pipelined past the limit, as a flood is
        replies = raw.makefile("rb").read()
    assert replies.count(b"421 4.7.0") == 1 and replies.endswith(
        b"421 4.7.0 Too many commands without mail, closing connection\r\n"
    )
    assert len(session_log(caplog, "session_cut")) == 1


def test_help_lists_the_commands(start_relay):
    relay = start_relay(policy())
    with relay.smtp() as client:
        code, text = client.docmd("HELP")
    assert code == 214
    assert text.split(b": ")[1].split() == sorted(
        b"AUTH DATA EHLO HELO HELP MAIL NOOP QUIT RCPT RSET STARTTLS VRFY".split()
    )


@pytest.mark.parametrize(
    ("command", "reply"),
    [
        (b"FOO\x00BAR", b"502 5.5.2 Error: command not recognized"),
        (b"\x00", b"502 5.5.2 Error: command not recognized"),
        (b"X\x1b[31m", b"502 5.5.2 Error: command not recognized"),
        (b"BOGUS arg\x00", b"502 5.5.2 Error: command not recognized"),
        (b"VRFY <a\x00\x1b>", b"252 2.0.0 Cannot VRFY user, but will accept message and attempt delivery"),
    ],
)
def test_client_text_is_not_echoed(start_relay, command, reply):
    relay = start_relay(policy())
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as raw:
        stream = raw.makefile("rb")
        stream.readline()
        raw.sendall(b"EHLO client.test\r\n")
        while not stream.readline().startswith(b"250 "):
            pass
        raw.sendall(command + b"\r\n")
        assert stream.readline() == reply + b"\r\n"


# Finding 2, further: recipient verification by call-ahead to the route (--verify-recipients).


class Directory:
    """A route that knows its users: known@ exists, later@ is temporarily unknown, the rest do not exist."""

    def __init__(self) -> None:
        self.probes: list[str] = []

    async def handle_RCPT(self, server, session, envelope, address, options):
        self.probes.append(address)
        if address.startswith("known@"):
            envelope.rcpt_tos.append(address)
            return "250 2.1.5 Ok"
        if address.startswith("later@"):
            return "450 4.2.1 Mailbox busy"
        return "550 5.1.1 User unknown"


def test_unknown_recipients_of_a_local_domain_are_refused_at_rcpt(start_relay, serve_smtp):
    directory = Directory()
    port = serve_smtp(directory)
    domains = [{"domain": "example.com", "include_subdomains": False, "route": f"127.0.0.1:{port}"}]
    relay = start_relay(policy(local_domains=domains), verify_recipients=True)
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<anyone@forged.test>")
        assert client.docmd("RCPT TO:<nobody@example.com>") == (
            550,
            b"5.1.1 Recipient address rejected: undeliverable address",
        )
        assert client.docmd("RCPT TO:<later@example.com>")[0] == 450
        assert client.docmd("RCPT TO:<known@example.com>") == (250, b"2.1.5 Recipient OK")
        assert client.docmd("RCPT TO:<Known@example.com>")[0] == 250  # cached, whatever the case
        assert client.docmd("RCPT TO:<nobody@example.com>")[0] == 550  # cached
        assert client.data(b"Subject: hi\r\n\r\nhi\r\n")[0] == 250
        client.docmd("MAIL FROM:<anyone@forged.test>")
        assert client.docmd("RCPT TO:<later@example.com>")[0] == 450  # a temporary answer is asked again
    assert directory.probes == [
        "nobody@example.com",
        "later@example.com",
        "known@example.com",
        "later@example.com",
    ]
    assert len(relay.queued()) == 1


def test_verification_of_an_unreachable_route_is_450(start_relay):
    from tests.relayd.test_runner_process import free_port

    domains = [{"domain": "example.com", "include_subdomains": False, "route": f"127.0.0.1:{free_port()}"}]
    relay = start_relay(policy(local_domains=domains), verify_recipients=True, verify_timeout=2.0)
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<anyone@forged.test>")
        assert client.docmd("RCPT TO:<bob@example.com>") == (
            450,
            b"4.1.1 Recipient address rejected: unverified address, try again later",
        )


def test_many_addresses_cannot_pass_the_global_cap(start_relay):
    relay = start_relay(policy(), max_connections=100)
    sockets = []
    try:
        for number in range(300):  # 30 addresses, 10 connections each: every one within its per-IP limit
            sock = socket.create_connection(
                ("127.0.0.1", relay.port), timeout=10, source_address=(f"127.0.1.{number % 30 + 1}", 0)
            )
            sockets.append(sock)
        greetings = [sock.makefile("rb").readline()[:9] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert greetings.count(b"220 relay") == 100
    assert greetings.count(b"421 4.7.0") == 200


# Kept from the stress campaign: broken policy files never replace the last good one.


def _broken_snapshots() -> list:
    good = policy(serial=2, trusted_networks=[network(1, "127.0.0.1/32")])
    text = json.dumps(good)
    return [
        b"",
        b"{ not json",
        text[: len(text) // 2].encode(),
        b"\x00\xff\xfe binary",
        b"[]",
        b"null",
        json.dumps({**good, "schema": 99}).encode(),
        json.dumps({key: value for key, value in good.items() if key != "restrictions"}).encode(),
        json.dumps({**good, "restrictions": {**good["restrictions"], "allow_listed_ips": "yes"}}).encode(),
        json.dumps({**good, "trusted_networks": [network(1, "10.0.0.1/8")]}).encode(),
        json.dumps(
            {**good, "local_domains": [{"domain": "exa mple.com", "include_subdomains": False, "route": None}]}
        ).encode(),
        json.dumps({**good, "smtp_users": [{"username": "bob", "password_hash": "plaintext"}]}).encode(),
        json.dumps({**good, "serial": 0}).encode(),
    ]


@pytest.mark.parametrize("content", _broken_snapshots(), ids=range(len(_broken_snapshots())))
def test_broken_policy_file_keeps_the_last_good_policy(start_relay, content):
    relay = start_relay(policy(serial=1, trusted_networks=[network(1, "127.0.0.1/32")]))
    temporary = relay.policy_path.with_suffix(".tmp")
    temporary.write_bytes(content)
    os.replace(temporary, relay.policy_path)
    deadline = time.monotonic() + 5
    while (status := relay.daemon.status()["policy"])["last_error"] is None:
        assert time.monotonic() < deadline, "the broken file was never looked at"
        time.sleep(0.05)
    assert status["serial"] == 1
    with relay.smtp() as client:
        assert send(client, "a@client.test", "<x@remote.test>")[1][0] == 250  # still trusted: policy 1 holds


def test_idle_connections_from_one_address_are_capped_at_the_default(start_relay):
    relay = start_relay(policy())  # --max-connections-per-ip 50
    sockets = []
    try:
        for _ in range(150):
            sockets.append(socket.create_connection(("127.0.0.1", relay.port), timeout=10))
        greetings = [sock.makefile("rb").readline()[:9] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()
    assert greetings.count(b"220 relay") == 50
    assert greetings.count(b"421 4.7.0") == 100
