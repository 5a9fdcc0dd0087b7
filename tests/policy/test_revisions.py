"""Revisions: one per committed change, increasing serials, publishing and rollback."""

import json

import pytest
from django.core.management import call_command
from django.urls import reverse

from policy.models import AuditEntry, LocalDomain, PolicyRevision, SmtpUser, TrustedNetwork
from policy.revisions import commit_revision, policy_change, publish_latest, rollback_to

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy_file(settings, tmp_path):
    settings.RELAYD_POLICY_PATH = tmp_path / "relayd" / "policy.json"
    return settings.RELAYD_POLICY_PATH


def published(path):
    return json.loads(path.read_text())


def test_a_web_change_is_one_revision_published_after_commit(
    editor_client, editor, policy_file, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        editor_client.post(
            reverse("policy:restrictions-entry-add", args=["trusted"]), {"address": "10.0.0.0/8", "enabled": "on"}
        )
        editor_client.post(reverse("policy:restrictions"), {"allow_listed_ips": "on", "action": "add-localhost"})
        assert not PolicyRevision.objects.exists()  # a draft is not a change
        editor_client.post(reverse("policy:restrictions"), {"allow_listed_ips": "on", "action": "ok"})
    revision = PolicyRevision.objects.get()
    assert (revision.serial, revision.created_by, revision.source) == (1, editor, "web")
    snapshot = json.loads(revision.snapshot)
    assert [n["network"] for n in snapshot["trusted_networks"]] == ["10.0.0.0/8", "127.0.0.1/32", "::1/128"]
    assert snapshot["restrictions"]["allow_authenticated"] is False
    assert published(policy_file)["serial"] == 1
    assert policy_file.read_text() == revision.snapshot
    assert AuditEntry.objects.filter(action="publish", object_repr="revision 1").count() == 1


def test_serials_grow_and_unchanged_policy_makes_no_revision():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
    with policy_change():
        LocalDomain.objects.create(domain="example.com")
    with policy_change():
        TrustedNetwork.objects.get().save()  # nothing changed
    assert commit_revision() is None
    assert list(PolicyRevision.objects.values_list("serial", flat=True)) == [2, 1]


def test_disabled_and_expired_entries_are_not_exported():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", enabled=False)
        TrustedNetwork.objects.create(network="192.0.2.0/24", expires_at="2020-01-01T00:00:00Z")
        TrustedNetwork.objects.create(network="198.51.100.0/24")
    snapshot = json.loads(PolicyRevision.objects.get().snapshot)
    assert [n["network"] for n in snapshot["trusted_networks"]] == ["198.51.100.0/24"]


def test_publish_command_writes_the_file(policy_file, capsys):
    call_command("publish")
    assert "recorded revision 1" in capsys.readouterr().out
    assert published(policy_file)["trusted_networks"] == []  # the default policy: nobody relays
    LocalDomain.objects.create(domain="example.com")  # outside a change: no revision until committed
    call_command("publish")
    assert "recorded revision 2" in capsys.readouterr().out
    assert published(policy_file)["local_domains"][0]["domain"] == "example.com"
    assert PolicyRevision.objects.get(serial=2).created_by_name == "system: publish"
    policy_file.unlink()
    call_command("publish")
    assert "unchanged since revision 2" in capsys.readouterr().out
    assert published(policy_file)["serial"] == 2


def test_publish_never_replaces_a_newer_file(policy_file):
    with policy_change():
        LocalDomain.objects.create(domain="example.com")
    policy_file.parent.mkdir(parents=True)
    policy_file.write_text(json.dumps({"serial": 7}))
    publish_latest()
    assert published(policy_file) == {"serial": 7}


def test_rollback_restores_the_old_policy_as_a_new_audited_revision():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
        LocalDomain.objects.create(domain="example.com", route="mx.internal:25")
    with policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24")
        LocalDomain.objects.all().delete()
    revision = rollback_to(1)
    assert (revision.serial, revision.rolled_back_to) == (3, 1)
    assert json.loads(revision.snapshot)["trusted_networks"][0]["network"] == "10.0.0.0/8"
    assert not TrustedNetwork.objects.filter(network="192.0.2.0/24").exists()  # exactly revision 1: gone
    assert AuditEntry.objects.filter(action="delete", object_repr="192.0.2.0/24").exists()  # the log keeps it
    assert LocalDomain.objects.get().route == "mx.internal:25"
    assert AuditEntry.objects.filter(action="rollback", object_repr="revision 3").count() == 1
    assert rollback_to(3) is None  # already that policy


def test_rollback_past_an_open_relay_leaves_nothing_behind_and_restores_inactive_entries():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
        TrustedNetwork.objects.create(network="192.0.2.0/24", description="old office", enabled=False)
        account = SmtpUser(username="alice", enabled=False)
        account.set_password("a long secret value")
        account.save()
    with policy_change():
        TrustedNetwork.objects.create(network="0.0.0.0/0", open_relay_override=True)
        TrustedNetwork.objects.filter(network="192.0.2.0/24").delete()
        SmtpUser.objects.all().delete()
    rollback_to(1)
    assert sorted(TrustedNetwork.objects.values_list("network", "enabled", "open_relay_override")) == [
        ("10.0.0.0/8", True, False),
        ("192.0.2.0/24", False, False),
    ]
    assert SmtpUser.objects.get().check_password("a long secret value")
    assert SmtpUser.objects.get().enabled is False
    # Forward again to revision 2: 0.0.0.0/0 comes back with the override it needs.
    rollback_to(2)
    assert TrustedNetwork.objects.get(network="0.0.0.0/0").open_relay_override is True
