"""Run a real relayd (intake, spool writer, optionally the queue runner) on loopback for tests, and talk SMTP to it."""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import smtplib
import ssl
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvloop

from relayd.children import spawn
from relayd.daemon import Daemon
from relayd.logs import repeats
from relayd.settings import Settings
from tests.relayd.fake_dashboard import TOKEN, FakeDashboard
from tests.snapshots import restrictions

# Django 5.2's pbkdf2_sha256 of "correct horse" (1000 iterations keeps the suite fast).
ALICE_HASH = "pbkdf2_sha256$1000$NaClNaClNaClNaCl$nZQjQjg4q0dZ/pBo6BL7fH3xyVgqXnGIhmjBlaahFNw="
ALICE_PASSWORD = "correct horse"

POLICY = {
    "schema": 1,
    "serial": 1,
    "generated_at": "2026-11-28T00:40:00+00:00",
    "restrictions": restrictions(allow_authenticated=True, allow_listed_ips=True),
    "trusted_networks": [],
    "denied_networks": [],
    "internal_addresses": [],
    "local_domains": [{"domain": "example.com", "include_subdomains": True, "route": None}],
    "smtp_users": [{"username": "alice", "password_hash": ALICE_HASH}],
}


def network(id: int, text: str, *, denied: bool = False) -> dict:
    """Return a trusted (or denied) network entry of the snapshot."""
    entry = {"id": id, "network": text, "description": "", "added_by": "test", "added_at": "2026-11-28T00:00:00+00:00"}
    return entry if denied else {**entry, "expires_at": None}


def policy(serial: int = 1, **changes) -> dict:
    """Return the test snapshot with top-level keys (or restrictions, as a dict) replaced."""
    document = copy.deepcopy(POLICY)
    document["serial"] = serial
    restrictions = changes.pop("restrictions", {})
    document["restrictions"].update(restrictions)
    document.update(changes)
    return document


def publish(path: Path, document: dict | str) -> None:
    """Replace the snapshot file atomically, as the dashboard does (temporary file, rename)."""
    temporary = path.with_suffix(".tmp")
    temporary.write_text(document if isinstance(document, str) else json.dumps(document))
    os.replace(temporary, path)


