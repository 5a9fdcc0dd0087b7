"""The relay policy enforced over real SMTP on loopback: who may relay, reloads, fail-closed, logs and metrics."""

import json
import logging
import smtplib
import time
import urllib.request

import pytest

from tests.relayd.conftest import ALICE_PASSWORD, policy, publish, scrape, send
from tests.snapshots import network

REMOTE = "<bob@remote.test>"
LOCAL = "<bob@example.com>"


def test_untrusted_client_reaches_local_domains_but_may_not_relay(start_relay):
    relay = start_relay(policy())
    with relay.smtp() as client:
        assert send(client, "a@client.test", LOCAL)[0] == (250, b"2.1.5 Recipient OK")
        assert send(client, "a@client.test", REMOTE)[0] == (550, b"5.7.1 Relaying denied")
        # Case and a trailing dot do not make a local domain remote, nor a remote one local.
        assert send(client, "a@client.test", "<Bob@EXAMPLE.com.>")[0][0] == 250
        assert send(client, "a@client.test", "<bob@example.com.remote.test>")[0][0] == 550


def test_trusted_client_relays_and_the_message_is_spooled(start_relay):
    relay = start_relay(policy(trusted_networks=[network(1, "127.0.0.0/8")]))
    with relay.smtp() as client:
        rcpt, data = send(client, "a@client.test", REMOTE)
    assert rcpt == (250, b"2.1.5 Recipient OK")
    assert data[0] == 250
    [queued] = relay.queued()
    envelope = json.loads(queued.read_bytes().partition(b"\n")[0])
    assert envelope["rcpts"] == [{"address": "bob@remote.test", "route": None}]
    assert envelope["client"] == "127.0.0.1" and envelope["policy_serial"] == 1


@pytest.mark.parametrize(
    "recipient",
    [
        "<bob%remote.test@example.com>",  # percent hack
        "<remote.test!bob@example.com>",  # bang path
        '<"bob@remote.test"@example.com>',  # quoted local part
        "<@example.com:bob@remote.test>",  # source route
        "<bob@remote.test@example.com>",  # user@remote@local
    ],
)
def test_relay_tricks_from_untrusted_clients_are_refused(start_relay, recipient):
    relay = start_relay(policy())
    with relay.smtp() as client:
        assert send(client, "a@client.test", recipient)[0] == (550, b"5.7.1 Relaying denied")
    assert relay.queued() == []


@pytest.mark.parametrize("route", ["@remote.test", "@[192.0.2.1]", "@[IPv6:2001:db8::1],@relay.test"])
def test_source_route_to_a_local_domain_is_ignored_and_the_mailbox_is_spooled(start_relay, route):
    # RFC 5321 appendix C, as Postfix and Exim do (docs/verdicts.md): the mailbox after the route decides.
    relay = start_relay(policy())
    with relay.smtp() as client:
        rcpt, data = send(client, "a@client.test", f"<{route}:bob@example.com>")
    assert rcpt[0] == 250 and data[0] == 250
    [queued] = relay.queued()
    envelope = json.loads(queued.read_bytes().partition(b"\n")[0])
    assert [rcpt["address"] for rcpt in envelope["rcpts"]] == ["bob@example.com"]


def test_denied_network_never_relays_even_when_trusted(start_relay):
    relay = start_relay(
        policy(trusted_networks=[network(1, "127.0.0.0/8")], denied_networks=[network(2, "127.0.0.1/32", denied=True)])
    )
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0] == (550, b"5.7.1 Relaying denied")
        assert send(client, "a@client.test", LOCAL)[0][0] == 250


def test_client_connecting_to_an_internal_address_relays(start_relay):
    internal = [{"id": 1, "address": "127.0.0.1", "description": "loopback"}]
    relay = start_relay(policy(internal_addresses=internal, restrictions={"allow_internal_addresses": True}))
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0][0] == 250
    off = start_relay(policy(internal_addresses=internal))
    with off.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0][0] == 550


