"""Latency from a committed policy change to relayd enforcing it, over real SMTP.

Starts relayd on a scratch policy file, then makes CHANGES policy changes through the dashboard's
own service layer (each commit publishes the snapshot). After each commit it asks relayd over one
SMTP session whether it accepts mail for the domain just added, until it does.

    .venv/bin/python bench/propagation.py [CHANGES]    (default 25; target: p95 <= 1 s)

With --fleet, the production shape instead (bench/fleet.py): PostgreSQL, gunicorn and the long-poll
server, 10 relayd nodes with --policy-url, and the dashboard's CPU with 200 idle long-polling nodes:

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/bench .venv/bin/python bench/propagation.py --fleet [CHANGES]
"""

import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 10.0
# relayd refuses to stay root; a benchmark run as root on loopback (a CI box) lets it.
AS_ROOT = ["--allow-root"] if os.geteuid() == 0 else []


def main(changes: int) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="relayadmin-propagation-"))
    os.environ.update({"RELAYADMIN_VAR_DIR": str(scratch), "DJANGO_SETTINGS_MODULE": "relayadmin.settings"})
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from policy.models import LocalDomain
    from policy.revisions import commit_revision, policy_change, publish_latest

    call_command("migrate", verbosity=0)
    commit_revision()
    publish_latest()
    port = free_port()
    relayd = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "relayd",
            "--policy",
            str(settings.RELAYD_POLICY_PATH),
            "--spool",
            str(scratch / "spool"),
            "--listen",
            f"127.0.0.1:{port}",
            "--metrics-listen",
            "off",
            "--greet-delay",
            "0",
            "--no-delivery",
            "--junk-command-limit",
            "1000000",
            *AS_ROOT,
        ],  # the probe loop sends many RSETs
        cwd=ROOT,
        stderr=subprocess.DEVNULL,
    )
    try:
        smtp = connect(port)
        latencies = []
        for number in range(changes):
            domain = f"d{number}.propagation.example"
            with policy_change():
                LocalDomain.objects.create(domain=domain)
                committed = time.perf_counter()  # the commit and the publish follow at the block's end
            while True:
                smtp.mail("bench@example.org")
                code, _ = smtp.rcpt(f"user@{domain}")
                smtp.rset()
                if code == 250:
                    latencies.append(time.perf_counter() - committed)
                    break
                if time.perf_counter() - committed > TIMEOUT:
                    raise SystemExit(f"{domain} was not enforced within {TIMEOUT} s")
                time.sleep(0.005)
        smtp.quit()
    finally:
        relayd.terminate()
        relayd.wait(timeout=30)
    latencies.sort()
    p95 = latencies[max(0, round(0.95 * len(latencies)) - 1)]
    print(f"changes: {len(latencies)}")
    print(f"commit -> enforcement median: {statistics.median(latencies) * 1000:.0f} ms")
    print(f"commit -> enforcement p95:    {p95 * 1000:.0f} ms   (target: <= 1000 ms)")
    print(f"commit -> enforcement max:    {latencies[-1] * 1000:.0f} ms")
    print(
        "For comparison: Exchange 5.5 needed a service restart; Postfix documents 'a minute or so' or postfix reload."
    )


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def connect(port: int) -> smtplib.SMTP:
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            smtp = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
            smtp.ehlo("bench.example.org")
            return smtp
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


if __name__ == "__main__":
    arguments = [argument for argument in sys.argv[1:] if argument != "--fleet"]
    count = int(arguments[0]) if arguments else 25
    if "--fleet" in sys.argv:
        import fleet

        fleet.main(count)
    else:
        print(f"load average: {' '.join(f'{value:.2f}' for value in os.getloadavg())}")
        main(count)
