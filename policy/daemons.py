"""relayd nodes: their status reports, and who is behind or silent."""

from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import connection, transaction
from django.utils import timezone

from policy import audit
from policy.locks import lock_nodes
from policy.models import PolicyRevision, RelayNode, RelayNodeSample
from relayd.clientaddr import parse_hosts
from relayd.config import BASE_SCHEMA
from relayd.matcher import parse_address

# relayd reports every 10 s by default; three missed reports make a node silent.
SILENT_AFTER = timedelta(seconds=30)
# Publishing reaches a node within a second; a node still on an older serial after this is behind.
BEHIND_GRACE = timedelta(seconds=10)
SAMPLE_RETENTION = timedelta(days=2)
COUNTER_NAMES = ("connections", "accepted", "relay_denied", "queue_size", "deliveries")


class TooManyNodes(Exception):
    """A new node would pass RELAYADMIN_MAX_NODES; the message says what to do."""


def _admit(name: str) -> None:
    """Raise TooManyNodes if a node of this name is new and the dashboard already tracks the most it may.

    The caller holds the node lock, so two new nodes reporting at once cannot both take the last place.
    """
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


@dataclass(frozen=True)
class NodeReport:
    """A node's status report, checked by parse_report: what record_report stores."""

    node: str
    serial: int | None
    tls: bool
    version: str
    schemas: list[int]
    counters: dict[str, int]
    refused_serial: int | None
    refused_reason: str
    usage: dict
    proxy_hosts: list[str]
    top_peer: dict | None


# RelayNode.serial is a PositiveIntegerField: PostgreSQL refuses anything above 2**31 - 1 (a 500).
MAX_SERIAL = 2**31 - 1
# Counters land in 64-bit columns (the chart samples).
MAX_COUNT = 2**63 - 1


def _whole(value: object, most: int = MAX_COUNT) -> bool:
    """Return whether a reported value is a whole number from 0 to most (JSON's true and false are not)."""
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= most


def _holds_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_holds_nul(key) or _holds_nul(item) for key, item in value.items())
    if isinstance(value, list):
        return any(map(_holds_nul, value))
    return False


def parse_report(report: object) -> NodeReport:
    """Check a node's status report (POST /api/v1/daemons/); raise ValidationError naming the first bad field.

    The one place a report is checked: the API's NodeReportSerializer only describes it in the schema.
    """
    if not isinstance(report, dict):
        raise ValidationError({NON_FIELD_ERRORS: "Send the report as a JSON object."})
    if _holds_nul(report):  # PostgreSQL stores no NUL in text: refused here, not a 500 there
        raise ValidationError({NON_FIELD_ERRORS: "A report holds no NUL characters."})
    name = report.get("node")
    if not isinstance(name, str) or not name.strip() or len(name) > 100:
        raise ValidationError({"node": "Give the node's name (1–100 characters)."})
    serial = report.get("serial")
    if serial is not None and not _whole(serial, MAX_SERIAL):
        raise ValidationError({"serial": "The serial is a whole number ≥ 0, or null when no policy is loaded."})
    tls = report.get("tls", False)
    if not isinstance(tls, bool):
        raise ValidationError({"tls": "tls is true or false: whether the node offers STARTTLS."})
    counters = report.get("counters", {})
    if not isinstance(counters, dict) or not all(_whole(counters.get(key, 0)) for key in COUNTER_NAMES):
        raise ValidationError({"counters": f"Counters are whole numbers ≥ 0: {', '.join(COUNTER_NAMES)}."})
    usage = _usage(report)
    refused_serial, refused_reason = _refusal(report, serial)
    proxy_hosts, top_peer = _client_sources(report)
    version, schemas = _software(report)
    return NodeReport(
        node=name.strip(),
        serial=serial,
        tls=tls,
        version=version,
        schemas=schemas,
        counters={key: counters.get(key, 0) for key in COUNTER_NAMES},
        refused_serial=refused_serial,
        refused_reason=refused_reason,
        usage=usage,
        proxy_hosts=proxy_hosts,
        top_peer=top_peer,
    )


def record_report(report: NodeReport, remote_addr: str | None, token=None) -> RelayNode:
    """Store a node's checked status report, and drop the chart samples past SAMPLE_RETENTION.

    Raise TooManyNodes, storing nothing, for a new node past RELAYADMIN_MAX_NODES.
    """
    now = timezone.now()
    with transaction.atomic():
        if not RelayNode.objects.filter(name=report.node).exists():
            # Only a new node takes the lock: the fleet's regular reports do not queue behind each other.
            lock_nodes()
            _admit(report.node)
        node, _ = RelayNode.objects.update_or_create(
            name=report.node,
            defaults={
                "address": remote_addr,
                "serial": report.serial,
                "tls": report.tls,
                "version": report.version,
                "schemas": report.schemas,
                "counters": report.counters,
                "refused_serial": report.refused_serial,
                "refused_reason": report.refused_reason,
                "proxy_hosts": report.proxy_hosts,
                "top_peer": report.top_peer,
                "last_seen_at": now,
                "token": token,
            },
        )
        RelayNodeSample.objects.create(
            node=node,
            at=now,
            accepted=report.counters["accepted"],
            relay_denied=report.counters["relay_denied"],
            usage=report.usage,
        )
        RelayNodeSample.objects.filter(at__lt=now - SAMPLE_RETENTION).delete()
    return node


