"""Back up and restore everything relayadmin needs: the database's rows and the secrets under var/.

A backup is one gzipped tar file, written 0600 because it holds secrets:
  manifest.json    format, relayadmin version, time, database vendor, row count and audit anchor
  database.json    every row (dumpdata with natural keys; content types and permissions are
                   rebuilt by migrate), audit entries included with their hashes
  var/secret_key, var/audit_key   the keys in use (from var/ or the environment)
  relayd/...       the bundled relayd's STARTTLS pair and report token, if present

The audit entries keep their ids and hashes, so the restored chain verifies with the restored
audit key, and the snapshots nodes hold still witness it (docs/audit.md).
"""

from __future__ import annotations

import datetime
import io
import json
import os
import re
import tarfile
from dataclasses import dataclass
from pathlib import Path

from django.apps import apps
from django.conf import settings
from django.core import serializers
from django.core.management import call_command
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection, transaction
from django.test.utils import override_settings
from django.utils import timezone

from policy import audit
from policy.models import AuditEntry, PolicyRevision
from relayd.files import write_atomically

FORMAT = 1
# Rebuilt by migrate from the code, and referred to by natural key in the dump.
EXCLUDED = ["contenttypes", "auth.permission", "sessions"]  # app labels and model labels
_SAFE_NAME = re.compile(r"(var|relayd)/[A-Za-z0-9_.-]+(/[A-Za-z0-9_.-]+)*")
_SECRET_FILES = ("secret_key", "audit_key")
_SECRET_SETTINGS = {"secret_key": ("SECRET_KEY", "SECRET_KEY"), "audit_key": ("AUDIT_KEY", "RELAYADMIN_AUDIT_KEY")}


class BackupError(Exception):
    """The backup cannot be written, read or restored; the message says why and what to do."""


@dataclass(frozen=True)
class Restored:
    rows: int
    audit_entries: int
    serial: int | None
    secrets: list[str]


def relayd_dir() -> Path:
    return Path(settings.RELAYD_POLICY_PATH).parent


def write_backup(path: str | os.PathLike) -> dict:
    """Write a backup of the database and the secrets to path (a new file, mode 0600); return its manifest."""
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # One consistent view of every table, however long the dump takes.
            with connection.cursor() as cursor:
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        data = _dump()
        manifest = {
            "format": FORMAT,
            "created_at": timezone.now().isoformat(timespec="seconds"),
            "database": connection.vendor,
            "rows": len(json.loads(data)),
            "audit": audit.anchor(),
            "serial": PolicyRevision.objects.order_by("-serial").values_list("serial", flat=True).first(),
        }
    members = {"manifest.json": json.dumps(manifest, indent=2).encode(), "database.json": data}
    members.update(_secrets())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise BackupError(f"{path} exists: give a new file name (a backup never overwrites one).") from None
    except OSError as exc:
        raise BackupError(f"Cannot write {path}: {exc.strerror}.") from None
    with os.fdopen(fd, "wb") as output, tarfile.open(fileobj=output, mode="w:gz") as archive:
        for name, content in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o600, int(timezone.now().timestamp())
            archive.addfile(info, io.BytesIO(content))
        output.flush()
        os.fsync(output.fileno())
    return manifest


class _ExactEncoder(DjangoJSONEncoder):
    """Write times with their microseconds: the audit HMAC covers them, and DjangoJSONEncoder keeps milliseconds."""

    def default(self, o):
        if isinstance(o, datetime.datetime):
            return o.isoformat()
        return super().default(o)


def _dump() -> bytes:
    """Return every row as loaddata's JSON, models in dependency order, as dumpdata would with natural keys."""
    excluded = set(EXCLUDED)
    app_list = [(config, None) for config in apps.get_app_configs() if config.label not in excluded]
    models = [
        model
        for model in serializers.sort_dependencies(app_list, allow_cycles=True)
        if model._meta.label_lower not in excluded and not model._meta.proxy and model._meta.managed
    ]
    rows = serializers.serialize(
        "python",
        (row for model in models for row in model._base_manager.order_by(model._meta.pk.name).iterator()),
        use_natural_foreign_keys=True,
        use_natural_primary_keys=True,
    )
    return json.dumps(rows, cls=_ExactEncoder, ensure_ascii=False).encode()


def _secrets() -> dict[str, bytes]:
    """Return the secrets to back up, by their name in the archive: the keys in use, and relayd's files."""
    found = {f"var/{name}": getattr(settings, setting).encode() for name, (setting, _) in _SECRET_SETTINGS.items()}
    for name, content in list(found.items()):
        if not content:
            raise BackupError(f"The {name.removeprefix('var/')} is missing: a backup without it could not be verified.")
    directory = relayd_dir()
    for file in [*sorted((directory / "tls").glob("*")), directory / "report.token"]:
        if file.is_file():
            found[f"relayd/{file.relative_to(directory)}"] = file.read_bytes()
    return found


