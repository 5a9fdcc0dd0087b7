"""Run the Postfix export in a private Postfix: a real master and smtpd with their own config and queue.

Everything lives in a temporary directory (Postfix's daemons drop to the postfix user, so it is
world-readable rather than under pytest's private tmp_path); smtpd listens on a loopback ephemeral
port and lets loopback clients name the client address to test with XCLIENT. The system's Postfix
is left alone. Starting a master needs root, as CI and `make test` run.
"""

from __future__ import annotations

import os
import re
import shutil
import smtplib
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from policy.export import render
from policy.export.postfix import MAIN_CF, MASTER_CF
from tests.export import NOW

HOSTNAME = "relay.example.net"

# A Debian-like Postfix (its mydestination and local recipient check) that keeps everything in
# the temporary directory. The error limits and sleep are raised or zeroed so that hundreds of
# refused recipients in one session are answered at once instead of slowing down and disconnecting.
MAIN_CF_BASE = """\
compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = all
myhostname = {hostname}
mydestination = $myhostname, localhost
alias_maps =
alias_database =
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
smtpd_authorized_xclient_hosts = 127.0.0.0/8
smtpd_error_sleep_time = 0
smtpd_soft_error_limit = 10000
smtpd_hard_error_limit = 10000
"""

# The second listener answers one question: does $mynetworks, as Postfix evaluates it, contain
# the client? Its relay restrictions permit exactly those clients and reject everyone else.
MASTER_CF_BASE = """\
{listen} inet n - n - - smtpd
{probe} inet n - n - - smtpd
  -o smtpd_relay_restrictions=permit_mynetworks,reject
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
proxymap  unix  - - n -  - proxymap
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


class PrivatePostfix:
    """A Postfix master running one snapshot's export; use as a context manager."""

    def __init__(self, snapshot: dict):
        self.snapshot = snapshot
        self.directory = Path(tempfile.mkdtemp(prefix="relayadmin-postfix-"))
        self.etc = self.directory / "etc"
        self.port = self.mynetworks_port = 0
        self.internal_ports: dict[str, int] = {}  # internal address -> port of its listener

    def __enter__(self) -> PrivatePostfix:
        try:
            self._install()
            self._postfix("start")
            self._wait_for_port()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc_info) -> None:
        # "postfix stop" signals this instance's master by the pid file in its own queue directory.
        if (self.directory / "queue" / "pid" / "master.pid").exists():
            subprocess.run(["postfix", "-c", str(self.etc), "stop"], capture_output=True, check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def in_mynetworks(self, client: str) -> bool:
        """Return whether Postfix counts client in $mynetworks."""
        [answer] = self.rcpt_answers(client, ["user@remote.example.org"], self.mynetworks_port)
        return answer.startswith("250")

    def rcpt_answers(self, client: str, recipients: list[str], port: int | None = None, local: str | None = None):
        """Return smtpd's reply ("250 2.1.5 Ok") to each RCPT TO in one session from client (set by XCLIENT).

        local is an internal address to connect to (its own listener); by default, the main one.
        """
        address = f"IPV6:{client}" if ":" in client else client
        host, port = (local, self.internal_ports[local]) if local else ("127.0.0.1", port or self.port)
        with smtplib.SMTP(host, port, timeout=30) as smtp:
            smtp.ehlo("client.example.org")
            code, text = smtp.docmd("XCLIENT", f"ADDR={address} NAME=[UNAVAILABLE]")
            assert code == 220, (client, code, text)
            smtp.ehlo("client.example.org")
            code, text = smtp.docmd("MAIL FROM:<sender@example.org>")
            assert code == 250, (code, text)
            answers = []
            for recipient in recipients:
                code, text = smtp.docmd(f"RCPT TO:<{recipient}>")
                answers.append(f"{code} {text.decode(errors='replace')}")
            return answers

    def _install(self) -> None:
        self.directory.chmod(0o755)  # the daemons run as postfix and must reach their queue
        (self.etc / "relayadmin").mkdir(parents=True)
        for name in ("queue", "data"):
            (self.directory / name).mkdir()
        shutil.chown(self.directory / "data", "postfix")
        files = render("postfix", self.snapshot, NOW)
        for name, text in files.items():
            (self.etc / "relayadmin" / name).write_text(text)
        self.port, self.mynetworks_port = _free_port(), _free_port()
        base = MAIN_CF_BASE.format(directory=self.directory, hostname=HOSTNAME)
        ours = set(re.findall(r"^(\w+) =", files[MAIN_CF], re.MULTILINE))
        assert not ours & set(re.findall(r"^(\w+) =", base, re.MULTILINE)), (
            "the base must not set the export's parameters"
        )
        (self.etc / "main.cf").write_text(base + "\n" + files[MAIN_CF])
        # The export's internal-address listeners use port 25; here each gets an ephemeral port.
        internal = re.sub(r"^(\[?)([^\s\]]+)(\]?):smtp inet", self._internal_listener, files[MASTER_CF], flags=re.M)
        (self.etc / "master.cf").write_text(
            MASTER_CF_BASE.format(listen=f"127.0.0.1:{self.port}", probe=f"127.0.0.1:{self.mynetworks_port}")
            + "\n"
            + internal
        )
        # Postfix waits for table files younger than two seconds to settle; these are complete.
        past = time.time() - 60
        for path in [self.etc / "main.cf", self.etc / "master.cf", *(self.etc / "relayadmin").iterdir()]:
            os.utime(path, (past, past))

    def _internal_listener(self, match: re.Match) -> str:
        self.internal_ports[match[2]] = port = _free_port()
        return f"{match[1]}{match[2]}{match[3]}:{port} inet"

    def _postfix(self, command: str) -> None:
        result = subprocess.run(["postfix", "-c", str(self.etc), command], capture_output=True, text=True, check=False)
        if result.returncode != 0:
            raise RuntimeError(f"postfix {command} failed ({result.returncode}): {result.stderr}{self._log()}")

    def _wait_for_port(self) -> None:
        deadline = time.monotonic() + 20
        while True:
            try:
                listeners = [
                    ("127.0.0.1", self.port),
                    ("127.0.0.1", self.mynetworks_port),
                    *self.internal_ports.items(),
                ]
                for host, port in listeners:
                    socket.create_connection((host, port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the private postfix did not listen on {self.port}: {self._log()}") from None
                time.sleep(0.05)

    def _log(self) -> str:
        path = self.directory / "maillog"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]
