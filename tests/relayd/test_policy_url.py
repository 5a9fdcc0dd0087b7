"""--policy-url: snapshots polled from the dashboard's export, checked, cached on disk and enforced over real SMTP."""

import json
import logging
import signal
import smtplib
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from relayd.cli import load_settings
from tests.relayd.conftest import policy, publish, send
from tests.relayd.fake_dashboard import EXPORT_PATH, TOKEN, FakeDashboard
from tests.snapshots import network

ROOT = Path(__file__).resolve().parents[2]
REMOTE = "<bob@remote.test>"
TRUSTING = {"trusted_networks": [network(1, "127.0.0.1/32")]}


def wait_for(condition, timeout: float = 5.0, message: str = "timed out") -> float:
    """Wait until condition() holds; return how long that took."""
    started = time.monotonic()
    while not condition():
        assert time.monotonic() - started < timeout, message
        time.sleep(0.02)
    return time.monotonic() - started


def status(relay) -> dict:
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{relay.http_port}/status").read())


def log_lines(caplog, event: str) -> list[str]:
    return [record.getMessage() for record in caplog.records if f"event={event} " in record.getMessage()]


def smtp_client(port: int) -> smtplib.SMTP:
    client = smtplib.SMTP("127.0.0.1", port, timeout=10)
    client.ehlo("client.test")
    return client


def start_polling(start_relay, dashboard, token_file, cached: dict | None, **options):
    """Start a relayd that polls dashboard, with cached as its snapshot file (None: no file yet)."""
    return start_relay(cached, policy_url=dashboard.url, token_file=token_file, report_url="off", **options)


def test_a_new_snapshot_is_enforced_within_a_second(start_relay, dashboard, token_file):
    dashboard.publish(policy(serial=1))
    relay = start_polling(start_relay, dashboard, token_file, policy(serial=1))
    wait_for(lambda: dashboard.answered(), message="relayd never polled")
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0][0] == 550
        dashboard.publish(policy(serial=2, **TRUSTING))
        published = time.monotonic()
        while send(client, "a@client.test", REMOTE)[0][0] != 250:
            # A 1 s poll, then validation and the reload; the bound leaves room for a loaded machine.
            assert time.monotonic() - published < 1.5, "the new snapshot was not enforced in time"
            time.sleep(0.02)
    # The cache is the snapshot exactly as served, so a restart starts from it (and gets a 304).
    assert relay.policy_path.read_bytes() == dashboard.snapshot
    assert relay.policy_path.stat().st_mode & 0o777 == 0o600  # it holds password hashes
    report = status(relay)
    assert report["policy"]["serial"] == 2
    assert report["policy_fetch"]["url"] == dashboard.url and report["policy_fetch"]["error"] is None


def test_an_unchanged_snapshot_costs_a_304_and_keeps_the_policy(start_relay, dashboard, token_file, caplog):
    caplog.set_level(logging.INFO, logger="relayd")
    dashboard.publish(policy(serial=3))
    # The cache holds the served bytes: even the first request, from its sha256, gets a 304.
    relay = start_polling(start_relay, dashboard, token_file, dashboard.snapshot.decode(), fetch_interval=0.1)
    cached = relay.policy_path.stat()
    wait_for(lambda: len(dashboard.answered()) >= 5)
    assert set(dashboard.answered()) == {304}
    assert all(headers["If-None-Match"] == dashboard.etag for _, _, headers, _ in dashboard.requests)
    assert relay.policy_path.stat().st_ino == cached.st_ino
    assert len(log_lines(caplog, "policy_loaded")) == 1  # the start-up load only
    assert status(relay)["policy"]["serial"] == 3


def test_a_bad_or_older_snapshot_is_refused_once_and_the_last_good_stays(start_relay, dashboard, token_file, caplog):
    good = policy(serial=5, **TRUSTING)
    dashboard.publish(good)
    relay = start_polling(start_relay, dashboard, token_file, good, fetch_interval=0.1)
    cached = relay.policy_path.read_bytes()
    for bad, problem in (
        ("{ not json", "not valid JSON"),
        ({**policy(serial=6), "surprise": True}, "surprise"),
        (policy(serial=4), "older than the serial in force (5)"),
        (policy(serial=5), "5 is the serial in force, with other content"),
    ):
        dashboard.publish(bad)
        wait_for(lambda problem=problem: problem in (status(relay)["policy"]["last_error"] or ""))
        polls = len(dashboard.answered())
        wait_for(lambda polls=polls: len(dashboard.answered()) >= polls + 3)
        # Refused and logged once: the next polls send its ETag and get 304s.
        assert sum(problem in line for line in log_lines(caplog, "policy_refused")) == 1
        assert dashboard.answered()[-1] == 304
        assert relay.policy_path.read_bytes() == cached
        with relay.smtp() as client:
            assert send(client, "a@client.test", REMOTE)[0][0] == 250
    assert f"source={dashboard.url}" in log_lines(caplog, "policy_refused")[0]
    assert status(relay)["policy"]["serial"] == 5
    dashboard.publish(policy(serial=7))
    wait_for(lambda: status(relay)["policy"]["serial"] == 7)
    with relay.smtp() as client:
        assert send(client, "a@client.test", REMOTE)[0][0] == 550


