"""Is this server blacklisted? Check its public addresses against DNS blocklists and keep the history.

The DNS side lives in `policy.dnsbl`; this module decides what to ask, stores the answers,
records each check and each change of state in the audit log, and starts checks in the
background so that no page waits for DNS.
"""

import contextvars
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

import dns.resolver
import netaddr
from django.conf import settings
from django.db import connection, connections, transaction
from django.utils import timezone

from policy import audit, dnsbl
from policy.addresses import AddressError, parse_public_address
from policy.models import Blocklist, Listing, ListingEvent, RelayNode, ReputationCheck, WatchedAddress

# A check that has not finished after this long died with its process (a restarted app server).
STALE_AFTER = timedelta(minutes=10)
# Lists limit how often one resolver may ask; a button pressed repeatedly must not get it refused.
BUTTON_INTERVAL = timedelta(seconds=60)
DEFAULT_CONCURRENCY = 8
PROBLEM_STATES = (dnsbl.REFUSED, dnsbl.TIMEOUT, dnsbl.ERROR)


class CheckRefused(Exception):
    """The check was not started; the message says why."""


def make_resolver() -> dns.resolver.Resolver:
    """Return the resolver of RELAYADMIN_DNS_RESOLVER, or the system's; raise CheckRefused if unusable."""
    try:
        return dnsbl.make_resolver(settings.RELAYADMIN_DNS_RESOLVER, settings.RELAYADMIN_DNS_TIMEOUT)
    except ValueError as exc:
        raise CheckRefused(str(exc)) from None
    except dns.resolver.NoResolverConfiguration:
        raise CheckRefused(
            "The system has no DNS resolver configured: set RELAYADMIN_DNS_RESOLVER to host:port."
        ) from None


def pairs_to_check(watched: Iterable[WatchedAddress]) -> list[tuple[WatchedAddress, Blocklist]]:
    """Return every (address, enabled list) to query; IPv6 addresses only go to lists that take them."""
    lists = list(Blocklist.objects.filter(enabled=True))
    return [
        (address, blocklist)
        for address in watched
        for blocklist in lists
        if netaddr.IPAddress(address.address).version == 4 or blocklist.ipv6
    ]


def begin_check(min_interval: timedelta | None = None) -> ReputationCheck:
    """Create the record of a new check as the current actor; refuse while another one runs.

    With `min_interval`, also refuse until that long after the last check started.
    """
    now = timezone.now()
    with transaction.atomic():
        _lock_checks()
        checks = ReputationCheck.objects.all()
        if checks.filter(finished_at__isnull=True, started_at__gte=now - STALE_AFTER).exists():
            raise CheckRefused("A blocklist check is already running; its results will show here when it ends.")
        last = checks.order_by("-started_at").values_list("started_at", flat=True).first()
        if min_interval and last and now - last < min_interval:
            wait = int((min_interval - (now - last)).total_seconds()) + 1
            raise CheckRefused(
                f"The last check started {int((now - last).total_seconds())} s ago; blocklists limit how often "
                f"they may be asked, so check again in {wait} s."
            )
        return ReputationCheck.objects.create(started_by_name=audit.current_context().actor_name)


def _lock_checks() -> None:
    # Two clicks at once must not both find no running check. SQLite: the settings open every
    # transaction IMMEDIATE, which serialises already. PostgreSQL: a transaction advisory lock.
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(hashtext('policy_reputationcheck'))")


def run_check(
    check: ReputationCheck | None = None,
    *,
    watched: Iterable[WatchedAddress] | None = None,
    concurrency: int | None = None,
    resolver: dns.resolver.Resolver | None = None,
) -> ReputationCheck:
    """Query every enabled list about every watched address (or those given), store and audit the answers.

    At most `concurrency` queries are in flight at once: blocklists limit their free use, and a
    burst from one resolver gets it refused.
    """
    check = check or begin_check()
    try:
        resolver = resolver or make_resolver()
    except CheckRefused as exc:
        return _finish(check, error=str(exc))
    pairs = pairs_to_check(WatchedAddress.objects.all() if watched is None else watched)
    workers = max(1, concurrency or settings.RELAYADMIN_DNSBL_CONCURRENCY)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="dnsbl") as pool:
        answers = list(
            pool.map(lambda pair: dnsbl.lookup(netaddr.IPAddress(pair[0].address), pair[1].zone, resolver), pairs)
        )
    now = timezone.now()
    for (address, blocklist), answer in zip(pairs, answers, strict=True):
        store_answer(address, blocklist, answer, now)
    WatchedAddress.objects.filter(pk__in={address.pk for address, _ in pairs}).update(last_checked_at=now)
    check.queries = len(answers)
    check.listed = sum(answer.listed for answer in answers)
    check.failed = sum(answer.state in PROBLEM_STATES for answer in answers)
    return _finish(check)


def _finish(check: ReputationCheck, error: str = "") -> ReputationCheck:
    check.error = error[:500]
    check.finished_at = timezone.now()
    check.save()
    audit.record(
        "dnsbl_check",
        obj=check,
        after={"queries": check.queries, "listed": check.listed, "failed": check.failed, "error": check.error},
    )
    return check


def store_answer(address: WatchedAddress, blocklist: Blocklist, answer: dnsbl.Answer, now) -> Listing:
    """Save one answer; a change of state becomes a history event and an audit entry."""
    with transaction.atomic():
        listing = Listing.objects.select_for_update().filter(address=address, blocklist=blocklist).first()
        previous = listing.state if listing else ""
        if listing is None:
            listing = Listing(address=address, blocklist=blocklist, since=now)
        elif listing.state != answer.state:
            listing.since = now
        listing.state, listing.reason, listing.codes, listing.checked_at = (
            answer.state,
            answer.reason[:1000],
            list(answer.codes),
            now,
        )
        listing.save()
        if previous != answer.state:
            ListingEvent.objects.create(
                address=address,
                zone=blocklist.zone,
                state=answer.state,
                previous_state=previous,
                reason=listing.reason,
                at=now,
            )
            audit.record(
                "dnsbl_change",
                obj=listing,
                object_repr=f"{address.address} on {blocklist.zone}",
                before={"state": previous} if previous else None,
                after={"state": answer.state, "reason": listing.reason},
            )
    return listing


