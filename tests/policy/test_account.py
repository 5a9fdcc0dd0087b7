"""Every logged-in user may change their own password (issue 11, finding 11)."""

import json

import pytest
from django.contrib.auth import SESSION_KEY
from django.test import Client
from django.urls import reverse

from policy.models import AuditEntry
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db

CHANGE = reverse("password_change")
NEW = "a brand new passphrase 42"


def change(client, old=PASSWORD, new1=NEW, new2=NEW):
    return client.post(CHANGE, {"old_password": old, "new_password1": new1, "new_password2": new2})


def logs_in(username, password) -> bool:
    return Client().login(username=username, password=password)


@pytest.mark.parametrize("role", ["viewer", "editor", None])
def test_any_user_changes_their_own_password_and_stays_logged_in(client, role):
    user = make_user("pat", role=role)
    client.force_login(user)
    page = client.get(CHANGE)
    assert page.status_code == 200
    assert "Change my password" in page.content.decode()
    response = change(client)
    assert response.status_code == 302
    assert response.url == reverse("password_change_done")
    done = client.get(response.url)
    assert "Password changed" in done.content.decode()
    assert client.session[SESSION_KEY] == str(user.pk)  # this session goes on
    assert logs_in("pat", NEW)
    assert not logs_in("pat", PASSWORD)


def test_the_change_is_audited_without_the_password(viewer_client, viewer):
    change(viewer_client)
    entry = AuditEntry.objects.filter(action="update", object_id=str(viewer.pk)).latest("id")
    assert entry.actor_name == "vic"
    assert entry.before["password"] != entry.after["password"]
    assert NEW not in json.dumps(entry.after)
    viewer.refresh_from_db()
    assert viewer.password not in json.dumps(entry.after)  # not even the hash: a fingerprint


def test_other_sessions_of_the_user_end(client, viewer):
    other = Client()
    other.force_login(viewer)
    assert other.get(reverse("policy:dashboard")).status_code == 200
    client.force_login(viewer)
    change(client)
    assert other.get(reverse("policy:dashboard")).status_code == 302  # to the login page


@pytest.mark.parametrize(
    ("fields", "field", "message"),
    [
        ({"old": "wrong"}, "old_password", "Your old password was entered incorrectly"),
        ({"new1": "x", "new2": "x"}, "new_password2", "This password is too short"),
        ({"new1": "password123", "new2": "password123"}, "new_password2", "This password is too common"),
        ({"new2": "something else entirely"}, "new_password2", "The two password fields didn’t match"),
    ],
)
def test_a_refused_change_says_why_and_changes_nothing(viewer_client, fields, field, message):
    response = change(viewer_client, **fields)
    assert response.status_code == 200
    assert message in " ".join(response.context["form"].errors[field])
    assert message in response.content.decode().replace("&#x27;", "'").replace("&rsquo;", "’")
    assert logs_in("vic", PASSWORD)


def test_anonymous_is_sent_to_log_in(client):
    response = client.get(CHANGE)
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_the_change_needs_the_csrf_token(viewer):
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer)
    assert change(client).status_code == 403
    assert logs_in("vic", PASSWORD)


def test_every_page_links_to_it(viewer_client):
    page = viewer_client.get(reverse("policy:dashboard")).content.decode()
    assert f'<a href="{CHANGE}">Change password</a>' in page
