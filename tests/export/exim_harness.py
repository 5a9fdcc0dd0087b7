"""Run Exim on an export without installing or starting it: exim -bh (a fake SMTP session through the ACLs), -bt, -bV.

Debian's exim4 packages conflict with postfix, which the Postfix tests need, so `make test` unpacks
Exim into .cache/exim instead of installing it (tools/exim-for-tests.sh).
"""

import os
import pwd
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from policy.export import render
from policy.export.exim import ACL, MAIN, ROUTER
from tests.export import NOW

# `make test` unpacks Debian's Exim into .cache/exim (tools/exim-for-tests.sh); an installed one works too.
UNPACKED_EXIM = Path(__file__).resolve().parents[2] / ".cache" / "exim" / "bin"
EXIM = next(
    filter(
        None,
        (
            shutil.which(name, path=f"{UNPACKED_EXIM}:{os.environ.get('PATH', '')}:/usr/sbin")
            for name in ("exim4", "exim")
        ),
    ),
    None,
)
needs_exim = pytest.mark.skipif(EXIM is None, reason="Exim is missing: run tools/exim-for-tests.sh (make test does)")


def install(tmp_path, snapshot, main_options=""):
    """Write an export and a minimal Exim configuration that includes it as its instructions say.

    The configuration defines no named list of its own: the export must define every list it uses.
    main_options are further main-section settings.
    """
    (tmp_path / "relayadmin").mkdir()
    for name, text in render("exim", snapshot, NOW).items():
        (tmp_path / "relayadmin" / name).write_text(text)
    for name in ("spool", "log"):
        (tmp_path / name).mkdir()
    user = pwd.getpwuid(os.getuid()).pw_name
    config = tmp_path / "exim.conf"
    config.write_text(
        f"""\
spool_directory = {tmp_path}/spool
log_file_path = {tmp_path}/log/%slog
exim_user = {user}
exim_group = {os.getgid()}
primary_hostname = relay.example.net
acl_smtp_rcpt = acl_check_rcpt
{main_options}
.include {tmp_path}/relayadmin/{MAIN}

begin acl
.include {tmp_path}/relayadmin/{ACL}

acl_check_rcpt:
  require acl = relayadmin_check_rcpt
  accept

begin routers
.include {tmp_path}/relayadmin/{ROUTER}

begin transports
remote_smtp:
  driver = smtp
"""
    )
    return config


def exim(config, *args, stdin=""):
    result = subprocess.run([EXIM, "-C", str(config), *args], input=stdin, capture_output=True, text=True, check=False)
    return result.returncode, result.stdout + result.stderr


def rcpt_replies(config, client, local, recipients):
    """Return Exim's reply code to each RCPT TO in a fake SMTP session (exim -bh) from client to local."""
    return [int(line[:3]) for line in rcpt_answers(config, client, local, recipients)]


def rcpt_answers(config, client, local, recipients):
    """Return Exim's final reply line to each RCPT TO in a fake SMTP session (exim -bh) from client to local."""
    session = ["EHLO client.example.org", "MAIL FROM:<sender@example.org>"]
    session += [f"RCPT TO:<{recipient}>" for recipient in recipients]
    session.append("QUIT")
    interface = ["-oMi", local] if local else []
    _, output = exim(config, *interface, "-bh", client, stdin="\r\n".join(session) + "\r\n")
    replies = [line for line in output.splitlines() if re.match(r"\d{3}[ -]", line)]
    # After the greeting, EHLO (multi-line) and MAIL: one final reply per RCPT.
    finals = [line for line in replies if line[3] == " "]
    answers = finals[3 : 3 + len(recipients)]
    assert len(answers) == len(recipients), output
    return answers
