"""The real client over real SMTP on loopback: PROXY protocol v1/v2 from --proxy-hosts, XCLIENT from --xclient-hosts."""

import ipaddress
import logging
import smtplib
import socket
import struct

import pytest

from relayd.settings import Settings
from tests.relayd.conftest import policy, send
from tests.snapshots import network

REMOTE = "<bob@remote.test>"
# Loopback is a proxy; 10.0.0.0/8 is trusted, 192.0.2.0/24 (TEST-NET-1) is not.
TRUSTED_LAN = policy(trusted_networks=[network(1, "10.0.0.0/8")])
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
SECRET = "s3cret-s3cret-s3cret-0123456789"


def proxy_v1(client: str, server: str = "127.0.0.1") -> bytes:
    family = "TCP6" if ":" in client else "TCP4"
    return f"PROXY {family} {client} {server} 40000 25\r\n".encode()


def proxy_v2(client: str | None, server: str = "127.0.0.1") -> bytes:
    """Return a v2 header: PROXY for a client, LOCAL (the proxy's health check) for None."""
    if client is None:
        return V2_SIGNATURE + bytes([0x20, 0x00]) + struct.pack("!H", 0)
    source, destination = ipaddress.ip_address(client), ipaddress.ip_address(server)
    family = 0x11 if source.version == 4 else 0x21
    body = source.packed + destination.packed + struct.pack("!HH", 40000, 25)
    return V2_SIGNATURE + bytes([0x21, family]) + struct.pack("!H", len(body)) + body


def connect(relay, first: bytes = b"") -> tuple[smtplib.SMTP, tuple[int, bytes]]:
    """Open a connection, send first (a PROXY header) at once, and return the client with the greeting."""
    sock = socket.create_connection(("127.0.0.1", relay.port), timeout=10)
    if first:
        sock.sendall(first)
    client = smtplib.SMTP()
    client.sock = sock
    return client, client.getreply()


def lines(caplog, event: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if f"event={event}" in record.getMessage()]


@pytest.mark.parametrize("header", [proxy_v1, proxy_v2], ids=["v1", "v2"])
def test_a_proxy_header_from_a_proxy_host_names_the_client_the_decision_uses(start_relay, caplog, header):
    caplog.set_level(logging.INFO, logger="relayd.session")
    relay = start_relay(TRUSTED_LAN, proxy_hosts=["127.0.0.1"])
    for client_ip, expected in (("10.1.2.3", 250), ("192.0.2.9", 550), ("2001:db8::9", 550)):
        client, greeting = connect(relay, header(client_ip, "::1" if ":" in client_ip else "127.0.0.1"))
        assert greeting[0] == 220
        client.ehlo("client.test")
        assert send(client, "a@client.test", REMOTE)[0][0] == expected
        client.quit()
    verdicts = lines(caplog, "rcpt")
    assert "client=10.1.2.3" in verdicts[0] and "proxy=127.0.0.1" in verdicts[0] and "verdict=accept" in verdicts[0]
    assert "client=192.0.2.9" in verdicts[1] and "verdict=refuse" in verdicts[1]
    assert "client=2001:db8::9" in verdicts[2]


def test_a_v2_local_header_is_the_proxy_itself(start_relay):
    relay = start_relay(policy(trusted_networks=[network(1, "127.0.0.1/32")]), proxy_hosts=["127.0.0.0/8"])
    client, greeting = connect(relay, proxy_v2(None))
    assert greeting[0] == 220
    client.ehlo("health.test")
    assert send(client, "a@client.test", REMOTE)[0][0] == 250
    client.quit()


@pytest.mark.parametrize("header", [proxy_v1("10.1.2.3"), proxy_v2("10.1.2.3")], ids=["v1", "v2"])
@pytest.mark.parametrize("proxy_hosts", [[], ["192.0.2.0/24"]], ids=["no-proxies", "other-proxies"])
def test_a_proxy_header_from_any_other_address_is_a_protocol_error(start_relay, caplog, header, proxy_hosts):
    relay = start_relay(TRUSTED_LAN, proxy_hosts=proxy_hosts)
    client, reply = connect(relay, header)
    if reply[0] == 220:  # without a greeting delay the greeting may go out before the header arrives
        reply = client.getreply()
    assert reply[0] == 554 and b"PROXY" in reply[1]
    with pytest.raises(smtplib.SMTPServerDisconnected):
        client.ehlo("client.test")
    [line] = lines(caplog, "connection_refused")
    assert "reason=proxy_header_not_allowed" in line and "client=127.0.0.1" in line


@pytest.mark.parametrize(
    "header",
    [
        b"PROXY TCP4 10.1.2.3\r\n",
        b"PROXY TCP4 10.1.2.300 127.0.0.1 1 25\r\n",
        b"PROXY TCP4 10.1.2.3 127.0.0.1 1 99999\r\n",
        V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 4) + b"\x0a\x01\x02\x03",
        V2_SIGNATURE + bytes([0x31, 0x11]) + struct.pack("!H", 12) + bytes(12),
        b"EHLO client.test\r\n",
    ],
    ids=["v1-short", "v1-bad-address", "v1-bad-port", "v2-short", "v2-bad-version", "no-header"],
)
def test_a_proxy_host_must_send_a_valid_header(start_relay, caplog, header):
    relay = start_relay(TRUSTED_LAN, proxy_hosts=["127.0.0.1"])
    _, reply = connect(relay, header)
    assert reply[0] == 554 and b"PROXY header is required" in reply[1]
    [line] = lines(caplog, "connection_refused")
    assert "reason=bad_proxy_header" in line


