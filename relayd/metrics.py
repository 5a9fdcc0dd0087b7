"""Count relayd's events and expose them in the Prometheus text format (version 0.0.4).

Any part of relayd increments a counter with metrics.inc("name", label="value"); it is
exposed as relayd_name_total. Gauges are set with metrics.set() or computed at scrape time
from a function registered with metrics.gauge_from().

The counts live here, in plain dictionaries under one lock, and prometheus_client renders them
as a custom collector rather than through its own Counter and Gauge objects. Those would add
_created series, want each name's labels declared before its first use and cost two to four
times as much per increment (bench/metrics.py); and the status reports read the counts back,
which the library offers only by walking collect(). The library is loaded at the first scrape:
the intake workers and the queue runner only forward increments here, and never need it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from prometheus_client.metrics_core import Metric

PREFIX = "relayd_"

# HELP texts of the known series; an unknown name still works and gets a generic text.
HELP = {
    "connections": "SMTP connections accepted by the listeners.",
    "connections_refused": "SMTP connections refused before the greeting, by reason.",
    "connections_active": "SMTP sessions in progress.",
    "rcpt": "RCPT TO verdicts by verdict and deciding rule; relaying denied is verdict=refuse.",
    "messages_accepted": "Messages spooled durably and answered 250.",
    "messages_refused": "Messages refused after DATA, by reason.",
    "relayed_messages": "Messages relayed under a trusted network's or SMTP user's grant, by kind and holder.",
    "auth": "AUTH attempts by result.",
    "sessions_cut": "Sessions closed by a limit, by reason.",
    "spool_errors": "Messages answered 451 because the spool could not store them.",
    "storage_refusals": "MAIL commands answered 452 4.3.1: the spool's free space is below --min-free-space.",
    "tls_failures": "STARTTLS handshakes that failed or were broken off.",
    "queue_size": "Messages in the spool queue.",
    "deliveries": "Delivery outcomes per recipient, by result.",
    "bounces": "Delivery status notifications, by result.",
    "delivery_quarantined": "Spool files the queue runner could not read and set aside.",
    "policy_serial": "Serial of the policy snapshot being enforced; 0 when none is loaded.",
    "policy_loaded_timestamp_seconds": "When the policy being enforced was loaded (Unix time).",
    "policy_reload_failures": "Snapshots refused as unreadable or invalid.",
    "policy_fetches": "Requests to --policy-url, by result: updated, unchanged, refused or failed.",
    "status_reports": "Status reports to --report-url, by result: sent or failed.",
}

Labels = tuple[tuple[str, str], ...]


class Counting(Protocol):
    """What counting code needs: Metrics here, or a forwarder to it in an intake worker or the queue runner."""

    def inc(self, name: str, /, **labels: str) -> None: ...


class Metrics:
    """A thread-safe set of counters and gauges."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counters: dict[str, dict[Labels, float]] = {}
        self._gauges: dict[str, dict[Labels, float]] = {}
        self._computed: dict[str, Callable[[], float]] = {}

    def inc(self, name: str, amount: int = 1, /, **labels: str) -> None:
        """Add amount (one) to the counter name with these labels."""
        key = tuple(sorted(labels.items()))
        with self._lock:
            series = self._counters.setdefault(name, {})
            series[key] = series.get(key, 0) + amount

    def set(self, name: str, value: float, **labels: str) -> None:
        """Set the gauge name with these labels to value."""
        with self._lock:
            self._gauges.setdefault(name, {})[tuple(sorted(labels.items()))] = value

    def gauge_from(self, name: str, read: Callable[[], float]) -> None:
        """Compute the gauge name by calling read at each scrape."""
        self._computed[name] = read

    def value(self, name: str, **labels: str) -> float:
        """Return the current value of a counter or gauge (0 if never touched)."""
        if name in self._computed:
            return self._computed[name]()
        key = tuple(sorted(labels.items()))
        with self._lock:
            for table in (self._counters, self._gauges):
                if key in table.get(name, {}):
                    return table[name][key]
        return 0

    def series(self, name: str) -> list[tuple[dict[str, str], float]]:
        """Return the labels and value of each series of the counter name."""
        with self._lock:
            return [(dict(key), value) for key, value in self._counters.get(name, {}).items()]

    def counters(self) -> dict[str, float | dict[str, float]]:
        """Return every counter: a number when it has no labels, else a mapping of "k=v,..." to numbers."""
        with self._lock:
            report: dict[str, float | dict[str, float]] = {}
            for name, series in sorted(self._counters.items()):
                if list(series) == [()]:
                    report[name] = series[()]
                else:
                    report[name] = {
                        ",".join(f"{k}={v}" for k, v in key): value for key, value in sorted(series.items())
                    }
            return report

    def collect(self) -> Iterator[Metric]:
        """Yield every counter and gauge as a metric family, in name order (prometheus_client's Collector)."""
        from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily

        computed: dict[str, dict[Labels, float]] = {name: {(): read()} for name, read in self._computed.items()}
        with self._lock:
            counters = {f"{PREFIX}{name}_total": (name, dict(series)) for name, series in self._counters.items()}
            gauges = {f"{PREFIX}{name}": (name, dict(series)) for name, series in {**self._gauges, **computed}.items()}
        families = {**counters, **gauges}
        for metric in sorted(families):
            name, series = families[metric]
            help_text = HELP.get(name, f"relayd {name}.")
            # Prometheus wants one set of label names per family; a missing label is the same as an empty one.
            label_names = sorted({label for key in series for label, _ in key})
            family: CounterMetricFamily | GaugeMetricFamily = (
                CounterMetricFamily(metric, help_text, labels=label_names)
                if metric in counters
                else GaugeMetricFamily(metric, help_text, labels=label_names)
            )
            for key, value in sorted(series.items()):
                labels = dict(key)
                family.add_metric([labels.get(label, "") for label in label_names], value)
            yield family

    def render(self) -> bytes:
        """Return all series in the Prometheus text exposition format."""
        from prometheus_client.exposition import generate_latest

        return generate_latest(self)
