"""A really full spool file system (issue 12, finding 7): 452 at MAIL below --min-free-space, never a 250
without storage, recovery once space is freed, and one log line (not a traceback a message) from the
queue runner when even its .state files cannot be written.

The spool is a small tmpfs, which takes root to mount; CI runs as root. Elsewhere these tests are
skipped, and say why.
"""

from __future__ import annotations

import errno
import os
import subprocess
import time
from pathlib import Path

import pytest

from tests.relayd.conftest import policy, send

SIZE = 4 * 1024 * 1024


@pytest.fixture
def small_fs(tmp_path):
    """Return a directory on a tmpfs of SIZE bytes; unmount it after.

    Ask for it before start_relay: fixtures are torn down in reverse, so the relays stop before the unmount.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs for the spool needs root (CI runs as root)")
    mountpoint = tmp_path / "fs"
    mountpoint.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(mountpoint)],
        capture_output=True,
        text=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    yield mountpoint
    subprocess.run(["umount", "-l", str(mountpoint)], check=True)


def queued(relay) -> list[Path]:
    return sorted((relay.daemon.settings.spool / "queue").glob("*.msg"))


def fill(directory: Path, leave: int = 0) -> Path:
    """Write a file into directory until less than leave bytes are free (0: until the disk is full)."""
    filler = directory / "filler"
    with filler.open("ab") as output:
        while True:
            usage = os.statvfs(directory)
            free = usage.f_bavail * usage.f_frsize
            if free <= leave:
                break
            try:
                output.write(b"\0" * min(65536, max(free - leave, 4096)))
                output.flush()
            except OSError as exc:
                assert exc.errno == errno.ENOSPC
                break
    return filler


def test_full_spool_answers_452_at_mail_never_250_and_recovers(small_fs, start_relay):
    early = start_relay(policy(), spool=small_fs / "early", min_free_space=1024 * 1024)
    late = start_relay(policy(), spool=small_fs / "late", min_free_space=0)  # no early refusal: DATA must fail
    filler = fill(small_fs)
    with early.smtp() as client:
        assert client.docmd("MAIL FROM:<a@client.test>") == (452, b"4.3.1 Insufficient system storage")
    with late.smtp() as client:
        _, data = send(client, "a@client.test", "<bob@example.com>", b"Subject: x\r\n\r\n" + b"y" * 998 + b"\r\n")
        assert data == (451, b"4.3.0 Local problem storing the message, try again later")
    assert queued(early) == [] and queued(late) == []
    filler.unlink()
    for relay in (early, late):
        with relay.smtp() as client:
            assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250
        assert len(queued(relay)) == 1
    # Just below the limit, and a declared SIZE that would take the space below it.
    fill(small_fs, leave=1024 * 1024 + 100_000)
    with early.smtp() as client:
        assert client.docmd("MAIL FROM:<a@client.test> SIZE=200000") == (452, b"4.3.1 Insufficient system storage")
        assert client.docmd("MAIL FROM:<a@client.test> SIZE=1000")[0] == 250


def test_runner_with_no_room_for_state_logs_one_line(small_fs, start_relay, serve_smtp, relayd_stderr):
    class Deferring:
        async def handle_RCPT(self, server, session, envelope, address, options):
            return "450 4.2.0 Try again later"

    port = serve_smtp(Deferring())
    domains = [{"domain": "example.com", "include_subdomains": False, "route": f"127.0.0.1:{port}"}]
    relay = start_relay(
        policy(local_domains=domains),
        spool=small_fs / "spool",
        min_free_space=0,
        delivery=True,
        retry_initial=0.05,
        retry_max=0.05,
    )
    logged_before = relayd_stderr.stat().st_size
    with relay.smtp() as client:
        assert send(client, "a@client.test", "<bob@example.com>")[1][0] == 250
    fill(small_fs)
    attempts = relay.daemon.metrics.value("deliveries", result="deferred")
    deadline = time.monotonic() + 20
    while relay.daemon.metrics.value("deliveries", result="deferred") < attempts + 5:
        assert time.monotonic() < deadline, "the runner made no attempts"
        time.sleep(0.05)
    logged = relayd_stderr.read_bytes()[logged_before:].decode(errors="replace").splitlines()
    errors = [line for line in logged if "event=spool_error" in line]
    assert len(errors) == 1 and "No space left on device" in errors[0], logged
    assert not [line for line in logged if "Traceback" in line]
