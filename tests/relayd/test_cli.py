"""python -m relayd: option precedence, signals (SIGHUP reload, SIGTERM drain), no Django, and aiosmtpd set-up."""

import json
import os
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from aiosmtpd.smtp import SMTP

from relayd.cli import load_settings
from relayd.session import RelaySession
from relayd.settings import Settings
from tests.relayd.conftest import policy, publish, send
from tests.snapshots import network

ROOT = Path(__file__).resolve().parents[2]


def test_command_line_beats_environment_beats_config_file_beats_defaults(tmp_path):
    config = tmp_path / "relayd.toml"
    config.write_text(
        'policy = "/from/config.json"\nspool = "/var/spool/relayd"\nmax-recipients = 5\ncommand-timeout = 60\n'
        'listen = ["127.0.0.1:25", "[::1]:25"]\n'
    )
    environment = {"RELAYD_CONFIG": str(config), "RELAYD_MAX_RECIPIENTS": "6", "RELAYD_DELIVERY": "no"}
    settings = load_settings(["--max-recipients", "7"], environment)
    assert settings.max_recipients == 7
    assert settings.command_timeout == 60.0 and settings.listen == ["127.0.0.1:25", "[::1]:25"]
    assert settings.policy == Path("/from/config.json") and settings.delivery is False
    assert settings.max_message_size == Settings.__dataclass_fields__["max_message_size"].default
    assert load_settings([], environment).max_recipients == 6
    environment["RELAYD_LISTEN"] = "127.0.0.2:25, [::]:25"
    assert load_settings(["--listen", "127.0.0.3:25"], environment).listen == ["127.0.0.3:25"]
    assert load_settings([], environment).listen == ["127.0.0.2:25", "[::]:25"]


@pytest.mark.parametrize(
    ("arguments", "environment", "message"),
    [
        ([], {}, "--policy and --spool are required"),
        (["--policy", "p", "--spool", "s", "--listen", "localhost:25"], {}, "listen on an IP address"),
        (["--policy", "p", "--spool", "s"], {"RELAYD_MAX_RECIPIENTS": "many"}, "RELAYD_MAX_RECIPIENTS"),
        (["--policy", "p", "--spool", "s", "--tls-cert", "c"], {}, "go together"),
    ],
)
def test_invalid_options_exit_with_a_message(arguments, environment, message, capsys):
    with pytest.raises(SystemExit):
        load_settings(arguments, environment)
    assert message in capsys.readouterr().err


def test_unknown_config_key_is_refused(tmp_path, capsys):
    config = tmp_path / "relayd.toml"
    config.write_text('policy = "p"\nspool = "s"\nmax-recipient = 5\n')
    with pytest.raises(SystemExit):
        load_settings(["--config", str(config)], {})
    assert "unknown option 'max-recipient'" in capsys.readouterr().err


def test_relayd_never_imports_django():
    code = (
        "import sys, relayd.cli, relayd.daemon, relayd.runner, relayd.spool_writer;"
        "sys.exit(any(name.split('.')[0] == 'django' for name in sys.modules))"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_session_sets_up_everything_aiosmtpd_would():
    # RelaySession replaces SMTP.__init__ for speed; an aiosmtpd upgrade that adds state must not go unnoticed.
    import asyncio

    loop = asyncio.new_event_loop()
    settings = SimpleNamespace(hostname="relay.test", command_timeout=300.0)
    session = RelaySession(SimpleNamespace(loop=loop, settings=settings, tls_context=None))
    reference = SMTP(object(), hostname="relay.test", loop=loop)
    # The command table is a property of RelaySession (made at each lookup, so that it holds no reference cycle).
    assert vars(reference).keys() - vars(session).keys() == {"_smtp_methods"}
    # XCLIENT is relayd's own addition (relayd/clientaddr.py).
    assert set(reference._smtp_methods) | {"XCLIENT"} == {name for name, _ in session._smtp_methods.items()}
    assert set(reference._auth_methods) == set(session._auth_methods)
    loop.close()


@pytest.fixture
def daemon(tmp_path):
    """Start python -m relayd on a free port; return (process, port, policy path); stop it after."""
    policy_path = tmp_path / "policy.json"
    publish(policy_path, policy(serial=1))
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "relayd", "--policy", str(policy_path), "--spool", str(tmp_path / "spool")),
            *("--listen", "127.0.0.1:0", "--metrics-listen", "off", "--greet-delay", "0", "--no-delivery"),
            *("--poll-interval", "60", "--shutdown-grace", "5"),
        ],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    port = None
    for line in process.stderr:
        if "event=listening" in line:
            port = int(line.rpartition(":")[2])
        if "event=started" in line:
            break
    yield process, port, policy_path
    if process.poll() is None:
        process.kill()
    process.wait()


def test_sighup_reloads_at_once(daemon):
    process, port, policy_path = daemon
    publish(policy_path, policy(serial=2, trusted_networks=[network(1, "127.0.0.1/32")]))
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("client.test")
        assert send(client, "a@client.test", "<bob@remote.test>")[0][0] == 550  # polling every 60 s
        process.send_signal(signal.SIGHUP)
        deadline = time.monotonic() + 1
        while send(client, "a@client.test", "<bob@remote.test>")[0][0] != 250:
            assert time.monotonic() < deadline
            time.sleep(0.02)


def test_sigterm_finishes_the_transaction_in_flight_then_exits(daemon):
    process, port, policy_path = daemon
    busy = smtplib.SMTP("127.0.0.1", port, timeout=10)
    busy.ehlo("client.test")
    busy.docmd("MAIL FROM:<a@client.test>")
    busy.docmd("RCPT TO:<bob@example.com>")
    idle = smtplib.SMTP("127.0.0.1", port, timeout=10)
    idle.ehlo("client.test")
    process.send_signal(signal.SIGTERM)
    assert idle.getreply() == (421, b"4.3.2 Service shutting down, try again later")
    assert busy.data(b"Subject: last\r\n\r\nbye\r\n")[0] == 250
    assert busy.getreply()[0] == 421
    assert process.wait(5) == 0
    with pytest.raises(ConnectionRefusedError):
        smtplib.SMTP("127.0.0.1", port, timeout=2)
    queued = list((Path(policy_path).parent / "spool" / "queue").glob("*.msg"))
    assert len(queued) == 1 and json.loads(queued[0].read_bytes().partition(b"\n")[0])["mail_from"] == "a@client.test"
    assert os.path.getsize(queued[0]) > 0
