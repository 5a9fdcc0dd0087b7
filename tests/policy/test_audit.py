"""Every kind of change writes exactly one correct entry, and the chain catches tampering."""

import json

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.test import override_settings
from django.urls import reverse

from policy.audit import GENESIS_HASH, audit_context, entry_hash
from policy.models import (
    ApiToken,
    AuditEntry,
    LocalDomain,
    PolicyRevision,
    RoutingRestrictions,
    SmtpUser,
    TrustedNetwork,
)
from policy.revisions import policy_change
from relayd.config import load_snapshot
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def entries(**filters):
    return list(AuditEntry.objects.filter(**filters).order_by("id"))


def disable_append_only_trigger(cursor):
    """Play an attacker with table-owner rights, who can switch the trigger off."""
    cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # ALTER TABLE refuses while FK checks are pending
    cursor.execute(f"ALTER TABLE {AuditEntry._meta.db_table} DISABLE TRIGGER policy_auditentry_append_only")


def test_create_update_delete_each_write_one_entry_with_before_and_after():
    with audit_context(source="cli", command="test"):
        network = TrustedNetwork(network="10.0.0.0/255.0.0.0", description="LAN")
        network.full_clean()
        network.save()
        network.description = "Head office"
        network.save()
        network.delete()
    create, update, delete = entries(object_type="trusted network")
    assert (create.action, create.before, create.after["network"]) == ("create", None, "10.0.0.0/8")
    assert (update.before["description"], update.after["description"]) == ("LAN", "Head office")
    assert (delete.action, delete.before["description"], delete.after) == ("delete", "Head office", None)
    assert {e.actor_name for e in (create, update, delete)} == {"system: test"}
    assert {e.source for e in (create, update, delete)} == {"cli"}


def test_a_save_that_changes_nothing_is_not_recorded():
    network = TrustedNetwork.objects.create(network="10.0.0.0/8")
    count = AuditEntry.objects.count()
    network.save()
    TrustedNetwork.objects.get().save()
    assert AuditEntry.objects.count() == count


def test_smtp_password_is_never_recorded():
    account = SmtpUser(username="alice")
    account.set_password("first secret value")
    account.save()
    account.set_password("second secret value")
    account.save()
    create, update = entries(object_type="SMTP user")
    for entry in (create, update):
        text = str(entry.before) + str(entry.after)
        assert "pbkdf2" not in text
        assert "secret" not in text
    assert update.before["password_hash"] != update.after["password_hash"]
    assert update.after["password_hash"].startswith("sha256:")


def test_role_change_is_recorded_on_the_user(editor):
    editor.groups.add(Group.objects.get(name="viewer"))
    entry = entries(object_type="user", action="update")[-1]
    assert entry.before["groups"] == ["editor"]
    assert entry.after["groups"] == ["editor", "viewer"]


def test_web_change_records_user_source_address_and_request_id(editor_client, editor):
    editor_client.post(
        reverse("policy:restrictions"),
        {"allow_internal_addresses": "on", "action": "ok"},
        REMOTE_ADDR="192.0.2.9",
        HTTP_X_REQUEST_ID="req-123",
    )
    entry = entries(object_type="routing restrictions")[-1]
    assert (entry.actor_username, entry.actor_name, entry.source) == ("erin", "erin", "web")
    assert (entry.remote_addr, entry.request_id) == ("192.0.2.9", "req-123")
    assert entry.after["allow_internal_addresses"] is True


def test_logins_and_failed_logins_are_recorded(client, editor):
    client.post(reverse("login"), {"username": "erin", "password": "wrong"}, REMOTE_ADDR="198.51.100.7")
    client.post(reverse("login"), {"username": "erin", "password": PASSWORD})
    failed, login = entries(action__in=["login_failed", "login"])
    assert (failed.action, failed.object_repr, failed.remote_addr) == ("login_failed", "erin", "198.51.100.7")
    assert "wrong" not in str(failed.before) + str(failed.after) + failed.object_repr
    assert (login.action, login.actor_name) == ("login", "erin")


