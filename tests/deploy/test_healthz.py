"""GET /healthz: 200 with a reachable database, 503 with a broken one, and no detail either way."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_healthz_answers_ok_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok\n"
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_healthz_refuses_writes(client):
    assert client.post("/healthz").status_code == 405


def test_healthz_answers_503_when_the_database_is_unreachable(tmp_path):
    # A real app process whose PostgreSQL server does not exist: nothing listens on port 1.
    probe = (
        "import django; django.setup();"
        "from django.test import Client;"
        "r = Client().get('/healthz', headers={'host': 'localhost'});"
        "print(r.status_code, r.content.decode().strip())"
    )
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "relayadmin.settings",
        "DATABASE_URL": "postgres://nobody@127.0.0.1:1/none",
        "RELAYADMIN_VAR_DIR": str(tmp_path),
    }
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.split() == ["503", "unavailable"]
    assert "127.0.0.1" not in result.stdout
