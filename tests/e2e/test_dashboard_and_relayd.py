"""The dashboard and relayd together: a change made through the API is enforced by relayd within a
second over real SMTP, relayd reports the serial back, and a rollback brings the old behaviour back."""

import os
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from policy.models import PolicyRevision, RelayNode
from tests.api.conftest import issue_token, token_client

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def rcpt_code(port: int, recipient: str) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=5) as smtp:
        smtp.ehlo("e2e.example.org")
        smtp.mail("e2e@example.org")
        return smtp.rcpt(recipient)[0]


def wait_for(condition, timeout: float, interval: float = 0.02):
    """Return how long condition() took to become true; fail after timeout seconds."""
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"not true within {timeout} s")
        time.sleep(interval)
    return time.monotonic() - start


@pytest.fixture
def relayd(live_server, editor, tmp_path):
    key = issue_token(editor, name="relayd", node="e2e", read_only=True)
    token_file = tmp_path / "token"
    token_file.write_text(key + "\n")
    port = free_port()
    log_file = tmp_path / "relayd.log"
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relayd",
            "--policy",
            str(tmp_path / "policy.json"),
            "--spool",
            str(tmp_path / "spool"),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-listen",
            "off",
            "--greet-delay",
            "0",
            "--no-delivery",
            "--node-name",
            "e2e",
            "--policy-url",
            f"{live_server.url}/api/v1/export/relayd/",
            "--token-file",
            str(token_file),
            "--fetch-interval",
            "0.2",
            "--report-interval",
            "0.5",
        ],
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stderr=log_file.open("w"),  # a file, not a pipe nobody drains: a full pipe would stall relayd
    )
    wait_for(lambda: _listening(port), timeout=20, interval=0.1)
    yield port
    process.terminate()
    process.wait(timeout=30)
    assert key not in log_file.read_text(), "the token must never be logged"


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_change_enforced_reported_and_rolled_back(relayd, editor):
    api = token_client(issue_token(editor, name="automation"))
    remote = "someone@example.org"
    wait_for(lambda: rcpt_code(relayd, remote) == 550, timeout=5)  # first snapshot fetched: fail closed no more

    # 1. Trust the tester's own address through the API.
    response = api.post("/api/v1/trusted-networks/", {"network": "127.0.0.1", "description": "e2e"}, format="json")
    assert response.status_code == 201
    serial = PolicyRevision.objects.order_by("-serial").first().serial

    # 2. relayd enforces it within a second, and reports the serial back to the dashboard.
    assert wait_for(lambda: rcpt_code(relayd, remote) == 250, timeout=1.0) <= 1.0
    wait_for(lambda: RelayNode.objects.filter(name="e2e", serial=serial).exists(), timeout=5)
    assert api.get("/api/v1/daemons/").json()["results"][0]["state"] == "current"

    # 3. Roll back to the revision before: relaying is refused again, as before.
    response = api.post(f"/api/v1/revisions/{serial - 1}/rollback/", {"reason": "e2e"}, format="json")
    assert response.status_code == 201
    assert wait_for(lambda: rcpt_code(relayd, remote) == 550, timeout=1.0) <= 1.0
    wait_for(lambda: RelayNode.objects.filter(name="e2e", serial=serial + 1).exists(), timeout=5)


def test_every_accepted_entry_keeps_relayd_on_the_newest_revision_and_a_refusal_is_flagged(relayd, editor):
    """Issue 10: entries with embedded IPv4 go API → revision → relayd; a refused snapshot turns the node red."""
    api = token_client(issue_token(editor, name="automation"))
    for entry in (
        {"network": "::a:b/128"},
        {"network": "::1.2.3.4"},
        {"network": "::ffff:10.0.0.0/104"},
        {"network": "64:ff9b::/96", "open_relay_override": True, "confirm_open_relay": True},
    ):
        response = api.post("/api/v1/trusted-networks/", entry, format="json")
        assert response.status_code == 201, response.json()
        serial = PolicyRevision.objects.order_by("-serial").first().serial
        wait_for(lambda serial=serial: RelayNode.objects.filter(name="e2e", serial=serial).exists(), timeout=5)
    assert api.post("/api/v1/trusted-networks/", {"network": "::/96"}, format="json").status_code == 400

    # The database restored from a backup hands out the serial in force again, with other content.
    latest = PolicyRevision.objects.order_by("-serial").first()
    other = latest.snapshot.replace('"allow_authenticated": true', '"allow_authenticated": false')
    assert other != latest.snapshot
    PolicyRevision.objects.filter(pk=latest.pk).update(snapshot=other, sha256="0" * 64)
    wait_for(lambda: RelayNode.objects.filter(name="e2e", refused_serial=latest.serial).exists(), timeout=5)
    node = api.get("/api/v1/daemons/").json()["results"][0]
    assert (node["serial"], node["state"]) == (latest.serial, "refused")
    assert node["refusal"].startswith(
        f"refused revision {latest.serial}: serial: {latest.serial} is the serial in force"
    )

    # The next revision is enforced, and the flag goes.
    assert api.post("/api/v1/trusted-networks/", {"network": "192.0.2.0/24"}, format="json").status_code == 201
    wait_for(lambda: RelayNode.objects.filter(name="e2e", serial=latest.serial + 1, refused_serial=None).exists(), 5)
    assert api.get("/api/v1/daemons/").json()["results"][0]["state"] == "current"


def test_a_node_on_an_older_schema_keeps_enforcing_while_the_dashboard_refuses_a_newer_feature(
    relayd, editor, monkeypatch
):
    """Issue 17: a feature needing a schema the node lacks waits for it, and the node goes on enforcing.

    This relayd enforces schemas 1 to 3; the test plays a release whose dashboard has a schema-4 feature.
    """
    from policy.snapshot import SchemaFeature

    api = token_client(issue_token(editor, name="automation"))
    remote = "someone@example.org"
    assert api.post("/api/v1/trusted-networks/", {"network": "127.0.0.1"}, format="json").status_code == 201
    serial = PolicyRevision.objects.order_by("-serial").first().serial
    wait_for(lambda: RelayNode.objects.filter(name="e2e", serial=serial).exists(), timeout=5)
    node = api.get("/api/v1/daemons/").json()["results"][0]
    assert node["schemas"] == [1, 2, 3] and node["version"]

    # The dashboard (and its bundled loader) knows a schema-4 feature: a local domain stands in for it.
    feature = SchemaFeature(4, "the test feature", lambda s: any(d["domain"] == "v4.test" for d in s["local_domains"]))
    monkeypatch.setattr("policy.snapshot.SCHEMA_FEATURES", [feature])
    monkeypatch.setattr("relayd.config.SUPPORTED_SCHEMAS", (1, 2, 3, 4))
    response = api.post("/api/v1/domains/", {"domain": "v4.test"}, format="json")
    assert response.status_code == 400
    assert "node e2e runs an older relayd (schemas 1, 2, 3): upgrade it before enabling the test feature" in str(
        response.json()
    )
    assert PolicyRevision.objects.order_by("-serial").first().serial == serial
    # The node still enforces the policy in force, and is not flagged.
    assert rcpt_code(relayd, remote) == 250
    time.sleep(1.0)  # two status reports
    assert api.get("/api/v1/daemons/").json()["results"][0]["state"] == "current"