def test_orm_refuses_to_change_or_delete_entries():
    RoutingRestrictions(allow_internal_addresses=True).save()
    entry = AuditEntry.objects.get()
    entry.reason = "edited"
    with pytest.raises(PermissionDenied):
        entry.save()
    with pytest.raises(PermissionDenied):
        entry.delete()
    with pytest.raises(PermissionDenied):
        AuditEntry.objects.update(reason="edited")
    with pytest.raises(PermissionDenied):
        AuditEntry.objects.all().delete()


def test_verify_audit_passes_then_catches_a_row_edited_in_sql(capsys):
    LocalDomain.objects.create(domain="example.com")
    LocalDomain.objects.create(domain="example.org")
    call_command("verify_audit")
    assert "2 entries verified" in capsys.readouterr().out

    victim = AuditEntry.objects.order_by("id").first()
    table = AuditEntry._meta.db_table
    if connection.vendor == "postgresql":
        # The database refuses it too; the chain check is the second line of defence.
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(f"UPDATE {table} SET object_repr = %s WHERE id = %s", ["evil.example", victim.pk])
        with connection.cursor() as cursor:
            disable_append_only_trigger(cursor)
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {table} SET object_repr = %s WHERE id = %s", ["evil.example", victim.pk])
    with pytest.raises(CommandError, match=f"Broken link at entry {victim.pk}"):
        call_command("verify_audit")


def test_verify_audit_catches_a_deleted_row():
    for name in ("a.example", "b.example", "c.example"):
        LocalDomain.objects.create(domain=name)
    middle = AuditEntry.objects.order_by("id")[1]
    table = AuditEntry._meta.db_table
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            disable_append_only_trigger(cursor)
        cursor.execute(f"DELETE FROM {table} WHERE id = %s", [middle.pk])
    with pytest.raises(CommandError, match="deleted, inserted or reordered"):
        call_command("verify_audit")


# Issue 11, finding 3: users, tokens and objects may go away; their entries stay verifiable.


