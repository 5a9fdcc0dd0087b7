"""Who relays how much: top senders of the last hour and day, from the nodes' status reports (issue 15).

Each report carries the messages a node relayed since it started, per trusted network and SMTP
user. What a holder relayed in a window is the sum, over nodes, of how much those counts grew
between consecutive reports; a count that went down means the node restarted, and then counts
from zero again.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.utils import timezone

from policy.models import RelayNodeSample

HOUR = timedelta(hours=1)
DAY = timedelta(days=1)
TOP = 10
# An entry is flagged when this hour's volume is at least this many times its hourly mean over the
# day before, and at least MIN_FLAGGED messages: a likely compromised host, limit or not.
SURGE_FACTOR = 5
MIN_FLAGGED = 20

_LABELS = {"trusted_networks": "trusted network", "smtp_users": "SMTP user"}


@dataclass(frozen=True)
class Sender:
    kind: str  # "trusted_networks" or "smtp_users"
    name: str
    hour: int
    day: int
    surge: bool  # far above its own recent norm this hour

    @property
    def label(self) -> str:
        return f"{_LABELS[self.kind]} {self.name}"


@dataclass(frozen=True)
class TopSenders:
    hour: list[Sender]
    day: list[Sender]

    @property
    def surges(self) -> list[Sender]:
        return [sender for sender in self.day if sender.surge]


def top_senders(now: datetime | None = None, top: int = TOP) -> TopSenders:
    """Return the holders that relayed most in the last hour and the last day, surges flagged."""
    now = now or timezone.now()
    # One day and one hour back: the day before this hour is the norm a surge is measured against.
    since = now - DAY - HOUR
    hour: defaultdict[str, int] = defaultdict(int)
    day: defaultdict[str, int] = defaultdict(int)
    before: defaultdict[str, int] = defaultdict(int)
    previous: dict[int, dict] = {}
    samples = RelayNodeSample.objects.filter(at__gte=since - HOUR).order_by("node_id", "at")
    for node_id, at, usage in samples.values_list("node_id", "at", "usage").iterator(chunk_size=2000):
        last = previous.get(node_id)
        previous[node_id] = usage or {}
        if last is None or at < since:
            continue  # the first sample of a node is only the base its growth is measured from
        for key, grown in _growth(last, usage or {}):
            if at > now - HOUR:
                hour[key] += grown
            else:
                before[key] += grown
            if at > now - DAY:
                day[key] += grown
    senders = {
        key: Sender(key[0], key[1], hour[key], day[key], _surge(hour[key], before[key])) for key in set(hour) | set(day)
    }
    ranked = sorted(senders.values(), key=lambda sender: (-sender.day, sender.kind, sender.name))
    by_hour = sorted(
        (sender for sender in senders.values() if sender.hour),
        key=lambda sender: (-sender.hour, sender.kind, sender.name),
    )
    return TopSenders(hour=by_hour[:top], day=[sender for sender in ranked if sender.day][:top])


def _growth(last: dict, current: dict):
    """Yield ((kind, name), messages) relayed between two reports of one node."""
    for kind, counts in current.items():
        earlier = last.get(kind, {})
        for name, count in counts.items():
            grown = count - earlier.get(name, 0)
            if grown < 0:  # the node restarted: it counts from zero again
                grown = count
            if grown:
                yield (kind, name), grown


def _surge(this_hour: int, day_before: int) -> bool:
    norm = day_before / 24
    return this_hour >= MIN_FLAGGED and this_hour >= SURGE_FACTOR * max(norm, 1)
