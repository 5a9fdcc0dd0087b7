"""relayd nodes: their status reports, and who is behind or silent."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import connection, transaction
from django.utils import timezone

from policy.models import PolicyRevision, RelayNode, RelayNodeSample
from relayd.clientaddr import parse_hosts
from relayd.matcher import parse_address

# relayd reports every 10 s by default; three missed reports make a node silent.
SILENT_AFTER = timedelta(seconds=30)
# Publishing reaches a node within a second; a node still on an older serial after this is behind.
BEHIND_GRACE = timedelta(seconds=10)
SAMPLE_RETENTION = timedelta(days=2)
COUNTER_NAMES = ("connections", "accepted", "relay_denied", "queue_size", "deliveries")


class TooManyNodes(Exception):
    """A new node would pass RELAYADMIN_MAX_NODES; the message says what to do."""


def admit(name: str) -> None:
    """Raise TooManyNodes if a node of this name is new and the dashboard already tracks the most it may."""
    limit = settings.RELAYADMIN_MAX_NODES
    if RelayNode.objects.count() >= limit and not RelayNode.objects.filter(name=name).exists():
        raise TooManyNodes(
            f"The dashboard already tracks {limit} relayd nodes, the most RELAYADMIN_MAX_NODES allows; "
            f"raise the limit to add node “{name}”."
        )


@dataclass(frozen=True)
class NodeStatus:
    node: RelayNode
    state: str  # "current", "updating" (just published), "behind", "refused" or "silent"


def record_report(report: dict, remote_addr: str | None, token=None) -> RelayNode:
    """Store a node's status report; raise ValidationError naming the first bad field."""
    name = report.get("node")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValidationError({"node": "Give the node's name (1–100 characters)."})
    serial = report.get("serial")
    if serial is not None and (not isinstance(serial, int) or isinstance(serial, bool) or serial < 0):
        raise ValidationError({"serial": "The serial is a whole number ≥ 0, or null when no policy is loaded."})
    counters = report.get("counters", {})
    if not isinstance(counters, dict) or not all(
        isinstance(counters.get(key, 0), int) and counters.get(key, 0) >= 0 for key in COUNTER_NAMES
    ):
        raise ValidationError({"counters": f"Counters are whole numbers ≥ 0: {', '.join(COUNTER_NAMES)}."})
    usage = _usage(report)
    refused_serial, refused_reason = _refusal(report, serial)
    proxy_hosts, top_peer = _client_sources(report)
    version, schemas = _software(report)
    now = timezone.now()
    with transaction.atomic():
        node, _ = RelayNode.objects.update_or_create(
            name=name.strip(),
            defaults={
                "address": remote_addr,
                "serial": serial,
                "tls": bool(report.get("tls", False)),
                "version": version,
                "schemas": schemas,
                "counters": {key: counters.get(key, 0) for key in COUNTER_NAMES},
                "refused_serial": refused_serial,
                "refused_reason": refused_reason,
                "proxy_hosts": proxy_hosts,
                "top_peer": top_peer,
                "last_seen_at": now,
                "token": token,
            },
        )
        RelayNodeSample.objects.create(
            node=node,
            at=now,
            accepted=counters.get("accepted", 0),
            relay_denied=counters.get("relay_denied", 0),
            usage=usage,
        )
        RelayNodeSample.objects.filter(at__lt=now - SAMPLE_RETENTION).delete()
    return node


def record_fetch(node: str, serial: int, remote_addr: str | None) -> None:
    """Note on node's row that its token downloaded revision serial, from remote_addr.

    Only a node that has reported has a row: a fetch alone neither creates one nor counts toward
    RELAYADMIN_MAX_NODES.
    """
    fetched = {"fetched_serial": serial, "fetched_at": timezone.now(), "fetched_from": remote_addr}
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A note, not a policy change: it may be lost if the database crashes within a second,
            # and not waiting for its WAL flush keeps a few ms per node off the way of the snapshot
            # to the fleet (every node is answered after its note, at every revision).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO off")
        RelayNode.objects.filter(name=node).update(**fetched)


# More holders than this in one report are refused rather than stored: a node reports the networks
# and users that relayed through it since it started, which a sane policy keeps far below it.
MAX_USAGE_HOLDERS = 10_000
USAGE_KINDS = ("trusted_networks", "smtp_users")


