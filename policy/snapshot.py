"""Build the policy snapshot: the one contract between the dashboard and relayd (docs/snapshot.md)."""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db.models import F, QuerySet
from django.utils import timezone

from policy.daemons import node_schemas, node_statuses
from policy.models import (
    PROFILE_FIELDS,
    DeniedNetwork,
    InternalAddress,
    LocalDomain,
    RoutingRestrictions,
    SmtpUser,
    TrustedNetwork,
    profile_of,
)
from relayd.compact import compact_snapshot, expand_snapshot
from relayd.config import (
    BASE_SCHEMA,
    COMPACT_SCHEMA,
    NETWORK_LISTS,
    PROFILES_SCHEMA,
    Snapshot,
    SnapshotError,
    parse_snapshot,
)


@dataclass(frozen=True)
class SchemaFeature:
    """A part of the snapshot that only relayds understanding schema `schema` can enforce."""

    schema: int
    name: str  # as the refusal names it: "... upgrade it before enabling {name}"
    used: Callable[[dict], bool]  # whether a snapshot uses the feature


# Every feature that needs a schema newer than the first declares itself here, and nothing else:
# the snapshot then carries the oldest schema that expresses it, so a fleet of older relayds keeps
# taking every policy that does not use the feature (a policy without relay profiles is still
# schema 1), and one that does is refused while a reporting node could not enforce it (check_fleet).
# The schema numbers themselves live in relayd/config.py.
SCHEMA_FEATURES: list[SchemaFeature] = [
    SchemaFeature(PROFILES_SCHEMA, "relay profiles", lambda snapshot: "profiles" in snapshot),
    # Used only where every reporting node reads it (published_form).
    SchemaFeature(
        COMPACT_SCHEMA,
        "compact network lists",
        lambda snapshot: any(isinstance(snapshot[key], dict) for key in NETWORK_LISTS),
    ),
]


def required_schema(snapshot: dict) -> tuple[int, list[SchemaFeature]]:
    """Return the oldest schema that expresses the snapshot, and the features that need more than the first."""
    used = [feature for feature in SCHEMA_FEATURES if feature.used(snapshot)]
    return max([BASE_SCHEMA, *(feature.schema for feature in used)]), used


def build_snapshot(serial: int) -> dict:
    """Return the current policy as a snapshot with this serial, in the oldest schema that expresses it."""
    restrictions = RoutingRestrictions.load()
    now = timezone.now()  # one moment for generated_at and the entries in force at it
    # Rows as values, not model instances: at 10,000 networks the instances (and their users) were
    # most of the time a snapshot took, and every policy change builds one.
    active = _with_added_by(TrustedNetwork.objects.active(now))
    trusted = list(active.values(*_NETWORK_COLUMNS, "expires_at", *PROFILE_FIELDS))
    accounts = list(SmtpUser.objects.filter(enabled=True))
    profiles = {
        "trusted_networks": [
            {"id": network["id"], **profile} for network in trusted if (profile := profile_of(network)) is not None
        ],
        "smtp_users": [
            {"username": account.username, **account.profile()} for account in accounts if account.has_profile
        ],
    }
    snapshot = {
        "schema": BASE_SCHEMA,  # see required_schema() below
        "serial": serial,
        "generated_at": now.isoformat(timespec="seconds"),
        "restrictions": restrictions.flag_values(),
        # Disabled entries are left out; expired ones too, and expires_at travels along so that
        # a reader stops trusting an entry the moment it expires, even before the next revision.
        "trusted_networks": [
            {
                "id": network["id"],
                "network": network["network"],
                "description": network["description"],
                "expires_at": _iso(network["expires_at"]),
                **_added(network),
            }
            for network in trusted
        ],
        "denied_networks": [
            {
                "id": network["id"],
                "network": network["network"],
                "description": network["description"],
                **_added(network),
            }
            for network in _with_added_by(DeniedNetwork.objects.all()).values(*_NETWORK_COLUMNS)
        ],
        "internal_addresses": [
            {"id": address.pk, "address": address.address, "description": address.description}
            for address in InternalAddress.objects.all()
        ],
        "local_domains": [
            {"domain": domain.domain, "include_subdomains": domain.include_subdomains, "route": domain.route or None}
            for domain in LocalDomain.objects.all()
        ],
        "smtp_users": [{"username": account.username, "password_hash": account.password_hash} for account in accounts],
    }
    if profiles["trusted_networks"] or profiles["smtp_users"]:
        snapshot["profiles"] = profiles
    snapshot["schema"] = required_schema(snapshot)[0]
    return snapshot


def published_form(snapshot: dict) -> dict:
    """Return the snapshot as it is published: its network lists compact where every reporting node reads them.

    Compact lists (docs/snapshot.md) say the same as lists of objects and reload several times
    faster at scale, but a relayd older than schema 3 refuses them. So they are used only while at
    least one node reports and every reporting (not silent) node enforces schema 3: the fleet
    the dashboard knows. A silent older node that comes back refuses such a revision and keeps
    the policy in force, reported as refused, until the next change publishes lists of objects.
    """
    reporting = [status.node for status in node_statuses() if status.state != "silent"]
    if not reporting or any(COMPACT_SCHEMA not in node_schemas(node) for node in reporting):
        return snapshot
    compact = compact_snapshot(snapshot)
    compact["schema"] = required_schema(compact)[0]
    return compact


