"""Every kind of change writes exactly one correct entry, and the chain catches tampering."""

import pytest
from django.contrib.auth.models import Group
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import DatabaseError, connection, transaction
from django.urls import reverse

from policy.audit import audit_context
from policy.models import AuditEntry, LocalDomain, RoutingRestrictions, SmtpUser, TrustedNetwork
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
    assert (entry.actor, entry.actor_name, entry.source) == (editor, "erin", "web")
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