def start_background_check() -> ReputationCheck:
    """Start a check in a background thread and return its record at once.

    Raise CheckRefused while one runs or within BUTTON_INTERVAL of the last.

    A thread, not a task queue: a check is a few dozen DNS queries bounded by the resolver
    timeout, the product has no worker process to hand it to, and the record it writes is what
    the page polls. If the app server dies mid-check, the record goes stale after STALE_AFTER
    and the next check may start; cron's `manage.py check_blacklists` is the durable path.
    """
    check = begin_check(min_interval=BUTTON_INTERVAL)
    # The thread acts as whoever pressed the button: copy the audit context into it.
    context = contextvars.copy_context()
    thread = threading.Thread(
        target=context.run, args=(_run_in_thread, check.pk), name=f"dnsbl-check-{check.pk}", daemon=True
    )
    # Only once the record is committed can the thread's own connection see it.
    transaction.on_commit(thread.start)
    return check


def _run_in_thread(check_pk: int) -> None:
    try:
        check = ReputationCheck.objects.get(pk=check_pk)
        try:
            run_check(check)
        except Exception as exc:  # a crash must still end the record, or the page would wait for ever
            _finish(check, error=f"the check failed: {exc}")
            raise
    finally:
        connections.close_all()


def latest_check() -> ReputationCheck | None:
    return ReputationCheck.objects.first()


@dataclass(frozen=True)
class Summary:
    """What the dashboard card shows."""

    watched: int
    listed: list[Listing]
    problems: list[Listing]
    last_check: ReputationCheck | None

    @property
    def state(self) -> str:
        if self.listed:
            return "listed"
        if self.problems:
            return "problems"
        return "clear" if self.watched and self.last_check else "unknown"


def summary() -> Summary:
    """Return the watched count, current listings, failed queries and the last check."""
    current = Listing.objects.select_related("address", "blocklist").filter(blocklist__enabled=True)
    return Summary(
        watched=WatchedAddress.objects.count(),
        listed=list(current.filter(state=dnsbl.LISTED)),
        problems=list(current.filter(state__in=PROBLEM_STATES)),
        last_check=latest_check(),
    )


def suggestions() -> list[tuple[str, str]]:
    """Return (address, node) for relayd nodes' reported public addresses that are not watched yet."""
    watched = set(WatchedAddress.objects.values_list("address", flat=True))
    found: dict[str, str] = {}
    for name, address in RelayNode.objects.exclude(address__isnull=True).values_list("name", "address"):
        try:
            public = str(parse_public_address(address))  # type: ignore[arg-type]  # None excluded above
        except AddressError:
            continue
        if public not in watched:
            found.setdefault(public, name)
    return sorted(found.items())


def matrix() -> tuple[list[Blocklist], list[tuple[WatchedAddress, list[tuple[Blocklist, Listing | str | None]]]]]:
    """Return the lists and, per watched address, (list, cell) pairs: the Listing, "n/a" or None (not checked)."""
    lists = list(Blocklist.objects.all())
    listings = {(row.address_id, row.blocklist_id): row for row in Listing.objects.all()}
    rows = []
    for address in WatchedAddress.objects.all():
        is_v6 = netaddr.IPAddress(address.address).version == 6
        cells = [
            (blocklist, "n/a" if is_v6 and not blocklist.ipv6 else listings.get((address.pk, blocklist.pk)))
            for blocklist in lists
        ]
        rows.append((address, cells))
    return lists, rows


def metrics_text() -> str:
    """Return the figures in Prometheus' text format, for alerting on `relayadmin_dnsbl_listings > 0`."""
    current = Listing.objects.select_related("address", "blocklist").filter(blocklist__enabled=True)
    lines = [
        "# HELP relayadmin_dnsbl_listings Watched addresses currently listed, counted per blocklist.",
        "# TYPE relayadmin_dnsbl_listings gauge",
        f"relayadmin_dnsbl_listings {current.filter(state=dnsbl.LISTED).count()}",
        "# HELP relayadmin_dnsbl_watched_addresses Addresses checked against the blocklists.",
        "# TYPE relayadmin_dnsbl_watched_addresses gauge",
        f"relayadmin_dnsbl_watched_addresses {WatchedAddress.objects.count()}",
        "# HELP relayadmin_dnsbl_state 1 for the state each blocklist last gave each address.",
        "# TYPE relayadmin_dnsbl_state gauge",
    ]
    for listing in current:
        for state in dnsbl.STATES:
            labels = f'address="{listing.address.address}",zone="{listing.blocklist.zone}",state="{state}"'
            lines.append(f"relayadmin_dnsbl_state{{{labels}}} {int(listing.state == state)}")
    finished = ReputationCheck.objects.filter(finished_at__isnull=False, error="").first()
    finished_at = finished.finished_at if finished else None
    lines += [
        "# HELP relayadmin_dnsbl_last_check_timestamp_seconds When the last complete check finished.",
        "# TYPE relayadmin_dnsbl_last_check_timestamp_seconds gauge",
        f"relayadmin_dnsbl_last_check_timestamp_seconds {finished_at.timestamp() if finished_at else 0:.0f}",
    ]
    return "\n".join(lines) + "\n"
