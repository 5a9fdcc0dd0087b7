"""`make run` writes relayd's log through tools/rotating_log.py, which bounds var/log."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_log_rotates_at_the_size_limit_and_keeps_a_bounded_number_of_files(tmp_path):
    log = tmp_path / "relayd.log"
    lines = "".join(f"event=rcpt client=192.0.2.{n % 250} verdict=refuse line={n:05d}\n" for n in range(2000))
    subprocess.run(
        [sys.executable, ROOT / "tools" / "rotating_log.py", log, "10000", "2"],
        input=lines,
        text=True,
        check=True,
        timeout=60,
    )
    files = sorted(p.name for p in tmp_path.iterdir())
    assert files == ["relayd.log", "relayd.log.1", "relayd.log.2"]
    assert all((tmp_path / name).stat().st_size <= 10000 for name in files)
    # The newest line is in the current file, whole.
    assert log.read_text().splitlines()[-1].endswith("line=01999")