def test_ehlo_offers_starttls_before_tls_and_auth_inside_it(start_relay, tls_files, tls_client):
    cert, key = tls_files
    relay = start_relay(policy(), tls_cert=cert, tls_key=key, max_message_size=2000)
    with relay.smtp() as client:
        assert client.ehlo_resp == b"relay.test\nSIZE 2000\n8BITMIME\nSTARTTLS\nHELP"
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        assert client.ehlo_resp == b"relay.test\nSIZE 2000\n8BITMIME\nAUTH LOGIN PLAIN\nHELP"
        # EHLO starts over: a transaction in progress is dropped.
        assert client.docmd("MAIL FROM:<a@client.test>")[0] == 250
        client.ehlo("client.test")
        assert client.docmd("MAIL FROM:<a@client.test>")[0] == 250


def test_authenticated_client_relays_after_starttls(start_relay, tls_files, tls_client):
    cert, key = tls_files
    relay = start_relay(policy(), tls_cert=cert, tls_key=key)
    with relay.smtp() as client:
        assert client.has_extn("starttls") and not client.has_extn("auth")
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        assert client.has_extn("auth")
        assert send(client, "a@client.test", REMOTE)[0][0] == 550
        assert client.login("alice", ALICE_PASSWORD)[0] == 235
        rcpt, data = send(client, "a@client.test", REMOTE)
        assert rcpt[0] == 250 and data[0] == 250
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        client.user, client.password = "alice", ALICE_PASSWORD
        assert client.auth("LOGIN", client.auth_login)[0] == 235
    message = relay.queued()[0].read_bytes()
    assert b"with ESMTPSA id" in message and b'"auth_user":"alice"' in message


def test_auth_before_tls_is_refused(start_relay, tls_files, tls_client):
    cert, key = tls_files
    relay = start_relay(policy(), tls_cert=cert, tls_key=key)
    with relay.smtp() as client:
        assert client.docmd("AUTH PLAIN AGFsaWNlAGNvcnJlY3QgaG9yc2U=")[0] == 538
        assert send(client, "a@client.test", REMOTE)[0][0] == 550


