"""Keep the actor as text and key the audit chain with an HMAC (issue 11, findings 3 and 4).

Entries named their actor by a foreign key that deleting the user set to NULL: that changed
hashed rows (SQLite: verify_audit reported tampering) or was refused by the append-only
trigger (PostgreSQL: the delete failed). The actor's username is now text, written once.

The chain was plain SHA-256, which anyone who could write the database could recompute after
an edit. Every entry is re-chained here with HMAC-SHA256 under settings.AUDIT_KEY, which lives
outside the database. The legacy chain proved no more than the database's own integrity, so it
is re-keyed as found; links that no longer verified under the legacy hash are counted and
reported, so that an operator sees them before they are sealed.
"""

import hashlib
import json
import sys

from django.db import migrations, models

from policy.audit import GENESIS_HASH, entry_hash

TRIGGER = "policy_auditentry_append_only"


def _legacy_hash(entry) -> str:
    # The hash function of migration 0003 to this one, frozen here.
    payload = {
        "timestamp": entry.timestamp.isoformat(timespec="microseconds"),
        "actor_id": entry.actor_id,
        **{
            name: getattr(entry, name)
            for name in (
                "actor_name",
                "source",
                "remote_addr",
                "request_id",
                "action",
                "object_type",
                "object_id",
                "object_repr",
                "before",
                "after",
                "reason",
                "prev_hash",
            )
        },
    }
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def _username(entry) -> str:
    if entry.actor is not None:
        return entry.actor.username
    if entry.actor_name.startswith("system"):
        return ""
    # The user was deleted: actor_name is "name" or "name (token …)", as it was then.
    return entry.actor_name.split(" (token ")[0]


def _rechain(apps, schema_editor, rehash, fields=("prev_hash", "entry_hash")):
    """Give every entry, in chain order, the hash rehash(entry) returns; rehash may also set other fields."""
    AuditEntry = apps.get_model("policy", "AuditEntry")
    postgres = schema_editor.connection.vendor == "postgresql"
    if postgres:
        # No deferred constraint events may be pending when the table is altered below.
        schema_editor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        schema_editor.execute(f"ALTER TABLE policy_auditentry DISABLE TRIGGER {TRIGGER}")
    prev, batch = GENESIS_HASH, []
    for entry in AuditEntry.objects.select_related("actor").order_by("id").iterator(chunk_size=2000):
        new_hash = rehash(entry, prev)
        entry.prev_hash, entry.entry_hash = prev, new_hash
        prev = new_hash
        batch.append(entry)
        if len(batch) >= 2000:
            AuditEntry.objects.bulk_update(batch, fields)
            batch = []
    AuditEntry.objects.bulk_update(batch, fields)
    if postgres:
        schema_editor.execute(f"ALTER TABLE policy_auditentry ENABLE TRIGGER {TRIGGER}")


def rekey(apps, schema_editor):
    legacy_prev, broken = GENESIS_HASH, []

    def rehash(entry, prev):
        nonlocal legacy_prev
        if entry.prev_hash != legacy_prev or _legacy_hash(entry) != entry.entry_hash:
            broken.append(entry.pk)
        legacy_prev = entry.entry_hash
        entry.actor_username = _username(entry)
        entry.prev_hash = prev
        return entry_hash(entry)

    _rechain(apps, schema_editor, rehash, fields=("actor_username", "prev_hash", "entry_hash"))
    if broken:
        print(
            f"\n  Warning: {len(broken)} audit entries did not verify under the legacy hash before re-keying "
            f"(first: id {broken[0]}). Entries whose user was deleted are expected among them (issue 11).",
            file=sys.stderr,
        )


def unkey(apps, schema_editor):
    # Back to the legacy hash; the actors' foreign keys are gone, so they come back empty.
    def rehash(entry, prev):
        entry.prev_hash = prev
        return _legacy_hash(entry)

    _rechain(apps, schema_editor, rehash)


class Migration(migrations.Migration):
    dependencies = [
        ("policy", "0010_default_blocklists"),
    ]

    operations = [
        migrations.AddField(
            model_name="auditentry",
            name="actor_username",
            field=models.CharField(
                blank=True,
                help_text="The user who acted, as named then; empty for the system.",
                max_length=150,
                verbose_name="actor",
            ),
        ),
        migrations.RunPython(rekey, unkey),
        migrations.RemoveField(
            model_name="auditentry",
            name="actor",
        ),
    ]
