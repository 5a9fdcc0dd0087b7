"""Token authentication, the create_api_token command and the API tokens page."""

import io
from datetime import timedelta

import pytest
from django.core.management import CommandError, call_command
from django.urls import reverse
from django.utils import timezone

from policy.models import ApiToken, AuditEntry
from tests.api.conftest import issue_token, token_client
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

TRUSTED = reverse("api:trustednetwork-list")
TOKENS = reverse("policy:api-tokens")


def test_only_the_digest_of_the_key_is_stored(editor):
    key = issue_token(editor)
    token = ApiToken.objects.get()
    prefix, secret = key.split(".")
    assert token.prefix == prefix
    assert secret not in token.digest
    assert token.digest == ApiToken.hash_secret(secret)


@pytest.mark.parametrize(
    ("header", "message"),
    [
        ("Token nope.nope", "Invalid token: it does not exist or was revoked."),
        ("Token", "Send the header as “Authorization: Token <key>”, one key."),
        ("Token a b", "Send the header as “Authorization: Token <key>”, one key."),
    ],
)
def test_bad_tokens_get_401_with_a_reason(client, header, message):
    response = client.get(TRUSTED, HTTP_AUTHORIZATION=header)
    assert response.status_code == 401
    assert response.json() == {"detail": message}
    assert response["WWW-Authenticate"] == "Token"


def test_a_wrong_secret_with_a_real_prefix_is_refused(editor):
    prefix = issue_token(editor).split(".")[0]
    assert token_client(f"{prefix}.guessed").get(TRUSTED).status_code == 401


def test_expired_token_is_refused(editor):
    key = issue_token(editor, expires_at=timezone.now() - timedelta(minutes=1))
    response = token_client(key).get(TRUSTED)
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]


def test_deactivated_users_token_is_refused(editor):
    key = issue_token(editor)
    editor.is_active = False
    editor.save()
    assert token_client(key).get(TRUSTED).status_code == 401


def test_use_is_recorded_without_an_audit_entry(editor):
    key = issue_token(editor)
    count = AuditEntry.objects.count()
    token_client(key).get(TRUSTED)
    assert ApiToken.objects.get().last_used_at is not None
    assert AuditEntry.objects.count() == count


def test_command_prints_the_key_once_and_it_works(editor):
    out = io.StringIO()
    call_command("create_api_token", "erin", "--read-only", "--expires", "30", "--name", "ci", stdout=out)
    key = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(name="ci")
    assert token.read_only
    assert timedelta(days=29) < token.expires_at - timezone.now() <= timedelta(days=30)
    assert token_client(key).get(TRUSTED).status_code == 200
    entry = AuditEntry.objects.get(object_type="API token")
    assert (entry.action, entry.actor_name, entry.source) == ("create", "system: create_api_token", "cli")
    assert key.split(".")[1] not in str(entry.after)


def test_command_refuses_unknown_users_and_duplicate_names(editor):
    with pytest.raises(CommandError, match="No user “ghost”"):
        call_command("create_api_token", "ghost")
    call_command("create_api_token", "erin", "--name", "ci", stdout=io.StringIO())
    with pytest.raises(CommandError, match="already has a token with this name"):
        call_command("create_api_token", "erin", "--name", "ci")


def test_page_shows_a_new_key_once_and_not_again(editor_client):
    response = editor_client.post(TOKENS, {"name": "ansible", "expires_in_days": "7"})
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    key = response.context["new_key"]
    assert key in response.content.decode()
    assert key not in editor_client.get(TOKENS).content.decode()
    assert token_client(key).post(TRUSTED, {"network": "10.0.0.0/8"}).status_code == 201


def test_viewers_tokens_are_read_only(viewer_client):
    viewer_client.post(TOKENS, {"name": "monitoring"})
    assert ApiToken.objects.get().read_only


def test_duplicate_name_is_refused_on_the_page(editor_client, editor):
    issue_token(editor, name="ansible")
    response = editor_client.post(TOKENS, {"name": "ansible"})
    assert response.status_code == 400
    assert "already has a token with this name" in response.content.decode()