def test_deleting_users_tokens_and_objects_keeps_the_chain_verifiable(client, superuser, editor, capsys):
    with audit_context(source="web", user=editor):
        network = TrustedNetwork.objects.create(network="10.0.0.0/8")
        token = ApiToken(user=editor, name="ci")
        token.generate_key()
        token.save()
    with audit_context(source="web", user=editor, token="ci"):
        network.delete()
    token.delete()
    client.force_login(superuser)
    # Through the admin, as a superuser does it: on PostgreSQL this was a 500 (issue 11).
    response = client.post(reverse("admin:auth_user_delete", args=[editor.pk]), {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(username="erin").exists()
    create, delete = entries(object_type="trusted network")
    assert (create.actor_username, create.actor_name) == ("erin", "erin")
    assert (delete.actor_username, delete.actor_name) == ("erin", "erin (token ci)")
    assert entries(object_type="user", action="delete")[-1].before["username"] == "erin"
    call_command("verify_audit")
    assert "entries verified" in capsys.readouterr().out


# Issue 11, finding 4: a keyed chain, and published snapshots as witnesses of its head.


def publish(tmp_path, domain):
    """Change the policy as one revision, and keep its snapshot as a relayd node would; return the file."""
    with policy_change():
        LocalDomain.objects.create(domain=domain)
    revision = PolicyRevision.objects.order_by("-serial").first()
    path = tmp_path / f"policy-{revision.serial}.json"
    path.write_text(revision.snapshot)
    return path


def run_sql(sql, params=()):
    """Play an attacker with table-owner rights on the database (but not the audit key)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            disable_append_only_trigger(cursor)
        cursor.execute(sql, params)


def rechain(edit, key=None):
    """Edit the entries with edit(rows), then recompute the chain with the project's own hash function and key."""
    rows = list(AuditEntry.objects.order_by("id"))
    edit(rows)
    with override_settings(**({"AUDIT_KEY": key} if key else {})):
        prev = GENESIS_HASH
        for row in rows:
            row.prev_hash = prev
            row.entry_hash = prev = entry_hash(row)
    for row in rows:
        run_sql(
            f"UPDATE {AuditEntry._meta.db_table} SET object_repr = %s, prev_hash = %s, entry_hash = %s WHERE id = %s",
            [row.object_repr, row.prev_hash, row.entry_hash, row.pk],
        )


def first_repr(rows):
    rows[0].object_repr = "evil.example"


def test_each_published_snapshot_carries_the_audit_anchor_and_relayd_accepts_it(tmp_path):
    path = publish(tmp_path, "a.example")
    snapshot = load_snapshot(path)
    create = AuditEntry.objects.get(action="create")
    # The anchor is the chain as the revision committed, just before the revision's own "publish" entry.
    assert snapshot.audit == (1, create.entry_hash)
    assert AuditEntry.objects.order_by("id").last().action == "publish"


def test_the_chain_is_keyed_so_recomputing_it_without_the_key_is_caught():
    LocalDomain.objects.create(domain="a.example")
    LocalDomain.objects.create(domain="b.example")
    first = AuditEntry.objects.order_by("id").first()
    rechain(first_repr, key="the attacker's guess")
    with pytest.raises(CommandError, match=f"Broken link at entry {first.pk}.*contents were changed"):
        call_command("verify_audit")


def test_verify_audit_against_a_snapshot_catches_deleted_newest_entries(tmp_path, capsys):
    publish(tmp_path, "a.example")
    witness = publish(tmp_path, "b.example")
    LocalDomain.objects.create(domain="c.example")  # after the witness: it only vouches for what it saw
    call_command("verify_audit", "--against", str(witness))
    assert "matches 2 published anchor(s)" in capsys.readouterr().out

    witnessed = json.loads(witness.read_text())["audit"]["count"]
    newest = AuditEntry.objects.order_by("id")[witnessed - 2 :]  # the last two the witness saw, and later ones
    run_sql(f"DELETE FROM {AuditEntry._meta.db_table} WHERE id >= %s", [newest[0].pk])
    with pytest.raises(CommandError, match=f"holds {witnessed - 2} entries, but the latest revision"):
        call_command("verify_audit")
    # The attacker removes the revisions too: the node's copy of the snapshot still tells.
    run_sql(f"DELETE FROM {PolicyRevision._meta.db_table}")
    call_command("verify_audit")
    with pytest.raises(
        CommandError, match=f"but {witness} \\(serial 2\\) witnessed {witnessed}: .*deleted from its end"
    ):
        call_command("verify_audit", "--against", str(witness))


def test_verify_audit_against_a_snapshot_catches_deleting_every_entry(tmp_path):
    witness = publish(tmp_path, "a.example")
    run_sql(f"DELETE FROM {AuditEntry._meta.db_table}")
    run_sql(f"DELETE FROM {PolicyRevision._meta.db_table}")
    with pytest.raises(CommandError, match=r"holds 0 entries, but .* witnessed 1"):
        call_command("verify_audit", "--against", str(witness))


def test_verify_audit_against_a_snapshot_catches_a_rewrite_even_with_the_key(tmp_path):
    witness = publish(tmp_path, "a.example")
    rechain(first_repr)  # an insider with the key: the database alone now looks intact
    run_sql(f"DELETE FROM {PolicyRevision._meta.db_table}")
    call_command("verify_audit")
    with pytest.raises(CommandError, match=r"entry number 1, .* is not the one .* witnessed: the log was rewritten"):
        call_command("verify_audit", "--against", str(witness))


def edited(change):
    """Return a function that edits the snapshot file at a path with change(snapshot)."""

    def edit(path):
        snapshot = json.loads(path.read_text())
        change(snapshot)
        path.write_text(json.dumps(snapshot))

    return edit


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        (lambda path: path.unlink(), "Cannot read the snapshot"),
        (lambda path: path.write_text("{not json"), "is not a JSON snapshot"),
        (edited(lambda snapshot: snapshot.pop("restrictions")), "would accept: restrictions: missing"),
        (edited(lambda snapshot: snapshot.pop("audit")), r"\(serial 1\) carries no audit anchor"),
        (
            edited(lambda snapshot: snapshot["audit"].update(count=-1)),
            "would accept: audit.count: must be a non-negative integer",
        ),
    ],
    ids=["missing", "not-json", "not-a-snapshot", "no-anchor", "bad-anchor"],
)
def test_verify_audit_refuses_an_unusable_witness(tmp_path, spoil, problem):
    path = publish(tmp_path, "a.example")
    spoil(path)
    with pytest.raises(CommandError, match=problem):
        call_command("verify_audit", "--against", str(path))


