"""Time a /metrics scrape and a counter increment of relayd's Metrics, and print them.

The scrape renders a realistic set of series: every known counter, RCPT verdicts by rule, and
relayed_messages for --holders trusted networks and SMTP users. An increment is what a session
pays per event; relayd handles about 1,000 messages a second, each a handful of increments.
prometheus_client's own labelled Counter is timed beside it as the yardstick.

Run: .venv/bin/python bench/metrics.py [--holders N] [--scrapes N] [--increments N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import timeit
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from prometheus_client import CollectorRegistry, Counter

from relayd.metrics import HELP, Metrics

RULES = ("default_deny", "denied_network", "sender_routing", "trusted_network", "smtp_user", "local_domain")


def populated(holders: int) -> Metrics:
    """Return Metrics holding the series of a busy node."""
    metrics = Metrics()
    for name in HELP:
        metrics.inc(name)
    for rule in RULES:
        for verdict in ("accept", "refuse"):
            metrics.inc("rcpt", 17, verdict=verdict, rule=rule)
    for result in ("sent", "deferred", "bounced", "expired"):
        metrics.inc("deliveries", 5, result=result)
    for holder in range(holders):
        kind = "trusted_network" if holder % 2 else "smtp_user"
        metrics.inc("relayed_messages", holder, kind=kind, holder=f"holder-{holder}")
    metrics.set("policy_serial", 42)
    metrics.gauge_from("queue_size", lambda: 12)
    return metrics


def per_call_us(statement, number: int) -> float:
    """Return the best of five timings of statement, in microseconds per call."""
    return min(timeit.repeat(statement, number=number, repeat=5)) / number * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holders", type=int, default=1000)
    parser.add_argument("--scrapes", type=int, default=50)
    parser.add_argument("--increments", type=int, default=200_000)
    options = parser.parse_args()

    metrics = populated(options.holders)
    scrapes = []
    for _ in range(options.scrapes):
        started = time.perf_counter()
        body = metrics.render()
        scrapes.append(time.perf_counter() - started)
    print(f"scrape, {options.holders} holders: median {statistics.median(scrapes) * 1e3:.2f} ms, {len(body)} bytes")

    def session_increment() -> None:
        metrics.inc("rcpt", verdict="refuse", rule="default_deny")

    def worker_batch_increment() -> None:
        metrics.inc("rcpt", 3, verdict="refuse", rule="default_deny")  # as relayd.hub adds a worker's batch

    counter = Counter("rcpt", "yardstick", ["verdict", "rule"], registry=CollectorRegistry())

    def library_counter_increment() -> None:
        counter.labels(verdict="refuse", rule="default_deny").inc()

    for label, statement in (
        ("Metrics.inc, one event", session_increment),
        ("Metrics.inc, a worker's batch", worker_batch_increment),
        ("prometheus_client Counter.labels().inc (yardstick)", library_counter_increment),
    ):
        print(f"{label}: {per_call_us(statement, options.increments):.3f} µs")


if __name__ == "__main__":
    main()
