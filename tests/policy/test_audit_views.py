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


@pytest.fixture
def bulk_change(editor):
    """Three networks added by one request, then a single unrelated change."""
    with audit_context(source="web", user=editor, request_id="req-bulk", reason="new branch offices"):
        for n in range(3):
            TrustedNetwork.objects.create(network=f"10.{n}.0.0/16", created_by=editor)
    with audit_context(source="cli", command="publish"):
        LocalDomain.objects.create(domain="example.com")


def test_a_bulk_change_is_one_group_and_singles_stay_rows(viewer_client, bulk_change):
    groups = viewer_client.get(f"{AUDIT}?object_type=trusted network").context["groups"]
    assert [(group.size, group.is_bulk) for group in groups] == [(3, True)]
    assert groups[0].summary == "3 create trusted network"
    assert [entry.object_repr for entry, _ in groups[0].rows] == ["10.2.0.0/16", "10.1.0.0/16", "10.0.0.0/16"]
    body = viewer_client.get(AUDIT).content.decode()
    assert body.count("<details>") == 1
    assert "<strong>3 changes</strong> — 3 create trusted network" in body


def test_a_page_counts_groups_not_entries(viewer_client, editor, monkeypatch):
    monkeypatch.setattr("policy.views.audit.ROWS_PER_PAGE", 2)
    with audit_context(source="web", user=editor, request_id="req-big"):
        for n in range(5):
            LocalDomain.objects.create(domain=f"d{n}.example")
    with audit_context(source="cli", command="publish"):
        LocalDomain.objects.create(domain="last.example")
    page = viewer_client.get(f"{AUDIT}?object_type=local domain").context
    assert [group.size for group in page["groups"]] == [1, 5]
    assert not page["page_obj"].has_next()


def test_a_huge_group_shows_a_preview_and_links_to_all_of_it(viewer_client, editor, monkeypatch):
    monkeypatch.setattr("policy.audit_display.GROUP_PREVIEW", 2)
    with audit_context(source="web", user=editor, request_id="req-huge"):
        for n in range(4):
            LocalDomain.objects.create(domain=f"d{n}.example")
    response = viewer_client.get(f"{AUDIT}?object_type=local domain")
    (group,) = response.context["groups"]
    assert (group.size, len(group.rows), group.hidden) == (4, 2, 2)
    assert 'href="?request=req-huge"' in response.content.decode()
    assert len(viewer_client.get(f"{AUDIT}?request=req-huge").context["rows"]) == 2  # one group again, previewed


def test_user_ids_read_as_usernames(viewer_client, bulk_change, editor):
    rows = viewer_client.get(f"{AUDIT}?object_type=trusted network").context["rows"]
    created_by = [change for change in rows[0][1] if change.name == "created_by"]
    assert [(c.before, c.after) for c in created_by] == [(None, "erin")]
    assert f"created_by: <del>—</del> → <ins>{editor.pk}</ins>" not in viewer_client.get(AUDIT).content.decode()


def test_hashes_are_shortened_with_the_full_value_in_the_title(viewer_client, editor):
    from policy.audit import record

    digest = "ab" * 32
    with audit_context(source="web", user=editor):
        record("publish", object_type="policy revision", object_id="1", object_repr="1", after={"sha256": digest})
    body = viewer_client.get(AUDIT).content.decode()
    assert f'<code class="hash" title="{digest}">{digest[:12]}…</code>' in body
    assert f">{digest}<" not in body


def test_object_type_and_action_are_dropdowns_of_what_the_log_holds(viewer_client, bulk_change):
    response = viewer_client.get(f"{AUDIT}?action=create")
    assert response.context["object_types"] == ["local domain", "trusted network", "user"]
    assert "create" in response.context["actions"]
    body = response.content.decode()
    assert '<select name="object_type">' in body
    assert "<option selected>create</option>" in body