def forget(node: RelayNode) -> None:
    """Drop a node, with its chart samples, from the dashboard, freeing its place under RELAYADMIN_MAX_NODES.

    For a node taken out of service. One still running reappears with its next report; revoking its
    token is what stops it.
    """
    with transaction.atomic():
        lock_nodes()
        # Locked, so that no report adds a chart sample between the samples' delete and the node's.
        node = RelayNode.objects.select_for_update().get(pk=node.pk)
        audit.record("delete", obj=node, before=audit.serialize(node))
        node.delete()


def record_fetch(node: str, serial: int, remote_addr: str | None) -> bool:
    """Note on node's row that its token downloaded revision serial, from remote_addr.

    Only a node that has reported has a row: a fetch alone neither creates one nor counts toward
    RELAYADMIN_MAX_NODES. Return whether the fetch came from the address the node reports from;
    when not (a node yet to report, a forgotten one, or its token used elsewhere), the caller audits
    it as a download, since the snapshot carries the SMTP password hashes.
    """
    fetched = {"fetched_serial": serial, "fetched_at": timezone.now(), "fetched_from": remote_addr}
    with transaction.atomic():
        if connection.vendor == "postgresql":
            # A note, not a policy change: it may be lost if the database crashes within a second,
            # and not waiting for its WAL flush keeps a few ms per node off the way of the snapshot
            # to the fleet (every node is answered after its note, at every revision).
            with connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO off")
        known = RelayNode.objects.filter(name=node, address=remote_addr).update(**fetched)
        if not known:
            RelayNode.objects.filter(name=node).update(**fetched)
    return bool(known)


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
            if len(name) > 200 or not _whole(count):
                raise problem
        cleaned[kind] = counts
    return cleaned


# relayd before it reported its schemas understood the first schema only.
SCHEMAS_BEFORE_REPORTING = [BASE_SCHEMA]
# Far more than a relayd has ever known; bounds what one report may make the dashboard store.
MAX_SCHEMAS, MAX_SCHEMA = 20, 1000


def _software(report: dict) -> tuple[str, list[int]]:
    """Return the relayd version and the snapshot schemas a report announces."""
    version = report.get("version") or ""
    if not isinstance(version, str) or len(version) > 50:
        raise ValidationError({"version": "The relayd version is text of at most 50 characters."})
    schemas = report.get("schemas", SCHEMAS_BEFORE_REPORTING)
    if (
        not isinstance(schemas, list)
        or not 0 < len(schemas) <= MAX_SCHEMAS
        or not all(_whole(item, MAX_SCHEMA) and item > 0 for item in schemas)
    ):
        raise ValidationError(
            {
                "schemas": f"Schemas is a non-empty list of at most {MAX_SCHEMAS} schema versions "
                f"(whole numbers from 1 to {MAX_SCHEMA})."
            }
        )
    return version, sorted(set(schemas))


def node_schemas(node: RelayNode) -> list[int]:
    """Return the snapshot schemas a node enforces (nodes that reported before schemas were: schema 1)."""
    return node.schemas or SCHEMAS_BEFORE_REPORTING


def _refusal(report: dict, serial: int | None) -> tuple[int | None, str]:
    """Return the refused serial and reason of a report; none once the node enforces a newer serial."""
    refused_serial = report.get("refused_serial")
    if refused_serial is not None and not _whole(refused_serial, MAX_SERIAL):
        raise ValidationError({"refused_serial": "The refused serial is a whole number ≥ 0, or null."})
    reason = report.get("refused_reason") or ""
    if not isinstance(reason, str):
        raise ValidationError({"refused_reason": "The refusal reason is text, or null."})
    if refused_serial is not None and not reason:
        raise ValidationError({"refused_reason": "Say why the node refused the serial."})
    if refused_serial is not None and serial is not None and serial > refused_serial:
        return None, ""
    return refused_serial, reason[:1000]


MAX_PROXY_HOSTS = 1000


def _client_sources(report: dict) -> tuple[list[str], dict | None]:
    """Return a report's proxy networks (canonical text) and busiest peer; raise ValidationError if malformed."""
    proxy_hosts = report.get("proxy_hosts") or []
    try:
        if not isinstance(proxy_hosts, list) or len(proxy_hosts) > MAX_PROXY_HOSTS:
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
        if not all(_whole(n) for n in (connections, total)):
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
