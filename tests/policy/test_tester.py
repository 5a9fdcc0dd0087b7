"""The "would this relay?" tester runs relayd's decision on the saved policy and on a draft."""

import pytest
from django.urls import reverse

from policy.models import AuditEntry, LocalDomain, PolicyRevision, RoutingRestrictions, SmtpUser, TrustedNetwork
from policy.revisions import policy_change
from policy.tester import Probe, check

pytestmark = pytest.mark.django_db
RESTRICTIONS = reverse("policy:restrictions")


@pytest.fixture
def policy(editor):
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN", created_by=editor)
        LocalDomain.objects.create(domain="example.com", route="mx.internal:25")
        RoutingRestrictions(allow_internal_addresses=False).save()


@pytest.mark.parametrize(
    ("probe", "allowed", "rule", "reply"),
    [
        (Probe("10.1.2.3", "someone@example.net"), True, "trusted_network", "250 2.1.5"),
        (Probe("::ffff:10.1.2.3", "someone@example.net"), True, "trusted_network", "250 2.1.5"),
        (Probe("192.0.2.1", "someone@example.net"), False, "default_deny", "550 5.7.1"),
        (Probe("192.0.2.1", "someone@EXAMPLE.com."), True, "local_domain", "250 2.1.5"),
        (Probe("192.0.2.1", "someone%example.net@example.com"), False, "sender_routing", "550 5.7.1"),
        (Probe("192.0.2.1", "someone@example.net", authenticated=True), False, "default_deny", "550 5.7.1"),
    ],
)
def test_saved_policy(policy, probe, allowed, rule, reply):
    verdict = check(probe).verdict
    assert (verdict.allowed, verdict.rule) == (allowed, rule)
    assert verdict.reply.startswith(reply)


def test_rule_names_the_entry_and_who_added_it(policy):
    detail = check(Probe("10.1.2.3", "someone@example.net")).verdict.detail
    assert "10.0.0.0/8" in detail
    assert "LAN" in detail
    assert "erin" in detail


def test_authenticated_needs_an_smtp_user(policy):
    assert check(Probe("192.0.2.1", "x@example.net", authenticated=True)).notes
    with policy_change():
        account = SmtpUser(username="alice")
        account.set_password("a long secret value")
        account.save()
    result = check(Probe("192.0.2.1", "x@example.net", authenticated=True))
    assert (result.verdict.allowed, result.verdict.rule, result.notes) == (True, "authenticated", ())


@pytest.mark.parametrize(
    ("probe", "note"),
    [
        (Probe("10.1.2.3", "a@b@example.net"), 'Exim would refuse it: 501, an unquoted "@" in the local part'),
        (Probe("10.1.2.3", "@-x.example:a@example.net"), "Postfix would accept it: it ignores the malformed"),
        (Probe("192.0.2.1", "@-x.example:a@example.com"), "Postfix would accept it: it ignores the malformed"),
    ],
)
def test_tester_says_where_an_export_answers_otherwise(policy, probe, note):
    [said] = check(probe).notes
    assert said.startswith(note)


@pytest.mark.parametrize(
    "probe",
    [
        Probe("192.0.2.1", "a@b@example.net"),  # relayd refuses it too
        Probe("192.0.2.1", "@-x.example:a@example.net"),  # Postfix would refuse the mailbox too
        Probe("192.0.2.1", "<@x.example:a@example.com>"),
        Probe("10.1.2.3", "a.@example.net"),
        Probe("192.0.2.1", '""@example.com'),
    ],
)
def test_tester_adds_nothing_where_the_exports_agree(policy, probe):
    assert check(probe).notes == ()


def test_check_page_shows_export_differences(viewer_client, policy):
    response = viewer_client.get(reverse("policy:check"), {"client": "10.1.2.3", "recipient": "a@b@example.net"})
    assert "Exim would refuse it: 501" in response.content.decode()


def test_check_page(viewer_client, policy):
    response = viewer_client.get(reverse("policy:check"), {"client": "10.1.2.3", "recipient": "a@example.net"})
    assert "250 2.1.5" in response.content.decode()
    response = viewer_client.get(reverse("policy:check"), {"client": "10.1.2.300", "recipient": "a@example.net"})
    assert "octet 300 is out of range" in response.content.decode()


def test_dialog_tests_pending_changes_and_writes_nothing(editor_client, policy):
    revisions, entries = PolicyRevision.objects.count(), AuditEntry.objects.count()
    editor_client.post(
        reverse("policy:restrictions-entry-add", args=["trusted"]), {"address": "192.0.2.0/24", "enabled": "on"}
    )
    response = editor_client.post(
        RESTRICTIONS,
        {"allow_listed_ips": "on", "action": "check", "check-client": "192.0.2.1", "check-recipient": "a@example.net"},
    )
    assert response.context["result"].verdict.allowed is True
    assert "with pending changes" in response.content.decode()
    assert not TrustedNetwork.objects.filter(network="192.0.2.0/24").exists()
    assert (PolicyRevision.objects.count(), AuditEntry.objects.count()) == (revisions, entries)
    assert check(Probe("192.0.2.1", "a@example.net")).verdict.allowed is False  # saved policy unchanged
