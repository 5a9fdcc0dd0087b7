"""Bulk requests are bounded: body size, row count, error list; a dry run locks nothing (issue 11, finding 6)."""

import io
import json
import threading
import time

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import connection, transaction
from django.urls import reverse

from policy import locks, services
from policy.models import TrustedNetwork
from relayadmin.settings import _env_int

BULK = reverse("api:trustednetwork-bulk")


def rows(count, start=0):
    return [{"network": f"10.{n // 256}.{n % 256}.0/24"} for n in range(start, start + count)]


@pytest.mark.django_db
def test_a_body_over_the_limit_is_refused_with_413_before_it_is_parsed(api, settings, monkeypatch):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 2000
    monkeypatch.setattr("rest_framework.parsers.JSONParser.parse", lambda *a: pytest.fail("the body was parsed"))
    body = json.dumps(rows(100))
    assert len(body) > 2000
    response = api.generic("POST", BULK, body, content_type="application/json")
    assert response.status_code == 413
    assert response.json() == {
        "detail": "The request body is larger than 2,000 bytes (RELAYADMIN_MAX_BODY_BYTES); send fewer rows at a time."
    }
    assert not TrustedNetwork.objects.exists()
    # Every endpoint has the same limit, not only bulk/, in every format the API parses.
    big = {"network": "10.0.0.0/8", "description": "x" * 3000}
    for fmt in ("json", "multipart"):
        assert api.post(reverse("api:trustednetwork-list"), big, format=fmt).status_code == 413
    form = api.generic(
        "POST",
        reverse("api:trustednetwork-list"),
        f"network=10.0.0.0/8&description={'x' * 3000}",
        content_type="application/x-www-form-urlencoded",
    )
    assert form.status_code == 413
    assert not TrustedNetwork.objects.exists()


@pytest.mark.django_db
def test_a_body_at_the_limit_is_accepted(api, settings):
    body = json.dumps(rows(10))
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = len(body.encode())
    assert api.generic("POST", BULK, body, content_type="application/json").status_code == 200
    assert TrustedNetwork.objects.count() == 10


@pytest.mark.django_db
def test_more_rows_than_the_cap_are_refused_before_any_row_is_checked(api, settings, monkeypatch):
    settings.BULK_MAX_ROWS = 50
    monkeypatch.setattr("policy.api.serializers.parse_rows", lambda *a: pytest.fail("rows were parsed"))
    response = api.post(BULK, rows(51))
    assert response.status_code == 400
    assert response.json() == {
        "detail": "Send at most 50 rows per request (RELAYADMIN_BULK_MAX_ROWS), not 51; nothing was saved. "
        "Split the list: mode=add adds to what is there."
    }
    assert not TrustedNetwork.objects.exists()


@pytest.mark.django_db
def test_exactly_the_cap_is_imported(api, settings):
    settings.BULK_MAX_ROWS = 50
    assert api.post(BULK, rows(50)).status_code == 200
    assert TrustedNetwork.objects.count() == 50


@pytest.mark.django_db
def test_the_error_list_is_capped_and_says_how_many_there_are(api):
    bad = [{"network": f"10.{n // 256}.{n % 256}.1/24"} for n in range(1500)]  # host bits set: every row bad
    response = api.post(f"{BULK}?dry_run=true", bad)
    assert response.status_code == 400
    body = response.json()
    assert body["detail"] == (
        "1,500 of 1,500 rows are invalid; nothing was saved. 1,000 errors shown of 1,500; fix these and retry."
    )
    assert [item["row"] for item in body["errors"]] == list(range(1, 1001))
    assert "Did you mean 10.0.0.0/24?" in body["errors"][0]["errors"]["network"][0]