def test_starts_from_the_cache_while_the_dashboard_is_down_and_catches_up(tmp_path, token_file):
    """python -m relayd with the URL down: it enforces the cache, says so once, and recovers when the URL does."""
    probe = FakeDashboard()
    port, url = probe.port, probe.url
    probe.stop()  # nothing listens there now
    cache = tmp_path / "cache" / "policy.json"
    cache.parent.mkdir()
    publish(cache, policy(serial=1, **TRUSTING))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "relayd", "--policy", str(cache), "--spool", str(tmp_path / "spool")),
            *("--policy-url", url, "--token-file", str(token_file), "--report-url", "off"),
            *("--listen", "127.0.0.1:0", "--metrics-listen", "off", "--greet-delay", "0", "--no-delivery"),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    dashboard, lines, smtp_port, reader = None, [], None, None
    try:
        for line in process.stderr:
            lines.append(line)
            if "event=listening" in line:
                smtp_port = int(line.rpartition(":")[2])
            if "event=started" in line:
                break
        assert "serial=1" in lines[-1]
        # Keep draining the log: a full stderr pipe would block relayd's event loop mid-test.
        reader = threading.Thread(target=lambda: lines.extend(process.stderr), daemon=True)
        reader.start()
        with smtp_client(smtp_port) as client:
            assert send(client, "a@client.test", REMOTE)[0][0] == 250  # the cached policy
        time.sleep(2.5)  # several failed polls
        dashboard = FakeDashboard(port)
        dashboard.publish(policy(serial=2))
        # The poll backs off while the dashboard is down (2, 4 s...), so catching up takes a few seconds.
        with smtp_client(smtp_port) as client:
            wait_for(lambda: send(client, "a@client.test", REMOTE)[0][0] == 550, timeout=8)
        assert json.loads(cache.read_text())["serial"] == 2
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(15)
        if reader is not None:
            reader.join(5)
        if dashboard is not None:
            dashboard.stop()
    log = "".join(lines)
    assert log.count("event=policy_fetch_failing") == 1, log
    assert "event=policy_fetch_recovered" in log and "event=policy_fetched" in log
    assert TOKEN not in log


def test_a_long_poll_brings_a_change_in_one_round_trip(start_relay, token_file):
    """The dashboard holds the request until the change: a minute between polls, so only the long poll brings it."""
    dashboard = FakeDashboard(long_poll=True)
    try:
        dashboard.publish(policy(serial=1))
        relay = start_polling(
            start_relay, dashboard, token_file, dashboard.snapshot.decode(), fetch_interval=60, fetch_wait=30
        )
        wait_for(lambda: dashboard.holding() == 1, message="relayd never long-polled")
        with relay.smtp() as client:
            assert send(client, "a@client.test", REMOTE)[0][0] == 550
            dashboard.publish(policy(serial=2, **TRUSTING))
            wait_for(lambda: send(client, "a@client.test", REMOTE)[0][0] == 250, timeout=10)
        assert dashboard.waits[0] == 30 and dashboard.woken == 1
        # Having the new revision, the node waits for the next one at once.
        wait_for(lambda: dashboard.holding() == 1, message="relayd did not long-poll again")
    finally:
        dashboard.stop()