def test_a_proxy_host_that_sends_nothing_is_refused_after_the_timeout(start_relay):
    relay = start_relay(TRUSTED_LAN, proxy_hosts=["127.0.0.1"], proxy_timeout=0.3)
    _, reply = connect(relay)
    assert reply[0] == 554


def test_per_client_limits_count_the_proxied_client(start_relay):
    relay = start_relay(TRUSTED_LAN, proxy_hosts=["127.0.0.1"], max_connections_per_ip=1)
    first, greeting = connect(relay, proxy_v1("192.0.2.1"))
    assert greeting[0] == 220
    other, greeting = connect(relay, proxy_v1("192.0.2.2"))
    assert greeting[0] == 220  # another client behind the same proxy
    _, greeting = connect(relay, proxy_v1("192.0.2.1"))
    assert greeting[0] == 421
    for client in (first, other):
        client.quit()
    report = relay.daemon._node_report()
    assert report["proxy_hosts"] == ["127.0.0.1/32"]
    assert report["top_peer"] == {"address": "127.0.0.1", "connections": 3, "of": 3}


# XCLIENT


@pytest.fixture
def secret_file(tmp_path):
    path = tmp_path / "xclient.secret"
    path.write_text(SECRET + "\n")
    return path


def xclient_relay(start_relay, secret_file, hosts=("127.0.0.1",)):
    loopback_trusted = policy(trusted_networks=[network(1, "127.0.0.0/8"), network(2, "10.0.0.0/8")])
    return start_relay(loopback_trusted, xclient_hosts=list(hosts), xclient_secret_file=secret_file)


def test_xclient_is_offered_only_to_xclient_hosts(start_relay, secret_file):
    with xclient_relay(start_relay, secret_file).smtp() as client:
        assert client.has_extn("xclient")
        assert client.esmtp_features["xclient"].split() == [
            "ADDR",
            "NAME",
            "HELO",
            "PROTO",
            "PORT",
            "DESTADDR",
            "DESTPORT",
            "SECRET",
        ]
    relay = xclient_relay(start_relay, secret_file, hosts=["192.0.2.0/24"])
    with relay.smtp() as client:
        assert not client.has_extn("xclient")
        assert client.docmd(f"XCLIENT SECRET={SECRET} ADDR=192.0.2.1")[0] == 502
        assert send(client, "a@client.test", REMOTE)[0][0] == 250  # still loopback, still trusted


def test_xclient_tests_as_an_untrusted_client_and_is_marked_in_the_logs(start_relay, secret_file, caplog):
    caplog.set_level(logging.INFO, logger="relayd.session")
    relay = xclient_relay(start_relay, secret_file)
    with relay.smtp() as client:
        assert client.docmd(f"XCLIENT SECRET={SECRET} ADDR=192.0.2.1 NAME=spam.test")[0] == 220
        client.ehlo("relaytest.invalid")
        assert send(client, "a@client.test", REMOTE)[0] == (550, b"5.7.1 Relaying denied")
        client.rset()
        assert client.docmd(f"XCLIENT SECRET={SECRET} ADDR=IPV6:2001:db8::1")[0] == 220
        client.ehlo("relaytest.invalid")
        assert send(client, "a@client.test", REMOTE)[0][0] == 550
    [first, second] = lines(caplog, "rcpt")
    assert "client=192.0.2.1" in first and "xclient=127.0.0.1" in first
    assert "client=2001:db8::1" in second and "xclient=127.0.0.1" in second
    assert all("xclient=127.0.0.1" in line for line in lines(caplog, "xclient"))


def test_a_session_that_used_xclient_may_not_send_data(start_relay, secret_file):
    relay = xclient_relay(start_relay, secret_file)
    with relay.smtp() as client:
        assert client.docmd(f"XCLIENT SECRET={SECRET} ADDR=10.1.2.3")[0] == 220
        client.ehlo("relaytest.invalid")
        client.docmd("MAIL FROM:<a@client.test>")
        rcpt = client.docmd(f"RCPT TO:{REMOTE}")
        data = client.docmd("DATA")
    assert rcpt[0] == 250  # 10.1.2.3 is trusted: the verdict is the one that client would get
    assert data[0] == 554 and b"XCLIENT" in data[1]
    assert relay.queued() == []


@pytest.mark.parametrize(
    ("command", "code"),
    [
        ("XCLIENT ADDR=192.0.2.1", 550),
        ("XCLIENT SECRET=wrong-wrong-wrong-wrong ADDR=192.0.2.1", 550),
        (f"XCLIENT SECRET={SECRET} LOGIN=alice", 501),
        (f"XCLIENT SECRET={SECRET} ADDR=not-an-address", 501),
        (f"XCLIENT SECRET={SECRET} ADDR", 501),
        ("XCLIENT", 501),
    ],
)
def test_xclient_without_the_secret_or_malformed_changes_nothing(start_relay, secret_file, command, code):
    relay = xclient_relay(start_relay, secret_file)
    with relay.smtp() as client:
        assert client.docmd(command)[0] == code
        rcpt, data = send(client, "a@client.test", REMOTE)
    assert rcpt[0] == 250 and data[0] == 250  # still loopback, trusted, and DATA is allowed


def test_xclient_hosts_need_a_secret(tmp_path):
    with pytest.raises(ValueError, match="xclient-secret-file"):
        Settings(policy=tmp_path / "p.json", spool=tmp_path, xclient_hosts=["127.0.0.1"])
    with pytest.raises(ValueError, match="proxy-hosts"):
        Settings(policy=tmp_path / "p.json", spool=tmp_path, proxy_hosts=["10.0.0.1/8"])