def auth_plain(client: smtplib.SMTP, user: str, password: str) -> int:
    """Try AUTH PLAIN once (smtplib's login() would go on to try LOGIN too) and return the reply code."""
    client.user, client.password = user, password
    try:
        return client.auth("PLAIN", client.auth_plain, initial_response_ok=True)[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code


def test_wrong_password_is_refused_then_tarpitted_then_locked_out(start_relay, tls_files, tls_client):
    cert, key = tls_files
    relay = start_relay(policy(), tls_cert=cert, tls_key=key, auth_slow_after=1, auth_refuse_after=3, auth_delay=0.3)
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        started = time.monotonic()
        assert auth_plain(client, "alice", "wrong") == 535
        assert time.monotonic() - started < 0.3
        started = time.monotonic()
        assert auth_plain(client, "mallory", "wrong") == 535  # an unknown user fails the same way
        assert time.monotonic() - started >= 0.3
        assert auth_plain(client, "alice", "wrong") == 421
    with relay.smtp() as client:
        client.starttls(context=tls_client)
        client.ehlo("client.test")
        # Locked out: even the right password is not tried.
        assert auth_plain(client, "alice", ALICE_PASSWORD) == 421


def test_ipv6_client(start_relay):
    relay = start_relay(policy(trusted_networks=[network(1, "::1/128")]), listen=["[::1]:0"])
    with relay.smtp("::1") as client:
        rcpt, data = send(client, "a@client.test", REMOTE)
    assert rcpt[0] == 250 and data[0] == 250
    assert b"([IPv6:::1])" in relay.queued()[0].read_bytes()


def test_ipv4_mapped_client_on_a_dual_stack_listener_matches_ipv4_networks(start_relay):
    # Bound to ::ffff:127.0.0.1 rather than [::], so the test listens on loopback only; the
    # socket is dual-stack (IPV6_V6ONLY off) either way, and IPv4 clients arrive as ::ffff:a.b.c.d.
    relay = start_relay(policy(trusted_networks=[network(1, "127.0.0.0/8")]), listen=["[::ffff:127.0.0.1]:0"])
    assert relay.daemon.relay.addresses[0][0] == "::ffff:127.0.0.1"
    with relay.smtp("127.0.0.1") as client:
        rcpt, data = send(client, "a@client.test", REMOTE)
    assert rcpt[0] == 250 and data[0] == 250
    message = relay.queued()[0].read_bytes()
    assert b'"client":"127.0.0.1"' in message and b"([127.0.0.1])" in message


def test_no_policy_fails_closed_and_a_published_policy_is_picked_up(start_relay):
    relay = start_relay(None)
    with relay.smtp() as client:
        assert send(client, "a@client.test", LOCAL)[0] == (451, b"4.3.0 Relay policy not loaded, try again later")
    publish(relay.policy_path, policy())
    time.sleep(0.5)
    with relay.smtp() as client:
        assert send(client, "a@client.test", LOCAL)[0][0] == 250


def test_new_snapshot_is_enforced_within_a_second_without_dropping_the_session(start_relay):
    relay = start_relay(policy(serial=1))
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0][0] == 550
        publish(relay.policy_path, policy(serial=2, trusted_networks=[network(1, "127.0.0.1/32")]))
        published = time.monotonic()
        while send(client, "a@client.test", REMOTE)[0][0] != 250:
            # The design promises 1 s (a 0.2 s poll); the bound leaves room for a loaded test machine.
            assert time.monotonic() - published < 1.5
            time.sleep(0.02)
    assert (
        json.loads(urllib.request.urlopen(f"http://127.0.0.1:{relay.http_port}/status").read())["policy"]["serial"] == 2
    )


def test_invalid_snapshot_is_refused_and_the_last_good_one_stays(start_relay, caplog):
    relay = start_relay(policy(serial=1, trusted_networks=[network(1, "127.0.0.1/32")]))
    publish(relay.policy_path, "{ not json")
    publish(relay.policy_path, json.dumps({**policy(serial=2), "surprise": True}))
    time.sleep(0.6)
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0][0] == 250
    status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{relay.http_port}/status").read())
    assert status["policy"]["serial"] == 1
    assert "surprise" in status["policy"]["last_error"]
    assert any("event=policy_refused" in record.getMessage() for record in caplog.records)


def test_one_log_line_per_verdict(start_relay, caplog):
    relay = start_relay(policy())
    caplog.set_level(logging.INFO, logger="relayd.session")
    with relay.smtp() as client:
        send(client, "a@client.test", REMOTE)
    [line] = [record.getMessage() for record in caplog.records if "event=rcpt" in record.getMessage()]
    for field in (
        "client=127.0.0.1",
        "auth_user=-",
        "sender=<a@client.test>",
        "recipient=<bob@remote.test>",
        "verdict=refuse",
        "rule=default_deny",
    ):
        assert field in line


def test_metrics_and_status(start_relay):
    relay = start_relay(policy(serial=7))
    with relay.smtp() as client:
        send(client, "a@client.test", LOCAL)
        send(client, "a@client.test", REMOTE)
    metrics = scrape(relay.http_port)
    assert metrics["relayd_connections_total"] == 1
    assert metrics["relayd_messages_accepted_total"] == 1
    assert metrics['relayd_rcpt_total{rule="default_deny",verdict="refuse"}'] == 1
    assert metrics["relayd_policy_serial"] == 7
    assert metrics["relayd_queue_size"] == 1
    status = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{relay.http_port}/status").read())
    assert status["node"] == "node-test" and status["policy"]["serial"] == 7 and status["queue_size"] == 1
    assert status["counters"]["messages_accepted"] == 1
