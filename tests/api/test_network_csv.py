"""CSV import (upload, preview with every error, commit) and export of the network lists."""

import csv
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from policy.models import AuditEntry, DeniedNetwork, TrustedNetwork

pytestmark = pytest.mark.django_db

IMPORT = reverse("policy:network-import")
PREVIEW = reverse("policy:network-import-preview")


def upload(client, text, network_list="trusted", mode="add", name="networks.csv", encoding="utf-8"):
    data = text.encode(encoding) if isinstance(text, str) else text
    file = SimpleUploadedFile(name, data, content_type="text/csv")
    return client.post(IMPORT, {"network_list": network_list, "mode": mode, "file": file})


def networks():
    return sorted(TrustedNetwork.objects.values_list("network", flat=True))


def test_export_writes_every_column_and_imports_again_unchanged(editor_client):
    TrustedNetwork.objects.create(
        network="10.0.0.0/8",
        description="LAN, main",
        enabled=False,
        rate_limit_per_hour=10,
        allowed_sender_domains=["a.example", "b.example"],
    )
    TrustedNetwork.objects.create(network="2001:db8::/32")
    response = editor_client.get(reverse("policy:network-export", args=["trusted"]))
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert 'filename="trusted-networks-' in response["Content-Disposition"]
    text = response.content.decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == [
        *("network", "description", "enabled", "expires_at", "open_relay_override"),
        *("rate_limit_per_hour", "recipients_per_hour", "allowed_sender_domains", "require_tls", "owner", "ticket"),
    ]
    assert rows[1] == [
        "10.0.0.0/8",
        "LAN, main",
        "False",
        "",
        "False",
        "10",
        "",
        "a.example b.example",
        "False",
        "",
        "",
    ]
    upload(editor_client, text, mode="replace")
    assert editor_client.get(PREVIEW).context["result"] | {"warnings": []} == {
        "created": 0,
        "updated": 0,
        "deleted": 0,
        "unchanged": 2,
        "warnings": [],
        "removed": [],
        "errors": [],
        "risks": [],
        "error_count": 0,
    }


def test_formula_like_descriptions_export_escaped_and_import_back_unchanged(editor_client):
    descriptions = ['=HYPERLINK("http://evil.example")', "-- old router", "+44 desk", "@home", "'=quoted", "'plain"]
    for number, description in enumerate(descriptions):
        TrustedNetwork.objects.create(network=f"10.{number}.0.0/16", description=description)
    text = editor_client.get(reverse("policy:network-export", args=["trusted"])).content.decode()
    cells = [row[1] for row in csv.reader(io.StringIO(text))][1:]
    assert cells == [
        '\'=HYPERLINK("http://evil.example")',
        "'-- old router",
        "'+44 desk",
        "'@home",
        "''=quoted",
        "'plain",
    ]
    TrustedNetwork.objects.all().delete()
    upload(editor_client, text, mode="replace")
    editor_client.post(PREVIEW, {"action": "import"})
    assert list(TrustedNetwork.objects.order_by("network").values_list("description", flat=True)) == descriptions


def test_preview_lists_every_bad_line_and_nothing_is_saved(editor_client):
    text = (
        "network,description,enabled\n"
        "10.1.0.0/255.255.0.0,ok,yes\n"
        "10.1.2.3/16,host bits,\n"
        "\n"
        "10.1.0.0/16,duplicate,\n"
        "10.2.0.0/16,bad flag,perhaps\n"
        "10.3.0.0/16,too,many,cells\n"
    )
    response = upload(editor_client, text)
    assert response.status_code == 302
    assert response.url == PREVIEW
    preview = editor_client.get(PREVIEW)
    page = preview.content.decode()
    errors = dict(preview.context["result"]["errors"])
    assert sorted(errors) == [3, 5, 6, 7]  # lines in the file, the header being line 1
    assert "Did you mean 10.1.0.0/16?" in errors[3]["network"][0]
    assert "already in this list" in errors[5]["network"][0]
    assert errors[6] == {"enabled": ["Must be a valid boolean."]}
    assert errors[7] == {"line": ["This line has more cells than the first line has columns."]}
    assert "4 lines cannot be imported" in page
    assert 'value="import"' not in page
    assert networks() == []


