"""The dashboard's traffic chart: accepted and relay-denied attempts per node over time, laid out as SVG."""

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from policy.models import RelayNodeSample

# Okabe-Ito colours: told apart with every common kind of colour blindness.
PALETTE = ("#0072b2", "#d55e00", "#009e73", "#cc79a7", "#e69f00", "#56b4e9", "#000000")


@dataclass(frozen=True)
class NodeSeries:
    """One node's attempts per bucket."""

    name: str
    color: str
    accepted: list[int]
    denied: list[int]

    @property
    def total_accepted(self) -> int:
        return sum(self.accepted)

    @property
    def total_denied(self) -> int:
        return sum(self.denied)


@dataclass(frozen=True)
class Line:
    label: str
    color: str
    dashed: bool
    points: str


@dataclass(frozen=True)
class TrafficChart:
    """Attempts per bucket and node, with the geometry of axes, ticks and lines for an SVG of fixed size."""

    start: datetime
    bucket: timedelta
    buckets: int
    series: list[NodeSeries]
    width: int = 640
    height: int = 200
    left: int = 44
    right: int = 8
    top: int = 8
    bottom: int = 24

    @property
    def totals(self) -> tuple[int, int]:
        return sum(sum(s.accepted) for s in self.series), sum(sum(s.denied) for s in self.series)

    @property
    def has_traffic(self) -> bool:
        return any(self.totals)

    @property
    def bucket_minutes(self) -> int:
        return int(self.bucket.total_seconds() // 60)

    @property
    def hours(self) -> int:
        return round(self.buckets * self.bucket / timedelta(hours=1))

    @property
    def plot_right(self) -> int:
        return self.width - self.right

    @property
    def plot_bottom(self) -> int:
        return self.height - self.bottom

    @property
    def y_max(self) -> int:
        """Return the top of the y axis: the peak rounded up to a step of 1, 2 or 5 times a power of ten."""
        peak = max((max(s.accepted + s.denied, default=0) for s in self.series), default=0)
        step = nice_step(peak / 4) if peak else 1
        return max(step * 4, step * -(-peak // step))

    def x(self, index: float) -> float:
        span = self.plot_right - self.left
        return self.left + span * index / max(self.buckets - 1, 1)

    def y(self, value: int) -> float:
        return self.plot_bottom - (self.plot_bottom - self.top) * value / self.y_max

    @property
    def y_ticks(self) -> list[tuple[float, int]]:
        step = max(self.y_max // 4, 1)
        return [(round(self.y(value), 1), value) for value in range(0, self.y_max + 1, step)]

    @property
    def x_ticks(self) -> list[tuple[float, str]]:
        """Return a tick at each full hour, labelled in the site's time zone."""
        first = timezone.localtime(self.start).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        end = self.start + self.bucket * (self.buckets - 1)
        ticks = []
        while first <= end:
            ticks.append((round(self.x((first - self.start) / self.bucket), 1), first.strftime("%H:%M")))
            first += timedelta(hours=1)
        return ticks

    @property
    def lines(self) -> list[Line]:
        lines = []
        for series in self.series:
            for kind, values, dashed in (("accepted", series.accepted, False), ("relay denied", series.denied, True)):
                points = " ".join(f"{self.x(i):.1f},{self.y(v):.1f}" for i, v in enumerate(values))
                lines.append(Line(f"{series.name} {kind}", series.color, dashed, points))
        return lines


def nice_step(raw: float) -> int:
    """Return the smallest of 1, 2, 5, 10, 20, 50, … that is at least raw."""
    magnitude = 1
    while True:
        for factor in (1, 2, 5):
            if factor * magnitude >= raw:
                return factor * magnitude
        magnitude *= 10


def traffic_chart(hours: int = 6, bucket_minutes: int = 10) -> TrafficChart:
    """Return the last hours' attempts per node: counter increases per bucket, a restart counted from zero."""
    now = timezone.now()
    bucket = timedelta(minutes=bucket_minutes)
    count = int(timedelta(hours=hours) / bucket)
    start = now - bucket * count
    per_node: dict[str, list[list[int]]] = {}
    previous: dict[str, tuple[int, int]] = {}
    samples = RelayNodeSample.objects.filter(at__gte=start - bucket).order_by("node__name", "at")
    for name, at, accepted, denied in samples.values_list("node__name", "at", "accepted", "relay_denied"):
        before = previous.get(name)
        previous[name] = (accepted, denied)
        if before is None or at < start:
            continue
        totals = per_node.setdefault(name, [[0] * count, [0] * count])
        index = min(int((at - start) / bucket), count - 1)
        # A counter that went down means relayd restarted: everything since then is new.
        totals[0][index] += accepted - before[0] if accepted >= before[0] else accepted
        totals[1][index] += denied - before[1] if denied >= before[1] else denied
    series = [
        NodeSeries(name, PALETTE[n % len(PALETTE)], accepted, denied)
        for n, (name, (accepted, denied)) in enumerate(sorted(per_node.items()))
    ]
    return TrafficChart(start=start, bucket=bucket, buckets=count, series=series)
