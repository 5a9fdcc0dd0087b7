"""Pages stay small and cheap with thousands of entries: what they load, not how fast the machine is."""

import ipaddress
import json

import pytest
from django.urls import reverse

from policy import tester
from policy.draft import Draft
from policy.models import PolicyRevision, SmtpUser, TrustedNetwork
from policy.revisions import policy_change

pytestmark = pytest.mark.django_db

SITES = 300


@pytest.fixture
def many_networks():
    with policy_change():
        entries = [
            TrustedNetwork(network=str(ipaddress.ip_network((0x0A000000 + (n << 8), 24))), description=f"site {n}")
            for n in range(SITES)
        ]
        for entry in entries:
            entry.normalise()
        TrustedNetwork.objects.bulk_create(entries)
        account = SmtpUser(username="scanner")
        account.set_password("a long scanner password")
        account.save()  # a signalled write: the change records its revision
    return TrustedNetwork.objects.order_by("pk")


@pytest.fixture
def rows_loaded(monkeypatch):
    """Count the trusted networks read from the database as model objects."""
    loaded = []
    original = TrustedNetwork.from_db.__func__

    def counting(cls, db, field_names, values):
        loaded.append(values)
        return original(cls, db, field_names, values)

    monkeypatch.setattr(TrustedNetwork, "from_db", classmethod(counting))
    return loaded


def test_the_add_form_never_loads_the_whole_list(editor_client, many_networks, rows_loaded):
    url = reverse("policy:restrictions-entry-add", args=["trusted"])
    assert editor_client.get(url).status_code == 200
    # A duplicate is still refused, an overlap still warned about, from a handful of rows.
    response = editor_client.post(url, {"address": "10.0.7.0", "mask": "24", "enabled": "on"})
    assert response.status_code == 400
    assert "10.0.7.0/24 (site 7) is already in this list" in response.content.decode()
    assert editor_client.post(url, {"address": "10.0.8.0/25", "enabled": "on"}).status_code == 302
    assert len(rows_loaded) <= 3
    # The warning shows on the dialog (which, with a pending change, rehearses the whole policy).
    dialog = editor_client.get(reverse("policy:restrictions")).content.decode()
    assert "10.0.8.0/25 is already covered by 10.0.8.0/24 (site 8)." in dialog


def test_the_edit_form_reads_its_entry_and_its_neighbours_only(editor_client, many_networks, rows_loaded):
    entry = many_networks[5]
    url = reverse("policy:restrictions-entry-edit", args=["trusted", entry.pk])
    assert editor_client.get(url).status_code == 200
    response = editor_client.post(url, {"address": "10.0.6.0/24", "enabled": "on"})  # site 6's network
    assert "10.0.6.0/24 (site 6) is already in this list" in response.content.decode()
    # Its own network is no duplicate of itself.
    assert editor_client.post(url, {"address": "10.0.5.0/24", "enabled": "on"}).status_code == 302
    assert len(rows_loaded) <= 8


def test_the_dialog_reads_one_page_of_each_list(editor_client, many_networks, rows_loaded):
    response = editor_client.get(reverse("policy:restrictions"))
    assert response.status_code == 200
    assert "Page 1 of 3" in response.content.decode()
    assert len(rows_loaded) == 100


def test_draft_rows_page_saved_rows_then_pending_ones_and_search_what_they_would_become(many_networks):
    draft = Draft()
    draft.add("trusted", {"network": "172.16.0.0/12", "description": "Lab", "enabled": True, "expires_at": None})
    first = many_networks[0]
    draft.change("trusted", str(first.pk), {"network": "10.200.0.0/16", "description": "moved", "enabled": True})
    rows = draft.rows("trusted")
    assert rows.count() == SITES + 1
    assert [row.state for row in rows[SITES - 1 : SITES + 1]] == ["", "added"]
    assert rows[0].state == "changed"
    assert [row.value for row in draft.rows("trusted", "10.200.3.4")[0:10]] == ["10.200.0.0/16"]
    assert [row.value for row in draft.rows("trusted", "lab")[0:10]] == ["172.16.0.0/12"]
    assert draft.rows("trusted", "site 29").count() == 1 + 10  # site 29 and 290..299


def test_the_tester_compiles_each_revision_once(many_networks, monkeypatch):
    from relayd import config

    compiled = []
    original = config.compile_policy
    monkeypatch.setattr(tester, "compile_policy", lambda *a, **k: compiled.append(1) or original(*a, **k))
    monkeypatch.setattr(tester, "_saved", None)
    probe = tester.Probe(client="10.0.3.7", recipient="someone@example.org")
    assert tester.check(probe).verdict.allowed
    assert not tester.check(tester.Probe(client="192.0.2.1", recipient="x@example.org")).verdict.allowed
    assert len(compiled) == 1
    with policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24")
    assert tester.check(tester.Probe(client="192.0.2.1", recipient="x@example.org")).verdict.allowed
    assert len(compiled) == 2


def test_the_saved_snapshot_leaves_out_entries_expired_since_their_revision(many_networks):
    with policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24", expires_at="2999-01-01T00:00Z")
    snapshot = tester.current_snapshot()
    assert "192.0.2.0/24" in {entry["network"] for entry in snapshot["trusted_networks"]}
    document = tester.saved_policy().document
    document["trusted_networks"][-1]["expires_at"] = "2000-01-01T00:00:00+00:00"  # as if it were now past
    try:
        assert "192.0.2.0/24" not in {entry["network"] for entry in tester.current_snapshot()["trusted_networks"]}
    finally:
        tester._saved = None


def test_a_write_not_yet_recorded_is_read_from_the_database(many_networks):
    TrustedNetwork.objects.create(network="192.0.2.0/24")  # outside a change: its revision follows the commit
    assert "192.0.2.0/24" in {entry["network"] for entry in tester.current_snapshot()["trusted_networks"]}


def test_the_revision_page_summarises_and_pages_and_the_snapshot_is_a_download(viewer_client, many_networks):
    revision = PolicyRevision.objects.get()
    url = reverse("policy:revision", args=[revision.serial])
    body = viewer_client.get(url).content.decode()
    assert len(body) < 100_000
    assert "Trusted networks: 300" in body and "SMTP users: 1" in body
    assert "10.0.0.0/24" in body and "10.0.100.0/24" not in body  # the first page of 100
    assert "10.0.100.0/24" in viewer_client.get(url + "?list=trusted_networks&page=2").content.decode()
    assert "scanner" in viewer_client.get(url + "?list=smtp_users").content.decode()

    download = viewer_client.get(reverse("policy:revision-snapshot", args=[revision.serial]))
    assert download["Content-Disposition"] == f'attachment; filename="relayadmin-revision-{revision.serial}.json"'
    snapshot = json.loads(download.content)
    assert len(snapshot["trusted_networks"]) == SITES
    assert snapshot["smtp_users"][0]["password_hash"] == "••••••"
    assert "pbkdf2" not in download.content.decode()
