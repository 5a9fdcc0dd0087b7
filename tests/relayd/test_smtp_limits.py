"""Session limits over real SMTP: size, recipients, connections per client, timeouts, NOOP floods, early talkers."""

import smtplib
import socket
import time

import pytest

from tests.relayd.conftest import policy, send


def test_size_is_advertised_and_enforced(start_relay):
    relay = start_relay(policy(), max_message_size=2000)
    with relay.smtp() as client:
        assert client.esmtp_features["size"] == "2000"
        assert client.docmd("MAIL FROM:<a@client.test> SIZE=2001") == (
            552,
            b"5.3.4 Message size exceeds fixed maximum message size",
        )
        _, data = send(client, "a@client.test", "<bob@example.com>", (b"x" * 98 + b"\r\n") * 30)
        assert data == (552, b"5.3.4 Message size exceeds fixed maximum message size")
        assert send(client, "a@client.test", "<bob@example.com>", b"x" * 1000 + b"\r\n")[1][0] == 250
    assert len(relay.queued()) == 1


def test_recipients_per_message_are_limited(start_relay):
    relay = start_relay(policy(), max_recipients=2)
    with relay.smtp() as client:
        client.docmd("MAIL FROM:<a@client.test>")
        assert client.docmd("RCPT TO:<one@example.com>")[0] == 250
        assert client.docmd("RCPT TO:<two@example.com>")[0] == 250
        assert client.docmd("RCPT TO:<three@example.com>") == (452, b"4.5.3 Error: too many recipients")
        assert client.data(b"Subject: two\r\n\r\nhi\r\n")[0] == 250
    assert relay.queued()[0].read_bytes().count(b'"address"') == 2


def test_connections_per_client_are_limited(start_relay):
    relay = start_relay(policy(), max_connections_per_ip=2)
    first, second = relay.smtp(), relay.smtp()
    with pytest.raises(smtplib.SMTPConnectError) as refused:
        relay.smtp()
    assert refused.value.smtp_code == 421 and refused.value.smtp_error.startswith(b"4.7.0")
    first.quit()
    with relay.smtp() as third:
        assert third.noop()[0] == 250
    second.quit()


def test_noop_flood_is_cut_off(start_relay):
    relay = start_relay(policy(), junk_command_limit=5)
    with relay.smtp() as client:  # EHLO counts as the first
        for _ in range(4):
            assert client.noop()[0] == 250
        assert client.noop() == (421, b"4.7.0 Too many commands without mail, closing connection")
        with pytest.raises(smtplib.SMTPServerDisconnected):
            client.noop()


def test_sessions_have_a_lifetime_whatever_they_send(start_relay):
    relay = start_relay(policy(), session_timeout=0.5)
    with relay.smtp() as client:
        started = time.monotonic()
        with pytest.raises(smtplib.SMTPServerDisconnected):
            while time.monotonic() - started < 5:
                if client.noop()[0] == 421:
                    break
                time.sleep(0.05)
            client.noop()
    assert time.monotonic() - started < 1.5


def test_idle_client_gets_421_after_the_command_timeout(start_relay):
    relay = start_relay(policy(), command_timeout=0.3)
    with relay.smtp() as client:
        time.sleep(0.6)
        assert client.getreply() == (421, b"4.4.2 Timeout exceeded, closing connection")


def test_early_talker_is_refused_and_a_patient_client_is_remembered(start_relay):
    relay = start_relay(policy(), greet_delay=0.3)
    with socket.create_connection(("127.0.0.1", relay.port), timeout=5) as early:
        early.sendall(b"EHLO spam.test\r\n")
        reply = early.recv(1000)
        assert reply.startswith(b"554 5.5.1 ")
        assert early.recv(1000) == b""  # and closed
    started = time.monotonic()
    relay.smtp().quit()
    assert time.monotonic() - started >= 0.3
    started = time.monotonic()
    relay.smtp().quit()
    assert time.monotonic() - started < 0.3
