"""Migration 0011 turns a legacy chain, broken by a deleted user, into a keyed chain that verifies."""

import importlib

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from policy.audit import GENESIS_HASH
from policy.models import AuditEntry
from tests.conftest import allow_flushing_the_audit_log

pytestmark = pytest.mark.django_db(transaction=True)

LEGACY = ("policy", "0010_default_blocklists")
legacy_hash = importlib.import_module("policy.migrations.0011_audit_actor_text_hmac")._legacy_hash


def migrate(target=None):
    """Migrate to target, or else to the latest migrations; return the apps as of target."""
    executor = MigrationExecutor(connection)
    targets = [target] if target else executor.loader.graph.leaf_nodes()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_a_legacy_chain_is_rekeyed_with_its_actors_kept_as_text(capsys):
    apps = migrate(LEGACY)
    try:
        User = apps.get_model("auth", "User")
        Entry = apps.get_model("policy", "AuditEntry")
        alice = User.objects.create(username="alice")
        prev = GENESIS_HASH
        rows = [
            (alice.pk, "alice", "create"),
            (None, "bob (token ci)", "delete"),  # bob was deleted: SET_NULL left the hash stale
            (None, "system: publish", "publish"),
        ]
        for actor_id, actor_name, action in rows:
            entry = Entry(
                timestamp=timezone.now(), actor_id=actor_id, actor_name=actor_name, source="web", action=action
            )
            entry.prev_hash = prev
            entry.entry_hash = prev = legacy_hash(entry)
            if actor_name.startswith("bob"):
                entry.actor_id = 9999  # hashed with bob's id, which SET_NULL then removed
                entry.entry_hash = prev = legacy_hash(entry)
                entry.actor_id = None
            entry.save()
    finally:
        migrate()
        allow_flushing_the_audit_log()
    assert "1 audit entries did not verify under the legacy hash" in capsys.readouterr().err
    assert list(AuditEntry.objects.order_by("id").values_list("actor_username", "actor_name")) == [
        ("alice", "alice"),
        ("bob", "bob (token ci)"),
        ("", "system: publish"),
    ]
    call_command("verify_audit")
    assert "3 entries verified" in capsys.readouterr().out
