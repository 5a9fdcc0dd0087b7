import io
import json
import tarfile

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse

from policy.export import exim, postfix, verify
from policy.models import AuditEntry, LocalDomain, TrustedNetwork
from policy.revisions import policy_change

pytestmark = pytest.mark.django_db


@pytest.fixture
def policy():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8")
        LocalDomain.objects.create(domain="example.com", route="mx.internal:25")


def test_postfix_bundle_download_is_audited(viewer_client, viewer, policy):
    response = viewer_client.get(reverse("policy:export", args=["postfix"]))
    assert response["Content-Disposition"] == 'attachment; filename="relayadmin-postfix-serial1.tar.gz"'
    with tarfile.open(fileobj=io.BytesIO(response.content)) as archive:
        cidr = archive.extractfile("relayadmin/mynetworks.cidr").read().decode()
    assert "10.0.0.0/8" in cidr
    assert verify(cidr)
    entry = AuditEntry.objects.get(action="export")
    assert (entry.actor_username, entry.object_repr) == (viewer.username, "postfix export of revision 1")


def test_relayd_snapshot_is_for_editors_only(client, viewer, editor, policy):
    client.force_login(viewer)
    assert client.get(reverse("policy:export", args=["relayd"])).status_code == 403
    assert "Download policy.json" not in client.get(reverse("policy:exports")).content.decode()
    client.force_login(editor)
    response = client.get(reverse("policy:export", args=["relayd"]))
    assert json.loads(response.content)["serial"] == 1
    assert "Download policy.json" in client.get(reverse("policy:exports")).content.decode()


def test_unknown_format_is_404(viewer_client):
    assert viewer_client.get(reverse("policy:export", args=["sendmail"])).status_code == 404


def test_export_command_writes_files_and_protects_hand_edits(tmp_path, policy, capsys):
    call_command("export", "--format", "relayd", "--output", str(tmp_path / "policy.json"))
    assert json.loads((tmp_path / "policy.json").read_text())["serial"] == 1
    call_command("export", "--format", "exim", "--output", str(tmp_path / "exim.tar.gz"))
    assert tarfile.is_tarfile(tmp_path / "exim.tar.gz")
    call_command("export", "--format", "postfix", "--output", str(tmp_path))
    transport = tmp_path / "transport"
    assert "relay:[mx.internal]:25" in transport.read_text()
    transport.write_text(transport.read_text() + "example.org smtp:[evil]\n")
    with pytest.raises(CommandError, match=r"edited by hand.*transport"):
        call_command("export", "--format", "postfix", "--output", str(tmp_path))
    call_command("export", "--format", "postfix", "--output", str(tmp_path), "--force")
    assert verify(transport.read_text())
    assert AuditEntry.objects.filter(action="export", actor_name="system: export").count() == 4


def test_relayd_export_into_a_directory_says_which_file_to_give(tmp_path, policy):
    with pytest.raises(CommandError, match="is a directory"):
        call_command("export", "--format", "relayd", "--output", str(tmp_path))


def test_each_export_card_shows_its_own_renderer_description(viewer_client):
    page = viewer_client.get(reverse("policy:exports")).content.decode()
    for module in (postfix, exim):
        assert f"<h2>{module.TITLE}</h2>" in page
        assert module.DESCRIPTION in page
    assert postfix.DESCRIPTION != exim.DESCRIPTION