def read_backup(path: str | os.PathLike) -> tuple[dict, bytes, dict[str, bytes]]:
    """Return the manifest, the database rows (JSON) and the secrets of a backup; raise BackupError if unusable."""
    try:
        with tarfile.open(path, mode="r:gz") as archive:
            members = {}
            for member in archive.getmembers():
                content = archive.extractfile(member) if member.isfile() else None
                if content is None or not (member.name in ("manifest.json", "database.json") or _safe(member.name)):
                    raise BackupError(f"{path}: unexpected member {member.name!r}; this is not a relayadmin backup.")
                members[member.name] = content.read()
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(f"Cannot read the backup {path}: {exc}.") from None
    try:
        manifest = json.loads(members.pop("manifest.json"))
        data = members.pop("database.json")
    except (KeyError, ValueError):
        raise BackupError(f"{path} has no manifest or no database: this is not a relayadmin backup.") from None
    if manifest.get("format") != FORMAT:
        raise BackupError(f"{path} is backup format {manifest.get('format')!r}; this relayadmin reads format {FORMAT}.")
    if not all(f"var/{name}" in members for name in _SECRET_FILES):
        raise BackupError(f"{path} lacks the secret key or the audit key: the audit chain could not be verified.")
    return manifest, data, members


def _safe(name: str) -> bool:
    return bool(_SAFE_NAME.fullmatch(name)) and ".." not in name.split("/")


def database_is_empty() -> bool:
    """Return whether the database holds nothing a restore would overwrite (migrate's own rows aside)."""
    from django.contrib.auth import get_user_model

    return not (get_user_model().objects.exists() or PolicyRevision.objects.exists() or AuditEntry.objects.exists())


def restore_backup(path: str | os.PathLike, force: bool = False) -> Restored:
    """Load a backup into this (migrated) database and its secrets into var/; raise BackupError if refused.

    A database that holds users, revisions or audit entries is refused unless force, which wipes it first.
    """
    manifest, data, secrets = read_backup(path)
    audit_key = secrets["var/audit_key"].decode()
    _check_environment(secrets)
    if not database_is_empty():
        if not force:
            raise BackupError(
                "The database is not empty (it has users, revisions or audit entries): restore into a new "
                "database, or give --force to wipe this one first."
            )
        _wipe()
    rows = _load(data)
    written = _write_secrets(secrets)
    # The chain was written with the backed-up key; this process loaded its settings before it was restored.
    with override_settings(AUDIT_KEY=audit_key):
        count = audit.verify_chain([])
    if manifest.get("audit") and count < manifest["audit"]["count"]:
        raise BackupError(f"Only {count} of the backup's {manifest['audit']['count']} audit entries were restored.")
    from policy.revisions import publish_latest

    revision = publish_latest()
    return Restored(rows, count, revision.serial if revision else None, written)


def _check_environment(secrets: dict[str, bytes]) -> None:
    """Refuse when the environment sets a key other than the backed-up one: it would win over var/."""
    for name, (_, variable) in _SECRET_SETTINGS.items():
        value = os.environ.get(variable)
        if value and value != secrets[f"var/{name}"].decode():
            raise BackupError(
                f"{variable} in the environment differs from the backup's {name}: set it to the backed-up value, "
                "or unset it, first."
            )


def _wipe() -> None:
    """Delete every row; PostgreSQL's audit triggers are lifted for it, and put back as they were whatever happens."""
    enabled = _enabled_audit_triggers() if connection.vendor == "postgresql" else []
    _set_triggers(enabled, "DISABLE")
    try:
        call_command("flush", interactive=False, verbosity=0)
    finally:
        _set_triggers(enabled, "ENABLE")


def _enabled_audit_triggers() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT tgname FROM pg_trigger WHERE tgrelid = 'policy_auditentry'::regclass"
            " AND NOT tgisinternal AND tgenabled <> 'D'"
        )
        return [name for (name,) in cursor.fetchall()]


def _set_triggers(names: list[str], action: str) -> None:
    with connection.cursor() as cursor:
        for name in names:
            cursor.execute(f"ALTER TABLE policy_auditentry {action} TRIGGER {connection.ops.quote_name(name)}")


def _load(data: bytes) -> int:
    """Load the rows in one transaction; audit entries go in as they are (inserts pass the append-only trigger)."""
    fixture = Path(settings.VAR_DIR) / f".restore-{os.getpid()}.json"
    fd = os.open(fixture, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as output:
        output.write(data)
    try:
        with transaction.atomic(), audit.loading_backup():
            call_command("loaddata", str(fixture), verbosity=0)
    finally:
        fixture.unlink()
    return len(json.loads(data))


def _write_secrets(secrets: dict[str, bytes]) -> list[str]:
    """Write each secret 0600 into var/ or the relayd directory (the keys only where the environment sets none)."""
    written = []
    for name, content in secrets.items():
        area, _, relative = name.partition("/")
        if area == "var" and relative in _SECRET_SETTINGS and os.environ.get(_SECRET_SETTINGS[relative][1]):
            continue
        target = (Path(settings.VAR_DIR) if area == "var" else relayd_dir()) / relative
        target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        write_atomically(target, content, mode=0o600)
        written.append(str(target))
    return written
