"""`pip install .` into a fresh virtualenv gives working `relayd` and `relayadmin` commands."""

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

import relayd

ROOT = Path(__file__).resolve().parents[2]
SKIP = shutil.ignore_patterns(".git", ".venv", ".cache", "var", "__pycache__", "*.egg-info", "build", "node_modules")


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """Return the bin/ of a new venv holding `pip install .` of a copy of this checkout."""
    work = tmp_path_factory.mktemp("packaging")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=SKIP)  # the build writes egg-info and build/ beside the sources
    venv = work / "venv"
    subprocess.run([sys.executable, "-m", "venv", venv], check=True, timeout=120)
    # The packages themselves come from the wheel; their dependencies from the suite's own environment,
    # as the machine has no index to download them from in every run.
    purelib = Path(
        subprocess.check_output(
            [venv / "bin/python", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], text=True
        ).strip()
    )
    (purelib / "suite-dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [venv / "bin/python", "-m", "pip", "install", "--quiet", "--no-deps", source],
        check=True,
        timeout=300,
        cwd=work,
    )
    return venv / "bin"


def test_relayd_console_script_prints_the_version(installed):
    result = subprocess.run([installed / "relayd", "--version"], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout.strip() == f"relayd {relayd.__version__}"


def test_relayadmin_console_script_runs_management_commands(installed, tmp_path):
    env = {**os.environ, "RELAYADMIN_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "relayadmin.settings"}
    env.pop("DATABASE_URL", None)  # the installed copy keeps its data under RELAYADMIN_VAR_DIR
    result = subprocess.run(
        [installed / "relayadmin", "check"], capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env
    )
    assert result.returncode == 0, result.stderr
    assert "System check identified no issues" in result.stdout


def test_installed_dashboard_renders_its_templates(installed, tmp_path):
    # The templates come from share/relayadmin in the venv, not from this checkout.
    probe = (
        "import django; django.setup();"
        "from django.template.loader import get_template;"
        "print(get_template('base.html').origin.name)"
    )
    env = {**os.environ, "RELAYADMIN_VAR_DIR": str(tmp_path / "var"), "DJANGO_SETTINGS_MODULE": "relayadmin.settings"}
    result = subprocess.run(
        [installed / "python", "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert result.stdout.strip() == str(installed.parent / "share" / "relayadmin" / "templates" / "base.html")