def while_the_policy_is_locked(work):
    """Run work() while another thread holds the policy lock (on SQLite: the database's write lock).

    Return work's result and how long it took.
    """
    locked, release, errors = threading.Event(), threading.Event(), []

    def writer():
        try:
            with transaction.atomic():  # SQLite: BEGIN IMMEDIATE, the database's one write lock
                locks.lock_policy()
                TrustedNetwork.objects.create(network="192.0.2.0/24")
                locked.set()
                release.wait(30)
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            locked.set()
            connection.close()

    holder = threading.Thread(target=writer)
    holder.start()
    try:
        locked.wait(10)
        started = time.monotonic()
        result = work()
        elapsed = time.monotonic() - started
    finally:
        release.set()
        holder.join()
    assert errors == []
    return result, elapsed


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_takes_no_write_lock(api):
    """A dry run goes through while another writer holds the lock; SQLite would wait 20 s, then fail."""
    api.get(reverse("api:trustednetwork-list"))  # the token's last-use time is written now, not under the lock
    response, elapsed = while_the_policy_is_locked(lambda: api.post(f"{BULK}?dry_run=true", rows(2000)))
    assert response.status_code == 200, response.content
    assert response.json()["created"] == 2000
    assert elapsed < 10
    assert list(TrustedNetwork.objects.values_list("network", flat=True)) == ["192.0.2.0/24"]


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_of_the_import_command_takes_no_write_lock(tmp_path):
    file = tmp_path / "networks.csv"
    file.write_text("network\n10.1.0.0/16\n10.2.0.0/16\n")
    out = io.StringIO()
    _, elapsed = while_the_policy_is_locked(
        lambda: call_command("import_networks", str(file), "--list", "trusted", "--dry-run", stdout=out)
    )
    assert out.getvalue() == "Would import: 2 created, 0 updated, 0 removed, 0 unchanged.\n"
    assert elapsed < 10


@pytest.mark.django_db(transaction=True)
def test_a_dry_run_checks_its_rows_outside_any_transaction(api, monkeypatch):
    seen = []
    validate = services._validate_rows

    def spy(*args):
        seen.append(connection.in_atomic_block)
        return validate(*args)

    monkeypatch.setattr(services, "_validate_rows", spy)
    assert api.post(f"{BULK}?dry_run=true", rows(3)).status_code == 200
    assert api.post(BULK, rows(3)).status_code == 200
    assert seen == [False, True]  # the real import checks again under the lock, in its transaction
    assert TrustedNetwork.objects.count() == 3


@pytest.mark.django_db
def test_a_csv_upload_over_the_row_cap_is_a_form_error(editor_client, settings):
    settings.BULK_MAX_ROWS = 5
    text = "network\n" + "".join(f"10.{n}.0.0/16\n" for n in range(6))
    file = SimpleUploadedFile("networks.csv", text.encode(), content_type="text/csv")
    response = editor_client.post(
        reverse("policy:network-import"), {"network_list": "trusted", "mode": "add", "file": file}
    )
    assert response.status_code == 400
    assert response.context["form"].errors["file"] == [
        "The file has more than 5 networks; import at most that many at a time (RELAYADMIN_BULK_MAX_ROWS): "
        "split it, or use manage.py import_networks."
    ]


@pytest.mark.django_db
def test_a_csv_preview_keeps_only_the_errors_it_shows(editor_client):
    text = "network\n" + "".join(f"10.{n // 256}.{n % 256}.1/24\n" for n in range(500))
    file = SimpleUploadedFile("networks.csv", text.encode(), content_type="text/csv")
    editor_client.post(reverse("policy:network-import"), {"network_list": "trusted", "mode": "add", "file": file})
    stored = editor_client.session["network_import"]["result"]
    assert (len(stored["errors"]), stored["error_count"]) == (200, 500)
    page = editor_client.get(reverse("policy:network-import-preview")).content.decode()
    assert "500 lines cannot be imported" in page
    assert "and 300 more lines with errors" in page


@pytest.mark.parametrize("value", ["0", "-5", "ten", "1e6", "²"])
def test_a_bad_limit_in_the_environment_stops_the_start(monkeypatch, value):
    monkeypatch.setenv("RELAYADMIN_BULK_MAX_ROWS", value)
    with pytest.raises(ImproperlyConfigured, match="RELAYADMIN_BULK_MAX_ROWS"):
        _env_int("RELAYADMIN_BULK_MAX_ROWS", 10)


def test_limits_come_from_the_environment(monkeypatch):
    monkeypatch.setenv("RELAYADMIN_MAX_BODY_BYTES", "1048576")
    assert _env_int("RELAYADMIN_MAX_BODY_BYTES", 5) == 1048576
    monkeypatch.delenv("RELAYADMIN_MAX_BODY_BYTES")
    assert _env_int("RELAYADMIN_MAX_BODY_BYTES", 5) == 5
