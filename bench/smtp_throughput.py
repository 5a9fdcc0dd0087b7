"""Measure relayd's SMTP intake against a private Postfix with the same policy, both loaded by Postfix's smtp-source.

Run: .venv/bin/python bench/smtp_throughput.py [--messages 20000] [--sessions 20] [--size 1024]
Needs Postfix's tools: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix (the system's Postfix is
left alone: the private one has its own config and queue under a temporary directory, listens on a
loopback high port, and is stopped at the end). smtp-sink is the next hop of both, so each delivers
while it accepts. Two loads, each timed end to end: accepted mail (to a local domain, spooled durably
before the 250) and relay-denied attempts (a remote recipient from an untrusted client). Prints the
figures and the ratios, by wall clock and per CPU second of each server's process tree; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.snapshots import restrictions

ROOT = Path(__file__).resolve().parent.parent
SENDER = "sender@client.test"
LOCAL_RECIPIENT = "bob@example.com"
REMOTE_RECIPIENT = "bob@remote.test"
# Issue 14's targets.
TARGETS = {"accepted": 1.5, "denied": 1.2}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def snapshot(sink_port: int) -> dict:
    """Return the policy both servers enforce: example.com routed to the sink, loopback not trusted."""
    return {
        "schema": 1,
        "serial": 1,
        "generated_at": "2026-11-28T00:00:00+00:00",
        "restrictions": restrictions(allow_authenticated=True, allow_listed_ips=True),
        "trusted_networks": [
            {
                "id": 1,
                "network": "192.0.2.0/24",
                "description": "bench LAN",
                "expires_at": None,
                "added_by": "bench",
                "added_at": "2026-11-28T00:00:00+00:00",
            }
        ],
        "denied_networks": [],
        "internal_addresses": [],
        "local_domains": [{"domain": "example.com", "include_subdomains": False, "route": f"127.0.0.1:{sink_port}"}],
        "smtp_users": [],
    }


def postfix_main_cf(policy: dict, directory: Path) -> str:
    """Return a main.cf enforcing the same policy, the way relayadmin's Postfix export would."""
    networks = " ".join(entry["network"] for entry in policy["trusted_networks"])
    domains = policy["local_domains"]
    routes = " ".join(
        f"{entry['domain']}=smtp:[{entry['route'].rpartition(':')[0]}]:{entry['route'].rpartition(':')[2]}"
        for entry in domains
        if entry["route"]
    )
    return f"""compatibility_level = 3.6
queue_directory = {directory}/queue
data_directory = {directory}/data
mail_owner = postfix
setgid_group = postdrop
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = postfix.bench.test
mydestination =
alias_maps =
alias_database =
local_recipient_maps =
relay_domains = {" ".join(entry["domain"] for entry in domains)}
transport_maps = inline:{{ {routes} }}
mynetworks = {networks}
smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, reject_unauth_destination
message_size_limit = 10240000
smtpd_recipient_limit = 100
smtpd_client_connection_count_limit = 50
maillog_file = {directory}/maillog
maillog_file_prefixes = {directory}
"""


