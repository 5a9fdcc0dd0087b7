"""The bundled relayd as `make run` starts it (runrelay's defaults, XCLIENT included): fixtures for the self-test's
end-to-end and browser tests (a plugin of tests/conftest.py)."""

import smtplib
import subprocess
import sys
from pathlib import Path

import pytest

from policy.management.commands.runrelay import Command as RunRelay
from policy.models import TrustedNetwork
from policy.revisions import policy_change, publish_latest
from tests.e2e.test_dashboard_and_relayd import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def bundled_var(settings, tmp_path):
    settings.RELAYD_POLICY_PATH = tmp_path / "relayd" / "policy.json"
    settings.RELAYD_XCLIENT_SECRET_FILE = tmp_path / "relayd" / "xclient.secret"
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.fixture
def start_bundled_relayd(bundled_var, settings):
    """Return a function that publishes the policy, starts python -m relayd with runrelay's defaults, makes it
    the self-test's default target (settings.RELAYD_SMTP_TARGET) and returns that target."""
    processes = []

    def start(*, xclient: bool = True) -> str:
        publish_latest()
        port = free_port()
        given = ["--listen", f"127.0.0.1:{port}", "--report-url", "off"]
        # Naming --xclient-hosts tells runrelay that XCLIENT is configured by hand: here, not at all.
        args = RunRelay().defaults(given + ([] if xclient else ["--xclient-hosts"]))
        command = [sys.executable, "-m", "relayd", *args, *given]
        command += ["--metrics-listen", "off", "--greet-delay", "0", "--no-delivery"]
        with (bundled_var / f"relayd-{port}.log").open("w") as log:
            processes.append(subprocess.Popen(command, cwd=ROOT, stderr=log))
        wait_for(lambda: _listening(port), timeout=15, interval=0.05)
        settings.RELAYD_SMTP_TARGET = f"127.0.0.1:{port}"
        return settings.RELAYD_SMTP_TARGET

    yield start
    for process in processes:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=1):
            return True
    except OSError:
        return False


def add_localhost():
    """Trust loopback as the dialog's "Add localhost" does."""
    with policy_change():
        TrustedNetwork.objects.create(network="127.0.0.1/32", description="localhost")
        TrustedNetwork.objects.create(network="::1/128", description="localhost")
