"""The self-test as an Internet client: runrelay's relayd offers XCLIENT to the dashboard, which claims an
untrusted address chosen from the policy, so trusting localhost no longer makes the test cry "open relay"."""

import smtplib
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from policy.management.commands.runrelay import Command as RunRelay
from policy.models import DeniedNetwork, TrustedNetwork
from policy.revisions import policy_change, publish_latest
from policy.risks import analyse
from policy.selftests import run_selftest, untrusted_address
from policy.tester import current_snapshot
from relayd.config import compile_policy, validate_snapshot
from tests.e2e.test_dashboard_and_relayd import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db


@pytest.fixture
def var(settings, tmp_path):
    settings.RELAYD_POLICY_PATH = tmp_path / "relayd" / "policy.json"
    settings.RELAYD_XCLIENT_SECRET_FILE = tmp_path / "relayd" / "xclient.secret"
    settings.VAR_DIR = tmp_path
    return tmp_path


@pytest.fixture
def start_relayd(var):
    """Return a function that publishes the policy and starts python -m relayd with runrelay's defaults."""
    processes = []

    def start(*, xclient: bool = True) -> str:
        publish_latest()
        port = free_port()
        given = ["--listen", f"127.0.0.1:{port}", "--report-url", "off"]
        # Naming --xclient-hosts tells runrelay that XCLIENT is configured by hand: here, not at all.
        args = RunRelay().defaults(given + ([] if xclient else ["--xclient-hosts"]))
        command = [sys.executable, "-m", "relayd", *args, *given]
        command += ["--metrics-listen", "off", "--greet-delay", "0", "--no-delivery"]
        log = (var / f"relayd-{port}.log").open("w")
        processes.append(subprocess.Popen(command, cwd=ROOT, stderr=log))
        wait_for(lambda: _listening(port), timeout=15, interval=0.05)
        return f"127.0.0.1:{port}"

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


def test_with_localhost_trusted_the_self_test_is_judged_as_an_internet_client(start_relayd, var):
    add_localhost()
    target = start_relayd()
    secret = var / "relayd" / "xclient.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text().strip()) >= 32
    run = run_selftest(target)
    assert run.error == ""
    assert run.summary == "not an open relay for untrusted clients (0/20), tested as 192.0.2.1"
    assert (run.outcome, run.used_xclient, run.tested_as) == ("safe", True, "192.0.2.1")
    log = next(var.glob("relayd-*.log")).read_text()
    assert "event=xclient" in log and "xclient=127.0.0.1" in log and "client=192.0.2.1" in log


def test_without_xclient_the_result_says_it_proves_nothing(start_relayd):
    add_localhost()
    run = run_selftest(start_relayd(xclient=False))
    assert run.accepted > 0 and not run.used_xclient
    assert run.summary.endswith(
        "tested from 127.0.0.1, which is trusted: this result says nothing about Internet clients"
    )
    assert run.outcome == "inconclusive" and not run.open_relay
    # Evidence that proves nothing is not an open-relay danger.
    assert "selftest_relayed" not in {risk.code for risk in analyse(current_snapshot(), selftest=run)}


def test_a_policy_that_trusts_everyone_is_still_found_open(start_relayd):
    with policy_change():
        TrustedNetwork.objects.create(network="0.0.0.0/1", open_relay_override=True)
        TrustedNetwork.objects.create(network="128.0.0.0/1", open_relay_override=True)
        TrustedNetwork.objects.create(network="2000::/3", open_relay_override=True)
    run = run_selftest(start_relayd())
    assert run.used_xclient and run.open_relay and run.outcome == "open_relay"
    assert run.summary.startswith("OPEN RELAY for untrusted clients (")


def test_the_claimed_address_is_neither_trusted_nor_denied():
    def chosen():
        return untrusted_address(compile_policy(validate_snapshot(current_snapshot())))

    assert chosen() == "192.0.2.1"
    with policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24")
        DeniedNetwork.objects.create(network="198.51.100.0/24")
    assert chosen() == "203.0.113.1"
    with policy_change():
        TrustedNetwork.objects.create(network="203.0.113.0/24")
    assert chosen() == "2001:db8::1"