@pytest.mark.skipif(not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"), reason="PostgreSQL only")
def test_postgresql_refuses_truncate():
    LocalDomain.objects.create(domain="a.example")
    with connection.cursor() as cursor:
        # tests/conftest.py switched the trigger off for the suite's own flushes; this transaction restores it.
        cursor.execute(f"ALTER TABLE {AuditEntry._meta.db_table} ENABLE TRIGGER policy_auditentry_no_truncate")
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic():
            cursor.execute(f"TRUNCATE {AuditEntry._meta.db_table}")
    assert AuditEntry.objects.count() == 1


def test_the_audit_key_is_made_once_outside_the_database_unless_the_environment_gives_it(tmp_path, monkeypatch):
    from relayadmin import settings as module

    monkeypatch.setattr(module, "VAR_DIR", tmp_path)
    monkeypatch.delenv("RELAYADMIN_AUDIT_KEY", raising=False)
    key = module._load_or_create_secret("RELAYADMIN_AUDIT_KEY", "audit_key")
    assert len(key) >= 50
    assert (tmp_path / "audit_key").stat().st_mode & 0o777 == 0o600
    assert module._load_or_create_secret("RELAYADMIN_AUDIT_KEY", "audit_key") == key
    monkeypatch.setenv("RELAYADMIN_AUDIT_KEY", "from the secret store")
    assert module._load_or_create_secret("RELAYADMIN_AUDIT_KEY", "audit_key") == "from the secret store"


def test_a_read_only_var_without_the_audit_key_leaves_it_missing_instead_of_failing_to_start(tmp_path, monkeypatch):
    """The verify-audit unit mounts var/ read-only: loading the settings there must not need to write a key."""
    import errno
    import os

    from relayadmin import settings as module

    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")

    monkeypatch.setattr(module, "VAR_DIR", tmp_path)
    monkeypatch.delenv("RELAYADMIN_AUDIT_KEY", raising=False)
    monkeypatch.setattr(os, "open", read_only)
    assert module._load_or_create_secret("RELAYADMIN_AUDIT_KEY", "audit_key") == ""
    assert not (tmp_path / "audit_key").exists()


def test_verify_audit_without_the_audit_key_says_how_to_fix_it():
    TrustedNetwork.objects.create(network="192.0.2.0/24")
    with override_settings(AUDIT_KEY=""), pytest.raises(CommandError, match="audit key is missing: set RELAYADMIN"):
        call_command("verify_audit")


def test_nothing_is_hashed_with_an_empty_audit_key():
    with override_settings(AUDIT_KEY=""), pytest.raises(Exception, match="audit key is missing"):
        TrustedNetwork.objects.create(network="192.0.2.0/24")


def test_verify_audit_never_keeps_an_audit_key_it_had_to_generate(tmp_path):
    """A key generated on loading the settings cannot have written the log: it is a lost key, not a broken chain."""
    TrustedNetwork.objects.create(network="192.0.2.0/24")
    (tmp_path / "audit_key").write_text("generated just now\n")
    generated = override_settings(GENERATED_SECRETS={"audit_key"}, VAR_DIR=tmp_path, AUDIT_KEY="generated just now")
    with generated, pytest.raises(CommandError, match="var/audit_key did not exist"):
        call_command("verify_audit")
    assert not (tmp_path / "audit_key").exists()
    with override_settings(GENERATED_SECRETS=set()):
        call_command("verify_audit")  # with the key the log was written with, kept from an earlier start
