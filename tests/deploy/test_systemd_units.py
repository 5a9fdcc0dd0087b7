"""The systemd units in docs/deploy/ pass `systemd-analyze verify` and keep their hardening."""

import configparser
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "docs" / "deploy"
UNITS = sorted(DEPLOY.glob("*.service")) + sorted(DEPLOY.glob("*.timer"))
LONG_RUNNING = ["relayd@.service", "relayadmin.service", "relayadmin-longpoll.service"]


def read_unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str
    parser.read(DEPLOY / name)
    return parser


def test_units_pass_systemd_analyze_verify(tmp_path):
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here: the units were not verified")
    # Point the install prefix at this checkout, so the ExecStart binaries exist for the check.
    for unit in UNITS:
        text = unit.read_text().replace("/opt/relayadmin", str(ROOT))
        name = unit.name.replace("@.", "@test.")
        (tmp_path / name).write_text(text)
    result = subprocess.run(
        [analyze, "verify", *sorted(str(p) for p in tmp_path.iterdir())],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert "Unknown" not in result.stderr, result.stderr


@pytest.mark.parametrize("name", LONG_RUNNING)
def test_long_running_units_are_hardened(name):
    service = read_unit(name)["Service"]
    assert service["User"] != "root"
    assert service["NoNewPrivileges"] == "yes"
    assert service["ProtectSystem"] == "strict"
    assert service["PrivateTmp"] == "yes"


def test_only_relayd_may_bind_privileged_ports():
    assert read_unit("relayd@.service")["Service"]["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert read_unit("relayadmin.service")["Service"]["CapabilityBoundingSet"] == ""
    assert read_unit("relayadmin-longpoll.service")["Service"]["CapabilityBoundingSet"] == ""


def test_audit_timer_reports_failures():
    assert read_unit("relayadmin-verify-audit.service")["Unit"]["OnFailure"].startswith("relayadmin-alert@")
    assert read_unit("relayadmin-verify-audit.timer")["Timer"]["OnCalendar"] == "daily"