# What a revision adds around the policy: the schema it is written in (lists of objects or
# compact ones say the same), its serial, its time, and the audit anchor it witnesses.
ENVELOPE = ("schema", "serial", "generated_at", "audit")


class UnpublishablePolicy(ValidationError):
    """The policy's snapshot is one relayd would refuse, so it must not become a revision."""


# The snapshot's lists, as the refusal names an entry of them: what it is and which key says which one.
_ENTRY_NAMES = {
    "trusted_networks": ("trusted network", "network"),
    "denied_networks": ("denied network", "network"),
    "internal_addresses": ("internal address", "address"),
    "local_domains": ("local domain", "domain"),
    "smtp_users": ("SMTP user", "username"),
    "profiles.trusted_networks": ("profile of trusted network", "id"),
    "profiles.smtp_users": ("profile of SMTP user", "username"),
}
_ENTRY_PATH = re.compile(r"(?P<list>[a-z_.]+)\[(?P<index>\d+)\](?:\.(?P<key>\w+))?")


# The snapshot this process checked last. Given as previous, it lets relayd's loader take the
# entries it has already validated from it, as relayd does on reload: checking a 100,000-entry
# policy with a few changes then costs a fraction of a cold check. Checks run under the policy
# lock, one at a time; the result never depends on it.
_last_checked: Snapshot | None = None


def check_publishable(snapshot: dict, text: str) -> None:
    """Raise UnpublishablePolicy naming the entry if relayd would refuse the snapshot text.

    The check is relayd's own loader on the exact text that would be published, so a revision
    that every node would refuse (and so keep enforcing an older one) can never be recorded.
    """
    global _last_checked
    try:
        _last_checked = parse_snapshot(text, previous=_last_checked)
    except SnapshotError as exc:
        raise UnpublishablePolicy(refusal_message(snapshot, exc), code="unpublishable") from None


def check_fleet(snapshot: dict) -> None:
    """Raise UnpublishablePolicy if a reporting (not silent) node cannot enforce the snapshot's schema.

    Such a node would refuse the revision and keep enforcing the last one it took: rather than
    freeze it behind, the change waits until the node is upgraded.
    """
    schema = snapshot["schema"]
    behind = [
        (status.node.name, node_schemas(status.node))
        for status in node_statuses()
        if status.state != "silent" and schema not in node_schemas(status.node)
    ]
    if not behind:
        return
    features = ", ".join(feature.name for feature in required_schema(snapshot)[1] if feature.schema == schema)
    nodes = "; ".join(
        f"node {name} runs an older relayd (schemas {', '.join(map(str, schemas))})" for name, schemas in behind
    )
    raise UnpublishablePolicy(
        f"Nothing was saved: {nodes}: upgrade it before enabling {features or f'snapshot schema {schema}'}.",
        code="fleet_too_old",
    )


def last_checked() -> Snapshot | None:
    """Return the snapshot this process checked last: a head start for parsing the revision it became."""
    return _last_checked


def refusal_message(snapshot: dict, error: SnapshotError) -> str:
    """Say in a sentence which entry relayd refuses and why."""
    found = _ENTRY_PATH.fullmatch(error.path)
    if found and found["list"] in _ENTRY_NAMES:
        label, name_key = _ENTRY_NAMES[found["list"]]
        entries: Any = expand_snapshot(snapshot)  # a compact list numbers its entries as the expanded one does
        for part in found["list"].split("."):
            entries = entries[part]
        entry = entries[int(found["index"])]
        key = found["key"]
        what = f"{label} {entry.get(name_key)}" + (f" ({key})" if key and key != name_key else "")
        return f"Nothing was saved: relayd would refuse the {what}: {error.problem}."
    return f"Nothing was saved: relayd would refuse this policy ({error.path}: {error.problem})."


def policy_content(snapshot: dict) -> dict:
    """Return the snapshot without its envelope, its lists as objects: what decides whether the policy changed.

    The network lists are put in id order: compact lists keep network order, the database another.
    """
    content = {key: value for key, value in expand_snapshot(snapshot).items() if key not in ENVELOPE}
    for key in NETWORK_LISTS:
        content[key] = sorted(content[key], key=itemgetter("id"))
    return content


def dumps(snapshot: dict) -> str:
    """Serialise a snapshot exactly as it is stored, published and hashed."""
    return json.dumps(snapshot, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def _iso(moment) -> str | None:
    return moment.isoformat(timespec="seconds") if moment else None


# The column of who added an entry: their username, None once the user is gone.
_ADDED_BY = "added_by_name"
# What every network entry of the snapshot reads.
_NETWORK_COLUMNS = ("id", "network", "description", "created_at", _ADDED_BY)


def _with_added_by(queryset: QuerySet) -> QuerySet:
    return queryset.annotate(**{_ADDED_BY: F("created_by__" + get_user_model().USERNAME_FIELD)})


def _added(row: dict) -> dict:
    return {"added_by": row[_ADDED_BY] or "", "added_at": _iso(row["created_at"])}
