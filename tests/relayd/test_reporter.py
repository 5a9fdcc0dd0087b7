"""--report-url: relayd POSTs its node name, serial, TLS flag and counters to the dashboard's daemons API."""

import logging
import smtplib
import time

import pytest

from relayd import __version__
from relayd.config import SUPPORTED_SCHEMAS
from relayd.dashboard import node_report
from relayd.metrics import Metrics
from relayd.settings import Settings, report_url
from tests.relayd.conftest import policy, send
from tests.relayd.fake_dashboard import DAEMONS_PATH, TOKEN, FakeDashboard
from tests.snapshots import network


def wait_for(condition, timeout: float = 5.0, message: str = "timed out") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, message
        time.sleep(0.02)


def test_the_report_carries_the_serial_tls_and_counters_with_the_token(start_relay, dashboard, token_file, tls_files):
    cert, key = tls_files
    snapshot = policy(serial=4, denied_networks=[network(9, "127.0.0.2/32", denied=True)])
    dashboard.publish(snapshot)
    relay = start_relay(
        snapshot,
        policy_url=dashboard.url,
        token_file=token_file,
        report_interval=0.2,
        tls_cert=cert,
        tls_key=key,
    )
    with relay.smtp() as client:
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250  # accepted and queued
        assert send(client, "a@client.test", "<bob@remote.test>")[0][0] == 550  # default_deny: relay denied
        assert send(client, "a@client.test", "<bob%remote.test@example.com>")[0][0] == 550  # sender_routing
        assert send(client, "a@client.test", "<no-at-sign>")[0][0] == 501  # bad syntax: not a relay attempt
    with smtplib.SMTP("127.0.0.1", relay.port, timeout=10, source_address=("127.0.0.2", 0)) as client:
        client.ehlo("client.test")
        assert send(client, "a@client.test", "<bob@remote.test>")[0][0] == 550  # denied_network
    expected = {
        "node": "node-test",
        "version": __version__,
        "schemas": list(SUPPORTED_SCHEMAS),
        "serial": 4,
        "tls": True,
        "counters": {"connections": 2, "accepted": 1, "relay_denied": 3, "queue_size": 1, "deliveries": 0},
        "usage": {"trusted_networks": {}, "smtp_users": {}},
        "refused_serial": None,
        "refused_reason": None,
        "proxy_hosts": [],
        # Both sessions come from loopback (127.0.0.1 and 127.0.0.2): the one seen most is named.
        "top_peer": {"address": "127.0.0.1", "connections": 1, "of": 2},
    }
    wait_for(lambda: expected in dashboard.reports, message=f"no report like {expected}: {dashboard.reports[-1:]}")
    posts = [headers for method, path, headers, _ in dashboard.requests if method == "POST"]
    assert all(headers["Authorization"] == f"Token {TOKEN}" for headers in posts)
    assert posts[0]["Content-Type"] == "application/json"
    assert {path for method, path, _, _ in dashboard.requests if method == "POST"} == {DAEMONS_PATH}


def test_a_new_policy_is_reported_at_once(start_relay, dashboard, token_file):
    dashboard.publish(policy(serial=1))
    relay = start_relay(policy(serial=1), policy_url=dashboard.url, token_file=token_file, report_interval=60)
    wait_for(lambda: dashboard.reports, message="no report at start-up")
    assert dashboard.reports[0]["serial"] == 1 and dashboard.reports[0]["tls"] is False
    dashboard.publish(policy(serial=2))
    published = time.monotonic()
    # Not 60 s: the dashboard should see a node catch up as soon as it does.
    wait_for(lambda: dashboard.reports[-1]["serial"] == 2, timeout=3)
    assert time.monotonic() - published < 3
    assert relay.daemon.status()["status_report"]["error"] is None


def test_a_refused_snapshot_is_reported_at_once_until_a_newer_one_is_enforced(start_relay, dashboard, token_file):
    dashboard.publish(policy(serial=11))
    start_relay(policy(serial=11), policy_url=dashboard.url, token_file=token_file, report_interval=60)
    wait_for(lambda: dashboard.reports, message="no report at start-up")
    assert (dashboard.reports[0]["refused_serial"], dashboard.reports[0]["refused_reason"]) == (None, None)
    dashboard.publish(policy(serial=12, trusted_networks=[network(1, "::0.10.0.11/128")]))
    wait_for(lambda: dashboard.reports[-1]["refused_serial"] == 12, timeout=3)  # not 60 s
    report = dashboard.reports[-1]
    assert report["serial"] == 11
    assert "trusted_networks[0].network: not normalised: write it as ::a:b/128" in report["refused_reason"]
    dashboard.publish(policy(serial=13))
    wait_for(lambda: dashboard.reports[-1]["serial"] == 13, timeout=3)
    assert (dashboard.reports[-1]["refused_serial"], dashboard.reports[-1]["refused_reason"]) == (None, None)