def _usage(report: dict) -> dict:
    """Return a report's messages relayed per holder; raise ValidationError if it is malformed."""
    usage = report.get("usage") or {}
    problem = ValidationError(
        {
            "usage": 'Usage is {"trusted_networks": {NETWORK: COUNT}, "smtp_users": {USERNAME: COUNT}} '
            f"with whole numbers ≥ 0, at most {MAX_USAGE_HOLDERS} entries."
        }
    )
    if not isinstance(usage, dict) or not set(usage) <= set(USAGE_KINDS):
        raise problem
    cleaned = {}
    for kind in USAGE_KINDS:
        counts = usage.get(kind, {})
        if not isinstance(counts, dict) or len(counts) > MAX_USAGE_HOLDERS:
            raise problem
        for name, count in counts.items():
            if len(name) > 200 or not isinstance(count, int) or isinstance(count, bool) or not 0 <= count < 2**63:
                raise problem
        cleaned[kind] = counts
    return cleaned


# relayd before it reported its schemas understood schema 1 only.
SCHEMAS_BEFORE_REPORTING = [1]


def _software(report: dict) -> tuple[str, list[int]]:
    """Return the relayd version and the snapshot schemas a report announces."""
    version = report.get("version") or ""
    if not isinstance(version, str) or len(version) > 50:
        raise ValidationError({"version": "The relayd version is text of at most 50 characters."})
    schemas = report.get("schemas", SCHEMAS_BEFORE_REPORTING)
    if (
        not isinstance(schemas, list)
        or not schemas
        or not all(isinstance(item, int) and not isinstance(item, bool) and item > 0 for item in schemas)
    ):
        raise ValidationError({"schemas": "Schemas is a non-empty list of the schema versions (whole numbers ≥ 1)."})
    return version, sorted(set(schemas))


def node_schemas(node: RelayNode) -> list[int]:
    """Return the snapshot schemas a node enforces (nodes that reported before schemas were: schema 1)."""
    return node.schemas or SCHEMAS_BEFORE_REPORTING


def _refusal(report: dict, serial: int | None) -> tuple[int | None, str]:
    """Return the refused serial and reason of a report; none once the node enforces a newer serial."""
    refused_serial = report.get("refused_serial")
    if refused_serial is not None and (
        not isinstance(refused_serial, int) or isinstance(refused_serial, bool) or refused_serial < 0
    ):
        raise ValidationError({"refused_serial": "The refused serial is a whole number ≥ 0, or null."})
    reason = report.get("refused_reason") or ""
    if not isinstance(reason, str):
        raise ValidationError({"refused_reason": "The refusal reason is text, or null."})
    if refused_serial is not None and not reason:
        raise ValidationError({"refused_reason": "Say why the node refused the serial."})
    if refused_serial is not None and serial is not None and serial > refused_serial:
        return None, ""
    return refused_serial, reason[:1000]


def _client_sources(report: dict) -> tuple[list[str], dict | None]:
    """Return a report's proxy networks (canonical text) and busiest peer; raise ValidationError if malformed."""
    proxy_hosts = report.get("proxy_hosts") or []
    try:
        if not isinstance(proxy_hosts, list) or len(proxy_hosts) > 1000:
            raise ValueError
        networks = [network.text for network in parse_hosts(proxy_hosts)]
    except (TypeError, ValueError, AttributeError):
        raise ValidationError({"proxy_hosts": "A list of networks in canonical text, e.g. 10.0.0.0/24."}) from None
    top_peer = report.get("top_peer")
    if top_peer is None:
        return networks, None
    try:
        address = str(parse_address(top_peer["address"]))
        connections, total = top_peer["connections"], top_peer["of"]
        if not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in (connections, total)):
            raise ValueError
    except (TypeError, KeyError, ValueError):
        raise ValidationError(
            {"top_peer": "An object {address, connections, of}: an IP address and two whole numbers ≥ 0, or null."}
        ) from None
    return networks, {"address": address, "connections": connections, "of": total}


def client_sources() -> list[RelayNode]:
    """Return the nodes that reported proxies or a busiest peer, for the risk analysis."""
    return [node for node in RelayNode.objects.all() if node.proxy_hosts or node.top_peer]


def node_statuses() -> list[NodeStatus]:
    """Return every node with its state, judged against the latest revision."""
    now = timezone.now()
    latest = PolicyRevision.objects.order_by("-serial").first()
    statuses = []
    for node in RelayNode.objects.all():
        if now - node.last_seen_at > SILENT_AFTER:
            state = "silent"
        elif node.refused_reason:
            state = "refused"
        elif latest is None or (node.serial or 0) >= latest.serial:
            state = "current"
        elif now - latest.created_at < BEHIND_GRACE:
            state = "updating"
        else:
            state = "behind"
        statuses.append(NodeStatus(node, state))
    return statuses


def tls_ready() -> bool | None:
    """Return whether every reporting node offers STARTTLS; None when no node has reported."""
    flags = list(RelayNode.objects.values_list("tls", flat=True))
    return all(flags) if flags else None
