"""kill -9 of intake, queue runner and spool writer under load, with real SMTP in and out (issue 12, finding 1).

Every message that got a 250 must reach the next hop, and a message may reach it twice only if its
delivery was in flight when a process died: never because reporting a delivery failed after the
next hop had taken it.
"""

from __future__ import annotations

import os
import re
import signal
import smtplib
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from aiosmtpd.smtp import SMTP

from tests.relayd.conftest import policy, publish
from tests.relayd.controllers import SinkController
from tests.relayd.test_runner_process import free_port

ROOT = Path(__file__).resolve().parents[2]
CONCURRENCY = 4
# A delivery counts as in flight at a kill if its session with the sink was open then, had closed
# less than RECORD_MARGIN before (the runner records a delivery just after the session ends, and
# on two busy cores "just after" can take a while), or opened less than NOTICE_MARGIN after (a
# runner notices that intake died when it reads the end of its pipe, not at the kill itself).
RECORD_MARGIN = 2.0
NOTICE_MARGIN = 0.5


class CountingSink:
    """A next hop that keeps the test id of each message it takes, and when each session was open."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.received: list[str] = []
        self.sessions: list[list[float | None]] = []  # [opened, closed or None]

    async def handle_DATA(self, server, session, envelope):
        tag = re.search(rb"X-Test-Id: (\S+)", envelope.content)[1].decode()
        with self.lock:
            self.received.append(tag)
        return "250 2.0.0 Ok"

    def in_flight_at(self, moment: float) -> int:
        with self.lock:
            return sum(
                1
                for opened, closed in self.sessions
                if opened <= moment + NOTICE_MARGIN and (closed is None or closed >= moment - RECORD_MARGIN)
            )


class TrackedSMTP(SMTP):
    def connection_made(self, transport) -> None:
        self.times = [time.monotonic(), None]
        with self.event_handler.lock:
            self.event_handler.sessions.append(self.times)
        super().connection_made(transport)

    def connection_lost(self, error) -> None:
        self.times[1] = time.monotonic()
        super().connection_lost(error)


class SinkServer(SinkController):
    def factory(self):
        return TrackedSMTP(self.handler)


def children(parent: int) -> dict[str, int]:
    """Return the pids of parent's child processes by the relayd module they run."""
    found = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rpartition(")")[2].split()[1]) == parent:
            for module in (b"relayd.runner", b"relayd.spool_writer"):
                if module in command:
                    found[module.decode()] = int(entry)
    return found


def wait_for_child(parent: int, module: str, timeout: float = 15) -> int:
    deadline = time.monotonic() + timeout
    while (pid := children(parent).get(module)) is None:
        assert time.monotonic() < deadline, f"{module} never started"
        time.sleep(0.02)
    return pid


class Intake:
    """relayd run as a process, as in production, so that it can be killed and started again."""

    def __init__(self, directory: Path, port: int, stderr) -> None:
        self.arguments = [
            *(sys.executable, "-m", "relayd", "--policy", str(directory / "policy.json")),
            *("--spool", str(directory / "spool"), "--listen", f"127.0.0.1:{port}", "--metrics-listen", "off"),
            *("--greet-delay", "0", "--hostname", "relay.test", "--retry-initial", "0.5", "--retry-max", "1"),
            *("--delivery-concurrency", str(CONCURRENCY), "--shutdown-grace", "10", "--delivery-nice", "0"),
            *("--workers", "2"),  # a worker process in the tree too: kills must not lose what it accepted
        ]
        self.port = port
        self.stderr = stderr
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        environment = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(self.arguments, env=environment, stderr=self.stderr)
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                assert self.process.poll() is None, "relayd exited"
                assert time.monotonic() < deadline, "relayd did not start listening"
                time.sleep(0.05)

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


class Load:
    """Clients that each send messages one after another, each a fresh session, until stopped.

    A message is sent again, under a new attempt tag, until it gets a 250: intake may be dead,
    restarting, or answer 451 while its writer restarts. Only tags that got a 250 must be delivered.
    """

    def __init__(self, port: int, clients: int = 3) -> None:
        self.port = port
        self.accepted: list[str] = []
        self.stopped = threading.Event()
        self.threads = [threading.Thread(target=self._client, args=(number,)) for number in range(clients)]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self.stopped.set()
        for thread in self.threads:
            thread.join(30)

    def wait_for_more(self, count: int, at_least: float = 1.0, at_most: float = 30.0) -> None:
        """Wait at_least seconds, and on until count more messages were accepted (at_most seconds)."""
        target = len(self.accepted) + count
        time.sleep(at_least)
        deadline = time.monotonic() + at_most
        while len(self.accepted) < target and time.monotonic() < deadline:
            time.sleep(0.1)

    def _client(self, number: int) -> None:
        attempt = 0
        while not self.stopped.is_set():
            attempt += 1
            tag = f"c{number}-{attempt}"
            body = f"Subject: crash test\r\nX-Test-Id: {tag}\r\n\r\nhello\r\n".encode()
            try:
                with smtplib.SMTP("127.0.0.1", self.port, timeout=10) as client:
                    client.ehlo("load.test")
                    client.docmd("MAIL FROM:<load@client.test>")
                    client.docmd("RCPT TO:<bob@example.com>")
                    code, _ = client.data(body)
            except (OSError, smtplib.SMTPException):
                code = 0
            if code == 250:
                self.accepted.append(tag)
            else:
                time.sleep(0.05)


def test_kill_9_under_load_loses_nothing_and_duplicates_only_what_was_in_flight(tmp_path, relayd_stderr):
    started = time.monotonic()
    sink = CountingSink()
    server = SinkServer(sink, hostname="127.0.0.1", port=0)
    server.start()
    routes = [{"domain": "example.com", "include_subdomains": False, "route": f"127.0.0.1:{server.port}"}]
    publish(tmp_path / "policy.json", policy(local_domains=routes))
    stderr = relayd_stderr.open("ab")
    intake = Intake(tmp_path, free_port(), stderr)
    load = Load(intake.port)
    in_flight = 0
    kills = []
    try:
        intake.start()
        load.start()
        for victim in (
            "relayd.runner",
            "relayd.spool_writer",
            "intake",
            "relayd.runner",
            "intake",
            "relayd.spool_writer",
        ):
            load.wait_for_more(10)  # a second at least, and load between kills however busy the host
            if victim == "intake":
                pid = intake.process.pid
                wait_for_child(pid, "relayd.runner")
                moment = time.monotonic()
                intake.kill()
                intake.start()
            else:
                pid = wait_for_child(intake.process.pid, victim)
                moment = time.monotonic()
                os.kill(pid, signal.SIGKILL)
            kills.append(victim)
            if victim != "relayd.spool_writer":  # the writer does not deliver
                in_flight += sink.in_flight_at(moment)
        time.sleep(1.0)
        load.stop()
        accepted = set(load.accepted)
        deadline = time.monotonic() + 30
        while not accepted <= set(sink.received):
            assert time.monotonic() < deadline, f"lost: {sorted(accepted - set(sink.received))[:10]}"
            time.sleep(0.1)
        time.sleep(1.0)  # deliveries repeated by a new runner arrive late
    finally:
        load.stop()
        intake.stop()
        stderr.close()
        server.stop()
    duplicates = len(sink.received) - len(set(sink.received))
    print(
        f"accepted={len(accepted)} delivered={len(set(sink.received))} duplicates={duplicates} "
        f"in_flight_at_kills={in_flight} kills={kills} seconds={time.monotonic() - started:.1f}"
    )
    assert len(accepted) >= 50, "too little load to test anything"
    assert duplicates <= in_flight