@dataclass
class Relay:
    """A relayd running in a thread of the test process."""

    daemon: Daemon
    loop: asyncio.AbstractEventLoop
    thread: threading.Thread
    policy_path: Path
    spool: Path

    @property
    def port(self) -> int:
        return self.daemon.relay.addresses[0][1]

    @property
    def http_port(self) -> int:
        return self.daemon.http.sockets[0].getsockname()[1]

    def smtp(self, host: str = "127.0.0.1", port: int | None = None, ehlo: str = "client.test") -> smtplib.SMTP:
        """Connect and say EHLO."""
        client = smtplib.SMTP(host, port or self.port, timeout=10)
        client.ehlo(ehlo)
        return client

    def queued(self) -> list[Path]:
        return sorted((self.spool / "queue").glob("*.msg"))

    def run(self, coroutine, timeout: float = 15):
        """Run a coroutine on the relay's event loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def stop(self) -> None:
        if self.loop.is_running():
            self.run(self.daemon.stop(), timeout=30)
            self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def start_relay(tmp_path):
    """Return a function that starts a relayd with a snapshot (None: no file) and settings; stop them all after."""
    relays: list[Relay] = []

    def start(document: dict | str | None = None, **options) -> Relay:
        directory = tmp_path / f"relay{len(relays)}"
        directory.mkdir()
        policy_path = directory / "policy.json"
        if document is not None:
            publish(policy_path, document)
        settings = {
            "policy": policy_path,
            "spool": directory / "spool",
            "listen": ["127.0.0.1:0"],
            "metrics_listen": "127.0.0.1:0",
            "greet_delay": 0.0,
            "delivery": False,
            "shutdown_grace": 2.0,
            "fsync_threads": 2,
            "hostname": "relay.test",
            "node_name": "node-test",
            # Intake in the test process only; tests of --workers ask for more.
            "workers": 1,
            "allow_root": True,  # the test process may be root (CI); it never drops privileges
            **options,
        }
        daemon = Daemon(Settings(**settings))
        loop = uvloop.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, daemon=True)
        thread.start()
        relay = Relay(daemon, loop, thread, policy_path, directory / "spool")
        relays.append(relay)
        relay.run(daemon.start())
        return relay

    yield start
    for relay in relays:
        relay.stop()


@pytest.fixture(autouse=True)
def fresh_repeats():
    """Let each test see the first line of each rate-limited failure, whatever earlier tests logged."""
    repeats.reset()


@pytest.fixture
def dashboard():
    """Return a fake dashboard on 127.0.0.1 (tests/relayd/fake_dashboard.py); stop it after."""
    server = FakeDashboard()
    yield server
    server.stop()


@pytest.fixture
def token_file(tmp_path) -> Path:
    """Return a token file holding the fake dashboard's token."""
    path = tmp_path / "token"
    path.write_text(TOKEN + "\n")
    return path


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> tuple[Path, Path]:
    """Return (certificate, key) of a self-signed pair for 127.0.0.1."""
    directory = tmp_path_factory.mktemp("tls")
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"),
            *("-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=relay.test"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


@pytest.fixture(scope="session")
def tls_client(tls_files) -> ssl.SSLContext:
    """Return a client context that trusts the test certificate (and checks it)."""
    return ssl.create_default_context(cafile=str(tls_files[0]))


def send(client: smtplib.SMTP, sender: str, recipient: str, body: bytes = b"Subject: test\r\n\r\nhello\r\n") -> tuple:
    """Send one message with raw MAIL/RCPT/DATA; return the replies (code, text) of RCPT and of DATA (or None)."""
    client.docmd(f"MAIL FROM:<{sender}>")
    rcpt = client.docmd(f"RCPT TO:{recipient}")
    if rcpt[0] != 250:
        client.rset()
        return rcpt, None
    return rcpt, client.data(body)


class _TracebackCollector(logging.Handler):
    """Keep every log record of relayd (and of asyncio, aiosmtpd under it) that carries a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.found: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.split(".")[0] in ("relayd", "asyncio", "mail") and (
            record.exc_info or "Traceback" in record.getMessage()
        ):
            self.found.append(f"{record.name}: {record.getMessage()[:300]}")


@pytest.fixture(scope="session")
def relayd_stderr(tmp_path_factory) -> Path:
    """Return the file that relayd's helper processes, and relayds run as processes, write their stderr to."""
    return tmp_path_factory.mktemp("relayd-logs") / "stderr.log"


@pytest.fixture(scope="session", autouse=True)
def no_tracebacks(relayd_stderr):
    """Fail the run if relayd logged a traceback anywhere in the relayd tests (issue 12, finding 4).

    Every test here plays a client, a next hop or a crash, and relayd must meet each with one log
    line, never a traceback. In-process records are collected by a handler; the spool writer's and
    queue runner's stderr goes to a file, as does that of every relayd the tests run as a process.
    """
    collector = _TracebackCollector()
    logging.getLogger().addHandler(collector)
    # Appending from several processes at once is safe: each write goes to the end.
    stderr = relayd_stderr.open("ab")

    def spawn_logged(module, *args, **options):
        return spawn(module, *args, **{"stderr": stderr, **options})

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr("relayd.runner.spawn", spawn_logged)
        patch.setattr("relayd.spool_writer.spawn", spawn_logged)
        yield collector
    logging.getLogger().removeHandler(collector)
    stderr.close()
    children = [line for line in relayd_stderr.read_text(errors="replace").splitlines() if "Traceback" in line]
    assert not collector.found and not children, "relayd logged tracebacks:\n" + "\n".join(collector.found + children)
