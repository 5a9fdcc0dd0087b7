"""Relay profiles on the dashboard (issue 15): the dialog's Limits…, the API, CSV, snapshot, audit and rollback."""

import io
import json

import pytest
from django.urls import reverse

from policy import network_csv
from policy.models import AuditEntry, PolicyRevision, SmtpUser, TrustedNetwork
from policy.revisions import policy_change, rollback_to
from policy.snapshot import build_snapshot, dumps
from policy.tester import Probe, check
from relayd.config import PROFILES_SCHEMA, parse_snapshot
from tests.api.conftest import issue_token, token_client

pytestmark = pytest.mark.django_db

RESTRICTIONS = reverse("policy:restrictions")
FLAGS_ON = {"allow_authenticated": "on", "allow_listed_ips": "on"}
LIMITS = {
    "rate_limit_per_hour": "100",
    "recipients_per_hour": "",
    "allowed_sender_domains": "Example.COM, bücher.example",
    "require_tls": "on",
    "owner": "ops@example.com",
    "ticket": "CHG-42",
}


def test_the_dialog_adds_a_network_with_limits_and_ok_saves_them(editor_client):
    form = editor_client.get(reverse("policy:restrictions-entry-add", args=["trusted"])).content.decode()
    assert "<summary>Limits…</summary>" in form
    response = editor_client.post(
        reverse("policy:restrictions-entry-add", args=["trusted"]),
        {"address": "10.1.0.0/16", "enabled": "on", **LIMITS},
    )
    assert response.status_code == 302
    editor_client.post(RESTRICTIONS, {**FLAGS_ON, "action": "ok"})
    network = TrustedNetwork.objects.get()
    assert network.profile() == {
        "rate_limit_per_hour": 100,
        "recipients_per_hour": None,
        "allowed_sender_domains": ["example.com", "xn--bcher-kva.example"],
        "require_tls": True,
        "owner": "ops@example.com",
        "ticket": "CHG-42",
    }
    # Editing it again shows the saved limits, the section open.
    edit = editor_client.get(reverse("policy:restrictions-entry-edit", args=["trusted", network.pk])).content.decode()
    assert '<details class="limits" open>' in edit
    assert "example.com xn--bcher-kva.example" in edit


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"rate_limit_per_hour": "0"}, "rate_limit_per_hour", "greater than or equal to 1"),
        ({"allowed_sender_domains": "a@example.com"}, "allowed_sender_domains", "Enter only the domain part"),
    ],
)
def test_the_dialog_shows_limit_errors_beside_the_field(editor_client, fields, field, message):
    response = editor_client.post(
        reverse("policy:restrictions-entry-add", args=["trusted"]), {"address": "10.1.0.0/16", **fields}
    )
    assert response.status_code == 400
    assert message in " ".join(response.context["form"].errors[field])
    assert '<details class="limits" open>' in response.content.decode()


def test_the_smtp_user_form_saves_limits(editor_client):
    response = editor_client.post(
        reverse("policy:smtp-user-add"),
        {"username": "alice", "enabled": "on", "password1": "a long secret value", "password2": "a long secret value"}
        | LIMITS,
    )
    assert response.status_code == 302, response.context and response.context["form"].errors
    account = SmtpUser.objects.get()
    assert (account.rate_limit_per_hour, account.require_tls) == (100, True)
    assert account.allowed_sender_domains == ["example.com", "xn--bcher-kva.example"]


def test_the_api_reads_and_writes_profiles_and_refuses_bad_ones_with_400(editor):
    api = token_client(issue_token(editor))
    created = api.post(
        "/api/v1/trusted-networks/",
        {"network": "10.1.0.0/16", "rate_limit_per_hour": 50, "allowed_sender_domains": ["Corp.Example."]},
        format="json",
    )
    assert created.status_code == 201, created.content
    assert created.json()["allowed_sender_domains"] == ["corp.example"]
    assert created.json()["rate_limit_per_hour"] == 50
    for body, field in [
        ({"allowed_sender_domains": [1, 2]}, "allowed_sender_domains"),
        ({"allowed_sender_domains": ["not a domain"]}, "allowed_sender_domains"),
        ({"rate_limit_per_hour": 0}, "rate_limit_per_hour"),
        ({"recipients_per_hour": "many"}, "recipients_per_hour"),
        ({"require_tls": "maybe"}, "require_tls"),
    ]:
        response = api.post("/api/v1/trusted-networks/", {"network": "10.2.0.0/16", **body}, format="json")
        assert response.status_code == 400, (body, response.content)
        assert field in response.json()
    user = api.post(
        "/api/v1/smtp-users/",
        {"username": "bob", "password": "a long secret value", "require_tls": True, "owner": "bob's team"},
        format="json",
    )
    assert user.status_code == 201, user.content
    assert user.json()["require_tls"] is True


