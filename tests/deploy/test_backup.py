"""manage.py backup and restore: back up, wipe, restore, and the audit chain still verifies (issue 17).

Run on SQLite by default and on PostgreSQL with DATABASE_URL=postgres://... (the append-only and
no-TRUNCATE triggers are in force there).
"""

import os
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth import authenticate
from django.core.management import CommandError, call_command
from django.db import connection

from policy.audit import audit_context
from policy.backup import _wipe
from policy.models import ApiToken, AuditEntry, Blocklist, LocalDomain, PolicyRevision, TrustedNetwork, WatchedAddress
from policy.revisions import policy_change, publish_latest
from tests.api.conftest import issue_token
from tests.conftest import PASSWORD, make_user

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def var_dir(tmp_path, settings, monkeypatch):
    """Give the test a var/ of its own, with the keys and relayd files a real one has."""
    var = tmp_path / "var"
    (var / "relayd" / "tls").mkdir(parents=True)
    (var / "secret_key").write_text(settings.SECRET_KEY)
    (var / "audit_key").write_text(settings.AUDIT_KEY)
    (var / "relayd" / "tls" / "key.pem").write_text("-----BEGIN PRIVATE KEY-----\nnot really\n")
    (var / "relayd" / "report.token").write_text("node token\n")
    settings.VAR_DIR = var
    settings.RELAYD_POLICY_PATH = var / "relayd" / "policy.json"
    monkeypatch.delenv("RELAYADMIN_AUDIT_KEY", raising=False)
    monkeypatch.delenv("SECRET_KEY", raising=False)
    return var


def make_policy():
    editor = make_user("editor", "Editor")
    issue_token(editor, name="nodes", read_only=True)
    with audit_context(source="cli", command="test"):
        with policy_change():
            TrustedNetwork.objects.create(network="192.0.2.0/24", description="office")
        with policy_change():
            LocalDomain.objects.create(domain="example.com")
        Blocklist.objects.create(zone="zen.example.test")
        WatchedAddress.objects.create(address="198.51.100.25")
    publish_latest()


def state():
    """Return what must survive a backup and restore, as plain data."""
    return {
        "revisions": list(PolicyRevision.objects.order_by("serial").values_list("serial", "sha256", "snapshot")),
        "audit": list(AuditEntry.objects.order_by("id").values_list("id", "prev_hash", "entry_hash")),
        "networks": list(TrustedNetwork.objects.values_list("network", "description")),
        "domains": list(LocalDomain.objects.values_list("domain", flat=True)),
        "tokens": list(ApiToken.objects.values_list("name", "digest", "read_only")),
        "blocklists": list(Blocklist.objects.values_list("zone", flat=True)),
        "watched": list(WatchedAddress.objects.values_list("address", flat=True)),
    }


def verify_audit_in_a_new_process(var: Path) -> subprocess.CompletedProcess:
    """Run manage.py verify_audit as the timer does: a new process that reads var/ and this test database."""
    database = connection.settings_dict
    if connection.vendor == "postgresql":
        url = f"postgres://{database['USER']}@{database['HOST']}:{database['PORT']}/{database['NAME']}"
    else:
        url = f"sqlite:///{database['NAME']}"
    environment = {
        **{key: value for key, value in os.environ.items() if not key.startswith(("DJANGO", "RELAYADMIN_AUDIT"))},
        "DATABASE_URL": url,
        "RELAYADMIN_VAR_DIR": str(var),
        "DJANGO_SETTINGS_MODULE": "relayadmin.settings",
    }
    command = [sys.executable, "manage.py", "verify_audit"]
    return subprocess.run(command, cwd=ROOT, env=environment, capture_output=True, text=True, timeout=120)


