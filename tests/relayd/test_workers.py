"""--workers: intake processes on the same listeners enforce the limits of one relayd, not N times looser ones."""

from __future__ import annotations

import asyncio
import os
import signal
import smtplib
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from relayd.hub import ParentLink, serve_worker
from relayd.limits import AuthThrottle, ClientLimits, GreetPasses
from relayd.metrics import Metrics
from tests.relayd.conftest import policy, publish, scrape
from tests.relayd.test_runner_process import free_port
from tests.snapshots import network

ROOT = Path(__file__).resolve().parents[2]
ROUNDS = 10  # tries at getting the admitted sessions spread over both processes


class Relayd:
    """relayd run as a process with its workers, as in production."""

    def __init__(self, directory: Path, stderr, *options: str) -> None:
        publish(directory / "policy.json", policy())
        self.port = free_port()
        arguments = [
            *(sys.executable, "-m", "relayd", "--policy", str(directory / "policy.json")),
            *("--spool", str(directory / "spool"), "--listen", f"127.0.0.1:{self.port}", "--metrics-listen", "off"),
            *("--greet-delay", "0", "--hostname", "relay.test", "--no-delivery", "--shutdown-grace", "2", *options),
        ]
        self.process = subprocess.Popen(arguments, env={**os.environ, "PYTHONPATH": str(ROOT)}, stderr=stderr)
        deadline = time.monotonic() + 20
        while len(self.pids()) < 2 or not self.listening():
            assert self.process.poll() is None, "relayd exited"
            assert time.monotonic() < deadline, "relayd and its worker did not start"
            time.sleep(0.05)

    def listening(self) -> bool:
        # Both processes accept once each holds the listener and has logged nothing bad; a greeting proves it.
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=5) as probe:
                return probe.recv(100).startswith(b"220")
        except OSError:
            return False

    def pids(self) -> list[int]:
        """Return relayd's pid and its workers'."""
        return [self.process.pid, *children(self.process.pid, b"relayd.workers")]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            self.process.wait(30)


def children(parent: int, module: bytes) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
                command = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if int(stat.rpartition(")")[2].split()[1]) == parent and module in command:
                found.append(int(entry))
    return found


def owner(server_port: int, client_port: int, pids: list[int]) -> int | None:
    """Return which of pids holds relayd's end of the connection from client_port."""
    inode = None
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        local, remote = fields[1].split(":")[1], fields[2].split(":")[1]
        if int(local, 16) == server_port and int(remote, 16) == client_port:
            inode = fields[9]
    for pid in pids:
        try:
            links = [os.readlink(f"/proc/{pid}/fd/{fd}") for fd in os.listdir(f"/proc/{pid}/fd")]
        except OSError:
            continue
        if f"socket:[{inode}]" in links:
            return pid
    return None


def greeting(sock: socket.socket) -> bytes:
    return sock.recv(200)


@pytest.fixture
def stderr(relayd_stderr):
    with relayd_stderr.open("ab") as stream:
        yield stream


@pytest.mark.parametrize(
    ("options", "cap", "reply"),
    [
        (("--max-connections-per-ip", "5"), 5, b"421 4.7.0 Too many connections from your address"),
        (("--max-connections", "5"), 5, b"421 4.7.0 Too many connections, try again later"),
    ],
    ids=["per-ip", "global"],
)
def test_connection_limits_hold_across_workers(tmp_path, stderr, options, cap, reply):
    relayd = Relayd(tmp_path, stderr, "--workers", "2", *options)
    try:
        spread = False
        for _ in range(ROUNDS):
            admitted, refused, holders = [], [], set()
            for _ in range(cap + 3):
                sock = socket.create_connection(("127.0.0.1", relayd.port), timeout=10)
                answer = greeting(sock)
                if answer.startswith(b"220"):
                    admitted.append(sock)
                    holders.add(owner(relayd.port, sock.getsockname()[1], relayd.pids()))
                else:
                    assert answer.startswith(reply), answer
                    refused.append(sock)
            assert len(admitted) == cap, f"{len(admitted)} sessions admitted, the cap is {cap}"
            assert len(refused) == 3
            spread = spread or (len(holders) == 2 and None not in holders)
            for sock in admitted + refused:
                sock.close()
            if spread:
                break
            time.sleep(0.2)  # let both workers see the sessions end
        assert spread, "the admitted sessions never spread over both processes"
    finally:
        relayd.stop()