def test_the_snapshot_is_schema_1_without_profiles_and_schema_2_with_them():
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    assert "profiles" not in build_snapshot(1) and build_snapshot(1)["schema"] == 1
    TrustedNetwork.objects.create(network="10.1.0.0/16", rate_limit_per_hour=10, allowed_sender_domains=["a.example"])
    account = SmtpUser(username="alice", owner="ops")
    account.set_password("a long secret value")
    account.save()
    snapshot = build_snapshot(2)
    assert snapshot["schema"] == PROFILES_SCHEMA
    loaded = parse_snapshot(dumps(snapshot))
    network = TrustedNetwork.objects.get(network="10.1.0.0/16")
    assert loaded.profiles.trusted_networks[network.pk].rate_limit_per_hour == 10
    assert loaded.profiles.smtp_users["alice"].owner == "ops"
    assert len(loaded.profiles.trusted_networks) == 1  # 10.0.0.0/8 has none


def test_a_profile_change_is_audited_and_rollback_restores_it():
    with policy_change():
        TrustedNetwork.objects.create(network="10.1.0.0/16", rate_limit_per_hour=100, ticket="CHG-1")
        TrustedNetwork.objects.create(network="10.9.0.0/16", enabled=False, require_tls=True)
    first = PolicyRevision.objects.latest("serial").serial
    with policy_change():
        network = TrustedNetwork.objects.get(network="10.1.0.0/16")
        network.rate_limit_per_hour, network.ticket = 5000, "CHG-2"
        network.save()
        TrustedNetwork.objects.filter(network="10.9.0.0/16").update(require_tls=False)
    change = AuditEntry.objects.filter(action="update", object_repr="10.1.0.0/16").latest("timestamp")
    assert change.before["rate_limit_per_hour"] == 100 and change.after["rate_limit_per_hour"] == 5000
    rollback_to(first)
    assert TrustedNetwork.objects.get(network="10.1.0.0/16").profile()["rate_limit_per_hour"] == 100
    assert TrustedNetwork.objects.get(network="10.1.0.0/16").ticket == "CHG-1"
    assert TrustedNetwork.objects.get(network="10.9.0.0/16").require_tls is True  # a disabled entry's too
    assert json.loads(PolicyRevision.objects.latest("serial").snapshot)["schema"] == PROFILES_SCHEMA


def test_csv_export_writes_sender_domains_as_a_cell_that_imports_again():
    TrustedNetwork.objects.create(
        network="10.1.0.0/16", allowed_sender_domains=["a.example", "b.example"], recipients_per_hour=7
    )
    target = network_csv.LISTS["trusted"]
    out = io.StringIO()
    network_csv.write(target, out)
    text = out.getvalue()
    assert "a.example b.example" in text
    parsed = network_csv.read(text, target)
    assert parsed.errors == {}
    assert parsed.rows[0]["allowed_sender_domains"] == ["a.example", "b.example"]
    assert parsed.rows[0]["recipients_per_hour"] == 7


def test_the_tester_names_the_profile_that_limits_a_relayed_recipient():
    TrustedNetwork.objects.create(network="10.0.0.0/8")
    TrustedNetwork.objects.create(network="10.1.0.0/16", rate_limit_per_hour=100, require_tls=True)
    limited = check(Probe(client="10.1.2.3", recipient="bob@remote.example"))
    assert limited.verdict.allowed
    assert "trusted network 10.1.0.0/16: limit 100 messages/hour; TLS only; relayd counts per clock hour." in (
        limited.notes
    )
    # The most specific network decides: 10.2.0.1 is only in the /8, which has no profile.
    assert check(Probe(client="10.2.0.1", recipient="bob@remote.example")).notes == ()
    # Refused recipients name no limits.
    assert check(Probe(client="192.0.2.1", recipient="bob@remote.example")).notes == ()
