"""bulk_write stores every column exactly as Django's bulk_create would, ids in list order."""

import datetime
import zoneinfo

import pytest
from django.db import connection
from django.utils import timezone

from policy import bulk_write
from policy.models import AuditEntry, TrustedNetwork

pytestmark = pytest.mark.django_db


def stored(model, objs, *, leaving_out=()) -> list[dict]:
    """Return the objects' rows as the database holds them, by column, without the id and these columns."""
    columns = [f.column for f in model._meta.concrete_fields if not f.primary_key and f.column not in leaving_out]
    qn = connection.ops.quote_name
    sql = f"SELECT {', '.join(map(qn, columns))} FROM {qn(model._meta.db_table)} WHERE {qn('id')} = %s"
    with connection.cursor() as cursor:
        rows = []
        for obj in objs:
            cursor.execute(sql, [obj.pk])
            rows.append(dict(zip(columns, cursor.fetchone(), strict=True)))
    return rows


def trusted(prefix: str, editor) -> list[TrustedNetwork]:
    now = timezone.now()
    expires = datetime.datetime(2031, 5, 6, 7, 8, 9, 123456, tzinfo=zoneinfo.ZoneInfo("Europe/Berlin"))
    rows = [
        dict(network=f"{prefix}.1.0.0/16", description="plain"),
        dict(network=f"{prefix}.2.0.0/16", description="Zürich “office” \\ 'quoted'", enabled=False),
        dict(network=f"{prefix}.3.0.0/16", expires_at=expires, allowed_sender_domains=["a.example", "b.example"]),
        dict(network=f"{prefix}.4.0.0/16", rate_limit_per_hour=5, require_tls=True, owner="ops", created_by=editor),
    ]
    objs = [TrustedNetwork(**fields) for fields in rows]
    for obj in objs:
        obj.normalise()
        obj.created_at = obj.updated_at = now
    return objs


def audit_entries(marker: str) -> list[AuditEntry]:
    moment = datetime.datetime(2030, 1, 2, 3, 4, 5, 678901, tzinfo=zoneinfo.ZoneInfo("America/New_York"))
    return [
        AuditEntry(
            timestamp=moment,
            actor_name="system",
            source="api",
            remote_addr=address,
            action="create",
            object_id=str(number),
            before=before,
            after={"network": "10.0.0.0/8", "domains": ["x"], "nested": {"n": None, "ok": True}},
            prev_hash=f"{marker}{number}",
            entry_hash=f"{marker}{number}",
        )
        for number, (address, before) in enumerate([(None, None), ("192.0.2.1", {}), ("2001:db8::1", "text")])
    ]


def test_rows_are_stored_as_bulk_create_stores_them_and_get_their_ids_in_order(editor):
    by_django, by_insert = trusted("10", editor), trusted("11", editor)
    TrustedNetwork.objects.bulk_create(by_django)
    bulk_write.insert(TrustedNetwork, by_insert)
    assert [obj.pk for obj in by_insert] == sorted(obj.pk for obj in by_insert)
    assert [TrustedNetwork.objects.get(pk=obj.pk).network for obj in by_insert] == [obj.network for obj in by_insert]
    # The networks differ (they are unique) and bulk_create stamps its own times; the rest is stored alike.
    different = ("network", "range_start", "range_end", "created_at", "updated_at")
    assert stored(TrustedNetwork, by_insert, leaving_out=different) == stored(
        TrustedNetwork, by_django, leaving_out=different
    )
    reread = TrustedNetwork.objects.get(pk=by_insert[0].pk)
    assert (reread.created_at, reread.updated_at) == (by_insert[0].created_at, by_insert[0].updated_at)


def test_audit_entries_with_json_and_addresses_are_stored_as_bulk_create_stores_them():
    by_django, by_insert = audit_entries("d"), audit_entries("i")
    AuditEntry.objects.bulk_create(by_django)
    bulk_write.insert(AuditEntry, by_insert)
    chained = ("prev_hash", "entry_hash")  # unique, so they differ
    assert stored(AuditEntry, by_insert, leaving_out=chained) == stored(AuditEntry, by_django, leaving_out=chained)
    assert [e.pk for e in by_insert] == sorted(e.pk for e in by_insert)
    reread = AuditEntry.objects.get(pk=by_insert[2].pk)
    assert (reread.before, reread.remote_addr, reread.after["nested"]) == (
        "text",
        "2001:db8::1",
        {"n": None, "ok": True},
    )
    assert AuditEntry.objects.get(pk=by_insert[0].pk).before is None


def test_updated_rows_are_stored_as_save_stores_them(editor):
    by_save, by_update = trusted("10", editor), trusted("11", editor)
    for obj in [*by_save, *by_update]:
        obj.save()
    expires = datetime.datetime(2032, 1, 1, 0, 0, tzinfo=zoneinfo.ZoneInfo("Asia/Kolkata"))
    changes = {
        "description": "new “text”",
        "enabled": True,
        "expires_at": expires,
        "allowed_sender_domains": ["c.example"],
    }
    for obj in [*by_save, *by_update]:
        for name, value in changes.items():
            setattr(obj, name, value)
    for obj in by_save:
        obj.save()
    for obj, saved in zip(by_update, by_save, strict=True):
        obj.updated_at = saved.updated_at
    bulk_write.update(TrustedNetwork, by_update, [*changes, "updated_at"])
    different = ("network", "range_start", "range_end", "created_at")
    assert stored(TrustedNetwork, by_update, leaving_out=different) == stored(
        TrustedNetwork, by_save, leaving_out=different
    )