def test_a_node_behind_a_dead_dashboard_keeps_its_cached_policy(start_relay, token_file, caplog):
    """The dashboard dies during a long poll: the node enforces its cache, polls plainly, and catches up later."""
    caplog.set_level(logging.INFO, logger="relayd")
    dashboard = FakeDashboard(long_poll=True)
    dashboard.publish(policy(serial=1, **TRUSTING))
    relay = start_polling(start_relay, dashboard, token_file, dashboard.snapshot.decode(), fetch_interval=0.2)
    wait_for(lambda: dashboard.holding() == 1, message="relayd never long-polled")
    port = dashboard.port
    dashboard.stop()
    wait_for(lambda: status(relay)["policy_fetch"]["error"] is not None, message="the failure was not noticed")
    with relay.smtp() as client:
        for _ in range(5):  # across several failed requests
            assert send(client, "a@client.test", REMOTE)[0][0] == 250
            time.sleep(0.3)
    assert status(relay)["policy"]["serial"] == 1
    assert json.loads(relay.policy_path.read_text())["serial"] == 1
    assert log_lines(caplog, "policy_fetch_failing")
    revived = FakeDashboard(port, long_poll=True)
    try:
        revived.publish(policy(serial=2))
        with relay.smtp() as client:
            wait_for(lambda: send(client, "a@client.test", REMOTE)[0][0] == 550, timeout=10)
        # The first request after the failure was a plain poll: long polls resume once one works.
        assert revived.waits[0] is None
        wait_for(lambda: revived.holding() == 1, message="long polls did not resume")
    finally:
        revived.stop()


def test_the_token_is_sent_but_never_logged(start_relay, dashboard, token_file, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    dashboard.publish(policy(serial=1))
    relay = start_polling(start_relay, dashboard, token_file, None, fetch_interval=0.1)
    wait_for(lambda: status(relay)["policy"]["serial"] == 1)
    assert dashboard.requests[0][2]["Authorization"] == f"Token {TOKEN}"
    wrong = tmp_path / "wrong-token"
    wrong.write_text("not-the-token-31337\n")
    refused = start_polling(start_relay, dashboard, wrong, None, fetch_interval=0.1)
    wait_for(lambda: log_lines(caplog, "policy_fetch_failing"))
    [failing] = log_lines(caplog, "policy_fetch_failing")
    assert "401" in failing and "check the token" in failing
    text = "\n".join(record.getMessage() for record in caplog.records)
    assert TOKEN not in text and "not-the-token-31337" not in text
    assert TOKEN not in json.dumps(status(relay)) and "31337" not in json.dumps(status(refused))


def test_a_redirect_is_not_followed_with_the_token(start_relay, dashboard, token_file, caplog):
    dashboard.publish(policy(serial=1))
    dashboard.redirect_to = "/elsewhere/"
    relay = start_polling(start_relay, dashboard, token_file, policy(serial=1))
    wait_for(lambda: log_lines(caplog, "policy_fetch_failing"))
    assert "redirecting to /elsewhere/" in log_lines(caplog, "policy_fetch_failing")[0]
    assert all(path == EXPORT_PATH for _, path, _, _ in dashboard.requests)
    assert status(relay)["policy"]["serial"] == 1


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--policy-url", "http://dashboard.test/api/v1/export/relayd/"], "need --token-file"),
        (["--policy-url", "file:///etc/passwd", "--token-file", "t"], "--policy-url must be an http"),
        (["--report-url", "ftp://dashboard.test/", "--token-file", "t"], "--report-url must be an http"),
        (["--policy-url", "http://d.test/", "--token-file", "t", "--fetch-interval", "0"], "must be positive"),
    ],
)
def test_bad_dashboard_options_exit_with_a_message(arguments, message, capsys):
    with pytest.raises(SystemExit):
        load_settings(["--policy", "p", "--spool", "s", *arguments], {})
    assert message in capsys.readouterr().err


def test_dashboard_options_from_the_environment(tmp_path):
    environment = {
        "RELAYD_POLICY_URL": "https://dashboard.test/api/v1/export/relayd/",
        "RELAYD_TOKEN_FILE": str(tmp_path / "token"),
        "RELAYD_CA_FILE": str(tmp_path / "ca.pem"),
        "RELAYD_FETCH_INTERVAL": "2.5",
    }
    settings = load_settings(["--policy", "p", "--spool", "s"], environment)
    assert settings.policy_url == "https://dashboard.test/api/v1/export/relayd/"
    assert settings.token_file == tmp_path / "token" and settings.ca_file == tmp_path / "ca.pem"
    assert settings.fetch_interval == 2.5


def test_a_missing_token_file_stops_relayd_with_a_message(tmp_path):
    command = [sys.executable, "-m", "relayd", "--policy", str(tmp_path / "p.json"), "--spool", str(tmp_path / "s")]
    command += ["--policy-url", "http://127.0.0.1:9/", "--token-file", str(tmp_path / "missing"), "--no-delivery"]
    command += ["--listen", "127.0.0.1:0", "--metrics-listen", "off"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "event=start_failed" in result.stderr and "cannot read the token file" in result.stderr