def test_commit_saves_all_lines_with_an_import_audit_trail(editor_client):
    upload(editor_client, "network,description\n10.1.0.0/16,a\n10.0.0.0/8,b\n")
    preview = editor_client.get(PREVIEW)
    assert preview.context["result"]["created"] == 2
    assert preview.context["result"]["warnings"] == ["10.1.0.0/16 is already covered by 10.0.0.0/8 (b)."]
    response = editor_client.post(PREVIEW, {"action": "import"}, follow=True)
    assert "Imported networks.csv: 2 created, 0 updated, 0 removed, 0 unchanged." in response.content.decode()
    assert networks() == ["10.0.0.0/8", "10.1.0.0/16"]
    entries = AuditEntry.objects.filter(source="import", object_type="trusted network")
    assert sorted(entries.values_list("action", flat=True)) == ["bulk_add", "create", "create"]
    assert {e.reason for e in entries} == {"CSV import of networks.csv"}
    assert {e.actor_name for e in entries} == {"erin"}
    assert editor_client.get(PREVIEW).status_code == 302  # the pending import is gone


def test_commit_checks_again_against_changes_made_since_the_preview(editor_client):
    upload(editor_client, "network\n10.1.0.0/16\n")
    TrustedNetwork.objects.create(network="10.1.0.0/16")
    response = editor_client.post(PREVIEW, {"action": "import"})
    assert response.status_code == 400
    assert "The list changed since the preview" in response.content.decode()
    assert TrustedNetwork.objects.count() == 1


def test_cancel_discards_the_pending_import(editor_client):
    upload(editor_client, "network\n10.1.0.0/16\n")
    editor_client.post(PREVIEW, {"action": "cancel"})
    assert editor_client.get(PREVIEW).status_code == 302
    assert networks() == []


def test_replace_the_denied_list(editor_client):
    DeniedNetwork.objects.create(network="198.51.100.0/24")
    upload(editor_client, "network\n0.0.0.0/0\n", network_list="denied", mode="replace")
    editor_client.post(PREVIEW, {"action": "import"})
    assert list(DeniedNetwork.objects.values_list("network", flat=True)) == ["0.0.0.0/0"]


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("network,colour\n10.0.0.0/8,red\n", "Unknown column “colour” in the first line"),
        ("description\nx\n", "including “network”"),
        ("", "The submitted file is empty."),
        ("\n\n", "The file is empty. Its first line names the columns"),
        ("network,network\n10.0.0.0/8,10.0.0.0/8\n", "A column is named twice"),
        ("network\n10.0.0.0/8\nçà\n".encode("latin-1"), "not UTF-8"),
    ],
)
def test_file_level_problems_are_explained_on_the_form(editor_client, data, message):
    response = upload(editor_client, data)
    assert response.status_code == 400
    assert message in response.content.decode()


def test_a_byte_order_mark_is_fine(editor_client):
    upload(editor_client, "\ufeffnetwork\n10.0.0.0/8\n")
    assert editor_client.get(PREVIEW).context["result"]["created"] == 1


def test_viewers_may_export_but_not_import(viewer_client):
    assert viewer_client.get(reverse("policy:network-export", args=["denied"])).status_code == 200
    assert "Preview" not in viewer_client.get(IMPORT).content.decode()
    assert upload(viewer_client, "network\n10.0.0.0/8\n").status_code == 403
    assert viewer_client.post(PREVIEW, {"action": "import"}).status_code == 403


def test_unknown_list_is_404(editor_client):
    assert editor_client.get("/networks/export/internal.csv").status_code == 404
