"""Files that hold secrets are created for this user only (issue 11, finding 11)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from policy.management.commands.runrelay import Command
from policy.revisions import policy_change, publish_latest

ROOT = Path(__file__).resolve().parents[2]

FIRST_START = """
import django
django.setup()
from django.db import connection
with connection.cursor() as cursor:
    cursor.execute("CREATE TABLE probe (x)")  # a write: SQLite now has its -wal and -shm files too
    import os, sys
    for name in sorted(os.listdir(sys.argv[1])):
        print(name, oct(os.stat(os.path.join(sys.argv[1], name)).st_mode & 0o777))
"""


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o777)


def test_a_first_start_creates_var_the_keys_and_the_database_private(tmp_path):
    var = tmp_path / "var"
    environ = {
        key: value
        for key, value in os.environ.items()
        if key not in ("SECRET_KEY", "DATABASE_URL", "RELAYADMIN_AUDIT_KEY")
    }
    environ |= {"DJANGO_SETTINGS_MODULE": "relayadmin.settings", "RELAYADMIN_VAR_DIR": str(var)}
    result = subprocess.run(
        [sys.executable, "-c", FIRST_START, str(var)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    modes = dict(line.split() for line in result.stdout.splitlines())
    assert modes == {
        "audit_key": "0o600",
        "relayadmin.sqlite3": "0o600",
        "relayadmin.sqlite3-shm": "0o600",
        "relayadmin.sqlite3-wal": "0o600",
        "secret_key": "0o600",
    }
    assert mode(var) == "0o700"


@pytest.mark.django_db
def test_the_published_snapshot_is_closed_to_others(settings, tmp_path):
    from policy.models import LocalDomain

    settings.RELAYD_POLICY_PATH = tmp_path / "relayd" / "policy.json"
    with policy_change():
        LocalDomain.objects.create(domain="example.com")
    publish_latest()
    assert mode(tmp_path / "relayd") == "0o750"
    assert mode(settings.RELAYD_POLICY_PATH) == "0o640"


def test_the_starttls_key_is_private(tmp_path):
    _cert, key = Command().self_signed_pair(tmp_path / "tls")
    assert mode(tmp_path / "tls") == "0o700"
    assert mode(key) == "0o600"
