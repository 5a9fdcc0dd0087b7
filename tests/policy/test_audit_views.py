import csv
import io
import json

import pytest
from django.urls import reverse

from policy.audit import audit_context
from policy.models import LocalDomain, TrustedNetwork

pytestmark = pytest.mark.django_db
AUDIT = reverse("policy:audit")


@pytest.fixture
def changes(editor):
    with audit_context(source="web", user=editor, reason="ticket 7"):
        network = TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
        network.description = "Head office"
        network.save()
    with audit_context(source="cli", command="publish"):
        LocalDomain.objects.create(domain="example.com")
    return network


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", ["create example.com", "update 10.0.0.0/8", "create 10.0.0.0/8", "update erin", "create erin"]),
        ("actor=erin", ["update 10.0.0.0/8", "create 10.0.0.0/8"]),
        ("actor=system: publish", ["create example.com"]),
        ("object_type=local domain", ["create example.com"]),
        ("action=update&object_type=trusted network", ["update 10.0.0.0/8"]),
        ("action=update&object_type=user", ["update erin", "update vic"]),  # their roles were set
        ("q=ticket 7", ["update 10.0.0.0/8", "create 10.0.0.0/8"]),
        ("since=2999-01-01T00:00", []),
        ("until=2000-01-01T00:00", []),
    ],
)
def test_filters(viewer_client, changes, query, expected):
    rows = viewer_client.get(f"{AUDIT}?{query}").context["rows"]
    assert [f"{entry.action} {entry.object_repr}" for entry, _ in rows][: len(expected) or None] == expected


def test_each_entry_shows_a_readable_diff(viewer_client, changes):
    body = viewer_client.get(f"{AUDIT}?action=update").content.decode()
    assert "description: <del>LAN</del> → <ins>Head office</ins>" in body


def test_bad_date_filter_says_so(viewer_client, changes):
    response = viewer_client.get(f"{AUDIT}?since=yesterday")
    assert response.context["rows"] == []
    assert "Enter a valid date/time" in response.content.decode()


def test_filtered_view_exports_as_csv_and_json(viewer_client, changes):
    response = viewer_client.get(f"{AUDIT}?actor=erin&export=csv")
    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode())))
    assert [(row["action"], row["actor_name"], row["reason"]) for row in rows] == [
        ("update", "erin", "ticket 7"),
        ("create", "erin", "ticket 7"),
    ]
    assert json.loads(rows[0]["after"])["description"] == "Head office"
    entries = viewer_client.get(f"{AUDIT}?object_type=local domain&export=json").json()["entries"]
    assert [(e["action"], e["actor_name"], e["source"]) for e in entries] == [("create", "system: publish", "cli")]


def test_object_pages_show_their_own_history(editor_client, changes):
    domain = LocalDomain.objects.get()
    history = editor_client.get(reverse("policy:domain-edit", args=[domain.pk])).context["history"]
    assert [entry.action for entry, _ in history] == ["create"]
    page = editor_client.get(reverse("policy:restrictions-entry-edit", args=["trusted", changes.pk]))
    assert [entry.action for entry, _ in page.context["history"]] == ["update", "create"]
    assert "Head office" in page.content.decode()


def test_audit_log_needs_a_role(client, django_user_model):
    assert client.get(AUDIT).status_code == 302
    client.force_login(django_user_model.objects.create_user("norole"))
    assert client.get(AUDIT).status_code == 403


def test_csv_export_neutralises_formulas(viewer_client):
    # What a failed login's username, an API caller's reason or a description can plant (issue 11).
    formulas = ["=cmd|' /C calc'!A0", "+1+1", "-2+3", "@SUM(A1)", "\t=1"]
    for reason in formulas:
        with audit_context(source="api", reason=reason):
            LocalDomain.objects.create(domain=f"d{len(reason)}{ord(reason[0])}.example")
    rows = list(csv.DictReader(io.StringIO(viewer_client.get(f"{AUDIT}?export=csv").content.decode())))
    assert sorted(row["reason"] for row in rows if row["reason"]) == sorted(f"'{reason}" for reason in formulas)