def test_backup_wipe_restore_keeps_policy_revisions_and_a_verifiable_audit_chain(var_dir, tmp_path):
    make_policy()
    before = state()
    assert len(before["revisions"]) == 2 and len(before["audit"]) >= 6
    secrets_before = {name: (var_dir / name).read_bytes() for name in ("secret_key", "audit_key")}
    backup = tmp_path / "relayadmin.tar.gz"

    call_command("backup", str(backup))
    assert backup.stat().st_mode & 0o777 == 0o600
    with tarfile.open(backup) as archive:
        names = set(archive.getnames())
    assert {"manifest.json", "database.json", "var/secret_key", "var/audit_key"} <= names
    assert {"relayd/tls/key.pem", "relayd/report.token"} <= names

    # A fresh start: an empty database, and a var/ whose keys and relayd files are gone.
    _wipe()
    for name in ("secret_key", "audit_key", "relayd/tls/key.pem", "relayd/report.token", "relayd/policy.json"):
        (var_dir / name).unlink()
    assert not PolicyRevision.objects.exists()

    call_command("restore", str(backup))
    assert state() == before
    for name, content in secrets_before.items():
        assert (var_dir / name).read_bytes().strip() == content.strip()
        assert (var_dir / name).stat().st_mode & 0o777 == 0o600
    assert (var_dir / "relayd" / "tls" / "key.pem").stat().st_mode & 0o777 == 0o600
    assert (var_dir / "relayd" / "report.token").read_text() == "node token\n"
    assert authenticate(username="editor", password=PASSWORD) is not None
    # The bundled relayd's policy file is the latest revision again.
    assert (var_dir / "relayd" / "policy.json").read_text() == before["revisions"][-1][2]

    verified = verify_audit_in_a_new_process(var_dir)
    assert verified.returncode == 0, verified.stderr
    assert f"Audit chain intact: {len(before['audit'])} entries verified" in verified.stdout

    # The chain goes on: a change after the restore appends to it, and it still verifies.
    with override_audit_key(var_dir), policy_change():
        LocalDomain.objects.create(domain="example.org")
    verified = verify_audit_in_a_new_process(var_dir)
    assert verified.returncode == 0, verified.stderr


def override_audit_key(var_dir):
    from django.test import override_settings

    return override_settings(AUDIT_KEY=(var_dir / "audit_key").read_text().strip())


def test_restore_refuses_a_database_with_data_unless_forced(var_dir, tmp_path):
    make_policy()
    backup = tmp_path / "relayadmin.tar.gz"
    call_command("backup", str(backup))
    with policy_change():
        LocalDomain.objects.create(domain="added-after-the-backup.test")
    with pytest.raises(CommandError, match="The database is not empty"):
        call_command("restore", str(backup))
    assert LocalDomain.objects.filter(domain="added-after-the-backup.test").exists()

    call_command("restore", str(backup), force=True)
    assert not LocalDomain.objects.filter(domain="added-after-the-backup.test").exists()
    assert verify_audit_in_a_new_process(var_dir).returncode == 0
    if connection.vendor == "postgresql":
        # The wipe lifted the audit triggers only for itself.
        with connection.cursor() as cursor:
            cursor.execute("SELECT tgname, tgenabled FROM pg_trigger WHERE tgname = 'policy_auditentry_append_only'")
            assert cursor.fetchall() == [("policy_auditentry_append_only", "O")]


def test_backup_never_overwrites_a_file(var_dir, tmp_path):
    existing = tmp_path / "kept.tar.gz"
    existing.write_text("something else")
    with pytest.raises(CommandError, match="exists: give a new file name"):
        call_command("backup", str(existing))
    assert existing.read_text() == "something else"


def test_restore_refuses_an_archive_that_is_not_a_backup(var_dir, tmp_path):
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as archive:
        payload = tmp_path / "payload"
        payload.write_text("x")
        archive.add(payload, arcname="var/../../etc/evil")
    with pytest.raises(CommandError, match="unexpected member"):
        call_command("restore", str(bad))
    (tmp_path / "junk.tar.gz").write_text("not a tar")
    with pytest.raises(CommandError, match="Cannot read the backup"):
        call_command("restore", str(tmp_path / "junk.tar.gz"))


def test_restore_refuses_an_environment_audit_key_other_than_the_backup(var_dir, tmp_path, monkeypatch):
    make_policy()
    backup = tmp_path / "relayadmin.tar.gz"
    call_command("backup", str(backup))
    _wipe()
    monkeypatch.setenv("RELAYADMIN_AUDIT_KEY", "another key")
    with pytest.raises(CommandError, match="RELAYADMIN_AUDIT_KEY in the environment differs"):
        call_command("restore", str(backup))
    assert not PolicyRevision.objects.exists()
    assert var_dir == settings.VAR_DIR
