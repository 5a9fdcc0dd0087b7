"""Users & roles: superusers give each user one role and reset passwords; everybody else is told why not."""

import re

import pytest
from django.contrib.auth.models import User

from policy.models import AuditEntry
from policy.roles import role_of
from tests.conftest import make_user


@pytest.fixture
def superuser_client(client, superuser):
    client.force_login(superuser)
    return client


def shown_password(response) -> str:
    return re.search(r'id="new-password" value="([^"]+)"', response.content.decode()).group(1)


def test_list_shows_each_users_role(superuser_client, editor, viewer):
    make_user("nobody")
    page = superuser_client.get("/users/").content.decode()
    assert re.search(r"erin</td>.*?editor</td>", page, re.S)
    assert re.search(r"vic</td>.*?viewer</td>", page, re.S)
    assert re.search(r"root</td>.*?superuser</td>", page, re.S)
    assert re.search(r"nobody</td>.*?no role", page, re.S)


def test_new_user_defaults_to_viewer_and_gets_a_password_shown_once(superuser_client, client):
    form = superuser_client.get("/users/add/").content.decode()
    assert re.search(r'<option value="viewer" selected>', form)

    response = superuser_client.post(
        "/users/add/", {"username": "nina", "email": "", "role": "viewer", "is_active": "on"}
    )
    assert response.status_code == 200
    assert response["Cache-Control"] == "no-store"
    password = shown_password(response)
    nina = User.objects.get(username="nina")
    assert role_of(nina) == "viewer"
    assert nina.check_password(password)
    assert AuditEntry.objects.filter(object_type="user", object_repr="nina", action="create").exists()

    client.logout()
    assert client.login(username="nina", password=password)


def test_changing_the_role_replaces_the_old_one(superuser_client, viewer):
    response = superuser_client.post(
        f"/users/{viewer.pk}/edit/",
        {"username": "vic", "email": "vic@example.com", "role": "editor", "is_active": "on"},
    )
    assert response.status_code == 302
    viewer.refresh_from_db()
    assert role_of(viewer) == "editor"
    assert set(viewer.groups.values_list("name", flat=True)) == {"editor"}

    superuser_client.post(f"/users/{viewer.pk}/edit/", {"username": "vic", "role": "superuser", "is_active": "on"})
    viewer.refresh_from_db()
    assert viewer.is_superuser and viewer.is_staff and not viewer.groups.exists()


def test_a_superuser_cannot_demote_or_lock_out_themselves(superuser_client, superuser):
    response = superuser_client.post(f"/users/{superuser.pk}/edit/", {"username": "root", "role": "viewer"})
    assert response.status_code == 400
    page = response.content.decode()
    assert "You cannot take the superuser role from your own account." in page
    assert "You cannot deactivate your own account." in page
    superuser.refresh_from_db()
    assert superuser.is_superuser and superuser.is_active


def test_password_reset_makes_a_new_password_and_the_old_one_stops_working(superuser_client, editor):
    response = superuser_client.post(f"/users/{editor.pk}/password-reset/")
    assert response.status_code == 200
    editor.refresh_from_db()
    assert editor.check_password(shown_password(response))
    assert not editor.check_password("correct horse battery staple")


def test_bad_usernames_are_refused_with_a_message(superuser_client):
    response = superuser_client.post("/users/add/", {"username": "bad name<script>", "role": "viewer"})
    assert response.status_code == 400
    assert "Enter a valid username" in response.content.decode()
    assert not User.objects.filter(username__startswith="bad").exists()


@pytest.mark.parametrize("url", ["/users/", "/users/add/", "/users/1/edit/"])
def test_editors_get_a_branded_403_that_names_the_role_needed(editor_client, url):
    response = editor_client.get(url)
    assert response.status_code == 403
    assert "Only superusers manage users and roles." in response.content.decode()
    assert "<nav" in response.content.decode()  # the site's own page, not a bare error


def test_a_user_without_a_role_is_told_to_ask_for_one(client, db):
    client.force_login(make_user("nobody"))
    response = client.get("/")
    assert response.status_code == 403
    assert "needs the viewer role" in response.content.decode()


def test_anonymous_users_are_sent_to_login(client, db):
    response = client.get("/users/")
    assert response.status_code == 302
    assert response["Location"].startswith("/login/")
