"""The self-test as an Internet client: runrelay's relayd offers XCLIENT to the dashboard, which claims an
untrusted address chosen from the policy, so trusting localhost no longer makes the test cry "open relay"."""

import stat

import pytest

from policy.models import DeniedNetwork, TrustedNetwork
from policy.revisions import policy_change
from policy.risks import analyse
from policy.selftests import run_selftest, untrusted_address
from policy.tester import current_snapshot
from relayd.config import compile_policy, validate_snapshot
from tests.e2e.bundled import add_localhost

pytestmark = pytest.mark.django_db


def test_with_localhost_trusted_the_self_test_is_judged_as_an_internet_client(start_bundled_relayd, bundled_var):
    add_localhost()
    target = start_bundled_relayd()
    secret = bundled_var / "relayd" / "xclient.secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600 and len(secret.read_text().strip()) >= 32
    run = run_selftest(target)
    assert run.error == ""
    assert run.summary == "not an open relay for untrusted clients (0/20), tested as 192.0.2.1"
    assert (run.outcome, run.used_xclient, run.tested_as) == ("safe", True, "192.0.2.1")
    log = next(bundled_var.glob("relayd-*.log")).read_text()
    assert "event=xclient" in log and "xclient=127.0.0.1" in log and "client=192.0.2.1" in log


def test_without_xclient_the_result_says_it_proves_nothing(start_bundled_relayd):
    add_localhost()
    run = run_selftest(start_bundled_relayd(xclient=False))
    assert run.accepted > 0 and not run.used_xclient
    assert run.summary.endswith(
        "tested from 127.0.0.1, which is trusted: this result says nothing about Internet clients"
    )
    assert run.outcome == "inconclusive" and not run.open_relay
    # Evidence that proves nothing is not an open-relay danger.
    assert "selftest_relayed" not in {risk.code for risk in analyse(current_snapshot(), selftest=run)}


def test_a_policy_that_trusts_everyone_is_still_found_open(start_bundled_relayd):
    with policy_change():
        TrustedNetwork.objects.create(network="0.0.0.0/1", open_relay_override=True)
        TrustedNetwork.objects.create(network="128.0.0.0/1", open_relay_override=True)
        TrustedNetwork.objects.create(network="2000::/3", open_relay_override=True)
    run = run_selftest(start_bundled_relayd())
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