def test_a_killed_worker_gives_back_its_sessions_and_is_restarted(tmp_path, stderr):
    relayd = Relayd(tmp_path, stderr, "--workers", "2", "--max-connections-per-ip", "4")
    try:
        (worker,) = children(relayd.process.pid, b"relayd.workers")
        held = []  # sessions the worker holds; those the parent took are closed again
        deadline = time.monotonic() + 30
        while len(held) < 3:
            assert time.monotonic() < deadline, "the worker never took a session"
            sock = socket.create_connection(("127.0.0.1", relayd.port), timeout=10)
            assert greeting(sock).startswith(b"220")
            if owner(relayd.port, sock.getsockname()[1], [worker]):
                held.append(sock)
            else:
                sock.close()
                time.sleep(0.05)
        os.kill(worker, signal.SIGKILL)
        # The worker's sessions died with it: the parent must admit the full four again.
        deadline = time.monotonic() + 15
        while True:
            new = [socket.create_connection(("127.0.0.1", relayd.port), timeout=10) for _ in range(4)]
            admitted = sum(greeting(sock).startswith(b"220") for sock in new)
            for sock in new:
                sock.close()
            if admitted == 4:
                break
            assert time.monotonic() < deadline, f"the dead worker's sessions still count: {admitted} of 4 admitted"
            time.sleep(0.2)
        deadline = time.monotonic() + 15
        while not [pid for pid in children(relayd.process.pid, b"relayd.workers") if pid != worker]:
            assert time.monotonic() < deadline, "the worker was not restarted"
            time.sleep(0.1)
        for sock in held:
            sock.close()
    finally:
        relayd.stop()


def test_workers_die_with_relayd_even_when_it_is_killed(tmp_path, stderr):
    relayd = Relayd(tmp_path, stderr, "--workers", "3")
    workers = children(relayd.process.pid, b"relayd.workers")
    assert len(workers) == 2
    relayd.process.kill()
    relayd.process.wait()
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{pid}").exists() and "Z" not in status(pid) for pid in workers):
        assert time.monotonic() < deadline, "a worker outlived relayd"
        time.sleep(0.05)
    # The port is free for the next relayd at once.
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", relayd.port))
        sock.listen()


def status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0]
    except OSError:
        return "Z"


def relay_verdicts(port: int, count: int) -> list[int]:
    """Return the RCPT reply codes of count sessions asking to relay to a remote domain."""
    codes = []
    for _ in range(count):
        with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
            client.ehlo("client.test")
            client.docmd("MAIL FROM:<a@client.test>")
            codes.append(client.docmd("RCPT TO:<bob@remote.test>")[0])
    return codes


def test_workers_enforce_each_new_policy_and_count_into_relayds_metrics(tmp_path, stderr):
    metrics_port = free_port()
    relayd = Relayd(tmp_path, stderr, "--workers", "2", "--metrics-listen", f"127.0.0.1:{metrics_port}")
    try:
        assert relay_verdicts(relayd.port, 20) == [550] * 20
        publish(tmp_path / "policy.json", policy(serial=2, trusted_networks=[network(1, "127.0.0.0/8")]))
        refused = 20
        deadline = time.monotonic() + 10
        while relay_verdicts(relayd.port, 1) != [250]:
            refused += 1
            assert time.monotonic() < deadline, "the new policy was not enforced"
        time.sleep(0.5)  # the other process's poll, well within the second the design promises
        assert relay_verdicts(relayd.port, 20) == [250] * 20
        # Counted in relayd's own /metrics, whichever process had the session.
        series = 'relayd_rcpt_total{rule="default_deny",verdict="refuse"}'
        deadline = time.monotonic() + 5
        while scrape(metrics_port).get(series) != refused:
            assert time.monotonic() < deadline, "the workers' refusals were not all counted"
            time.sleep(0.1)
    finally:
        relayd.stop()