def test_users_see_and_revoke_only_their_own_tokens(editor_client, editor, viewer, superuser, client):
    issue_token(editor, name="mine")
    key = issue_token(viewer, name="theirs")
    theirs = ApiToken.objects.get(name="theirs")
    page = editor_client.get(TOKENS).content.decode()
    assert "mine" in page and "theirs" not in page
    assert editor_client.post(reverse("policy:api-token-revoke", args=[theirs.pk])).status_code == 404
    client.force_login(superuser)
    assert "theirs" in client.get(TOKENS).content.decode()
    client.post(reverse("policy:api-token-revoke", args=[theirs.pk]))
    assert token_client(key).get(TRUSTED).status_code == 401
    assert AuditEntry.objects.filter(object_type="API token", action="delete").exists()


def test_users_without_a_role_get_403(client):
    client.force_login(make_user("norole"))
    assert client.get(TOKENS).status_code == 403


def test_revoke_asks_first_and_names_the_relayd_node_that_uses_the_token(editor_client, editor):
    key = issue_token(editor, name="relayd on mx2", node="mx2", read_only=True)
    token = ApiToken.objects.get(name="relayd on mx2")
    report = {"node": "mx2", "serial": 1, "tls": True, "counters": {}}
    assert token_client(key).post(reverse("api:relaynode-list"), report, format="json").status_code == 201
    url = reverse("policy:api-token-revoke", args=[token.pk])
    page = editor_client.get(url)
    assert "The relayd node “mx2” uses this token: it will stop receiving policy updates" in page.content.decode()
    assert ApiToken.objects.filter(pk=token.pk).exists()  # asking revoked nothing
    response = editor_client.post(url, follow=True)
    assert "“mx2” will no longer receive policy updates" in response.content.decode()
    assert not ApiToken.objects.filter(pk=token.pk).exists()
    assert token_client(key).get(reverse("api:export", args=["relayd"])).status_code == 401


def test_command_makes_a_node_token(editor):
    out = io.StringIO()
    call_command("create_api_token", "erin", "--node", "mx1.example.net", "--name", "relayd mx1", stdout=out)
    assert "node token for “mx1.example.net”" in out.getvalue()
    key = out.getvalue().strip().splitlines()[-1]
    token = ApiToken.objects.get(name="relayd mx1")
    assert (token.node, token.read_only) == ("mx1.example.net", True)
    client = token_client(key)
    assert client.get(reverse("api:export", kwargs={"fmt": "relayd"})).status_code == 200
    assert client.post(reverse("api:relaynode-list"), {"node": "mx1.example.net"}).status_code == 201
    response = client.get(TRUSTED)
    assert response.status_code == 403
    assert "node token may only read relayd's export" in response.json()["detail"]


def test_command_refuses_node_tokens_for_viewers_and_bad_names(editor, viewer):
    with pytest.raises(CommandError, match="Only editors may create node tokens"):
        call_command("create_api_token", "vic", "--node", "mx1")
    with pytest.raises(CommandError, match="no spaces or control characters"):
        call_command("create_api_token", "erin", "--node", "mx 1")
    assert not ApiToken.objects.exists()


def test_page_makes_a_node_token(editor_client):
    response = editor_client.post(TOKENS, {"name": "relayd mx2", "node_token": "on", "node": "mx2"})
    assert response.status_code == 200
    token = ApiToken.objects.get()
    assert (token.node, token.read_only) == ("mx2", True)
    page = response.content.decode()
    assert "Node token for “mx2”" in page
    assert "node “mx2”" in page  # the list's Access column


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"node_token": "on"}, "Give the name of the relayd node"),
        ({"node": "mx2"}, "Tick “Node token”"),
        ({"node_token": "on", "node": "mx\t2"}, "no spaces or control characters"),
    ],
)
def test_page_refuses_an_incomplete_node_token(editor_client, fields, message):
    response = editor_client.post(TOKENS, {"name": "relayd", **fields})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not ApiToken.objects.exists()


def test_viewers_cannot_make_node_tokens_on_the_page(viewer_client):
    assert "Node name" not in viewer_client.get(TOKENS).content.decode()
    viewer_client.post(TOKENS, {"name": "sneaky", "node_token": "on", "node": "mx1"})
    token = ApiToken.objects.get()
    assert (token.node, token.read_only) == ("", True)  # a viewer's ordinary read-only token
