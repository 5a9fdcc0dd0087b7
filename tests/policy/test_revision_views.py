import json

import pytest
from django.urls import reverse

from policy.models import AuditEntry, PolicyRevision, RoutingRestrictions, SmtpUser, TrustedNetwork
from policy.revisions import policy_change

pytestmark = pytest.mark.django_db


@pytest.fixture
def three_revisions():
    with policy_change():
        TrustedNetwork.objects.create(network="10.0.0.0/8", description="LAN")
        account = SmtpUser(username="alice")
        account.set_password("first secret value")
        account.save()
    with policy_change():
        TrustedNetwork.objects.create(network="192.0.2.0/24")
    with policy_change():
        account.set_password("second secret value")
        account.save()


def test_list_detail_and_diff_never_show_password_hashes(viewer_client, three_revisions):
    listing = viewer_client.get(reverse("policy:revisions")).content.decode()
    assert all(f'href="/revisions/{serial}/"' in listing for serial in (1, 2, 3))
    for url in (reverse("policy:revision", args=[3]), reverse("policy:revision-diff") + "?a=1&b=3"):
        body = viewer_client.get(url).content.decode()
        assert "pbkdf2" not in body
    diff = viewer_client.get(reverse("policy:revision-diff") + "?a=1&b=2").context["changes"]
    assert [(section.title, section.added) for section in diff] == [("Trusted networks", ["192.0.2.0/24"])]
    detail = viewer_client.get(reverse("policy:revision", args=[3])).context["changes"]
    assert detail[0].title == "SMTP users"
    assert detail[0].changed[0][0] == "alice"


def test_viewer_cannot_roll_back(viewer_client, three_revisions):
    assert viewer_client.post(reverse("policy:revision-rollback", args=[1])).status_code == 403
    assert "Roll back to" not in viewer_client.get(reverse("policy:revision", args=[1])).content.decode()
    assert PolicyRevision.objects.count() == 3


def test_editor_rolls_back_with_a_reason(editor_client, editor, three_revisions):
    response = editor_client.post(reverse("policy:revision-rollback", args=[1]), {"reason": "bad change"})
    assert response.url == reverse("policy:revision", args=[4])
    revision = PolicyRevision.objects.get(serial=4)
    assert (revision.rolled_back_to, revision.created_by, revision.reason) == (1, editor, "bad change")
    assert [n["network"] for n in json.loads(revision.snapshot)["trusted_networks"]] == ["10.0.0.0/8"]
    assert SmtpUser.objects.get().check_password("first secret value")
    entry = AuditEntry.objects.get(action="rollback")
    assert (entry.actor_username, entry.reason, entry.source) == (editor.username, "bad change", "web")


def test_diff_needs_two_existing_revisions(viewer_client, three_revisions):
    assert viewer_client.get(reverse("policy:revision-diff") + "?a=1").status_code == 404
    assert viewer_client.get(reverse("policy:revision-diff") + "?a=1&b=99").status_code == 404


def test_dialog_reason_reaches_audit_and_revision(editor_client, editor):
    editor_client.post(
        reverse("policy:restrictions"), {"allow_internal_addresses": "on", "action": "ok", "reason": "ticket 42"}
    )
    assert AuditEntry.objects.get(object_type="routing restrictions").reason == "ticket 42"
    assert PolicyRevision.objects.get().reason == "ticket 42"


@pytest.mark.parametrize(
    "flags, sentence",
    [
        ({"allow_internal_addresses": True}, "clients connecting to the internal addresses"),
        ({"allow_authenticated": True, "allow_listed_ips": True}, "authenticated clients, these IP addresses"),
        ({"allow_listed_ips": True}, "these IP addresses"),
        ({}, "nobody may relay"),
    ],
)
def test_revision_page_says_who_may_relay(viewer_client, flags, sentence):
    with policy_change():
        RoutingRestrictions(**{name: flags.get(name, False) for name in RoutingRestrictions.FLAG_NAMES}).save()
    body = viewer_client.get(reverse("policy:revision", args=[1])).content.decode()
    assert f"<p>Routing restrictions: {sentence}.</p>" in body