POSTFIX_MASTER_CF = """{listen} inet n - n - - smtpd
pickup    unix  n - n 60 1 pickup
cleanup   unix  n - n -  0 cleanup
qmgr      unix  n - n 300 1 qmgr
rewrite   unix  - - n -  - trivial-rewrite
bounce    unix  - - n -  0 bounce
defer     unix  - - n -  0 bounce
trace     unix  - - n -  0 bounce
verify    unix  - - n -  1 verify
flush     unix  n - n 1000? 0 flush
proxymap  unix  - - n -  - proxymap
smtp      unix  - - n -  - smtp
relay     unix  - - n -  - smtp
showq     unix  n - n -  - showq
error     unix  - - n -  - error
retry     unix  - - n -  - error
discard   unix  - - n -  - discard
anvil     unix  - - n -  1 anvil
scache    unix  - - n -  1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


def smtp_source(port: int, messages: int, sessions: int, size: int, recipient: str, allow_reject: bool) -> float:
    """Run smtp-source and return its wall time in seconds."""
    command = ["smtp-source", "-s", str(sessions), "-m", str(messages), "-l", str(size), "-f", SENDER]
    command += ["-t", recipient, *(["-A"] if allow_reject else []), f"127.0.0.1:{port}"]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def tree_cpu_seconds(root: int) -> float:
    """Return the CPU seconds (user + system) used so far by root and its descendants, living or reaped."""
    parents, times = {}, {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rpartition(")")[2].split()
            except OSError:
                continue
            # After the command: state, ppid, ... utime (12), stime, cutime, cstime (counted from state = 0).
            parents[int(entry)] = int(fields[1])
            times[int(entry)] = sum(map(int, fields[11:15]))
    total, tree = 0, {root}
    changed = True
    while changed:
        changed = False
        for pid, parent in parents.items():
            if parent in tree and pid not in tree:
                tree.add(pid)
                changed = True
    total = sum(times.get(pid, 0) for pid in tree)
    return total / os.sysconf("SC_CLK_TCK")


def measure(
    name: str, port: int, args: argparse.Namespace, queue_size: Callable[[], int], root: Callable[[], int]
) -> dict[str, tuple[float, float]]:
    """Warm up, then time accepted and relay-denied loads; return msg/s and msg per CPU second of each.

    The denied load starts once the accepted mail has been delivered, so that each load is measured
    on its own rather than against the other's delivery backlog. CPU is counted over the server's
    whole process tree, delivery of the accepted load included: on a host that other work keeps
    busy, messages per CPU second compare the two servers more steadily than wall-clock rates.
    """
    smtp_source(port, 200, args.sessions, args.size, LOCAL_RECIPIENT, False)
    rates = {}
    for load, recipient, allow_reject in (("accepted", LOCAL_RECIPIENT, False), ("denied", REMOTE_RECIPIENT, True)):
        load_average = os.getloadavg()[0]
        cpu = -tree_cpu_seconds(root())
        seconds = smtp_source(port, args.messages, args.sessions, args.size, recipient, allow_reject)
        figures = f"{args.messages} in {seconds:6.2f} s = {args.messages / seconds:7.0f} msg/s"
        print(f"{name:8} {load:9} {figures}  (load average before: {load_average:.1f})", flush=True)
        if load == "accepted":
            started = time.perf_counter()
            while queue_size() and time.perf_counter() - started < args.drain_timeout:
                time.sleep(0.5)
            left = queue_size()
            print(f"{name:8} delivered the backlog to smtp-sink in {time.perf_counter() - started:.1f} s ({left} left)")
        cpu += tree_cpu_seconds(root())
        rates[load] = (args.messages / seconds, args.messages / cpu)
        print(f"{name:8} {load:9} {cpu:.1f} CPU seconds = {args.messages / cpu:7.0f} msg per CPU second", flush=True)
    return rates


def run_relayd(directory: Path, policy_path: Path, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    port, metrics_port = free_port(), free_port()
    log = (directory / "relayd.log").open("w")
    process = subprocess.Popen(
        [
            *(sys.executable, "-m", "relayd", "--policy", str(policy_path), "--spool", str(directory / "spool")),
            *("--listen", f"127.0.0.1:{port}", "--metrics-listen", f"127.0.0.1:{metrics_port}", "--node-name", "bench"),
            *(("--workers", str(args.workers)) if args.workers else ()),
            # The interpreter may live where no other user can reach it (a root-owned pyenv): the bench
            # then keeps root rather than fail; privileges change nothing on the measured path.
            *(("--allow-root",) if os.geteuid() == 0 else ()),
        ],
        cwd=ROOT,
        stderr=log,
    )
    try:
        deadline = time.monotonic() + 20
        while "event=started" not in (directory / "relayd.log").read_text():
            if process.poll() is not None or time.monotonic() > deadline:
                sys.exit(f"relayd did not start; see {directory / 'relayd.log'}")
            time.sleep(0.1)

        def status() -> dict:
            return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/status").read())

        rates = measure("relayd", port, args, lambda: status()["queue_size"], lambda: process.pid)
        print(f"relayd   accepted (250, on disk): {status()['counters'].get('messages_accepted', 0)}")
        return rates
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(60)
        log.close()


def run_postfix(directory: Path, policy: dict, args: argparse.Namespace) -> dict[str, tuple[float, float]]:
    port = free_port()
    etc = directory / "etc"
    for sub in (etc, directory / "queue", directory / "data"):
        sub.mkdir(parents=True)
    shutil.chown(directory / "data", "postfix")
    (etc / "main.cf").write_text(postfix_main_cf(policy, directory))
    (etc / "master.cf").write_text(POSTFIX_MASTER_CF.format(listen=f"127.0.0.1:{port}"))
    subprocess.run(["postfix", "-c", str(etc), "check"], check=True)
    subprocess.run(["postfix", "-c", str(etc), "start"], check=True, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    sys.exit(f"postfix did not start; see {directory / 'maillog'}")
                time.sleep(0.1)

        def queue_size() -> int:
            listing = subprocess.run(["postqueue", "-c", str(etc), "-j"], capture_output=True, text=True, check=True)
            return len(listing.stdout.splitlines())

        def master() -> int:
            return int((directory / "queue" / "pid" / "master.pid").read_text())

        rates = measure("postfix", port, args, queue_size, master)
        queued = sum(" postfix/cleanup[" in line for line in (directory / "maillog").open(errors="replace"))
        print(f"postfix  accepted (250, on disk): {queued}")
        return rates
    finally:
        subprocess.run(["postfix", "-c", str(etc), "stop"], check=False, stderr=subprocess.DEVNULL)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--sessions", type=int, default=20)
    parser.add_argument("--size", type=int, default=1024, help="payload bytes per message")
    parser.add_argument("--workers", type=int, help="relayd's --workers (default: relayd's own default)")
    parser.add_argument("--skip-postfix", action="store_true", help="measure relayd alone (no ratios)")
    parser.add_argument("--drain-timeout", type=float, default=300, help="seconds to wait for delivery between loads")
    args = parser.parse_args()
    missing = [tool for tool in ("smtp-source", "smtp-sink", "postfix") if not shutil.which(tool)]
    if missing:
        sys.exit(f"missing {', '.join(missing)}: DEBIAN_FRONTEND=noninteractive apt-get install -y postfix")
    workers = args.workers or "(relayd's default)"
    print(
        f"{args.messages} messages of {args.size} bytes, {args.sessions} parallel sessions, {os.cpu_count()} CPUs,"
        f" relayd --workers {workers}"
    )
    directory = Path(tempfile.mkdtemp(prefix="relayd-bench-"))
    directory.chmod(0o755)  # Postfix's daemons run as postfix and must reach their queue
    sink_port = free_port()
    sink_user = ["-u", "postfix"] if os.geteuid() == 0 else []
    sink = subprocess.Popen(["smtp-sink", *sink_user, f"127.0.0.1:{sink_port}", "1000"])
    try:
        policy = snapshot(sink_port)
        policy_path = directory / "policy.json"
        policy_path.write_text(json.dumps(policy))
        (directory / "relayd").mkdir()
        relayd = run_relayd(directory / "relayd", policy_path, args)
        if args.skip_postfix:
            return
        postfix = run_postfix(directory / "postfix", policy, args)
    finally:
        sink.terminate()
        sink.wait()
        shutil.rmtree(directory, ignore_errors=True)
    print()
    print(f"{'':34}{'relayd':>10}{'postfix':>10}{'relayd/postfix':>16}{'target':>10}")
    for load, label in (("accepted", "accepted (durable)"), ("denied", "relay denied")):
        for index, unit in ((0, "msg/s"), (1, "msg per CPU second")):
            ratio = relayd[load][index] / postfix[load][index]
            verdict = "met" if ratio >= TARGETS[load] else "MISSED"
            target = f">= {TARGETS[load]}x"
            name = f"{label}, {unit}"
            figures = f"{relayd[load][index]:>10.0f}{postfix[load][index]:>10.0f}{ratio:>16.2f}"
            print(f"{name:34}{figures}{target:>10} {verdict}")


if __name__ == "__main__":
    main()