def test_no_policy_is_reported_as_a_null_serial(start_relay, token_file):
    dashboard = FakeDashboard()
    try:
        start_relay(None, report_url=f"http://127.0.0.1:{dashboard.port}{DAEMONS_PATH}", token_file=token_file)
        wait_for(lambda: dashboard.reports)
        assert dashboard.reports[0]["serial"] is None
        # Reporting alone polls nothing.
        assert dashboard.answered("GET") == []
    finally:
        dashboard.stop()


def test_report_failures_are_logged_once_and_recovery_too(start_relay, token_file, caplog):
    caplog.set_level(logging.INFO, logger="relayd.dashboard")
    probe = FakeDashboard()
    port = probe.port
    probe.stop()
    url = f"http://127.0.0.1:{port}{DAEMONS_PATH}"
    start_relay(policy(), report_url=url, token_file=token_file, report_interval=0.1)
    time.sleep(1)  # about ten failed reports
    dashboard = FakeDashboard(port)
    try:
        wait_for(lambda: dashboard.reports)
        wait_for(lambda: any("event=status_report_recovered" in record.getMessage() for record in caplog.records))
        # Read before the dashboard stops: the next report then fails again, and rightly says so.
        messages = [record.getMessage() for record in caplog.records]
    finally:
        dashboard.stop()
    assert sum("event=status_report_failing" in message for message in messages) == 1
    assert not any(TOKEN in message for message in messages)


def test_reporting_is_off_without_a_url_or_when_turned_off(start_relay, dashboard, token_file):
    dashboard.publish(policy(serial=1))
    start_relay(policy(serial=1), policy_url=dashboard.url, token_file=token_file, report_url="off")
    plain = start_relay(policy(serial=1))
    wait_for(lambda: len(dashboard.answered("GET")) >= 2)
    assert dashboard.reports == []
    assert plain.daemon.status()["status_report"] is None and plain.daemon.status()["policy_fetch"] is None


@pytest.mark.parametrize(
    ("options", "url"),
    [
        ({"policy_url": "https://dash.test/api/v1/export/relayd/"}, "https://dash.test/api/v1/daemons/"),
        # A dashboard served under a path prefix keeps it.
        (
            {"policy_url": "https://dash.test/relayadmin/api/v1/export/relayd/"},
            "https://dash.test/relayadmin/api/v1/daemons/",
        ),
        # Any other URL: its origin.
        ({"policy_url": "http://dash.test:8000/snapshot.json?x=1"}, "http://dash.test:8000/api/v1/daemons/"),
        (
            {"policy_url": "https://dash.test/api/v1/export/relayd/", "report_url": "https://other.test/r/"},
            "https://other.test/r/",
        ),
        ({"policy_url": "https://dash.test/api/v1/export/relayd/", "report_url": "off"}, None),
        ({}, None),
    ],
)
def test_report_url_defaults_to_the_daemons_api_beside_the_policy_url(options, url):
    settings = Settings(policy="p.json", spool="spool", token_file="token", **options)
    assert report_url(settings) == url


def test_relay_denied_counts_only_the_rules_that_refuse_relaying():
    metrics = Metrics()
    for rule in ("default_deny", "denied_network", "sender_routing", "sender_routing", "bad_recipient"):
        metrics.inc("rcpt", verdict="refuse", rule=rule)
    metrics.inc("rcpt", verdict="accept", rule="trusted_network")
    metrics.inc("rcpt", verdict="defer", rule="no_policy")
    metrics.inc("deliveries", result="sent")
    metrics.inc("deliveries", result="deferred")
    metrics.set("queue_size", 3)
    assert node_report("n1", 9, False, metrics) == {
        "node": "n1",
        "version": __version__,
        "schemas": list(SUPPORTED_SCHEMAS),
        "serial": 9,
        "tls": False,
        "counters": {"connections": 0, "accepted": 0, "relay_denied": 4, "queue_size": 3, "deliveries": 1},
        "usage": {"trusted_networks": {}, "smtp_users": {}},
        "refused_serial": None,
        "refused_reason": None,
        "proxy_hosts": [],
        "top_peer": None,
    }