def test_auth_lockout_holds_in_every_worker(tmp_path, stderr, tls_files, tls_client):
    cert, key = tls_files
    relayd = Relayd(
        tmp_path,
        stderr,
        *("--workers", "2", "--tls-cert", str(cert), "--tls-key", str(key)),
        *("--auth-slow-after", "10", "--auth-refuse-after", "3"),
    )
    try:
        codes, locked_in = [], set()
        for _ in range(40):
            with smtplib.SMTP("127.0.0.1", relayd.port, timeout=10) as client:
                client.ehlo("client.test")
                client.starttls(context=tls_client)
                client.ehlo("client.test")
                holder = owner(relayd.port, client.sock.getsockname()[1], relayd.pids())
                code = auth_plain(client, "alice", "wrong")
            codes.append(code)
            if code == 421:
                locked_in.add(holder)
            if len(locked_in) == 2:
                break
        # Three failures in all, whichever process saw them, then locked out in both.
        assert codes[:3] == [535, 535, 421]
        assert set(codes[3:]) == {421}
        assert len(locked_in) == 2 and None not in locked_in, "the locked-out sessions never reached both processes"
    finally:
        relayd.stop()


def test_a_greeting_pass_earned_in_one_worker_holds_in_the_other(tmp_path, stderr):
    relayd = Relayd(tmp_path, stderr, "--workers", "2", "--greet-delay", "0.6")
    try:
        # Relayd() waited for one greeting already, which earned 127.0.0.1 its pass.
        fast_in = set()
        for _ in range(40):
            started = time.monotonic()
            with socket.create_connection(("127.0.0.1", relayd.port), timeout=10) as sock:
                assert greeting(sock).startswith(b"220")
                waited = time.monotonic() - started
                holder = owner(relayd.port, sock.getsockname()[1], relayd.pids())
            assert waited < 0.5, f"a client holding a greeting pass waited {waited:.2f} s"
            fast_in.add(holder)
            if len(fast_in) == 2:
                break
        assert len(fast_in) == 2 and None not in fast_in, "the sessions never reached both processes"
    finally:
        relayd.stop()


def auth_plain(client: smtplib.SMTP, username: str, password: str) -> int:
    client.user, client.password = username, password
    try:
        return client.auth("PLAIN", client.auth_plain, initial_response_ok=True)[0]
    except smtplib.SMTPAuthenticationError as exc:
        return exc.smtp_code
    except smtplib.SMTPServerDisconnected:
        return 421


def test_a_session_that_ends_while_the_parent_admits_it_is_released():
    # A client that leaves at once (a port scan) ends its session while the worker waits for the
    # parent's answer; the session the parent admitted must not stay counted against the client.
    limits = ClientLimits(10, 2, AuthThrottle(3, 10, 1.0, 900.0), GreetPasses(60.0))

    async def scenario() -> int:
        ours, theirs = socket.socketpair()
        parent = asyncio.create_task(serve_worker(*await asyncio.open_connection(sock=theirs), limits, None, Metrics()))
        link = ParentLink(*await asyncio.open_connection(sock=ours), on_lost=lambda: None)
        admission = asyncio.create_task(link.admit("192.0.2.1"))
        await asyncio.sleep(0)  # the request is on its way
        admission.cancel()
        with pytest.raises(asyncio.CancelledError):
            await admission
        # The parent answers in order: after two more round trips it has read whatever the worker
        # sent on receiving the answer to the admission.
        for _ in range(2):
            await link.auth_refused("192.0.2.1")
        open_sessions = limits.open
        await link.close()
        await parent
        return open_sessions

    assert asyncio.run(scenario()) == 0
