"""Relay profiles in the MTA exports (issue 15): Exim's ACL enforces them, Postfix's bundle says what it cannot."""

import pytest

from policy.export import render, spamfilters
from policy.export.exim import ACL
from policy.export.postfix import LIMITS_NOTE
from relayd.config import PROFILES_SCHEMA
from tests.export import NOW, make_snapshot
from tests.export.exim_harness import exim, install, needs_exim, rcpt_answers
from tests.snapshots import network, profile

ALICE_HASH = "pbkdf2_sha256$1000$NaClNaClNaClNaCl$nZQjQjg4q0dZ/pBo6BL7fH3xyVgqXnGIhmjBlaahFNw="


def profiled(networks=(), users=()) -> dict:
    """Return the sample snapshot (10.0.0.0/8 is id 3) plus 10.1.0.0/16 (id 8) and these profiles."""
    snapshot = make_snapshot(
        authenticated=True,
        trusted_networks=[network(3, "10.0.0.0/8", "LAN"), network(8, "10.1.0.0/16", "office")],
        smtp_users=[{"username": "alice", "password_hash": ALICE_HASH}],
    )
    snapshot["schema"] = PROFILES_SCHEMA
    snapshot["profiles"] = {"trusted_networks": list(networks), "smtp_users": list(users)}
    return snapshot


LIMITED = profiled(
    [{"id": 3, **profile(rate_limit_per_hour=100, recipients_per_hour=500, allowed_sender_domains=["example.org"])}],
    [{"username": "alice", **profile(require_tls=True, rate_limit_per_hour=20)}],
)


def test_exim_acl_carries_ratelimits_sender_domains_and_tls_per_holder():
    acl = render("exim", LIMITED, NOW)[ACL]
    # The /8's profile, less the /16 inside it that has its own (no) profile.
    assert "hosts          = <; !10.1.0.0/16 ; 10.0.0.0/8" in acl
    assert "ratelimit      = 100 / 1h / per_mail / relayadmin-messages-net-10.0.0.0-8" in acl
    assert "ratelimit      = 500 / 1h / per_rcpt / relayadmin-recipients-net-10.0.0.0-8" in acl
    assert "!sender_domains = example.org : *.example.org" in acl
    assert "authenticated  = alice" in acl
    assert "ratelimit      = 20 / 1h / per_mail / relayadmin-messages-user-alice" in acl
    # Checked before the relay grant accepts, after our own domains were accepted.
    assert (
        acl.index("accept  domains") < acl.index("ratelimit") < acl.index("accept  acl         = relayadmin_may_relay")
    )


@needs_exim
def test_exim_accepts_the_configuration_with_profiles(tmp_path):
    status, output = exim(install(tmp_path, LIMITED), "-bV")
    assert status == 0, output


@needs_exim
@pytest.mark.parametrize(
    ("allowed", "client", "expected"),
    [
        (["example.org"], "10.2.3.4", "250"),  # the sessions' sender is sender@example.org
        (["corp.example"], "10.2.3.4", "553 5.7.1"),
        (["corp.example"], "10.1.2.3", "250"),  # the /16 inside has no profile: the most specific applies
    ],
)
def test_exim_refuses_relaying_for_a_sender_outside_the_profile(tmp_path, allowed, client, expected):
    config = install(tmp_path, profiled([{"id": 3, **profile(allowed_sender_domains=allowed)}]))
    remote, local = rcpt_answers(config, client, None, ["user@remote.example.org", "user@example.com"])
    assert remote.startswith(expected), remote
    assert local.startswith("250"), local  # our own domains are never limited


@needs_exim
def test_exim_refuses_relaying_in_plaintext_under_require_tls(tmp_path):
    config = install(tmp_path, profiled([{"id": 3, **profile(require_tls=True)}]))
    remote, local = rcpt_answers(config, "10.2.3.4", None, ["user@remote.example.org", "user@example.com"])
    assert remote.startswith("530 5.7.0"), remote
    assert local.startswith("250"), local


def test_postfix_bundle_lists_the_limits_it_cannot_express():
    files = render("postfix", LIMITED, NOW)
    note = files[LIMITS_NOTE]
    assert "10.0.0.0/8" in note and "100 messages/hour" in note
    assert "alice" in note and "TLS only" in note
    # Without profiles there is nothing to list.
    assert LIMITS_NOTE not in render("postfix", make_snapshot(), NOW)


def test_spam_filters_trust_the_relays_trusted_networks_less_the_denied_ones():
    files = render("spamfilters", make_snapshot(), NOW)
    rspamd = [line for line in files[spamfilters.RSPAMD_MAP].splitlines() if line and not line.startswith("#")]
    # 10.0.0.0/8 less 10.66.0.0/16; 2001:db8::/32 less 2001:db8:bad::/48; the expired /24 is gone.
    assert "10.0.0.0/10" in rspamd and "10.64.0.0/15" in rspamd and "10.67.0.0/16" in rspamd
    assert not any(block.startswith("10.66.") for block in rspamd)
    assert "2001:db8::/33" not in rspamd and "2001:db8:bac::/47" not in rspamd
    assert "2001:db8:bae::/47" in rspamd and "192.0.2.0/24" not in rspamd
    spamassassin = files[spamfilters.SPAMASSASSIN].splitlines()
    trusted = next(line for line in spamassassin if line.startswith("trusted_networks "))
    internal = next(line for line in spamassassin if line.startswith("internal_networks "))
    assert trusted.split()[1:] == internal.split()[1:] == rspamd
    assert f"relayadmin/{spamfilters.RSPAMD_MAP}" in files[spamfilters.RSPAMD_OPTIONS]


def test_spam_filters_trust_no_network_while_relaying_by_address_is_off():
    files = render("spamfilters", make_snapshot(listed_ips=False), NOW)
    assert not [line for line in files[spamfilters.RSPAMD_MAP].splitlines() if line and not line.startswith("#")]
    assert not any(line.startswith("trusted_networks") for line in files[spamfilters.SPAMASSASSIN].splitlines())
