"""relayd started as root binds, then drops to --user/--group before any helper starts (issue 17).

These tests need root (CI runs as root) and are skipped, with the reason, otherwise.
"""

import json
import os
import shutil
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest

from tests.relayd.conftest import policy
from tests.relayd.test_delivery import start_sink
from tests.snapshots import network

ROOT = Path(__file__).resolve().parents[2]
USER, GROUP = "nobody", "nogroup"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="dropping privileges needs a test run as root")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def environment() -> dict:
    """Return the test's environment without the suite-wide RELAYD_ALLOW_ROOT (tests/conftest.py)."""
    return {key: value for key, value in os.environ.items() if key != "RELAYD_ALLOW_ROOT"}


@pytest.fixture
def node_directory():
    """Return a directory the drop user may enter (pytest's tmp_path is root's alone), holding a readable policy."""
    directory = Path(tempfile.mkdtemp(prefix="relayd-privileges-"))
    directory.chmod(0o755)
    document = policy(trusted_networks=[network(1, "127.0.0.1/32")])
    (directory / "policy.json").write_text(json.dumps(document))
    (directory / "policy.json").chmod(0o644)
    yield directory
    shutil.rmtree(directory)


# Run the command in a private mount namespace where the interpreter's home is traversable: a
# tmpfs (mode 0755) over the closed directory (say root's 0700 home, where pyenv lives) with only
# the interpreter's tree bound back into it. Nothing outside the namespace changes.
_OPEN_UP = """set -e
mkdir -p "$1"
mount --bind "$3" "$1"
mount -t tmpfs -o mode=755 tmpfs "$2"
mkdir -p "$3"
mount --bind "$1" "$3"
shift 3
exec "$@"
"""


def interpreter_launcher(scratch: Path) -> list[str]:
    """Return a prefix that lets the drop user run this Python, or skip saying why that cannot be done."""
    if _runs_as_drop_user([]):
        return []
    real = Path(os.path.realpath(sys.executable))
    closed = next((parent for parent in reversed(real.parents) if not os.stat(parent).st_mode & 0o001), None)
    unshare = shutil.which("unshare")
    if closed is not None and unshare:
        inner = closed / real.relative_to(closed).parts[0]
        prefix = [unshare, "--mount", "--propagation", "private", "sh", "-c", _OPEN_UP, "sh"]
        prefix += [str(scratch / "interpreter"), str(closed), str(inner)]
        if _runs_as_drop_user(prefix):
            return prefix
    pytest.skip(f"user {USER} cannot run {sys.executable} with relayd: make the interpreter readable to test")


def _runs_as_drop_user(prefix: list[str]) -> bool:
    """Tell whether, after relayd's own drop, the interpreter passes relayd's own check (os.access)."""
    check = (
        "import grp, os, pwd, sys; os.setgroups([]); "
        f"os.setgid(grp.getgrnam({GROUP!r}).gr_gid); os.setuid(pwd.getpwnam({USER!r}).pw_uid); "
        "sys.exit(0 if os.access(sys.executable, os.X_OK) else 1)"
    )
    try:
        result = subprocess.run([*prefix, sys.executable, "-c", check], cwd=ROOT, check=False, capture_output=True)
    except OSError:
        return False
    return result.returncode == 0


def relayd_processes(pid: int) -> list[int]:
    """Return pid and all its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for child in Path(f"/proc/{current}/task").glob("*/children"):
            pending += [int(number) for number in child.read_text().split()]
    return found


def ids(pid: int) -> tuple[list[int], list[int]]:
    """Return the real, effective, saved and file-system uids and gids of a process."""
    lines = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
    return [int(value) for value in lines["Uid"].split()], [int(value) for value in lines["Gid"].split()]


def wait_for(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.mark.parametrize("workers", [1, 2])
def test_relayd_drops_to_the_user_and_mail_still_flows(node_directory, workers):
    launcher = interpreter_launcher(node_directory)
    sink, controller = start_sink()
    smtp_port, http_port = free_port(), free_port()
    spool = node_directory / "spool"
    command = [sys.executable, "-m", "relayd", "--policy", str(node_directory / "policy.json"), "--spool", str(spool)]
    command += ["--listen", f"127.0.0.1:{smtp_port}", "--metrics-listen", f"127.0.0.1:{http_port}"]
    command += ["--smarthost", sink.hop, "--greet-delay", "0", "--hostname", "relay.test"]
    command += ["--user", USER, "--group", GROUP, "--workers", str(workers)]
    # unshare and sh exec relayd in place: daemon.pid is relayd itself.
    daemon = subprocess.Popen([*launcher, *command], cwd=ROOT, env=environment(), stderr=subprocess.PIPE, text=True)
    try:

        def serving():
            assert daemon.poll() is None, daemon.stderr.read()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{http_port}/status", timeout=1) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(serving)
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as client:
            client.sendmail("alice@example.com", ["bob@example.org"], b"Subject: dropped\r\n\r\nhello\r\n")
        wait_for(lambda: len(sink.messages) == 1)
        assert sink.messages[0].parsed()["Subject"] == "dropped"

        nobody, nogroup = 65534, 65534
        processes = relayd_processes(daemon.pid)
        # intake, its workers, the spool writer (started by the message) and the queue runner
        assert len(processes) >= 3 + workers - 1, processes  # the parent is one of the workers
        for pid in processes:
            uids, gids = ids(pid)
            assert uids == [nobody] * 4, (pid, uids)
            assert gids == [nogroup] * 4, (pid, gids)
            groups = dict(line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines())
            assert groups["Groups"].split() == [], (pid, groups["Groups"])
            assert groups["CapEff"].strip() == "0" * 16, (pid, groups["CapEff"])
        assert (spool.stat().st_uid, spool.stat().st_gid) == (nobody, nogroup)
        assert all(path.stat().st_uid == nobody for path in spool.rglob("*"))
    finally:
        daemon.terminate()
        status = daemon.wait(timeout=30)
        controller.stop()
    assert status == 0
    assert "event=privileges_dropped user=nobody uid=65534 gid=65534" in daemon.stderr.read()


def test_relayd_refuses_to_stay_root(node_directory):
    command = [sys.executable, "-m", "relayd", "--policy", str(node_directory / "policy.json")]
    command += ["--spool", str(node_directory / "spool"), "--listen", "127.0.0.1:0", "--metrics-listen", "off"]
    result = subprocess.run(command, cwd=ROOT, env=environment(), capture_output=True, text=True, timeout=30)
    assert result.returncode == 1
    assert "event=start_failed" in result.stderr
    assert "relayd refuses to run as root: give --user and --group" in result.stderr
    # Nothing was spooled, and no helper ran as root: the spool writer starts with the first message.
    assert not any((node_directory / "spool" / "queue").iterdir())


@pytest.mark.parametrize(
    ("options", "problem"),
    [
        (["--user", "no-such-user-here"], "--user no-such-user-here: no such user"),
        (["--user", USER, "--group", "no-such-group-here"], "--group no-such-group-here: no such group"),
        (["--user", "root"], "--user names root"),
    ],
)
def test_relayd_refuses_a_bad_user(node_directory, options, problem):
    command = [sys.executable, "-m", "relayd", "--policy", str(node_directory / "policy.json")]
    command += ["--spool", str(node_directory / "spool"), "--listen", "127.0.0.1:0", "--metrics-listen", "off"]
    result = subprocess.run([*command, *options], cwd=ROOT, env=environment(), capture_output=True, text=True)
    assert result.returncode == 1
    assert problem in result.stderr
