"""Bulk writes: all or nothing, an error for every bad row, one audit entry per change plus one for the bulk."""

import pytest
from django.core.management import call_command
from django.urls import reverse

from policy.models import AuditEntry, DeniedNetwork, TrustedNetwork

pytestmark = pytest.mark.django_db

BULK = reverse("api:trustednetwork-bulk")


def networks():
    return sorted(TrustedNetwork.objects.values_list("network", flat=True))


def test_bulk_add_creates_every_row_and_audits_each(api):
    rows = [{"network": f"10.{i}.0.0/255.255.0.0", "description": f"site {i}"} for i in range(1, 6)]
    response = api.post(BULK, rows)
    assert response.status_code == 200, response.json()
    assert response.json() == {
        "dry_run": False,
        "created": 5,
        "updated": 0,
        "deleted": 0,
        "unchanged": 0,
        "warnings": [],
    }
    assert networks() == [f"10.{i}.0.0/16" for i in range(1, 6)]
    created = AuditEntry.objects.filter(action="create", object_type="trusted network")
    assert created.count() == 5
    assert {e.actor_name for e in created} == {"erin (token rw)"}
    assert sorted(e.after["network"] for e in created) == networks()
    bulk = AuditEntry.objects.get(action="bulk_add")
    assert bulk.after == {"created": 5, "updated": 0, "deleted": 0}
    call_command("verify_audit")  # the batched entries keep the hash chain intact


def test_one_bad_row_saves_nothing_and_every_bad_row_is_reported(api):
    TrustedNetwork.objects.create(network="192.0.2.0/24")
    rows = [
        {"network": "10.1.0.0/16"},
        {"network": "10.1.2.3/16"},
        {"network": "10.1.0.0/255.255.0.0"},
        {"network": "192.0.2.0/24"},
        {"network": "10.2.0.0/16", "enabled": "maybe"},
        {"network": "10.3.0.0/16", "descripton": "typo"},
        "10.4.0.0/16",
        {"network": "0.0.0.0/0"},
    ]
    response = api.post(BULK, rows)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == "7 of 8 rows are invalid; nothing was saved."
    errors = {item["row"]: item["errors"] for item in body["errors"]}
    assert sorted(errors) == [2, 3, 4, 5, 6, 7, 8]
    assert errors[2]["network"][0].startswith("Host bits are set in 10.1.2.3/16. Did you mean 10.1.0.0/16?")
    assert "already in this list" in errors[3]["network"][0]
    assert "already in this list" in errors[4]["network"][0]
    assert errors[5] == {"enabled": ["Must be a valid boolean."]}
    assert "Unknown field" in errors[6]["descripton"][0]
    assert "Expected a dictionary" in errors[7]["non_field_errors"][0]
    assert "open relay" in errors[8]["network"][0]
    assert networks() == ["192.0.2.0/24"]
    assert not AuditEntry.objects.filter(source="api").exists()


def test_replace_makes_the_list_exactly_the_rows_and_records_only_real_changes(api):
    keep = TrustedNetwork.objects.create(network="10.1.0.0/16", description="same")
    change = TrustedNetwork.objects.create(network="10.2.0.0/16", description="old")
    TrustedNetwork.objects.create(network="10.3.0.0/16")
    rows = [
        {"network": "10.1.0.0/16", "description": "same"},
        {"network": "10.2.0.0/255.255.0.0", "description": "new", "enabled": False},
        {"network": "10.4.0.0/16"},
    ]
    before = AuditEntry.objects.filter(object_type="trusted network").count()
    response = api.post(f"{BULK}?mode=replace", rows)
    assert response.status_code == 200, response.json()
    assert response.json() | {"warnings": []} == {
        "dry_run": False,
        "created": 1,
        "updated": 1,
        "deleted": 1,
        "unchanged": 1,
        "warnings": [],
    }
    assert networks() == ["10.1.0.0/16", "10.2.0.0/16", "10.4.0.0/16"]
    change.refresh_from_db()
    assert (change.description, change.enabled) == ("new", False)
    assert TrustedNetwork.objects.get(network="10.1.0.0/16").updated_at == keep.updated_at
    entries = AuditEntry.objects.filter(object_type="trusted network").order_by("id")[before:]
    assert sorted(entries.values_list("action", flat=True)) == ["bulk_replace", "create", "delete", "update"]
    update = next(entry for entry in entries if entry.action == "update")
    assert (update.object_id, update.before["description"], update.after["description"]) == (
        str(change.pk),
        "old",
        "new",
    )
    delete = next(entry for entry in entries if entry.action == "delete")
    assert (delete.before["network"], delete.after) == ("10.3.0.0/16", None)
    assert change.updated_at > keep.updated_at
    call_command("verify_audit")


def test_dry_run_reports_without_saving(api):
    response = api.post(f"{BULK}?dry_run=true", [{"network": "10.0.0.0/8"}, {"network": "10.1.0.0/16"}])
    assert response.status_code == 200
    assert response.json()["created"] == 2
    assert response.json()["warnings"] == ["10.1.0.0/16 is already covered by 10.0.0.0/8."]
    assert networks() == []


def test_bulk_refuses_a_body_that_is_not_a_list_and_an_unknown_mode(api):
    assert api.post(BULK, {"network": "10.0.0.0/8"}).json() == {
        "detail": 'Send a JSON list of networks, e.g. [{"network": "10.1.0.0/16"}].'
    }
    assert api.post(f"{BULK}?mode=merge", []).json() == {"detail": "Use mode=add or mode=replace, not “merge”."}


def test_denied_networks_have_bulk_too(api):
    response = api.post(reverse("api:deniednetwork-bulk"), [{"network": "0.0.0.0/0"}])
    assert response.status_code == 200  # refusing everyone is never an open relay
    assert DeniedNetwork.objects.get().network == "0.0.0.0/0"


def test_overlap_warnings_name_only_pairs_with_a_new_row(api):
    TrustedNetwork.objects.create(network="10.0.0.0/8", description="corporate")
    TrustedNetwork.objects.create(network="10.9.0.0/16")  # an old overlap, not this import's business
    rows = [{"network": "10.1.0.0/16"}, {"network": "192.168.0.0/16"}, {"network": "192.168.5.0/24"}]
    response = api.post(f"{BULK}?dry_run=true", rows)
    assert response.json()["warnings"] == [
        "10.1.0.0/16 is already covered by 10.0.0.0/8 (corporate).",
        "192.168.5.0/24 is already covered by 192.168.0.0/16.",
    ]


def test_an_import_larger_than_one_statement_chains_its_entries_in_row_order(api):
    # SQLite takes 66 audit rows per INSERT: 300 rows and their replacement span several statements.
    rows = [{"network": f"10.{n // 256}.{n % 256}.0/24", "description": f"site {n}"} for n in range(300)]
    assert api.post(BULK, rows).status_code == 200
    changed = [{**row, "description": "moved"} for row in rows[:150]]
    assert api.post(f"{BULK}?mode=replace", changed).status_code == 200
    entries = list(AuditEntry.objects.filter(object_type="trusted network").order_by("id"))
    actions = [entry.action for entry in entries]
    assert actions == ["create"] * 300 + ["bulk_add"] + ["delete"] * 150 + ["update"] * 150 + ["bulk_replace"]
    assert [entry.object_repr for entry in entries[:300]] == [row["network"] for row in rows]
    assert [entry.after["description"] for entry in entries[451:601]] == ["moved"] * 150
    call_command("verify_audit")
